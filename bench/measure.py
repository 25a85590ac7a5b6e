"""Run a command as a child process and measure it: wall time and the child's own peak RSS.

os.wait4 gives the resource usage of that one child (RUSAGE_CHILDREN would be the maximum over
every child so far), so several children measured in a row each get their own peak.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ChildRun:
    command: list[str]
    returncode: int
    seconds: float  # wall time from start to exit
    max_rss_mb: float  # the child's peak resident set size (MiB)
    stdout: str
    stderr: str
    stopped: bool  # ended by `stop` or the timeout rather than on its own


def asr_command() -> list[str]:
    """The `asr` console script of the running Python's environment (else `python -m asr`)."""
    script = Path(sys.executable).parent / "asr"
    return [str(script)] if script.exists() else [sys.executable, "-m", "asr"]


def child_env(threads: int) -> dict[str, str]:
    """The current environment with intra-op threads pinned (torch reads OMP_NUM_THREADS at start)."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_child(
    command: Sequence[str],
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    stop: Callable[[], bool] | None = None,
    poll_seconds: float = 0.5,
    check: bool = True,
) -> ChildRun:
    """Run `command`, capturing stdout/stderr (to temp files, so a chatty child never blocks).

    `stop` is polled every `poll_seconds`; when it returns True (or `timeout` passes) the child
    gets SIGINT, then SIGKILL 20 s later. With check, a non-zero exit that was not asked for raises.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(list(command), stdout=out, stderr=err, env=env)
        stopped = threading.Event()
        done = threading.Event()

        def watch() -> None:
            while not done.wait(poll_seconds):
                late = timeout is not None and time.perf_counter() - started > timeout
                if late or (stop is not None and stop()):
                    stopped.set()
                    child.send_signal(signal.SIGINT)
                    if not done.wait(20):
                        child.kill()
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        watcher.join()
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
        out.seek(0), err.seek(0)
        run = ChildRun(
            command=list(command),
            returncode=child.returncode,
            seconds=seconds,
            max_rss_mb=usage.ru_maxrss / 1024,  # Linux reports KiB
            stdout=out.read(),
            stderr=err.read(),
            stopped=stopped.is_set(),
        )
    if check and run.returncode != 0 and not run.stopped:
        tail = "\n".join(run.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"command failed ({run.returncode}): {' '.join(run.command)[:300]}\n{tail}")
    return run
