"""Recurrent language models (word-level LSTM, or character-level Char-RNN) for shallow fusion: the
network and a trained LM's file. Training is asr.rnnlm_train (not imported to decode).

The model predicts the next symbol of a text stream: sentences joined end to end, each followed by
EOS (which also serves as the start-of-sentence context, as in Mikolov's RNNLM and PyTorch's
word_language_model).

Units: "word" (whitespace-separated words; a word outside the vocabulary is UNK) or "char"
(the characters of a sentence, " " between words; a word ends at " " or at EOS).

Perplexity is reported per word for both (exp of minus the mean natural-log probability per word,
EOS counted as one word), so a character LM, a word LM and an n-gram read on the same scale.

State shapes: a recurrent state is one tensor (num_layers, parts, B, hidden_size), parts = 2 for
an LSTM (h, c) and 1 for a GRU or a plain RNN, so a batch of states is indexed and stacked along
dimension 2. The decoding step (RNNLM.step, the one network step beam search runs: TorchStep here,
its ONNX export `rnnlm.onnx` in the runtime, asr.onnx_export) takes and returns states batch-first,
(N, num_layers, parts, hidden_size), as numpy holds them in asr.fusion.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from asr.atomic import atomic_write
from asr.config import build
from asr.errors import ASRError
from asr.rnnlm_config import EOS_ID, UNK_ID, LMVocab, RNNLMConfig

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}  # the torch layer of each of CELL_NAMES
FORMAT = "asr-rnnlm-1"

# ---------------------------------------------------------------------------------------------
# The network


class RNNLM(nn.Module):
    """Embedding -> N recurrent layers (optional layer norm) -> linear to the vocabulary.

    forward(tokens (B, L), state (num_layers, parts, B, H) or None) -> (logits (B, L, V), state).
    """

    def __init__(self, config: RNNLMConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        size = config.hidden_size
        self.parts = 2 if config.cell == "lstm" else 1
        self.embed = nn.Embedding(vocab_size, size)
        self.layers = nn.ModuleList(CELLS[config.cell](size, size, batch_first=True) for _ in range(config.num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(size) if config.layer_norm else nn.Identity()
                                   for _ in range(config.num_layers))
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(size, vocab_size)

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zeros: (num_layers, parts, B, H)."""
        weight = self.out.weight
        return weight.new_zeros(self.config.num_layers, self.parts, batch, self.config.hidden_size)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            state = self.initial_state(tokens.shape[0])
        x = self.embed(tokens)
        x = self.dropout(x) if self.training else x
        new_states = []
        for i, (rnn, norm) in enumerate(zip(self.layers, self.norms)):
            h = state[i, 0:1].contiguous()  # (1, B, H): one layer, one direction
            x, out_state = rnn(x, (h, state[i, 1:2].contiguous()) if self.parts == 2 else h)
            new_states.append(torch.cat(out_state) if self.parts == 2 else out_state)
            x = norm(x)
            x = self.dropout(x) if self.training else x
        return self.out(x), torch.stack(new_states)

    def step(self, tokens: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoding step: tokens (N,) int64, states (N, layers, parts, H) -> (log-probs of the next
        symbol (N, V), new states (N, layers, parts, H)). TorchStep runs it; asr.onnx_export exports it."""
        logits, state = self(tokens.unsqueeze(1), states.permute(1, 2, 0, 3))
        return torch.log_softmax(logits[:, 0].float(), dim=-1), state.permute(2, 0, 1, 3)


class StepModule(nn.Module):
    """RNNLM.step as a module's forward, for torch.onnx.export."""

    def __init__(self, model: RNNLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.step(tokens, states)


class TorchStep:
    """The step beam search calls (asr.fusion) in the torch path, numpy in and out:
    __call__(tokens (N,) int, states (N, layers, parts, H) float32) -> (log-probs (N, V), new states).
    The runtime's asr.runtime.OnnxStep runs the same function exported."""

    def __init__(self, model: RNNLM) -> None:
        self.model = model.eval()
        self.shape = (model.config.num_layers, model.parts, model.config.hidden_size)

    def initial_states(self, count: int) -> np.ndarray:
        return np.zeros((count, *self.shape), dtype=np.float32)

    def __call__(self, tokens: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            log_probs, new_states = self.model.step(torch.from_numpy(np.asarray(tokens, dtype=np.int64)),
                                                    torch.from_numpy(np.ascontiguousarray(states, dtype=np.float32)))
            return log_probs.numpy(), new_states.contiguous().numpy()


# ---------------------------------------------------------------------------------------------
# A trained LM: network + vocabulary, saved as one file


@dataclass
class RecurrentLM:
    """A trained recurrent LM in eval mode: its network, vocabulary and configuration."""

    model: RNNLM
    vocab: LMVocab

    @property
    def config(self) -> RNNLMConfig:
        return self.model.config

    def to_dict(self) -> dict[str, Any]:
        """Plain data (weights as tensors) for a checkpoint or an LM file."""
        return {
            "format": FORMAT,
            "config": asdict(self.config),
            "symbols": list(self.vocab.symbols),
            "weights": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike) -> RecurrentLM:
        """Rebuild from to_dict's data; ASRError naming source when it is not such data."""
        try:
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("not a recurrent LM written by this toolkit")
            config = build(RNNLMConfig, data["config"], str(source), "config.")
            vocab = LMVocab(config.units, tuple(data["symbols"]))
            model = RNNLM(config, len(vocab))
            model.load_state_dict({k: v.float() for k, v in data["weights"].items()})
        except (KeyError, TypeError, ValueError, RuntimeError, ASRError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ASRError(f"{source}: bad recurrent LM ({first})") from None
        model.eval()
        return cls(model, vocab)

    def make_step(self) -> TorchStep:
        """The network step beam search calls (asr.fusion)."""
        return TorchStep(self.model)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for a batch of histories: tokens (N,), state (layers, parts, N, H) or None ->
        (log-probs of the next symbol (N, V), new state)."""
        logits, state = self.model(tokens.unsqueeze(1), state)
        return torch.log_softmax(logits[:, 0].float(), dim=-1), state

    @torch.no_grad()
    def sentence_log_prob(self, sentences: Sequence[str]) -> tuple[float, int, int]:
        """(total natural-log probability, words + EOS, out-of-vocabulary words) of the sentences,
        each scored from the start-of-sentence context."""
        total, words, oov = 0.0, 0, 0
        for sentence in sentences:
            ids = [EOS_ID] + self.vocab.encode(sentence)
            tokens = torch.tensor(ids).unsqueeze(0)
            logits, _ = self.model(tokens[:, :-1])
            log_probs = torch.log_softmax(logits[0].float(), dim=-1)
            total += float(log_probs.gather(1, tokens[0, 1:].unsqueeze(1)).sum())
            words += len(sentence.split()) + 1
            if self.vocab.units == "word":
                oov += sum(1 for w in sentence.split() if self.vocab.id(w) == UNK_ID)
        return total, words, oov

    def perplexity(self, sentences: Sequence[str]) -> float:
        """Per-word perplexity (EOS counts as a word), whatever the units."""
        total, words, _ = self.sentence_log_prob(sentences)
        return math.exp(-total / max(words, 1))

    @torch.no_grad()
    def sample(self, count: int, generator: torch.Generator, temperature: float = 1.0, max_length: int = 0) -> list[str]:
        """`count` sentences drawn from the LM (each ends at EOS, or after max_length symbols)."""
        max_length = max_length or (50 if self.vocab.units == "word" else 300)
        sentences = []
        for _ in range(count):
            ids, state, token = [], None, torch.tensor([EOS_ID])
            for _ in range(max_length):
                log_probs, state = self.step(token, state)
                probs = torch.softmax(log_probs[0] / max(temperature, 1e-6), dim=-1)
                token = torch.multinomial(probs, 1, generator=generator)
                if int(token) == EOS_ID:
                    break
                ids.append(int(token))
            sentences.append(self.vocab.decode(ids))
        return sentences


def save_lm(path: str | os.PathLike, lm: RecurrentLM, **extra: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, binary=True) as f:
        torch.save({**lm.to_dict(), **extra}, f)


def read_lm_file(path: str | os.PathLike) -> dict[str, Any]:
    """The data of an LM file (or a training state) as saved; ASRError naming it when unreadable."""
    if not os.path.isfile(path):
        raise ASRError(f"{path}: no such LM file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ASRError(f"{path}: not a readable LM file ({first})") from None


def load_lm(path: str | os.PathLike) -> RecurrentLM:
    """A recurrent LM file (from `asr lm --type lstm`), in eval mode on the CPU."""
    return RecurrentLM.from_dict(read_lm_file(path), path)
