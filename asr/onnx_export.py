"""Export a checkpoint to the torch-free runtime's folder (see asr.runtime for its layout).

    export_onnx("model.pt", "model_onnx/")           # what `asr export --model model.pt --onnx model_onnx/` does

The acoustic model becomes an ONNX graph with dynamic batch and time axes, exported with torch's
TorchScript-based exporter (`dynamo=False`): torch 2.11's dynamo exporter fails on the recurrent
layers (data-dependent lengths in reverse_padded), the TorchScript one exports them as ONNX LSTM/
GRU/RNN nodes that onnxruntime runs as fused kernels, and the graph's log-probs equal the model's
to ~1e-5 (tests/test_runtime.py). A recurrent LM's network step (asr.rnnlm.RNNLM.step, the
function the torch path's beam search runs too) is exported the same way as rnnlm.onnx, with its
weights. The front end is not in the graph: its level normalisation
(top-k level per utterance or per streamed block) is plain numpy in asr.frontend.

Weights (both graphs): an initializer whose values are all exactly representable in float16 (those of an
`asr export --fp16` checkpoint, like the bundled model) is stored in float16 and cast to float32
when the graph loads (onnxruntime folds the cast once), so the file is half the size and computes
exactly what the checkpoint computes; other weights stay float32. `int8=True` instead applies
onnxruntime's dynamic int8 quantisation (weights int8, activations quantised on the fly).

The output is a function of the checkpoint and the package versions only (no timestamps), so
re-running the export reproduces the folder byte for byte.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from asr.atomic import atomic_write, write_text_atomically
from asr.checkpoint import model_from_payload, read_checkpoint
from asr.errors import ASRError
from asr.lm import lexicon_text
from asr.rnnlm import RNNLM, StepModule
from asr.bundle import (
    LEXICON_FILE, LM_FILE, MODEL_FILE, RNNLM_FILE, BundleConfig, RecurrentLMEntry, clear_folder, file_sha256,
    write_config, write_manifest,
)

OPSET = 17  # LayerNormalization is a standard op from opset 17
TRACE_FRAMES = (90, 61)  # the example batch the graph is traced with (two lengths, so padding is traced too)
TRACE_ROWS = 3  # the example batch of LM histories the step is traced with


def export_onnx(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, int8: bool = False) -> dict:
    """Write the runtime folder for `checkpoint` into out_dir (created if needed); returns its manifest.

    Files: model.onnx, config.json (features, CMVN, vocabulary, frame stacking, decoding),
    lm.arpa and lexicon.txt when the checkpoint carries an n-gram LM, rnnlm.onnx (its network step
    with its weights; the configuration and vocabulary go in config.json) when it carries a
    recurrent LM, and manifest.json (written last: versions, and the size and SHA-256 of every
    other file).
    """
    try:
        import onnx
    except ImportError as err:
        raise ASRError(f"ONNX export needs the onnx package: pip install 'asr[onnx]' ({err})") from None
    payload = read_checkpoint(checkpoint)
    loaded = model_from_payload(payload, checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clear_folder(out)  # an old manifest or LM must not outlive this export

    with tempfile.TemporaryDirectory(prefix="asr-onnx-") as tmp:
        traced = Path(tmp) / MODEL_FILE
        _trace(loaded.model, loaded.features.n_mels, traced)
        graph = onnx.load(str(traced))
        if loaded.rnnlm is not None:
            step = Path(tmp) / RNNLM_FILE
            _trace_lm_step(loaded.rnnlm.model, step)
            step_graph = onnx.load(str(step))
            _store_exact_float16(step_graph)
            step_graph.producer_name, step_graph.producer_version = "asr", _version("asr")
            onnx.checker.check_model(step_graph)
            with atomic_write(out / RNNLM_FILE, binary=True) as f:
                f.write(step_graph.SerializeToString(deterministic=True))
        if int8:
            import logging

            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = Path(tmp) / "int8.onnx"
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # quantize_dynamic logs advice about pre-processing image models
            try:
                quantize_dynamic(str(traced), str(quantized), weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
            graph = onnx.load(str(quantized))
            weights = "int8 (onnxruntime dynamic quantisation)"
        else:
            weights = _store_exact_float16(graph)
        graph.producer_name, graph.producer_version = "asr", _version("asr")
        onnx.checker.check_model(graph)
        with atomic_write(out / MODEL_FILE, binary=True) as f:
            f.write(graph.SerializeToString(deterministic=True))

    rnnlm = loaded.rnnlm
    config = BundleConfig(
        features=loaded.features, cmvn=loaded.cmvn, vocab=loaded.vocab, frame_stack=loaded.frame_stack,
        decoding=loaded.decoding, lm_file=LM_FILE if loaded.lm_arpa is not None else None,
        lexicon_file=LEXICON_FILE if loaded.lexicon else None,
        rnnlm=RecurrentLMEntry(RNNLM_FILE, rnnlm.config, rnnlm.vocab) if rnnlm is not None else None, weights=weights,
    )
    write_config(out, config)
    if loaded.lm_arpa is not None:
        write_text_atomically(out / LM_FILE, loaded.lm_arpa)
    if loaded.lexicon:
        write_text_atomically(out / LEXICON_FILE, lexicon_text(loaded.lexicon))
    return write_manifest(
        out, source={"checkpoint": Path(checkpoint).name, "sha256": file_sha256(checkpoint)},
        exported_with={name: _version(name) for name in ("asr", "torch", "onnx", "onnxruntime")} | {"opset": OPSET},
    )


def _trace(model: torch.nn.Module, n_mels: int, path: Path) -> None:
    """The model as ONNX: feats (B, T, n_mels) float32, feat_lens (B,) int64 -> log_probs (B, T', V), out_lens (B,)."""
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(len(TRACE_FRAMES), max(TRACE_FRAMES), n_mels, generator=generator)
    lens = torch.tensor(TRACE_FRAMES)
    model = model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer warns about Python conditions on shapes (frame stacking's padding); the padding
        # amount itself is traced as a computation, and tests/test_runtime.py checks every remainder
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (feats, lens), str(path), dynamo=False, opset_version=OPSET,
            input_names=["feats", "feat_lens"], output_names=["log_probs", "out_lens"],
            dynamic_axes={"feats": {0: "batch", 1: "frames"}, "feat_lens": {0: "batch"},
                          "log_probs": {0: "batch", 1: "out_frames"}, "out_lens": {0: "batch"}},
        )


def _trace_lm_step(model: RNNLM, path: Path) -> None:
    """The LM's step as ONNX: tokens (N,) int64, states (N, layers, parts, H) float32
    -> log_probs (N, V) float32, new_states (N, layers, parts, H). A copy is traced: tracing a model
    that has already run left that model computing other values (torch 2.11, nn.LSTM)."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.arange(TRACE_ROWS)
    states = torch.randn(TRACE_ROWS, model.config.num_layers, model.parts, model.config.hidden_size,
                         generator=generator)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the LSTM-with-batch-size warning of the TorchScript exporter
        torch.onnx.export(
            StepModule(copy.deepcopy(model).eval()), (tokens, states), str(path), dynamo=False, opset_version=OPSET,
            input_names=["tokens", "states"], output_names=["log_probs", "new_states"],
            dynamic_axes={name: {0: "n"} for name in ("tokens", "states", "log_probs", "new_states")},
        )


def _store_exact_float16(graph) -> str:
    """Store every float32 initializer whose values float16 holds exactly as float16, cast back to
    float32 by a Cast node at the start of the graph. Returns a description of the weights."""
    import onnx
    from onnx import numpy_helper

    casts, kept = [], 0
    for init in list(graph.graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if values.size < 2 or not np.array_equal(half.astype(np.float32), values):
            kept += values.size
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, name=f"{name}_float16"))
        casts.append(onnx.helper.make_node("Cast", [f"{name}_float16"], [name], to=onnx.TensorProto.FLOAT,
                                           name=f"{name}_to_float32"))
    for position, node in enumerate(casts):
        graph.graph.node.insert(position, node)
    if not casts:
        return "float32"
    return "float16 (exact: the checkpoint's values), computed in float32" + (f"; {kept} values float32" if kept else "")


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
