"""A recurrent LM's network step as an ONNX graph, for the exported runtime (asr.runtime).

    step(tokens (N,) int64, states (N, layers, parts, H) float32)
        -> log_probs (N, V) float32, new_states (N, layers, parts, H) float32

is the function asr.numpy_rnnlm.NumpyStep computes (LSTM, GRU or plain RNN, optional layer norm
after each layer). onnxruntime runs it faster at the tens of rows one beam-search frame asks for
(its small-matrix products beat numpy's BLAS calls there; beam search with the bundled word LSTM
1.3x faster in all, bench/results/lm_step_onnx_vs_numpy.json), and the step is most of the time
a word LSTM adds to decoding. The graph holds no weights: every initializer points into the
folder's rnnlm.bin (ONNX external data, at the offsets asr.numpy_rnnlm.weights_to_bytes wrote
them), so the weights are stored once. Built at export time (needs the onnx package).
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper

from asr.numpy_rnnlm import RNNLMConfig

OPSET = 17  # LayerNormalization is a standard op from opset 17
FLOAT_BYTES = 4


class _Graph:
    """Nodes and initializers under construction, each output named uniquely."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._names = itertools.count()

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attributes) -> str | list[str]:
        names = [f"{op_type.lower()}_{next(self._names)}" for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attributes))
        return names[0] if outputs == 1 else names

    def constant(self, value: np.ndarray) -> str:
        name = f"const_{next(self._names)}"
        self.initializers.append(onnx.numpy_helper.from_array(value, name))
        return name

    def external(self, name: str, shape: list[int], file: str, offset: int) -> str:
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape, data_location=TensorProto.EXTERNAL)
        size = int(np.prod(shape, dtype=np.int64)) * FLOAT_BYTES
        for key, value in (("location", file), ("offset", str(offset)), ("length", str(size))):
            tensor.external_data.add(key=key, value=value)
        self.initializers.append(tensor)
        return name


def step_graph(config: RNNLMConfig, layout: list, weights_file: str) -> onnx.ModelProto:
    """The step graph of an LM whose weights weights_file holds as `layout` ([name, shape] in file
    order, from asr.numpy_rnnlm.weights_to_bytes); the file is looked up next to the graph."""
    g = _Graph()
    weights, offset = {}, 0
    for name, shape in layout:
        weights[name] = g.external(name, list(shape), weights_file, offset)
        offset += int(np.prod(shape, dtype=np.int64)) * FLOAT_BYTES
    parts = 2 if config.cell == "lstm" else 1
    size = config.hidden_size
    index = lambda i: g.constant(np.array(i, dtype=np.int64))  # noqa: E731  (a scalar index: Gather drops the axis)
    layer_axis = g.constant(np.array([1], dtype=np.int64))

    x = g.op("Gather", weights["embed.weight"], "tokens", axis=0)  # (N, H)
    new_layers = []
    for i in range(config.num_layers):
        prefix = f"layers.{i}."
        state = g.op("Gather", "states", index(i), axis=1)  # (N, parts, H)
        h = g.op("Gather", state, index(0), axis=1)  # (N, H)
        gi = g.op("Gemm", x, weights[prefix + "weight_ih_l0"], weights[prefix + "bias_ih_l0"], transB=1)
        gh = g.op("Gemm", h, weights[prefix + "weight_hh_l0"], weights[prefix + "bias_hh_l0"], transB=1)
        if config.cell == "lstm":
            c = g.op("Gather", state, index(1), axis=1)
            in_gate, forget, cand, out = g.op("Split", g.op("Add", gi, gh), axis=1, outputs=4)
            c = g.op("Add", g.op("Mul", g.op("Sigmoid", forget), c),
                     g.op("Mul", g.op("Sigmoid", in_gate), g.op("Tanh", cand)))
            h = g.op("Mul", g.op("Sigmoid", out), g.op("Tanh", c))
            pieces = [h, c]
        elif config.cell == "gru":
            i_reset, i_update, i_cand = g.op("Split", gi, axis=1, outputs=3)
            h_reset, h_update, h_cand = g.op("Split", gh, axis=1, outputs=3)
            reset = g.op("Sigmoid", g.op("Add", i_reset, h_reset))
            update = g.op("Sigmoid", g.op("Add", i_update, h_update))
            cand = g.op("Tanh", g.op("Add", i_cand, g.op("Mul", reset, h_cand)))
            h = g.op("Add", cand, g.op("Mul", update, g.op("Sub", h, cand)))  # (1 - z) n + z h
            pieces = [h]
        else:
            h = g.op("Tanh", g.op("Add", gi, gh))
            pieces = [h]
        layer = g.op("Concat", *[g.op("Unsqueeze", p, layer_axis) for p in pieces], axis=1)  # (N, parts, H)
        new_layers.append(g.op("Unsqueeze", layer, layer_axis))  # (N, 1, parts, H)
        x = h
        if config.layer_norm:
            x = g.op("LayerNormalization", x, weights[f"norms.{i}.weight"], weights[f"norms.{i}.bias"],
                     axis=-1, epsilon=1e-5)
    logits = g.op("Gemm", x, weights["out.weight"], weights["out.bias"], transB=1)
    g.nodes.append(helper.make_node("LogSoftmax", [logits], ["log_probs"], axis=1))
    g.nodes.append(helper.make_node("Concat", new_layers, ["new_states"], axis=1))

    vocab_size = dict((name, shape) for name, shape in layout)["out.weight"][0]
    state_shape = ["n", config.num_layers, parts, size]
    graph = helper.make_graph(
        g.nodes, "rnnlm_step",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["n"]),
         helper.make_tensor_value_info("states", TensorProto.FLOAT, state_shape)],
        [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["n", vocab_size]),
         helper.make_tensor_value_info("new_states", TensorProto.FLOAT, state_shape)],
        g.initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="asr")
