"""SpecAugment: frequency and time masks on normalised training features (torch; training only).

The front end that makes the features is asr.frontend (numpy, shared with transcription).
Shapes: feats (T, F).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SpecAugmentConfig:
    """Frequency and time masking applied to normalised training features only."""

    freq_masks: int = 2
    freq_mask_width: int = 27  # max bins per mask
    time_masks: int = 2
    time_mask_width: int = 40  # max frames per mask (400 ms)
    time_mask_max_ratio: float = 0.2  # a mask never covers more than this share of an utterance

    @property
    def enabled(self) -> bool:
        return self.freq_masks > 0 or self.time_masks > 0


def spec_augment(feats: torch.Tensor, config: SpecAugmentConfig, seed: int) -> torch.Tensor:
    """Frequency and time masking of one normalised utterance, reproducible by seed.

    The masks torchaudio.functional.mask_along_axis draws after torch.manual_seed(seed) (the same
    two torch.rand draws per mask, in the same order: tests/test_features.py checks it), from a
    private generator and set by slicing: torchaudio's function plus the global seeding cost
    ~15 ms an utterance, a fifth of the augmented data pipeline. Masked cells are set to 0, the
    normalised mean. Args: feats (T, F). Returns: feats (T, F), a copy.
    """
    out = feats.clone()
    num_frames, num_bins = out.shape
    time_width = min(config.time_mask_width, math.floor(num_frames * config.time_mask_max_ratio))
    generator = torch.Generator().manual_seed(seed)

    def mask(width: int, size: int) -> slice:
        value = torch.rand(1, generator=generator) * width
        start = torch.rand(1, generator=generator) * (size - value)
        return slice(int(start.long()), int(start.long() + value.long()))

    for _ in range(config.freq_masks if config.freq_mask_width >= 1 else 0):
        out[:, mask(config.freq_mask_width, num_bins)] = 0.0
    for _ in range(config.time_masks if time_width >= 1 else 0):
        out[mask(time_width, num_frames)] = 0.0
    return out
