"""The feature front end: waveform -> log-mel -> level normalisation -> global CMVN.

`FrontEnd(config, cmvn)` is the one pipeline used by training, transcription (short files and
streamed long ones, with a checkpoint or an exported model), LM tuning, export and the
benchmarks; its FeatureConfig and CMVN stats are stored with every model, so a model always
sees its features made the same way. It is numpy (scipy's FFT) and imports no torch: the
torch-free runtime uses it as it is, and training wraps its arrays with torch.from_numpy.

The log-mel is torchaudio's MelSpectrogram (centred frames, reflect padding, a periodic Hann
window zero-padded to n_fft, power spectrum, HTK mel filterbank without area normalisation), to
float32 rounding (tests/test_frontend.py compares them), with an optional per-frame DC removal.

Level normalisation (features.level_norm) makes the features independent of the input's gain: a
gain g multiplies every mel power by g^2, so dividing by a level measured on the utterance itself
removes it exactly. The level is the mean mel power of the loudest LOUD_SHARE of frames (speech,
however much silence surrounds it, so clips trimmed tight to the speech keep their level), and a
floor `level_floor_db` below that level is added to every bin: a dither relative to the speech
level, which fills empty bins (digital silence, the band above 4 kHz of telephone audio) at the
same place whatever the gain.

Shapes: samples (N,); feats (T, F) float32; a batch elsewhere is feats (B, T, F) with feat_lens (B,).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from asr.audio import SAMPLE_RATE
from asr.errors import ASRError

LOG_FLOOR = 1e-10  # added to mel power before the log: -230 dB, far below any real signal
LOUD_SHARE = 0.2  # the level is measured on the loudest 20 % of frames
MIN_LEVEL = 1e-6  # mel power; about 60 dB below normal speech: quieter input is not boosted further
STREAM_LEVEL_RANGE_DB = 20.0  # a streamed block's level is at most this far below the loudest block's
STREAM_MIN_LEVEL_FRAMES = 100  # 1 s: shorter blocks are too short to measure a level on


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes log-mel frames. Defaults: 80 bins, 25 ms window, 10 ms hop at 16 kHz."""

    sample_rate: int = SAMPLE_RATE
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512  # >= the 400-sample window; a power of two for a fast FFT
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    level_norm: bool = False  # divide mel power by the utterance's speech level (gain invariance)
    level_floor_db: float = -55.0  # with level_norm: a floor this far below the level, added to every bin
    remove_dc: bool = False  # subtract each frame's mean before the window (Kaldi's remove_dc_offset)

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Frames log_mel produces for num_samples (centred frames: one per hop, plus one)."""
        return num_samples // self.hop_length + 1


@lru_cache(maxsize=8)
def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """torchaudio.functional.melscale_fbanks (HTK scale, no norm) in float32: (n_fft // 2 + 1, n_mels)."""
    n_freqs = config.n_fft // 2 + 1
    f_max = config.f_max if config.f_max is not None else float(config.sample_rate // 2)
    all_freqs = np.linspace(0, config.sample_rate // 2, n_freqs, dtype=np.float32)
    m_min = 2595.0 * math.log10(1.0 + config.f_min / 700.0)
    m_max = 2595.0 * math.log10(1.0 + f_max / 700.0)
    m_pts = np.linspace(m_min, m_max, config.n_mels + 2, dtype=np.float32)
    f_pts = (700.0 * (10.0 ** (m_pts / np.float32(2595.0)) - 1.0)).astype(np.float32)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


@lru_cache(maxsize=8)
def analysis_window(config: FeatureConfig) -> np.ndarray:
    """torch.hann_window(win_length) (periodic), zero-padded to n_fft in the centre as torch.stft does: (n_fft,)."""
    n = np.arange(config.win_length, dtype=np.float64)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / config.win_length)
    window = np.zeros(config.n_fft, dtype=np.float32)
    left = (config.n_fft - config.win_length) // 2
    window[left:left + config.win_length] = hann
    return window


def _frames_log_mel(padded: np.ndarray, count: int, config: FeatureConfig) -> np.ndarray:
    """Log-mel of `count` uncentred frames of `padded` (frame i starts at i * hop): (count, n_mels)."""
    hop, n_fft = config.hop_length, config.n_fft
    frames = np.lib.stride_tricks.sliding_window_view(padded[: (count - 1) * hop + n_fft], n_fft)[::hop]
    if config.remove_dc:  # the mean over the window's support: a DC offset would otherwise fill the lowest bins
        left = (n_fft - config.win_length) // 2
        frames = frames - frames[:, left:left + config.win_length].mean(axis=1, keepdims=True)
    # scipy's FFT: several times faster than numpy's on float32 frames (numpy 2.x), and on a par with torch's
    spectrum = scipy.fft.rfft(frames * analysis_window(config), axis=1)  # (count, n_fft // 2 + 1) complex64
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return np.log(power @ mel_filterbank(config) + np.float32(LOG_FLOOR))


def log_mel(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log-mel of one waveform: samples (N,) at config.sample_rate -> feats (T, n_mels) float32,
    T = config.num_frames(N). Any array-like works (a CPU torch tensor too)."""
    wave = np.asarray(samples, dtype=np.float32)
    pad = config.n_fft // 2
    if wave.shape[0] <= pad:
        raise ASRError(f"signal too short for features ({wave.shape[0]} samples; more than {pad} needed)")
    padded = np.pad(wave, pad, mode="reflect")
    return _frames_log_mel(padded, config.num_frames(wave.shape[0]), config)


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
        self.buffer = np.zeros(0, dtype=np.float32)
        self.started = False

    def push(self, samples: np.ndarray) -> np.ndarray:
        self.buffer = np.concatenate([self.buffer, np.asarray(samples, dtype=np.float32)])
        if not self.started:
            if self.buffer.shape[0] <= self.pad:
                return self._empty()
            self.buffer = np.concatenate([self.buffer[1 : self.pad + 1][::-1], self.buffer])  # reflect, as log_mel
            self.started = True
        return self._frames()

    def finish(self) -> np.ndarray:
        """The remaining frames, with the end reflect-padded. Needs more than n_fft // 2 samples in all."""
        if not self.started:
            raise ASRError(f"signal too short for streaming features ({self.buffer.shape[0]} samples)")
        self.buffer = np.concatenate([self.buffer, self.buffer[-self.pad - 1 : -1][::-1]])
        return self._frames()

    def _frames(self) -> np.ndarray:
        hop, n_fft = self.config.hop_length, self.config.n_fft
        count = (self.buffer.shape[0] - n_fft) // hop + 1 if self.buffer.shape[0] >= n_fft else 0
        if count <= 0:
            return self._empty()
        feats = _frames_log_mel(self.buffer, count, self.config)
        self.buffer = self.buffer[count * hop :]
        return feats

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.config.n_mels), dtype=np.float32)


@dataclass(frozen=True)
class Cmvn:
    """Global per-bin mean and standard deviation of training features: mean (F,), std (F,)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, feats):
        """feats (..., F), a numpy array (-> float32 array) or a torch tensor (-> a tensor of its
        dtype and device), normalised per bin."""
        if isinstance(feats, np.ndarray):
            return ((feats - _as_float32(self.mean)) / _as_float32(self.std)).astype(np.float32, copy=False)
        return (feats - feats.new_tensor(self.mean)) / feats.new_tensor(self.std)

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


@lru_cache(maxsize=16)
def _as_float32(values: tuple[float, ...]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    array.flags.writeable = False  # shared by every Cmvn with these stats
    return array


def compute_cmvn(features: Iterable, min_std: float = 1e-5) -> Cmvn:
    """Mean and std over all frames of all utterances; each item is feats (T, F) (an array, or a
    CPU tensor). Accumulates in float64 so that millions of frames do not lose precision."""
    total = sum_sq = None
    count = 0
    for feats in features:
        f = np.asarray(feats, dtype=np.float64)
        s, ss = f.sum(0), (f * f).sum(0)
        total = s if total is None else total + s
        sum_sq = ss if sum_sq is None else sum_sq + ss
        count += f.shape[0]
    if count == 0:
        raise ASRError("cannot compute CMVN stats from zero frames")
    mean = total / count
    std = np.sqrt(np.maximum(sum_sq / count - mean * mean, 0.0)).clip(min=min_std)
    return Cmvn(mean=tuple(mean.tolist()), std=tuple(std.tolist()))


class StreamLevel:
    """The level each block of a streamed signal is normalised with (FrontEnd.stream): the first
    block, and every block of at least STREAM_MIN_LEVEL_FRAMES, sets it: its own level, but never
    below the loudest block's so far minus STREAM_LEVEL_RANGE_DB; a shorter block keeps the level
    before it (its own is then not measured)."""

    def __init__(self) -> None:
        self.level: float | None = None
        self.loudest: float | None = None

    def update(self, power: np.ndarray) -> float:
        """The level for a block of mel power (t, F)."""
        if self.level is None or power.shape[0] >= STREAM_MIN_LEVEL_FRAMES:
            own = speech_level(power)
            self.loudest = own if self.loudest is None else max(self.loudest, own)
            self.level = max(own, self.loudest * 10 ** (-STREAM_LEVEL_RANGE_DB / 10))
        return self.level


def mel_power(feats: np.ndarray) -> np.ndarray:
    """Log-mel feats (T, F) -> mel power (T, F), with log_mel's LOG_FLOOR taken back out."""
    return np.maximum(np.exp(feats) - np.float32(LOG_FLOOR), np.float32(0.0))


def speech_level(power: np.ndarray) -> float:
    """The level of mel power (T, F): the mean power of its loudest LOUD_SHARE of frames, >= MIN_LEVEL."""
    frame_power = power.mean(axis=1)  # (T,)
    loudest = max(1, math.ceil(LOUD_SHARE * frame_power.shape[0]))
    top = np.partition(frame_power, frame_power.shape[0] - loudest)[frame_power.shape[0] - loudest:]
    return max(float(top.mean()), MIN_LEVEL)


def normalise_to(power: np.ndarray, level: float, floor_db: float) -> np.ndarray:
    """Mel power (T, F) -> log(power / level + floor), (T, F) float32."""
    return np.log(power / np.float32(level) + np.float32(10 ** (floor_db / 10)))


def level_normalise(feats: np.ndarray, floor_db: float) -> np.ndarray:
    """Log-mel feats (T, F) (as log_mel makes them) -> log(mel / level + floor), (T, F).

    level = mean mel power of the loudest LOUD_SHARE of frames (at least MIN_LEVEL); floor =
    10^(floor_db / 10). Scaling the waveform by any gain gives the same result (up to the
    MIN_LEVEL limit). Works on a whole utterance or on a block of a stream.
    """
    power = mel_power(feats)
    return normalise_to(power, speech_level(power), floor_db)


class FrontEnd:
    """The one feature pipeline: waveform (N,) at config.sample_rate -> normalised feats (T, F) float32.

        front_end = FrontEnd(config, cmvn)
        feats = front_end(samples)             # log-mel, level normalisation (if configured), CMVN
        raw = front_end.unnormalised(samples)  # the same before CMVN (what CMVN stats are made from)
    Without cmvn (while computing the stats) __call__ returns the un-normalised features.
    """

    def __init__(self, config: FeatureConfig, cmvn: Cmvn | None = None) -> None:
        self.config = config
        self.cmvn = cmvn

    def unnormalised(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel (T, F) of samples (N,), level-normalised when the config says so; no CMVN."""
        return self.normalise_level(log_mel(samples, self.config))

    def normalise_level(self, feats: np.ndarray) -> np.ndarray:
        return level_normalise(feats, self.config.level_floor_db) if self.config.level_norm else feats

    def apply_cmvn(self, feats: np.ndarray) -> np.ndarray:
        return self.cmvn.apply(feats) if self.cmvn is not None else feats

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Normalised feats (T, F) of samples (N,) at config.sample_rate."""
        return self.apply_cmvn(self.unnormalised(samples))

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Normalised feats of a signal read in blocks (N_i,), one (t_i, F) array per block (then
        the tail): the frames equal log_mel on the whole signal; level normalisation uses each
        block's own level, never below the loudest block's so far minus STREAM_LEVEL_RANGE_DB
        (a long pause is not boosted to speech level), i.e. a level that follows the recording; a
        block shorter than STREAM_MIN_LEVEL_FRAMES (the tail) keeps the level before it."""
        stream, level = StreamingLogMel(self.config), StreamLevel()
        for block in _pushed(stream, blocks):
            if block.shape[0] == 0:
                continue
            if self.config.level_norm:
                power = mel_power(block)
                block = normalise_to(power, level.update(power), self.config.level_floor_db)
            yield self.apply_cmvn(block)


def _pushed(stream: StreamingLogMel, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for samples in blocks:
        yield stream.push(samples)
    yield stream.finish()
