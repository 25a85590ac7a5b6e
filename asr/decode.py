"""CTC decoding: batched, length-aware greedy search."""

from __future__ import annotations

import torch

from asr.text import BLANK_ID


def greedy_decode(log_probs: torch.Tensor, out_lens: torch.Tensor, blank_id: int = BLANK_ID) -> list[list[int]]:
    """Best path per frame, repeats collapsed, blanks dropped, frames past out_lens ignored.

    Args:
        log_probs (B, T, V) (or any scores: only the argmax matters); out_lens (B,).
    Returns:
        B lists of token ids.
    """
    best = log_probs.argmax(dim=-1)  # (B, T)
    previous = torch.nn.functional.pad(best[:, :-1], (1, 0), value=blank_id)  # (B, T), shifted right
    steps = torch.arange(best.shape[1], device=best.device).unsqueeze(0)
    keep = (best != previous) & (best != blank_id) & (steps < out_lens.to(best.device).unsqueeze(1))
    best, keep = best.cpu(), keep.cpu()
    return [row[mask].tolist() for row, mask in zip(best, keep)]
