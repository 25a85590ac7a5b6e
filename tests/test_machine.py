"""Hardware names written into result tables and benchmark records."""

from __future__ import annotations

import torch

from asr.machine import cpu_model, device_description


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
