"""Start a training run from another model's weights (train.init_from).

A model trained on one corpus is a better start for a related one than random weights: the
general-English model starts from the AN4 model's encoder. Every tensor whose name and shape match
is copied; the output layer's rows are copied token by token (a token the old vocabulary lacks keeps
its fresh initialisation), so the two vocabularies need not be equal. Optimiser, scheduler and
epoch count start afresh: this is a new run, not a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asr.checkpoint import read_checkpoint
from asr.errors import ASRError
from asr.model import AcousticModel
from asr.text import Vocab

OUTPUT_LAYER = ("output.weight", "output.bias")


@dataclass(frozen=True)
class WarmStart:
    copied: int  # tensors copied whole
    skipped: tuple[str, ...]  # tensors left as initialised (no match in name or shape)
    tokens_copied: int  # output rows copied (tokens both vocabularies have)
    tokens_new: tuple[str, ...]  # this vocabulary's tokens the old model did not have

    def summary(self, path: str) -> str:
        new = f"; new tokens {' '.join(repr(t) for t in self.tokens_new)}" if self.tokens_new else ""
        skipped = f"; {len(self.skipped)} left fresh ({', '.join(self.skipped)})" if self.skipped else ""
        return (f"init_from {path}: {self.copied} tensors copied, output rows for {self.tokens_copied} "
                f"tokens{new}{skipped}")


def warm_start(model: AcousticModel, vocab: Vocab, path: str) -> WarmStart:
    """Copy the weights of the checkpoint at path into model (in place) wherever they fit."""
    saved = read_checkpoint(path)
    if "model" not in saved or "vocab" not in saved:
        raise ASRError(f"{path}: holds no model weights and vocabulary to start from")
    old_weights = saved["model"]
    old_ids = {token: i for i, token in enumerate(saved["vocab"])}
    state = model.state_dict()
    copied, skipped = 0, []
    with torch.no_grad():
        for name, tensor in state.items():
            if name in OUTPUT_LAYER:  # copied row by row below
                continue
            old = old_weights.get(name)
            if old is None or old.shape != tensor.shape:
                skipped.append(name)
                continue
            tensor.copy_(old.to(tensor.dtype))
            copied += 1
        if copied == 0:
            raise ASRError(f"{path}: no weight fits this model (a different architecture: compare their model sections)")
        pairs = [(i, old_ids[t]) for i, t in enumerate(vocab.tokens) if t in old_ids]
        for name in OUTPUT_LAYER:
            old = old_weights.get(name)
            if old is None or old.shape[1:] != state[name].shape[1:]:
                skipped.append(name)
                continue
            for new_row, old_row in pairs:
                state[name][new_row] = old[old_row].to(state[name].dtype)
    model.load_state_dict(state)
    new_tokens = tuple(t for t in vocab.tokens if t not in old_ids)
    return WarmStart(copied=copied, skipped=tuple(skipped), tokens_copied=len(pairs), tokens_new=new_tokens)
