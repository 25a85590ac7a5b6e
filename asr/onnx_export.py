"""Export a checkpoint to the torch-free runtime's folder (see asr.runtime for its layout).

    export_onnx("model.pt", "model_onnx/")           # what `asr export --model model.pt --onnx model_onnx/` does

The acoustic model becomes an ONNX graph with dynamic batch and time axes, exported with torch's
TorchScript-based exporter (`dynamo=False`): torch 2.11's dynamo exporter fails on the recurrent
layers (data-dependent lengths in reverse_padded), the TorchScript one exports them as ONNX LSTM/
GRU/RNN nodes that onnxruntime runs as fused kernels, and the graph's log-probs equal the model's
to ~1e-5 (tests/test_runtime.py). The front end is not in the graph: its level normalisation
(top-k level per utterance or per streamed block) is plain numpy in asr.frontend.

Weights: an initializer whose values are all exactly representable in float16 (those of an
`asr export --fp16` checkpoint, like the bundled model) is stored in float16 and cast to float32
when the graph loads (onnxruntime folds the cast once), so the file is half the size and computes
exactly what the checkpoint computes; other weights stay float32. `int8=True` instead applies
onnxruntime's dynamic int8 quantisation (weights int8, activations quantised on the fly).

The output is a function of the checkpoint and the package versions only (no timestamps), so
re-running the export reproduces the folder byte for byte.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from asr.atomic import atomic_write, write_text_atomically
from asr.checkpoint import model_from_payload, read_checkpoint
from asr.errors import ASRError
from asr.lm import lexicon_text
from asr.numpy_rnnlm import weights_to_bytes
from asr.runtime import (
    BUNDLE_FILES, CONFIG_FILE, FORMAT, FORMAT_VERSION, LEXICON_FILE, LM_FILE, MANIFEST_FILE, MODEL_FILE, RNNLM_FILE,
    RNNLM_GRAPH_FILE, file_sha256,
)

OPSET = 17  # LayerNormalization is a standard op from opset 17
TRACE_FRAMES = (90, 61)  # the example batch the graph is traced with (two lengths, so padding is traced too)


def export_onnx(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, int8: bool = False) -> dict:
    """Write the runtime folder for `checkpoint` into out_dir (created if needed); returns its manifest.

    Files: model.onnx, config.json (features, CMVN, vocabulary, frame stacking, decoding),
    lm.arpa and lexicon.txt when the checkpoint carries an n-gram LM, rnnlm.bin (its weights; the
    configuration and vocabulary go in config.json) and rnnlm.onnx (its network step, reading
    rnnlm.bin: asr.rnnlm_graph) when it carries a recurrent LM, and manifest.json (written last:
    versions, and the size and SHA-256 of every other file).
    """
    try:
        import onnx
    except ImportError as err:
        raise ASRError(f"ONNX export needs the onnx package: pip install 'asr[onnx]' ({err})") from None
    payload = read_checkpoint(checkpoint)
    loaded = model_from_payload(payload, checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST_FILE, *BUNDLE_FILES):  # an old manifest or LM must not outlive this export
        (out / name).unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="asr-onnx-") as tmp:
        traced = Path(tmp) / MODEL_FILE
        _trace(loaded.model, loaded.features.n_mels, traced)
        graph = onnx.load(str(traced))
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

    decoding = payload.get("decoding") or {}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "feature_config": payload["feature_config"],
        "cmvn": payload["cmvn"],
        "vocab": list(loaded.vocab.tokens),
        **({"bpe_model": _base64(loaded.vocab.model)} if loaded.vocab.model is not None else {}),
        "frame_stack": loaded.frame_stack,
        "decoding": {"config": decoding.get("config", {}),
                     "lm": LM_FILE if loaded.lm_arpa is not None else None,
                     "lexicon": LEXICON_FILE if loaded.lexicon else None},
        "weights": weights,
    }
    if loaded.rnnlm is not None:  # the recurrent LM's weights as float32 bytes, read back by asr.runtime
        numpy_lm = loaded.rnnlm.numpy_lm()
        data, layout = weights_to_bytes(numpy_lm.weights)
        config["decoding"]["rnnlm"] = {"file": RNNLM_FILE, "step_graph": RNNLM_GRAPH_FILE,
                                       "config": asdict(numpy_lm.config), "symbols": list(numpy_lm.vocab.symbols),
                                       "layout": layout}
        with atomic_write(out / RNNLM_FILE, binary=True) as f:
            f.write(data)
        from asr.rnnlm_graph import step_graph  # needs onnx, like the rest of the export

        step = step_graph(numpy_lm.config, layout, RNNLM_FILE)
        with atomic_write(out / RNNLM_GRAPH_FILE, binary=True) as f:
            f.write(step.SerializeToString(deterministic=True))
        onnx.checker.check_model(str(out / RNNLM_GRAPH_FILE))  # by path: its weights are read from rnnlm.bin
    write_text_atomically(out / CONFIG_FILE, json.dumps(config, indent=1) + "\n")
    if loaded.lm_arpa is not None:
        write_text_atomically(out / LM_FILE, loaded.lm_arpa)
    if loaded.lexicon:
        write_text_atomically(out / LEXICON_FILE, lexicon_text(loaded.lexicon))

    files = [name for name in BUNDLE_FILES if (out / name).is_file()]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": {"checkpoint": Path(checkpoint).name, "sha256": file_sha256(checkpoint)},
        "exported_with": {name: _version(name) for name in ("asr", "torch", "onnx", "onnxruntime")} | {"opset": OPSET},
        "files": {name: {"bytes": (out / name).stat().st_size, "sha256": file_sha256(out / name)} for name in files},
    }
    write_text_atomically(out / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
    return manifest


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


def _base64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")
