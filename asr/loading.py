"""asr.load: a model by name or path, ready to transcribe; the one place that picks its back end.

    import asr
    transcriber = asr.load()                          # the default bundled model (exported, no torch)
    transcriber = asr.load("an4")                     # a bundled model by name
    transcriber = asr.load("exp/an4/blstm/best.pt", device="cuda")   # a checkpoint, with PyTorch
    print(transcriber.transcribe_file("talk.wav").text)

A folder (or the model.onnx inside one) is an exported model and runs on onnxruntime without
importing torch; any other path is a checkpoint, run with PyTorch on `device`. The CLI, the
benchmarks, plots and tests load models through here.
"""

from __future__ import annotations

import dataclasses
import os

from asr.bundled import resolve_model
from asr.errors import ASRError


def load_backend(model: str | os.PathLike | None = None, device: str = "cpu", threads: int | None = None):
    """The asr.backend.Backend for `model`: a bundled model's name, None (the default bundled
    model), an exported folder or its model.onnx (onnxruntime; `threads` intra-op threads), or a
    checkpoint file (PyTorch on `device`: cpu, cuda, cuda:N or auto)."""
    path = resolve_model(None if model is None else str(model))
    if path.endswith(".onnx") and os.path.isfile(path):
        path = os.path.dirname(path) or "."  # the graph alone cannot transcribe: its folder can
    if os.path.isdir(path):
        if device not in ("cpu", "auto"):
            raise ASRError(f"{path}: an exported model runs on the CPU (onnxruntime); device {device!r} "
                           "needs the PyTorch checkpoint")
        from asr.runtime import load_exported

        return load_exported(path, threads=threads)
    try:
        from asr.checkpoint import load_model
        from asr.machine import pick_device
    except ImportError as err:  # the runtime-only install has no torch
        raise ASRError(f"{path}: a checkpoint needs PyTorch ({err}): pip install 'asr[train]', "
                       "or give an exported model folder") from None
    return load_model(path, pick_device(device))


def load(model: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 16,
         threads: int | None = None, **decoding):
    """An asr.transcribe.Transcriber for `model` (see load_backend). Keyword arguments that name
    asr.decode.DecodeConfig fields (decoder="greedy", beam_size=50, lm_weight=...) change the
    model's own decoding; None leaves a field as the model has it."""
    from asr.transcribe import Transcriber

    backend = load_backend(model, device, threads)
    changes = {key: value for key, value in decoding.items() if value is not None}
    known = {f.name for f in dataclasses.fields(backend.decoding)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ASRError(f"unknown decoding settings {unknown}; known: {sorted(known)}")
    return Transcriber(backend, batch_size=batch_size, decoding=dataclasses.replace(backend.decoding, **changes))
