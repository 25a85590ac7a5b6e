"""The files an `asr transcribe` run reads and writes: worked out from the command line before any
model loads.

No torch here (nor anything that imports it), so the CLI refuses a bad command line at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asr.audio import AUDIO_EXTENSIONS, find_audio_files
from asr.errors import ASRError

FILE_EXTENSIONS = {"text": ".txt", "jsonl": ".jsonl", "srt": ".srt", "vtt": ".vtt", "ctm": ".ctm"}  # by --format


@dataclass(frozen=True)
class AudioInput:
    path: str  # as given, or as found under a given directory
    error: str | None = None  # one line naming the path and the problem
    name: str = ""  # its output's path below --output-dir, without extension: "sub/x" for dir/sub/x.wav


def printable(text: str, spaces: bool = False) -> str:
    """text as it can be printed on one line: bytes of a file name that are not valid UTF-8 (which
    Python holds as lone surrogates) as \\xNN, line breaks, tabs and other control characters as
    \\n, \\t, \\xNN; with spaces=True, whitespace too (\\x20), for a field of a space-separated
    format (CTM). Anything else, non-ASCII letters included, is unchanged."""
    if text.isprintable() and (not spaces or " " not in text):
        return text  # the usual case, at once
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for the byte code - 0xDC00
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[char])
        elif char.isprintable() and not (spaces and char.isspace()):
            out.append(char)
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def expand_inputs(paths: Iterable[str]) -> list[AudioInput]:
    """Paths and directories -> AudioInputs, in the order given.

    A directory contributes every audio file under it (sorted), named by its path below the
    directory, and an error input for each symbolic link there with an audio name whose target
    is missing; a directory with no audio, or a missing path, contributes one input carrying its error.
    """
    expanded: list[AudioInput] = []
    for path in paths:
        if os.path.isdir(path):
            found = find_audio_files(path)
            broken = dangling_links(path)
            if not found and not broken:
                expanded.append(AudioInput(path, f"{path}: directory contains no audio files"))
            items = [AudioInput(str(p), name=str(p.relative_to(path).with_suffix(""))) for p in found]
            items += [AudioInput(str(p), f"{p}: a symbolic link to {os.readlink(p)}, which does not exist")
                      for p in broken]
            expanded.extend(sorted(items, key=lambda item: item.path))
        elif not os.path.exists(path):
            expanded.append(AudioInput(path, f"{path}: no such file or directory"))
        else:
            expanded.append(AudioInput(path, name=Path(path).stem))
    return expanded


def dangling_links(directory: str | os.PathLike) -> list[Path]:
    """Symbolic links under `directory` (recursive, sorted) with an audio file's name whose target
    does not exist: find_audio_files passes them over, and a user should hear of them."""
    return sorted(p for p in Path(directory).rglob("*")
                  if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_symlink() and not p.exists())


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
