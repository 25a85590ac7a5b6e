"""The feature front end: waveform -> log-mel -> level normalisation -> global CMVN; SpecAugment.

`FrontEnd(config, cmvn)` is the one pipeline used by training, transcription (short files and
streamed long ones), LM tuning and the benchmarks; its FeatureConfig and CMVN stats are stored in
every checkpoint, so a model always sees its features made the same way.

Level normalisation (features.level_norm) makes the features independent of the input's gain: a
gain g multiplies every mel power by g^2, so dividing by a level measured on the utterance itself
removes it exactly. The level is the mean mel power of the loudest LOUD_SHARE of frames (speech,
however much silence surrounds it, so clips trimmed tight to the speech keep their level), and a
floor `level_floor_db` below that level is added to every bin: a dither relative to the speech
level, which fills empty bins (digital silence, the band above 4 kHz of telephone audio) at the
same place whatever the gain.

FeatureConfig and the constants live in asr.numpy_features (torch-free, shared with the numpy
twin of this front end that the torch-free runtime uses).

Shapes: a single utterance is feats (T, F); a batch is feats (B, T, F) with feat_lens (B,).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from asr.errors import ASRError
from asr.numpy_features import (  # noqa: F401 (FeatureConfig and the constants are used from here too)
    LOG_FLOOR, LOUD_SHARE, MIN_LEVEL, STREAM_LEVEL_RANGE_DB, STREAM_MIN_LEVEL_FRAMES, FeatureConfig, StreamLevel,
    analysis_window, mel_filterbank,
)

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


@lru_cache(maxsize=8)
def _window_and_filterbank(config: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """asr.numpy_features' analysis window (n_fft,) and mel filterbank (n_fft // 2 + 1, n_mels) as tensors."""
    return torch.from_numpy(analysis_window(config)), torch.from_numpy(mel_filterbank(config))


def _frames_log_mel(padded: torch.Tensor, count: int, config: FeatureConfig) -> torch.Tensor:
    """Log-mel of `count` uncentred frames of `padded` (frame i starts at i * hop): (count, n_mels).
    The same steps as asr.numpy_features._frames_log_mel (torch.stft's framing, window and power
    spectrum, torchaudio's HTK filterbank), with the per-frame DC removal when configured."""
    window, filterbank = _window_and_filterbank(config)
    hop, n_fft = config.hop_length, config.n_fft
    with torch.no_grad():
        frames = padded[: (count - 1) * hop + n_fft].unfold(0, n_fft, hop)  # (count, n_fft)
        if config.remove_dc:
            left = (n_fft - config.win_length) // 2
            frames = frames - frames[:, left:left + config.win_length].mean(dim=1, keepdim=True)
        spectrum = torch.fft.rfft(frames * window)  # (count, n_fft // 2 + 1)
        power = spectrum.real ** 2 + spectrum.imag ** 2
        return (power @ filterbank + LOG_FLOOR).log()


