"""The files an `asr transcribe` run reads and writes: worked out from the command line before any
model loads.

No torch here (nor anything that imports it), so the CLI refuses a bad command line at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asr.audio import find_audio_files
from asr.errors import ASRError

FILE_EXTENSIONS = {"text": ".txt", "jsonl": ".jsonl", "srt": ".srt", "vtt": ".vtt", "ctm": ".ctm"}  # by --format


@dataclass(frozen=True)
class AudioInput:
    path: str  # as given, or as found under a given directory
    error: str | None = None  # one line naming the path and the problem
    name: str = ""  # its output's path below --output-dir, without extension: "sub/x" for dir/sub/x.wav


def expand_inputs(paths: Iterable[str]) -> list[AudioInput]:
    """Paths and directories -> AudioInputs, in the order given.

    A directory contributes every audio file under it (sorted), named by its path below the
    directory; a directory with none, or a missing path, contributes one input carrying its error.
    """
    expanded: list[AudioInput] = []
    for path in paths:
        if os.path.isdir(path):
            found = find_audio_files(path)
            if not found:
                expanded.append(AudioInput(path, f"{path}: directory contains no audio files"))
            expanded.extend(AudioInput(str(p), name=str(p.relative_to(path).with_suffix(""))) for p in found)
        elif not os.path.exists(path):
            expanded.append(AudioInput(path, f"{path}: no such file or directory"))
        else:
            expanded.append(AudioInput(path, name=Path(path).stem))
    return expanded


def output_files(inputs: Iterable[AudioInput], output_dir: str, fmt: str) -> dict[str, str]:
    """Audio path -> the file under output_dir its transcript in `fmt` is written to.

    Raises ASRError naming both inputs when two would be written to the same file, so that no
    output silently replaces another.
    """
    targets: dict[str, str] = {}
    owners: dict[str, str] = {}  # normalised target -> the input written there
    for item in inputs:
        if item.error is not None:
            continue
        target = os.path.join(output_dir, item.name + FILE_EXTENSIONS[fmt])
        owner = owners.setdefault(os.path.normpath(target), item.path)
        if owner != item.path or item.path in targets:
            raise ASRError(f"{owner} and {item.path} would both be written to {target}; "
                           "rename one or transcribe them in separate runs")
        targets[item.path] = target
    return targets
