"""Names of the hardware a run used, for result tables and benchmark records."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description() -> str:
    """'GPU: <name>' when CUDA is available, else 'CPU: <model>'."""
    import torch

    return f"GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else f"CPU: {cpu_model()}"
