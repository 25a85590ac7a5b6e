"""A trained recurrent LM without torch: configuration, vocabulary and weights (numpy), and the
network step beam search calls (asr.fusion), so that the exported runtime (asr.runtime) decodes
with a recurrent LM without importing torch.

asr.rnnlm trains the network (torch) and turns a trained one into this form
(RecurrentLM.numpy_lm()); asr.onnx_export writes it into an exported model folder and
asr.runtime reads it back (weights_to_bytes / weights_from_bytes).

State shapes (numpy): a batch of recurrent states is (N, num_layers, parts, hidden_size), parts = 2
for an LSTM (h, c) and 1 for a GRU or a plain RNN.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from asr.errors import ASRError
from asr.text import SPACE

EOS, UNK = "</s>", "<unk>"
EOS_ID, UNK_ID = 0, 1  # the only place these ids are defined
UNITS = ("word", "char")
CELL_NAMES = ("rnn", "lstm", "gru")  # as the acoustic model's (asr.rnnlm.CELLS maps them to torch)


@dataclass(frozen=True)
class RNNLMConfig:
    units: str = "word"  # word | char
    cell: str = "lstm"  # rnn | lstm | gru
    num_layers: int = 2
    hidden_size: int = 256  # also the embedding size
    dropout: float = 0.3  # on embeddings, between layers and before the output layer
    layer_norm: bool = False  # after each recurrent layer

    def __post_init__(self) -> None:
        if self.units not in UNITS:
            raise ASRError(f"LM units must be one of {UNITS}, got {self.units!r}")
        if self.cell not in CELL_NAMES:
            raise ASRError(f"LM cell must be one of {sorted(CELL_NAMES)}, got {self.cell!r}")
        if self.num_layers < 1 or self.hidden_size < 1:
            raise ASRError("LM num_layers and hidden_size must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ASRError(f"LM dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class LMVocab:
    """Symbols to ids: EOS at EOS_ID, UNK at UNK_ID, then the words or characters."""

    units: str
    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.symbols[:2] != (EOS, UNK) or len(set(self.symbols)) != len(self.symbols):
            raise ASRError(f"LM vocabulary must start with {EOS!r}, {UNK!r} and have no duplicates")
        object.__setattr__(self, "_ids", {s: i for i, s in enumerate(self.symbols)})

    def __len__(self) -> int:
        return len(self.symbols)

    def id(self, symbol: str) -> int:
        return self._ids.get(symbol, UNK_ID)

    def split(self, sentence: str) -> list[str]:
        """A (normalised) sentence's units, without EOS."""
        words = sentence.split()
        return words if self.units == "word" else list(SPACE.join(words))

    def encode(self, sentence: str) -> list[int]:
        """Unit ids followed by EOS."""
        return [self.id(s) for s in self.split(sentence)] + [EOS_ID]

    def decode(self, ids: Iterable[int]) -> str:
        units = [self.symbols[i] for i in ids if i != EOS_ID]
        return " ".join(units) if self.units == "word" else "".join(units)

    @property
    def words(self) -> list[str]:
        """The vocabulary's words (word LMs): what a lexicon decoder may output."""
        return list(self.symbols[2:]) if self.units == "word" else []

    @classmethod
    def build(cls, sentences: Iterable[str], units: str, max_size: int = 0) -> LMVocab:
        """Every unit of the sentences (the `max_size` most frequent, ties alphabetical, if > 0)."""
        counts: Counter[str] = Counter()
        split = cls(units, (EOS, UNK)).split
        for sentence in sentences:
            counts.update(split(sentence))
        ranked = sorted(counts, key=lambda s: (-counts[s], s))
        if max_size > 0:
            ranked = ranked[:max_size]
        return cls(units, (EOS, UNK, *sorted(ranked)))


@dataclass(frozen=True)
class NumpyLM:
    """A trained recurrent LM as plain data: weights {name: float32 array} named as RNNLM's
    state_dict (embed.weight, layers.i.weight_ih_l0, ..., norms.i.weight, out.weight, ...)."""

    config: RNNLMConfig
    vocab: LMVocab
    weights: dict[str, np.ndarray]

    @property
    def parts(self) -> int:
        return 2 if self.config.cell == "lstm" else 1

    def make_step(self) -> NumpyStep:
        """The network step beam search calls (asr.fusion); the exported runtime's LM
        (asr.runtime.GraphLM) runs the same step in onnxruntime instead."""
        return NumpyStep(self)


