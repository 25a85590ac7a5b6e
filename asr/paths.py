"""The files an `asr transcribe` run reads: worked out from the command line before any model loads.

No torch here (nor anything that imports it), so the CLI refuses a bad command line at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from asr.audio import find_audio_files


def expand_inputs(paths: Iterable[str]) -> list[tuple[str, str | None]]:
    """Paths and directories -> (audio path, error or None), in the order given.

    A directory contributes every audio file under it (sorted); a directory with none, or a
    missing path, contributes one entry carrying its error.
    """
    expanded: list[tuple[str, str | None]] = []
    for path in paths:
        if os.path.isdir(path):
            found = find_audio_files(path)
            if not found:
                expanded.append((path, f"{path}: directory contains no audio files"))
            expanded.extend((str(p), None) for p in found)
        elif not os.path.exists(path):
            expanded.append((path, f"{path}: no such file or directory"))
        else:
            expanded.append((path, None))
    return expanded
