"""Atomic file writes: a temporary file beside the target, synced, then renamed over it.

A crash or kill leaves either the old file or the new one, never half of one. The temporary
file is named `.NAME.tmpPID`, so a leftover from a killed process can be recognised (see
asr.train, which removes such checkpoint leftovers on resume).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name used while `path` is being written: `.NAME.tmpPID` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_write(path: str | os.PathLike, binary: bool = False) -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit sync it and rename it over `path`.

        with atomic_write("out.jsonl") as f:
            f.write(...)

    On an exception the temporary file is removed and `path` is left as it was. The folder must
    exist (a missing one raises FileNotFoundError naming the target).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(2, "No such file or directory (its folder does not exist)", str(path))
    tmp = temp_path(path)
    try:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically."""
    with atomic_write(path) as f:
        f.write(text)
