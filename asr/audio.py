"""Read audio files to float32 mono at the model's sample rate.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, NIST SPHERE and more; multi-channel audio is
downmixed by averaging; other sample rates are resampled with soxr's high-quality filter
(band-limited, fast, and accurate to well past 16-bit noise), called directly as librosa.resample
calls it (librosa takes ~1 s to import; soxr a few milliseconds).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.errors import ASRError

SAMPLE_RATE = 16_000  # Hz, the rate every model in this toolkit is trained at
RESAMPLE_QUALITY = "soxr_hq"
MIN_SECONDS = 0.025  # one 25 ms analysis window: anything shorter holds no recognisable speech
AUDIO_EXTENSIONS = (".wav", ".flac", ".sph", ".nist", ".ogg", ".opus", ".mp3", ".aiff", ".aif")


class AudioError(ASRError):
    """A file that cannot be read as audio; the message names the file and the cause."""


def audio_info(path: str | os.PathLike) -> tuple[int, int]:
    """Return (num_frames, sample_rate) from the header, without decoding the samples."""
    _check_readable(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: not readable as audio ({_describe(err)})") from None
    return int(info.frames), int(info.samplerate)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read `path` as float32 mono in [-1, 1] at `sample_rate`.

    Returns:
        samples (N,) float32.
    Raises:
        AudioError: missing, unreadable, empty, truncated, non-audio, non-finite or too short
            (under MIN_SECONDS) file. A file whose header promises more samples than it holds
            is read up to where the data ends (libsndfile's behaviour).
    """
    _check_readable(path)
    try:
        samples, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: not readable as audio ({_describe(err)})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples (zero length)")
    if samples.shape[0] < MIN_SECONDS * file_rate:
        milliseconds = 1000 * samples.shape[0] / file_rate
        raise AudioError(f"{path}: too short to transcribe ({milliseconds:.1f} ms; at least {1000 * MIN_SECONDS:g} ms)")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: contains non-finite samples (NaN or infinity)")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if file_rate != sample_rate:
        mono = resample(mono, file_rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def read_segment(path: str | os.PathLike, start: float, end: float | None = None) -> tuple[np.ndarray, int, str]:
    """The samples of `path` from `start` to `end` seconds (None: to the end), as stored: no downmix,
    no resampling (what Kaldi's extract-segments cuts for a `segments` line).

    Sample indices are round(seconds * file rate), so a segment is exactly the slice a user cuts by
    hand from the whole file. Returns (samples (N, channels) float32, file rate, file subtype).
    Raises:
        AudioError: unreadable file, or a segment that is empty or starts past the end.
    """
    _check_readable(path)
    try:
        with sf.SoundFile(str(path)) as audio:
            rate, frames, subtype = audio.samplerate, audio.frames, audio.subtype
            first = round(start * rate)
            last = frames if end is None else min(frames, round(end * rate))
            if first >= last:
                raise AudioError(f"{path}: segment {start:g}-{end if end is not None else 'end'} s holds no samples "
                                 f"(the file has {frames / rate:.2f} s)")
            audio.seek(first)
            samples = audio.read(last - first, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: not readable as audio ({_describe(err)})") from None
    return samples, rate, subtype


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling of samples (N,) from orig_rate to target_rate (soxr, high quality):
    (ceil(N * target_rate / orig_rate),), trimmed or zero-padded to that length as librosa does."""
    import soxr  # imported here: most inputs are already at the model's rate

    length = math.ceil(samples.shape[0] * target_rate / orig_rate)
    resampled = soxr.resample(samples, orig_rate, target_rate, quality=RESAMPLE_QUALITY)[:length]
    if resampled.shape[0] < length:
        resampled = np.pad(resampled, (0, length - resampled.shape[0]))
    return resampled.astype(samples.dtype, copy=False)


def change_speed(samples: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speed perturbation (tempo and pitch together, as in Kaldi): factor 1.1 plays 10% faster.

    samples (N,) -> (about N / factor,), by resampling from sample_rate * factor to sample_rate.
    """
    if factor == 1.0:
        return samples
    return resample(samples, round(sample_rate * factor), sample_rate)


def find_audio_files(directory: str | os.PathLike) -> list[Path]:
    """All audio files under `directory` (recursive, sorted), by extension."""
    root = Path(directory)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _check_readable(path: str | os.PathLike) -> None:
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{path}: no such file")
    if p.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not os.access(p, os.R_OK):
        raise AudioError(f"{path}: permission denied")
    if p.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def _describe(err: Exception) -> str:
    """libsndfile's message without its 'Error opening ...' prefix that repeats the path."""
    message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    message = message.split(": ", 1)[-1] if message.startswith("Error opening") else message
    if message.startswith("File does not exist or is not a regular file"):  # it does: _check_readable said so
        return "corrupt data or an unsupported format"  # libsndfile's mpg123 reader says this of non-MP3 bytes
    return message


def stream_audio(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, block_seconds: float = 30.0
) -> Iterator[np.ndarray]:
    """Read `path` block by block as float32 mono at `sample_rate`, for files too long to hold.

    Yields blocks (n,) whose concatenation matches load_audio up to resampler edge effects;
    memory stays bounded by the block size. Raises AudioError like load_audio.
    """
    import soxr  # librosa's resampling backend; its streaming API keeps state across blocks

    _check_readable(path)
    total = 0
    try:
        with sf.SoundFile(str(path)) as audio:
            file_rate = audio.samplerate
            resampler = None
            if file_rate != sample_rate:
                resampler = soxr.ResampleStream(file_rate, sample_rate, 1, dtype="float32", quality="HQ")
            blocksize = max(1, int(block_seconds * file_rate))
            for block in audio.blocks(blocksize=blocksize, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    raise AudioError(f"{path}: contains non-finite samples (NaN or infinity)")
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                if resampler is not None:
                    mono = resampler.resample_chunk(np.ascontiguousarray(mono))
                total += len(mono)
                if len(mono):
                    yield np.ascontiguousarray(mono, dtype=np.float32)
            if resampler is not None:
                tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
                total += len(tail)
                if len(tail):
                    yield tail.astype(np.float32)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: not readable as audio ({_describe(err)})") from None
    if total == 0:
        raise AudioError(f"{path}: contains no audio samples (zero length)")
