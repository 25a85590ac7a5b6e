"""Quiet native libraries: what C/C++ code (KenLM loading an ARPA file) writes to the process's
stdout and stderr is captured while it runs, and only what explains a failure is kept.

    with native_output_captured() as output:
        try:
            lm = KenLM(path, words)
        except RuntimeError as err:
            raise ASRError(f"{path}: cannot load the LM ({load_error(err, output())})")
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

NATIVE_OUTPUT_LOCK = threading.Lock()  # one capture at a time: file descriptors 1 and 2 are process-wide
KENLM_LOADING_CHATTER = (  # what KenLM prints while it reads an ARPA file, whether or not it succeeds
    "Loading the LM will be faster if you build a binary file.",
    "Reading ",
    "----5---10---15---20---25---30---35---40---45---50---55---60---65---70---75---80---85---90---95--100",
    "****",
)


@contextlib.contextmanager
def native_output_captured() -> Iterator[Callable[[], str]]:
    """While the body runs, what C/C++ code writes to file descriptors 1 and 2 goes to a temporary
    file; yields a function returning that text (for an error message). It is discarded afterwards.

    No flashlight or torchaudio option turns KenLM's loading messages off (it writes them to
    std::cerr), hence the redirection. Python's own sys.stdout and sys.stderr keep writing where
    they did for the duration (through duplicates of the original descriptors), so another
    thread's print is not swallowed.
    """
    with NATIVE_OUTPUT_LOCK, tempfile.TemporaryFile() as captured:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        streams = _python_streams_on(saved)
        try:
            for fd in saved:
                os.dup2(captured.fileno(), fd)
            yield lambda: _read_text(captured)
        finally:
            for fd, original in saved.items():
                os.dup2(original, fd)
            _restore_python_streams(streams)
            for original in saved.values():
                os.close(original)


def _python_streams_on(saved: dict[int, int]) -> dict[str, object]:
    """Point sys.stdout/sys.stderr, where they write to fd 1/2, at the saved duplicates; returns the originals."""
    originals = {}
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None or _fileno(stream) != fd:
            continue  # already elsewhere (a pytest capture, a redirect): the descriptor swap does not touch it
        stream.flush()
        originals[name] = stream
        buffer = io.BufferedWriter(io.FileIO(saved[fd], "w", closefd=False))
        setattr(sys, name, io.TextIOWrapper(buffer, encoding=stream.encoding, errors=stream.errors,
                                            line_buffering=True))
    return originals


def _restore_python_streams(originals: dict[str, object]) -> None:
    for name, stream in originals.items():
        getattr(sys, name).flush()
        setattr(sys, name, stream)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return None


def _read_text(file) -> str:
    file.flush()
    file.seek(0)
    return file.read().decode("utf-8", errors="replace")


def load_error(err: Exception, native_output: str) -> str:
    """One line: the exception's last line (KenLM's first names its C++ source line), then any native
    output other than KenLM's loading chatter."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    parts = [lines[-1] if lines else type(err).__name__]
    parts += [line.strip() for line in native_output.splitlines()
              if line.strip() and not line.startswith(KENLM_LOADING_CHATTER)]
    return "; ".join(parts)
