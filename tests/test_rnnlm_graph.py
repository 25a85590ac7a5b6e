"""The recurrent LM's step as an ONNX graph (asr.rnnlm_graph): the same function as the torch LM's
step and the numpy step, for every cell, with and without layer norm, reading its weights from
the exported rnnlm.bin."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from asr.numpy_rnnlm import NumpyStep, weights_to_bytes
from asr.rnnlm import RNNLM, LMVocab, RecurrentLM, RNNLMConfig
from asr.rnnlm_graph import step_graph
from asr.runtime import OnnxStep

TOLERANCE = 1e-5


def random_lm(cell: str, layer_norm: bool, layers: int = 2, hidden: int = 24) -> RecurrentLM:
    torch.manual_seed(0)
    vocab = LMVocab("word", ("</s>", "<unk>", *(f"W{i}" for i in range(17))))
    model = RNNLM(RNNLMConfig(cell=cell, num_layers=layers, hidden_size=hidden, dropout=0.0, layer_norm=layer_norm),
                  len(vocab))
    if layer_norm:  # non-trivial norm parameters, so that the graph must apply them
        for norm in model.norms:
            torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
            torch.nn.init.uniform_(norm.bias, -0.5, 0.5)
    return RecurrentLM(model.eval(), vocab)


def graph_step(lm: RecurrentLM, folder) -> OnnxStep:
    """lm exported as the runtime's two files, rnnlm.bin and rnnlm.onnx, and its step read back."""
    numpy_lm = lm.numpy_lm()
    data, layout = weights_to_bytes(numpy_lm.weights)
    (folder / "rnnlm.bin").write_bytes(data)
    (folder / "rnnlm.onnx").write_bytes(step_graph(lm.config, layout, "rnnlm.bin").SerializeToString())
    session = ort.InferenceSession(str(folder / "rnnlm.onnx"), providers=["CPUExecutionProvider"])
    return OnnxStep(session, lm.config.num_layers, numpy_lm.parts, lm.config.hidden_size)


@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_step_graph_computes_what_the_lm_computes(cell, layer_norm, tmp_path):
    lm = random_lm(cell, layer_norm)
    step = graph_step(lm, tmp_path)
    numpy_step = NumpyStep(lm.numpy_lm())
    rng = np.random.default_rng(1)
    for rows in (1, 9):
        tokens = rng.integers(0, 19, rows)
        states = (0.5 * rng.standard_normal((rows, *step.initial_states(1).shape[1:]))).astype(np.float32)
        log_probs, new_states = step(tokens, states)
        torch_log_probs, torch_states = lm.step(torch.from_numpy(tokens), torch.from_numpy(states).permute(1, 2, 0, 3))
        assert np.abs(log_probs - torch_log_probs.numpy()).max() < TOLERANCE
        assert np.abs(new_states - torch_states.permute(2, 0, 1, 3).numpy()).max() < TOLERANCE
        numpy_log_probs, numpy_states = numpy_step(tokens, states)
        assert np.abs(log_probs - numpy_log_probs).max() < TOLERANCE
        assert np.abs(new_states - numpy_states).max() < TOLERANCE
    assert np.allclose(np.exp(log_probs).sum(axis=1), 1, atol=1e-5)


def test_the_step_graph_holds_no_weights_of_its_own(tmp_path):
    lm = random_lm("lstm", False, layers=2, hidden=64)
    graph_step(lm, tmp_path)
    assert (tmp_path / "rnnlm.onnx").stat().st_size < 10_000 < (tmp_path / "rnnlm.bin").stat().st_size