def log_mel(samples: np.ndarray | torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Log-mel of one waveform.

    Args:
        samples (N,) float waveform at config.sample_rate.
    Returns:
        feats (T, n_mels) float32 with T = config.num_frames(N).
    """
    wave = torch.as_tensor(samples, dtype=torch.float32)
    pad = config.n_fft // 2
    if wave.numel() <= pad:
        raise ASRError(f"signal too short for features ({wave.numel()} samples; more than {pad} needed)")
    padded = torch.nn.functional.pad(wave[None, None], (pad, pad), mode="reflect")[0, 0]
    return _frames_log_mel(padded, config.num_frames(wave.numel()), config)


class StreamingLogMel:
    """Log-mel of a signal fed in pieces, with the same frames as log_mel on the whole signal.

    log_mel centres frame i on sample i * hop with reflect padding of n_fft // 2 at both ends;
    this keeps the samples the next frames need and pads the ends the same way.
        stream = StreamingLogMel(config); [stream.push(block) for block in blocks] + [stream.finish()]
    Each call returns the new frames (t, n_mels); memory stays bounded by one block.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.pad = config.n_fft // 2
        self.buffer = torch.zeros(0)
        self.started = False

    def push(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        self.buffer = torch.cat([self.buffer, torch.as_tensor(samples, dtype=torch.float32)])
        if not self.started:
            if self.buffer.numel() <= self.pad:
                return self._empty()
            self.buffer = torch.cat([self.buffer[1 : self.pad + 1].flip(0), self.buffer])  # reflect, as log_mel
            self.started = True
        return self._frames()

    def finish(self) -> torch.Tensor:
        """The remaining frames, with the end reflect-padded. Needs more than n_fft // 2 samples in all."""
        if not self.started:
            raise ASRError(f"signal too short for streaming features ({self.buffer.numel()} samples)")
        self.buffer = torch.cat([self.buffer, self.buffer[-self.pad - 1 : -1].flip(0)])
        return self._frames()

    def _frames(self) -> torch.Tensor:
        hop, n_fft = self.config.hop_length, self.config.n_fft
        count = (self.buffer.numel() - n_fft) // hop + 1 if self.buffer.numel() >= n_fft else 0
        if count <= 0:
            return self._empty()
        feats = _frames_log_mel(self.buffer, count, self.config)
        self.buffer = self.buffer[count * hop :]
        return feats

    def _empty(self) -> torch.Tensor:
        return torch.zeros(0, self.config.n_mels)


@dataclass(frozen=True)
class Cmvn:
    """Global per-bin mean and standard deviation of training features: mean (F,), std (F,)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (..., F) -> normalised feats (..., F)."""
        mean = torch.tensor(self.mean, dtype=feats.dtype, device=feats.device)
        std = torch.tensor(self.std, dtype=feats.dtype, device=feats.device)
        return (feats - mean) / std

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> Cmvn:
        return cls(mean=tuple(float(x) for x in data["mean"]), std=tuple(float(x) for x in data["std"]))

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Cmvn:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return cls.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ASRError(f"{path}: not a CMVN stats file ({err})") from None


def compute_cmvn(features: Iterable[torch.Tensor], min_std: float = 1e-5) -> Cmvn:
    """Mean and std over all frames of all utterances; each item is feats (T, F).

    Accumulates in float64 so that millions of frames do not lose precision.
    """
    total = sum_sq = None
    count = 0
    for feats in features:
        f = feats.double()
        s, ss = f.sum(0), (f * f).sum(0)
        total = s if total is None else total + s
        sum_sq = ss if sum_sq is None else sum_sq + ss
        count += f.shape[0]
    if count == 0:
        raise ASRError("cannot compute CMVN stats from zero frames")
    mean = total / count
    var = (sum_sq / count - mean * mean).clamp_min(0.0)
    std = var.sqrt().clamp_min(min_std)
    return Cmvn(mean=tuple(mean.tolist()), std=tuple(std.tolist()))


def level_normalise(feats: torch.Tensor, floor_db: float) -> torch.Tensor:
    """Log-mel feats (T, F) (as log_mel makes them) -> log(mel / level + floor), (T, F).

    level = mean mel power of the loudest LOUD_SHARE of frames (at least MIN_LEVEL); floor =
    10^(floor_db / 10). Scaling the waveform by any gain gives the same result (up to the
    MIN_LEVEL limit). Works on a whole utterance or on a block of a stream.
    """
    power = _mel_power(feats)
    return _normalise_to(power, _level(power), floor_db)


class FrontEnd:
    """The one feature pipeline: waveform (N,) at config.sample_rate -> normalised feats (T, F).

        front_end = FrontEnd(config, cmvn)
        feats = front_end(samples)           # log-mel, level normalisation (if configured), CMVN
        raw = front_end.unnormalised(samples)  # the same before CMVN (what CMVN stats are made from)
    Without cmvn (while computing the stats) __call__ returns the un-normalised features.
    """

    def __init__(self, config: FeatureConfig, cmvn: Cmvn | None = None) -> None:
        self.config = config
        self.cmvn = cmvn

    def unnormalised(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Log-mel (T, F) of samples (N,), level-normalised when the config says so; no CMVN."""
        return self.normalise_level(log_mel(samples, self.config))

    def normalise_level(self, feats: torch.Tensor) -> torch.Tensor:
        return level_normalise(feats, self.config.level_floor_db) if self.config.level_norm else feats

    def apply_cmvn(self, feats: torch.Tensor) -> torch.Tensor:
        return self.cmvn.apply(feats) if self.cmvn is not None else feats

    def __call__(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Normalised feats (T, F) of samples (N,) at config.sample_rate."""
        return self.apply_cmvn(self.unnormalised(samples))

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        """Normalised feats of a signal read in blocks (N_i,), one (t_i, F) tensor per block (then
        the tail): the frames equal log_mel on the whole signal; level normalisation uses each
        block's own level, never below the loudest block's so far minus STREAM_LEVEL_RANGE_DB
        (a long pause is not boosted to speech level), i.e. a level that follows the recording; a
        block shorter than STREAM_MIN_LEVEL_FRAMES (the tail) keeps the level before it."""
        stream, level = StreamingLogMel(self.config), StreamLevel()
        for block in _pushed(stream, blocks):
            if block.shape[0] == 0:
                continue
            if self.config.level_norm:
                power = _mel_power(block)
                block = _normalise_to(power, level.update(block.shape[0], lambda: _level(power)),
                                      self.config.level_floor_db)
            yield self.apply_cmvn(block)


def _pushed(stream: StreamingLogMel, blocks: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
    for samples in blocks:
        yield stream.push(samples)
    yield stream.finish()


def _mel_power(feats: torch.Tensor) -> torch.Tensor:
    """Log-mel feats (T, F) -> mel power (T, F), with log_mel's LOG_FLOOR taken back out."""
    return (feats.exp() - LOG_FLOOR).clamp_min(0.0)


def _level(power: torch.Tensor) -> float:
    """The level of mel power (T, F): the mean power of its loudest LOUD_SHARE of frames, >= MIN_LEVEL."""
    frame_power = power.mean(dim=1)  # (T,)
    loudest = max(1, math.ceil(LOUD_SHARE * frame_power.numel()))
    return max(float(frame_power.topk(loudest).values.mean()), MIN_LEVEL)


def _normalise_to(power: torch.Tensor, level: float, floor_db: float) -> torch.Tensor:
    """Mel power (T, F) -> log(power / level + floor), (T, F)."""
    return (power / level + 10 ** (floor_db / 10)).log()


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
