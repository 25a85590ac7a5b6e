"""The recurrent LM's one network step (asr.rnnlm.RNNLM.step): run by torch in the torch path
(TorchStep) and exported by asr.onnx_export as rnnlm.onnx for the runtime (OnnxStep), the same
function for every cell, with and without layer norm, at any number of rows."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from asr.onnx_export import _trace_lm_step
from asr.rnnlm import RNNLM, LMVocab, RecurrentLM, RNNLMConfig
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


@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_exported_step_computes_what_the_torch_step_computes(cell, layer_norm, tmp_path):
    lm = random_lm(cell, layer_norm)
    torch_step = lm.make_step()
    torch_step(np.array([1]), torch_step.initial_states(1))  # a model that has run still exports its own step
    _trace_lm_step(lm.model, tmp_path / "rnnlm.onnx")
    session = ort.InferenceSession(str(tmp_path / "rnnlm.onnx"), providers=["CPUExecutionProvider"])
    step = OnnxStep(session, lm.config.num_layers, lm.model.parts, lm.config.hidden_size)
    rng = np.random.default_rng(1)
    for rows in (1, 9):
        tokens = rng.integers(0, 19, rows)
        states = (0.5 * rng.standard_normal((rows, *step.initial_states(1).shape[1:]))).astype(np.float32)
        log_probs, new_states = step(tokens, states)
        torch_log_probs, torch_states = torch_step(tokens, states)
        assert log_probs.shape == (rows, 19) and new_states.shape == states.shape
        assert np.abs(log_probs - torch_log_probs).max() < TOLERANCE
        assert np.abs(new_states - torch_states).max() < TOLERANCE
    assert np.allclose(np.exp(log_probs).sum(axis=1), 1, atol=1e-5)
