"""Hardware names and speed-relevant CPU features written into result tables and benchmark records."""

from __future__ import annotations

from pathlib import Path

import torch

from asr.machine import SPEED_FEATURES, cpu_features, cpu_has_fast_bf16, cpu_model, device_description


def test_cpu_model_names_this_machines_cpu():
    name = cpu_model()
    assert name and name == name.strip()
    cpuinfo = "/proc/cpuinfo"
    try:
        text = open(cpuinfo).read()
    except OSError:
        return
    if "model name" in text:
        assert name in text


def test_device_description_names_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_description() == f"CPU: {cpu_model()}"


def test_device_description_names_the_gpu_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Some GPU")
    assert device_description() == "GPU: Some GPU"


def test_cpu_features_are_the_speed_relevant_flags_the_cpu_reports(monkeypatch):
    found = cpu_features()
    assert set(found) <= set(SPEED_FEATURES)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # torch's probe agrees with the kernel's flags (avx512_f is avx512f there)
        flags = set(cpuinfo.read_text().split())
        assert ("avx2" in found) == ("avx2" in flags)
        assert ("amx_bf16" in found) == ("amx_bf16" in flags)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "amx_bf16": True, "sse": True})
    assert cpu_features() == ["avx2", "amx_bf16"] and cpu_has_fast_bf16()
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "avx512_f": True, "avx512_vnni": True})
    assert cpu_features() == ["avx2", "avx512_f", "avx512_vnni"] and not cpu_has_fast_bf16()
