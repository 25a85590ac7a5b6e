"""Run a command as a child process and measure it: wall time and the child's own peak RSS.

os.wait4 gives the resource usage of that one child (RUSAGE_CHILDREN would be the maximum over
every child so far), so several children measured in a row each get their own peak. But Linux
counts in a process's peak RSS the memory of the process it was exec'd from (exec records the
old address space's high-water mark), so a command spawned straight from a benchmark that has
imported torch would be charged the benchmark's ~600 MB. The command is therefore started by a
small launcher (LAUNCHER: python -S, ~10 MB), which spawns it, waits for it with os.wait4, and
writes its wall time and peak RSS to a file; signals to the launcher are passed on.
"""

from __future__ import annotations

import json
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


LAUNCHER = """
import json, os, signal, sys, time
result, command = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.posix_spawnp(command[0], command, os.environ)
for number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(number, lambda received, frame: os.kill(pid, received))
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(result, "w") as f:
    json.dump({"seconds": seconds, "max_rss_kb": usage.ru_maxrss}, f)
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


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
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r", suffix=".json") as measured:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, measured.name, *command],
                                 stdout=out, stderr=err, env=env, start_new_session=True)
        stopped = threading.Event()
        done = threading.Event()

        def watch() -> None:
            while not done.wait(poll_seconds):
                late = timeout is not None and time.perf_counter() - started > timeout
                if late or (stop is not None and stop()):
                    stopped.set()
                    child.send_signal(signal.SIGINT)
                    if not done.wait(20):
                        os.killpg(child.pid, signal.SIGKILL)  # the launcher and the command
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        child.wait()
        seconds = time.perf_counter() - started
        done.set()
        watcher.join()
        try:
            launched = json.loads(measured.read() or "{}")
        except ValueError:
            launched = {}
        out.seek(0), err.seek(0)
        run = ChildRun(
            command=list(command),
            returncode=child.returncode,
            seconds=launched.get("seconds", seconds),  # without the launcher's own start-up
            max_rss_mb=launched.get("max_rss_kb", 0) / 1024,  # Linux reports KiB; 0 when the launcher was killed
            stdout=out.read(),
            stderr=err.read(),
            stopped=stopped.is_set(),
        )
    if check and run.returncode != 0 and not run.stopped:
        tail = "\n".join(run.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"command failed ({run.returncode}): {' '.join(run.command)[:300]}\n{tail}")
    return run
