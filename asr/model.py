"""The acoustic model: frame stacking -> N (bi)recurrent layers -> linear -> log-softmax.

Padding never changes the result: the backward direction reads each utterance reversed within
its own length, so an utterance gives the same log-probs alone or in a padded batch (no packed
sequences needed, which are 2-3x slower than padded ones on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}  # rnn: the plain tanh recurrence


@dataclass(frozen=True)
class ModelConfig:
    cell: str = "lstm"  # rnn | lstm | gru
    bidirectional: bool = True
    num_layers: int = 3
    hidden_size: int = 256  # per direction
    dropout: float = 0.2  # between layers and before the output layer
    layer_norm: bool = True  # after each recurrent layer
    frame_stack: int = 3  # stack this many 10 ms frames into one (stride = stack): 3 -> 30 ms

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"model.cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        if self.num_layers < 1 or self.hidden_size < 1 or self.frame_stack < 1:
            raise ValueError("model.num_layers, model.hidden_size and model.frame_stack must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


def stacked_lengths(lens: torch.Tensor, stack: int) -> torch.Tensor:
    """Frames after stacking `stack` frames into one: ceil(lens / stack). lens (B,) -> (B,)."""
    return torch.div(lens + stack - 1, stack, rounding_mode="floor")


def stack_frames(feats: torch.Tensor, feat_lens: torch.Tensor, stack: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate `stack` consecutive frames (stride `stack`), zero-padding the tail.

    feats (B, T, F) -> (B, ceil(T / stack), F * stack); lens -> ceil(lens / stack).
    """
    if stack == 1:
        return feats, feat_lens
    batch, frames, dim = feats.shape
    pad = (-frames) % stack
    feats = nn.functional.pad(feats, (0, 0, 0, pad))  # unconditionally: an ONNX export traces any remainder
    stacked = feats.reshape(batch, (frames + pad) // stack, dim * stack)
    return stacked, stacked_lengths(feat_lens, stack)


def reverse_padded(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length; padding stays where it is.

    x (B, T, D), lens (B,) -> (B, T, D). Applying it twice gives x back.
    """
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, T)
    lens = lens.to(x.device).unsqueeze(1)  # (B, 1)
    index = torch.where(steps < lens, lens - 1 - steps, steps)  # (B, T)
    return x.gather(1, index.unsqueeze(2).expand_as(x))


class RecurrentLayer(nn.Module):
    """One (bi)directional recurrent layer that is exact under padding: (B, T, D) -> (B, T, H * dirs)."""

    def __init__(self, input_size: int, hidden_size: int, cell: str, bidirectional: bool) -> None:
        super().__init__()
        rnn = CELLS[cell]
        self.forward_rnn = rnn(input_size, hidden_size, batch_first=True)
        self.backward_rnn = rnn(input_size, hidden_size, batch_first=True) if bidirectional else None

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        out, _ = self.forward_rnn(x)
        if self.backward_rnn is None:
            return out
        back, _ = self.backward_rnn(reverse_padded(x, lens))
        return torch.cat([out, reverse_padded(back, lens)], dim=2)


class AcousticModel(nn.Module):
    """feats (B, T, input_dim) -> log_probs (B, T', vocab_size), out_lens (B,), T' = ceil(T / frame_stack)."""

    def __init__(self, config: ModelConfig, input_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        directions = 2 if config.bidirectional else 1
        layer_out = config.hidden_size * directions
        sizes = [input_dim * config.frame_stack] + [layer_out] * (config.num_layers - 1)
        self.layers = nn.ModuleList(
            RecurrentLayer(size, config.hidden_size, config.cell, config.bidirectional) for size in sizes
        )
        self.norms = nn.ModuleList(
            nn.LayerNorm(layer_out) if config.layer_norm else nn.Identity() for _ in sizes
        )
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(layer_out, vocab_size)

    def output_lengths(self, feat_lens: torch.Tensor) -> torch.Tensor:
        """Output frames for input frames feat_lens (B,)."""
        return stacked_lengths(feat_lens, self.config.frame_stack)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lens = stack_frames(feats, feat_lens, self.config.frame_stack)
        for layer, norm in zip(self.layers, self.norms):
            x = self.dropout(norm(layer(x, lens)))
        return self.output(x).log_softmax(dim=-1), lens

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
