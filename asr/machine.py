"""The hardware a run used: names for result tables and benchmark records, and what it can compute fast."""

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


# The instruction sets that change this project's speed: AVX-512 for fp32 kernels, VNNI for
# onnxruntime's int8 model, AVX512-BF16 / AMX for bf16 autocast (train.cpu_amp). Two CPUs of one
# model name can differ in them (cloud hosts), so benchmark records list the ones present.
SPEED_FEATURES = ("avx2", "avx512_f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_features() -> list[str]:
    """Which of SPEED_FEATURES this CPU has (as torch's CPU capability probe reports them)."""
    import torch

    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return [name for name in SPEED_FEATURES if capabilities.get(name)]


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AMX-BF16 or AVX512-BF16), where bf16 autocast
    can beat fp32; elsewhere oneDNN emulates it."""
    return bool({"amx_bf16", "avx512_bf16"} & set(cpu_features()))


def pick_device(name: str):
    """A torch.device: 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'; CUDA asked for but absent is an error."""
    import torch

    from asr.errors import ASRError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ASRError(f"device {name!r} requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ASRError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N") from None
