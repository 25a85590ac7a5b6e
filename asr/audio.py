"""Read audio files to float32 mono at the model's sample rate.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, NIST SPHERE and more; multi-channel audio is
downmixed by averaging; other sample rates are resampled with soxr's high-quality filter
(band-limited, fast, and accurate to well past 16-bit noise), called directly as librosa.resample
calls it (librosa takes ~1 s to import; soxr a few milliseconds).

What a file's header or samples get wrong is handled here, once for the whole-file and the streamed
reader: a sample rate no audio has is refused; float samples far above full scale are scaled back
(in float64, before the cast to float32); channels that cancel when averaged (one the other
inverted) give way to the loudest channel; a WAV whose header promises more data than the file
holds is read as far as it goes. The last three are reported as warnings (one line each, naming
the file) in the `warnings` list the caller passes. Paths go to libsndfile as bytes
(os.fsencode), so a file name that is not valid UTF-8 opens like any other.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.errors import ASRError

SAMPLE_RATE = 16_000  # Hz, the rate every model in this toolkit is trained at
RESAMPLE_QUALITY = "soxr_hq"
MIN_SECONDS = 0.025  # one 25 ms analysis window: anything shorter holds no recognisable speech
MIN_FILE_RATE, MAX_FILE_RATE = 4_000, 384_000  # Hz: half of telephone speech's 8 kHz, and 384 kHz (the highest
# rate recorders and DACs offer); outside them a header's rate is corrupt or mislabelled (1 Hz: a 128 KB WAV "lasts" 18 h)
PEAK_LIMIT = 100.0  # float samples 40 dB above full scale (1.0) are a scaling mistake, not a loud recording:
# such a file is scaled to peak 1 (the front end is level-invariant) before its log-mel can overflow
CANCEL_RATIO = 0.01  # a downmix with under 1 % (-20 dB) of its channels' mean energy: the channels cancel
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # the sample formats that can exceed full scale: read as float64
AUDIO_EXTENSIONS = (".wav", ".flac", ".sph", ".nist", ".ogg", ".opus", ".mp3", ".aiff", ".aif")


class AudioError(ASRError):
    """A file that cannot be read as audio; the message names the file and the cause."""


def audio_info(path: str | os.PathLike) -> tuple[int, int]:
    """Return (num_frames, sample_rate) from the header, without decoding the samples."""
    name = _check_readable(path)
    try:
        info = sf.info(name)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: not readable as audio ({_describe(err)})") from None
    _check_rate(path, int(info.samplerate))
    return int(info.frames), int(info.samplerate)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, warnings: list[str] | None = None
               ) -> np.ndarray:
    """Read `path` as float32 mono in [-1, 1] at `sample_rate`.

    Returns:
        samples (N,) float32.
    Raises:
        AudioError: missing, unreadable, empty, truncated, non-audio, non-finite or too short
            (under MIN_SECONDS) file, or one whose header gives a sample rate outside
            MIN_FILE_RATE..MAX_FILE_RATE. A file whose header promises more samples than it holds
            is read up to where the data ends (libsndfile's behaviour), with a warning.
    Appends to `warnings` (when given) one line per thing corrected: a truncated file, samples far
    above full scale (scaled down), channels that cancel in the downmix (the loudest one used).
    """
    name = _check_readable(path)
    try:
        with sf.SoundFile(name) as audio:
            file_rate = audio.samplerate
            _check_rate(path, file_rate)
            _warn_truncated(path, name, audio.frames, file_rate, warnings)
            samples = audio.read(dtype=_read_dtype(audio), always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: not readable as audio ({_describe(err)})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples (zero length)")
    if samples.shape[0] < MIN_SECONDS * file_rate:
        milliseconds = 1000 * samples.shape[0] / file_rate
        raise AudioError(f"{path}: too short to transcribe ({milliseconds:.1f} ms; at least {1000 * MIN_SECONDS:g} ms)")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: contains non-finite samples (NaN or infinity)")
    scale = _scale_for(path, float(np.abs(samples).max()), warnings)
    if scale != 1.0:
        samples = samples * scale  # float64 (only float files go above full scale), then cast in _to_mono
    energies, mix_energy = _energies(samples)
    channel = _channel_for(path, energies, mix_energy, warnings)
    mono = _to_mono(samples, 1.0, channel)
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
    name = _check_readable(path)
    try:
        with sf.SoundFile(name) as audio:
            rate, frames, subtype = audio.samplerate, audio.frames, audio.subtype
            _check_rate(path, rate)
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


def _check_readable(path: str | os.PathLike) -> bytes:
    """The file name as bytes for libsndfile (os.fsencode: a name that is not valid UTF-8 keeps its
    bytes), after checking that it names a readable, non-empty file."""
    try:
        name = os.fsencode(path)
    except UnicodeEncodeError:  # e.g. a lone UTF-16 surrogate from a JSON "\ud800": no file has this name
        raise AudioError(f"{path!r}: not a possible file name (it holds characters no file name can)") from None
    try:
        status = os.stat(name)
    except (FileNotFoundError, NotADirectoryError):
        raise AudioError(f"{path}: no such file") from None
    except OSError as err:  # e.g. "File name too long", a symbolic link loop
        raise AudioError(f"{path}: cannot be opened ({err.strerror or err})") from None
    if stat.S_ISDIR(status.st_mode):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not os.access(name, os.R_OK):
        raise AudioError(f"{path}: permission denied")
    if status.st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    return name


def _check_rate(path: str | os.PathLike, rate: int) -> None:
    if not MIN_FILE_RATE <= rate <= MAX_FILE_RATE:
        raise AudioError(f"{path}: sample rate {rate} Hz in its header is not an audio rate ({MIN_FILE_RATE}-"
                         f"{MAX_FILE_RATE} Hz): a corrupt or mislabelled header")


def _read_dtype(audio: sf.SoundFile) -> str:
    """float64 for float files (their samples may be far beyond float32's range once squared or
    summed), float32 for the rest (integer formats never exceed full scale)."""
    return "float64" if audio.subtype in FLOAT_SUBTYPES else "float32"


def _scale_for(path: str | os.PathLike, peak: float, warnings: list[str] | None) -> float:
    """1, or 1 / peak (with a warning) when a file's peak |sample| is above PEAK_LIMIT."""
    if peak <= PEAK_LIMIT:
        return 1.0
    if warnings is not None:
        warnings.append(f"{path}: samples reach {peak:.3g}, {20 * math.log10(peak):.0f} dB above full scale (1.0): "
                        "scaled down to peak 1 (a float file written without normalising?)")
    return 1.0 / peak


def _channel_for(path: str | os.PathLike, energies: np.ndarray, mix_energy: float,
                 warnings: list[str] | None) -> int | None:
    """None (average the channels), or the loudest channel (with a warning) when the average of the
    channels has under CANCEL_RATIO of their mean energy: one channel the other inverted, as a
    miswired microphone gives, averages to silence. energies: mean energy per channel (C,);
    mix_energy: that of the channel average."""
    if len(energies) < 2 or not np.isfinite(energies).all() or not energies.max() > 0:
        return None
    if not mix_energy < CANCEL_RATIO * energies.mean():
        return None
    channel = int(energies.argmax())
    if warnings is not None:
        warnings.append(f"{path}: its {len(energies)} channels cancel when averaged (one is the other inverted?): "
                        f"channel {channel + 1} alone is transcribed")
    return channel


def _energies(block: np.ndarray) -> tuple[np.ndarray, float]:
    """Sums of squares (float64) of each channel of block (N, C) and of their average (0 for mono)."""
    with np.errstate(over="ignore", invalid="ignore"):  # a float64 file beyond 1e154: no channel choice
        energies = np.square(block, dtype=np.float64).sum(axis=0)
        mix = float(np.square(block.mean(axis=1, dtype=np.float64)).sum()) if block.shape[1] > 1 else 0.0
    return energies, mix


def _to_mono(samples: np.ndarray, scale: float, channel: int | None) -> np.ndarray:
    """samples (N, C) -> (N,) float32: the channel average (or `channel`), times `scale` (in float64
    for float64 input, so that nothing overflows before the cast)."""
    if channel is not None:
        mono = samples[:, channel]
    elif samples.shape[1] > 1:
        mono = samples.mean(axis=1)
    else:
        mono = samples[:, 0]
    if scale != 1.0:
        mono = mono * scale
    return mono.astype(np.float32, copy=False)


WAV_PCM_TAGS = (1, 3, 6, 7, 0xFFFE)  # PCM, IEEE float, A-law, mu-law, extensible: one block_align per frame
RIFF_MAX_CHUNKS = 64  # chunks skipped looking for 'data' before giving up (a WAV has a handful)


def promised_frames(path: str | os.PathLike | bytes) -> int | None:
    """The frames a RIFF/WAVE header's data chunk promises (its size / block align), or None: not a
    WAV, a compressed one, one whose size is a streaming placeholder (0 or 0xFFFFFFFF), or a header
    too broken to say. Never raises for what the file holds."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            for _ in range(RIFF_MAX_CHUNKS):
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                chunk_id, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if chunk_id == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                if chunk_id == b"fmt ":
                    body = f.read(size)
                    if len(body) < 14 or int.from_bytes(body[:2], "little") not in WAV_PCM_TAGS:
                        return None
                    block_align = int.from_bytes(body[12:14], "little")
                else:
                    f.seek(size, os.SEEK_CUR)
                if size % 2:
                    f.seek(1, os.SEEK_CUR)  # chunks are word-aligned
    except OSError:
        return None
    return None


def _warn_truncated(path: str | os.PathLike, name: bytes, frames: int, rate: int, warnings: list[str] | None) -> None:
    """A warning when the header promises more frames than libsndfile finds in the file."""
    promised = promised_frames(name)
    if warnings is not None and promised is not None and promised > frames:
        warnings.append(f"{path}: truncated: its header promises {promised / rate:.2f} s, the file holds "
                        f"{frames / rate:.2f} s (what is there is transcribed)")


def _describe(err: Exception) -> str:
    """libsndfile's message without its 'Error opening ...' prefix that repeats the path."""
    message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    message = message.split(": ", 1)[-1] if message.startswith("Error opening") else message
    if message.startswith("File does not exist or is not a regular file"):  # it does: _check_readable said so
        return "corrupt data or an unsupported format"  # libsndfile's mpg123 reader says this of non-MP3 bytes
    return message


def stream_audio(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, block_seconds: float = 30.0,
    warnings: list[str] | None = None,
) -> Iterator[np.ndarray]:
    """Read `path` block by block as float32 mono at `sample_rate`, for files too long to hold.

    Yields blocks (n,) whose concatenation matches load_audio up to resampler edge effects;
    memory stays bounded by the block size. Raises AudioError and adds warnings like load_audio:
    a float or multi-channel file is read twice, a first pass finding its peak and channel
    energies, so that the scale and the channel choice are the same for every block.
    """
    import soxr  # librosa's resampling backend; its streaming API keeps state across blocks

    name = _check_readable(path)
    total = 0
    try:
        with sf.SoundFile(name) as audio:
            file_rate = audio.samplerate
            _check_rate(path, file_rate)
            _warn_truncated(path, name, audio.frames, file_rate, warnings)
            dtype = _read_dtype(audio)
            blocksize = max(1, int(block_seconds * file_rate))
            scale, channel = 1.0, None
            if dtype == "float64" or audio.channels > 1:  # a first pass: peak and channel energies
                peak, energies, mix_energy = 0.0, np.zeros(audio.channels), 0.0
                for block in audio.blocks(blocksize=blocksize, dtype=dtype, always_2d=True):
                    if not np.isfinite(block).all():
                        raise AudioError(f"{path}: contains non-finite samples (NaN or infinity)")
                    peak = max(peak, float(np.abs(block).max(initial=0.0)))
                    block_energies, block_mix = _energies(block)
                    energies, mix_energy = energies + block_energies, mix_energy + block_mix
                scale = _scale_for(path, peak, warnings)
                with np.errstate(over="ignore", invalid="ignore", under="ignore"):
                    channel = _channel_for(path, energies * scale**2, mix_energy * scale**2, warnings)
                audio.seek(0)
            resampler = None
            if file_rate != sample_rate:
                resampler = soxr.ResampleStream(file_rate, sample_rate, 1, dtype="float32", quality="HQ")
            for block in audio.blocks(blocksize=blocksize, dtype=dtype, always_2d=True):
                if not np.isfinite(block).all():
                    raise AudioError(f"{path}: contains non-finite samples (NaN or infinity)")
                mono = _to_mono(block, scale, channel)
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
