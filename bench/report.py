"""What every benchmark records: the machine, the versions, the command, and its results.

    from report import Report
    rep = Report("train_throughput", quick=args.quick)  # notes the machine, versions, command, start time
    rep.write({"rows": rows}, tables=[(title, rows, columns)])  # results/train_throughput.json + tables

A --quick (smoke) run writes results/NAME_quick.json, so it never overwrites a real run's results.

Scripts run as `python bench/NAME.py` from the repository root, so `bench/` is on sys.path.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from asr.atomic import write_text_atomically
from asr.machine import cpu_features, cpu_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = RESULTS_DIR.parents[1]  # the repository: paths under it are written relative to it
BUSY_CPU_SHARE = 0.2  # another process using more than this share of one core counts as load


def busy_processes(interval: float = 1.0) -> list[dict]:
    """Other processes that used more than BUSY_CPU_SHARE of a core over `interval` seconds (Linux):
    their program names and shares."""

    def cpu_ticks() -> dict[int, tuple[int, str]]:
        ticks = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                stat = (entry / "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                ticks[int(entry.name)] = (int(fields[11]) + int(fields[12]), name)  # utime + stime
            except (OSError, ValueError, IndexError):
                continue
        return ticks

    if not Path("/proc/stat").exists():
        return []
    hz = os.sysconf("SC_CLK_TCK")
    before = cpu_ticks()
    time.sleep(interval)
    after = cpu_ticks()
    busy = []
    for pid, (ticks, name) in after.items():
        share = (ticks - before.get(pid, (ticks, name))[0]) / hz / interval
        if share > BUSY_CPU_SHARE:  # the program's name only: command lines hold other people's paths
            busy.append({"program": name, "cpu_share": round(share, 2)})
    return sorted(busy, key=lambda p: -p["cpu_share"])


def machine() -> dict:
    """CPU model, cores, torch threads, GPU (if any), and how busy the machine was when sampled."""
    import torch

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_features": cpu_features(),  # AVX-512, VNNI, bf16/AMX: what makes int8 and bf16 fast here
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "other_busy_processes": busy_processes(),
    }
    info["shared"] = bool(info["other_busy_processes"])
    return info


def versions() -> dict:
    import numpy
    import torch
    import torchaudio

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "numpy": numpy.__version__,
        "onnxruntime": _version("onnxruntime"),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def portable(value):
    """The value with every string path under the repository made relative to it: result files
    name no local checkout (lists, dicts and strings are walked; other values are kept)."""
    if isinstance(value, str):
        return value.replace(f"{ROOT}{os.sep}", "").replace(str(ROOT), ".")
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    return value


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Rows (dicts) as a markdown table of the given columns; floats to 4 significant digits."""

    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """One benchmark run: machine and versions noted at start, results written at the end."""

    def __init__(self, name: str, quick: bool = False) -> None:
        self.name = name
        self.stem = f"{name}_quick" if quick else name  # results file name
        self.started = time.time()
        self.command = portable(shlex.join([Path(sys.executable).name, *sys.argv]))
        self.machine = machine()
        if self.machine["shared"]:
            names = ", ".join(p["program"] for p in self.machine["other_busy_processes"])
            print(f"{name}: warning: other busy processes, timings may be off: {names}", file=sys.stderr)

    def write(self, results: dict, tables: Sequence[tuple[str, Sequence[dict], Sequence[str]]] = ()) -> Path:
        """Write bench/results/<stem>.json and print each (title, rows, columns) table as markdown."""
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": self.name,
            "quick": self.stem != self.name,
            "command": self.command,
            "timestamp": datetime.datetime.fromtimestamp(self.started, datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.time() - self.started, 1),
            "machine": self.machine,
            "versions": versions(),
            "results": portable(results),
        }
        if self.machine["load_average"] is not None:
            payload["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        payload["machine"]["other_busy_processes_end"] = busy_processes()  # load that started mid-run shows here
        payload["machine"]["shared"] = bool(self.machine["other_busy_processes"] or
                                            payload["machine"]["other_busy_processes_end"])
        path = RESULTS_DIR / f"{self.stem}.json"
        write_text_atomically(path, json.dumps(payload, indent=2) + "\n")
        for title, rows, columns in tables:
            if rows:
                print(f"\n### {title}\n\n{markdown_table(rows, columns)}")
        print(f"\n-> {path}")
        return path

    def skip(self, reason: str) -> None:
        """Say why the benchmark cannot run here (e.g. no AN4 data) and exit 0, leaving old results alone."""
        print(f"{self.name}: skipped: {reason}", file=sys.stderr)
        sys.exit(0)
