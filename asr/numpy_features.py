"""The front end's definition (FeatureConfig and its constants) and the same front end in numpy.

asr.features computes the features with torch/torchaudio for training and the PyTorch
transcription path; this module holds what both paths share, and `NumpyFrontEnd`, the numpy
twin of `asr.features.FrontEnd` used by the torch-free runtime (asr.runtime): the same log-mel
(torchaudio's MelSpectrogram: centred frames, reflect padding, a periodic Hann window zero-padded
to n_fft, power spectrum, HTK mel filterbank without area normalisation), the same level
normalisation (whole utterance, or block by block when streamed) and the same CMVN, equal to the
torch features to float32 rounding (tests/test_runtime.py checks it on real speech).

No torch here (nor anything that imports it). Shapes: samples (N,), feats (T, F) float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

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


class StreamLevel:
    """The level each block of a streamed signal is normalised with (asr.features.FrontEnd.stream
    and NumpyFrontEnd.stream): the first block, and every block of at least STREAM_MIN_LEVEL_FRAMES,
    sets it: its own level, but never below the loudest block's so far minus STREAM_LEVEL_RANGE_DB;
    a shorter block keeps the level before it (its own is then not measured)."""

    def __init__(self) -> None:
        self.level: float | None = None
        self.loudest: float | None = None

    def update(self, frames: int, measure: Callable[[], float]) -> float:
        """The level for a block of `frames` frames; measure() gives the block's own level."""
        if self.level is None or frames >= STREAM_MIN_LEVEL_FRAMES:
            own = measure()
            self.loudest = own if self.loudest is None else max(self.loudest, own)
            self.level = max(own, self.loudest * 10 ** (-STREAM_LEVEL_RANGE_DB / 10))
        return self.level


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
    spectrum = np.fft.rfft(frames * analysis_window(config), axis=1)  # (count, n_fft // 2 + 1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    return np.log(power @ mel_filterbank(config) + np.float32(LOG_FLOOR))


def log_mel(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log-mel of one waveform: samples (N,) -> feats (T, n_mels) float32, T = config.num_frames(N)
    (as asr.features.log_mel)."""
    wave = np.asarray(samples, dtype=np.float32)
    pad = config.n_fft // 2
    if wave.shape[0] <= pad:
        raise ASRError(f"signal too short for features ({wave.shape[0]} samples; more than {pad} needed)")
    padded = np.pad(wave, pad, mode="reflect")
    return _frames_log_mel(padded, config.num_frames(wave.shape[0]), config)


class StreamingLogMel:
    """Log-mel of a signal fed in pieces, with the same frames as log_mel on the whole signal (as
    asr.features.StreamingLogMel): push(block) and finish() return the new frames (t, n_mels)."""

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
            self.buffer = np.concatenate([self.buffer[1 : self.pad + 1][::-1], self.buffer])  # reflect
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


def _mel_power(feats: np.ndarray) -> np.ndarray:
    """Log-mel feats (T, F) -> mel power (T, F), with LOG_FLOOR taken back out."""
    return np.maximum(np.exp(feats) - np.float32(LOG_FLOOR), np.float32(0.0))


def _level(power: np.ndarray) -> float:
    """The mean power of the loudest LOUD_SHARE of frames of power (T, F), >= MIN_LEVEL."""
    frame_power = power.mean(axis=1)
    loudest = max(1, math.ceil(LOUD_SHARE * frame_power.shape[0]))
    top = np.partition(frame_power, frame_power.shape[0] - loudest)[frame_power.shape[0] - loudest:]
    return max(float(top.mean()), MIN_LEVEL)


def _normalise_to(power: np.ndarray, level: float, floor_db: float) -> np.ndarray:
    """Mel power (T, F) -> log(power / level + floor), (T, F) float32."""
    return np.log(power / np.float32(level) + np.float32(10 ** (floor_db / 10)))


class NumpyFrontEnd:
    """asr.features.FrontEnd in numpy: waveform (N,) -> normalised feats (T, F) float32.

    mean and std (F,) are the model's CMVN stats; `stream(blocks)` yields the features of a
    signal read in blocks, block by block, as FrontEnd.stream does.
    """

    def __init__(self, config: FeatureConfig, mean: Iterable[float], std: Iterable[float]) -> None:
        self.config = config
        self.mean = np.asarray(tuple(mean), dtype=np.float32)
        self.std = np.asarray(tuple(std), dtype=np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        feats = log_mel(samples, self.config)
        if self.config.level_norm:
            power = _mel_power(feats)
            feats = _normalise_to(power, _level(power), self.config.level_floor_db)
        return self._cmvn(feats)

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        stream, level = StreamingLogMel(self.config), StreamLevel()
        for block in _pushed(stream, blocks):
            if block.shape[0] == 0:
                continue
            if self.config.level_norm:
                power = _mel_power(block)
                block = _normalise_to(power, level.update(block.shape[0], lambda: _level(power)),
                                      self.config.level_floor_db)
            yield self._cmvn(block)

    def _cmvn(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - self.mean) / self.std).astype(np.float32, copy=False)


def _pushed(stream: StreamingLogMel, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for samples in blocks:
        yield stream.push(samples)
    yield stream.finish()