def weights_to_bytes(weights: dict[str, np.ndarray]) -> tuple[bytes, list[list]]:
    """Every array as float32 bytes, in name order, and the [name, shape] list that reads them back."""
    names = sorted(weights)
    data = b"".join(np.ascontiguousarray(weights[n], dtype="<f4").tobytes() for n in names)
    return data, [[n, list(weights[n].shape)] for n in names]


def weights_from_bytes(data: bytes, layout: list) -> dict[str, np.ndarray]:
    """weights_to_bytes' inverse; ValueError when the bytes do not match the layout."""
    flat = np.frombuffer(data, dtype="<f4")
    weights, offset = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape, dtype=np.int64))
        if offset + size > len(flat):
            raise ValueError(f"{name}: the weights end early")
        weights[str(name)] = flat[offset:offset + size].reshape(shape)  # read-only views: never written
        offset += size
    if offset != len(flat):
        raise ValueError(f"{len(flat) - offset} values more than the layout lists")
    return weights


TABLE_MAX_FLOATS = 1 << 22  # NumpyStep's first-layer table up to 16 MB (a word LM of ~4k words at 4 x 256)


class NumpyStep:
    """One network step in numpy, for decoding: the same function as RecurrentLM.step, without
    torch's per-call overhead, which dominates at the batch sizes one beam-search frame gives
    (tens of histories; a torch step costs ~0.5-1 ms whatever the batch, this one ~0.1 ms).

    __call__(tokens (N,) int, states (N, layers, parts, H) float32 or None)
        -> (log-probs of the next symbol (N, V), new states (N, layers, parts, H)).
    """

    def __init__(self, lm: NumpyLM) -> None:
        weights = lm.weights
        self.cell, self.parts = lm.config.cell, lm.parts
        self.layers_n, self.hidden = lm.config.num_layers, lm.config.hidden_size
        self.embed = weights["embed.weight"]
        self.layers = []
        for i in range(lm.config.num_layers):
            prefix = f"layers.{i}."
            norm = (weights[f"norms.{i}.weight"], weights[f"norms.{i}.bias"]) if lm.config.layer_norm else None
            self.layers.append((weights[prefix + "weight_ih_l0"].T.copy(), weights[prefix + "weight_hh_l0"].T.copy(),
                                weights[prefix + "bias_ih_l0"], weights[prefix + "bias_hh_l0"], norm))
        self.out_w, self.out_b = weights["out.weight"].T.copy(), weights["out.bias"]
        # The first layer's input projection of every symbol, precomputed when the table is small
        # (a character LM: 29 x 4H): one row gather instead of a matrix product each step.
        w_ih, _, b_ih, _, _ = self.layers[0]
        self.first_input = self.embed @ w_ih + b_ih if len(self.embed) * w_ih.shape[1] <= TABLE_MAX_FLOATS else None

    def initial_states(self, count: int) -> np.ndarray:
        return np.zeros((count, self.layers_n, self.parts, self.hidden), dtype=np.float32)

    def __call__(self, tokens: np.ndarray, states: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if states is None:
            states = self.initial_states(len(tokens))
        x = self.embed[tokens]
        new = np.empty_like(states)
        size = self.hidden
        for i, (w_ih, w_hh, b_ih, b_hh, norm) in enumerate(self.layers):
            h = states[:, i, 0]
            gi = self.first_input[tokens] if i == 0 and self.first_input is not None else x @ w_ih + b_ih
            gh = h @ w_hh + b_hh
            if self.cell == "lstm":
                gates = gi + gh
                in_gate, forget, cand, out = (gates[:, k * size:(k + 1) * size] for k in range(4))
                c = _sigmoid(forget) * states[:, i, 1] + _sigmoid(in_gate) * np.tanh(cand)
                h = _sigmoid(out) * np.tanh(c)
                new[:, i, 1] = c
            elif self.cell == "gru":
                reset = _sigmoid(gi[:, :size] + gh[:, :size])
                update = _sigmoid(gi[:, size:2 * size] + gh[:, size:2 * size])
                cand = np.tanh(gi[:, 2 * size:] + reset * gh[:, 2 * size:])
                h = (1 - update) * cand + update * h
            else:
                h = np.tanh(gi + gh)
            new[:, i, 0] = h
            x = h
            if norm is not None:
                mean = x.mean(axis=1, keepdims=True)
                var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
                x = (x - mean) / np.sqrt(var + 1e-5) * norm[0] + norm[1]
        logits = x @ self.out_w + self.out_b
        top = logits.max(axis=1, keepdims=True)
        log_probs = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        return log_probs, new


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1)  # = 1 / (1 + exp(-x)), without overflow
