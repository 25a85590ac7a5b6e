"""Training-time waveform augmentation: trimming to the speech, room reverberation, babble,
recorded noise, coloured noise, a telephone channel and gain, each applied with its own probability.

Every random choice is drawn from the numpy Generator the caller passes, so an item's
augmentation is a pure function of (samples, rng state): the dataset seeds the Generator from
(seed, epoch, index) and training resumes to the same audio. The functions are pure and work on
samples (N,) float32 at a sample rate; `Augmenter` chains them for the training dataset.

DSP comes from libraries: torchaudio.functional (fftconvolve, resample, biquad filters, mu-law),
librosa (silence trimming) and pyroomacoustics (image-source room impulse responses, imported
only when a room is made).
Two small pieces are written here because no library does them: spectral shaping of white noise
into pink/brown noise (numpy rfft) and G.711 A-law companding (the standard's formula).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
import torchaudio.functional as AF

from asr.audio import find_audio_files, load_audio
from asr.errors import ASRError

NOISE_COLOURS = ("white", "pink", "brown")
NOISE_POWER_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # noise power ∝ 1 / f**exponent

TELEPHONE_CODECS = ("mulaw", "alaw")
TELEPHONE_RATE = 8_000  # Hz: G.711 narrowband telephony
TELEPHONE_BAND_HZ = (300.0, 3400.0)  # the ITU-T G.712 voice channel
# Q of the two biquads of a 4th-order Butterworth: 1 / (2 sin((2k - 1) pi / 8)), k = 1, 2.
# One biquad falls only 12 dB/octave (-19 dB at 100 Hz); the cascade falls 24 dB/octave.
BUTTERWORTH_4_QS = (1 / (2 * math.sin(math.pi / 8)), 1 / (2 * math.sin(3 * math.pi / 8)))
CODEC_LEVELS = 256  # 8 bits per sample, as G.711 sends
A_LAW_A = 87.6  # the G.711 A-law compression parameter
# Resampling to and from 8 kHz: a Kaiser-windowed sinc, 16 zero crossings each side and beta 8.6
# (stopband about -85 dB), so nothing above the 4 kHz Nyquist of the channel comes back.
RESAMPLE_OPTIONS = {"lowpass_filter_width": 16, "rolloff": 0.95, "resampling_method": "sinc_interp_kaiser", "beta": 8.6}

ROOM_MIN_M = (3.0, 3.0, 2.5)  # length, width, height of the smallest simulated room (a small office)
ROOM_MAX_M = (10.0, 10.0, 4.0)  # and of the largest (a classroom)
WALL_CLEARANCE_M = 0.5  # source and microphone stay this far from every wall
MIN_SOURCE_MIC_M = 0.5  # and this far from each other
ROOM_SHRINK = 0.9  # a room too large for the requested RT60 is shrunk by this factor until it fits
# Sabine: RT60 = 24 ln(10) V / (c S a); the smallest room with fully absorbing walls (a = 1)
# decays in 0.076 s, so shorter reverberation times cannot be simulated.
MIN_RT60 = 0.1  # seconds
# The image-source count grows with RT60 cubed: 1 s takes ~0.5-8 s per room on one core, 2 s ~8x that.
MAX_RT60 = 2.0  # seconds
RIR_BANK_SIZE = 32  # simulated rooms an Augmenter makes (each on first use) and reuses (see RirBank)
RIR_BANK_SEED = 0  # the bank's rooms do not depend on the training seed: runs differ only in the draws

AUDIO_PEAK = 1.0  # float audio lives in [-1, 1]


@dataclass(frozen=True)
class AugmentConfig:
    """Waveform augmentation for training; each kind has a probability (0 = off) and a range."""

    gain_prob: float = 0.0
    gain_db: tuple[float, float] = (-20.0, 10.0)  # uniform in dB; the result is clipped to [-1, 1]
    noise_prob: float = 0.0  # synthetic coloured noise
    noise_colors: tuple[str, ...] = ("white", "pink", "brown")
    noise_snr_db: tuple[float, float] = (0.0, 30.0)
    babble_prob: float = 0.0  # sum of other training utterances
    babble_speakers: tuple[int, int] = (3, 6)  # how many utterances are summed (inclusive)
    babble_snr_db: tuple[float, float] = (5.0, 25.0)
    noise_dir: str = ""  # a user's folder of noise recordings (MUSAN-style tree, searched recursively); "" = none
    noise_dir_prob: float = 0.0
    noise_dir_snr_db: tuple[float, float] = (0.0, 20.0)
    reverb_prob: float = 0.0  # simulated rooms (pyroomacoustics), or the user's RIRs
    rt60: tuple[float, float] = (0.2, 1.0)  # seconds
    rir_dir: str = ""  # a user's folder of impulse responses; when set, used instead of simulation
    telephone_prob: float = 0.0  # 8 kHz, 300-3400 Hz band, mu-law or A-law, back to the model's rate
    telephone_codecs: tuple[str, ...] = ("mulaw", "alaw")
    trim_prob: float = 0.0  # cut the leading and trailing silence (clips cut tight to the speech)
    trim_top_db: tuple[float, float] = (25.0, 40.0)  # silence: frames this far below the loudest (librosa.effects.trim)
    trim_margin_ms: tuple[float, float] = (0.0, 100.0)  # silence kept before and after the speech, each drawn

    def __post_init__(self) -> None:
        for name in _probability_fields():
            _check_probability(name, getattr(self, name))
        for name in ("gain_db", "noise_snr_db", "babble_snr_db", "noise_dir_snr_db", "rt60", "babble_speakers",
                     "trim_top_db", "trim_margin_ms"):
            _check_range(name, getattr(self, name))
        if self.trim_top_db[0] <= 0:
            raise ValueError(f"trim_top_db must be above 0 dB, got {self.trim_top_db}")
        if self.trim_margin_ms[0] < 0:
            raise ValueError(f"trim_margin_ms must be >= 0, got {self.trim_margin_ms}")
        _check_choices("noise_colors", self.noise_colors, NOISE_COLOURS)
        _check_choices("telephone_codecs", self.telephone_codecs, TELEPHONE_CODECS)
        if self.babble_speakers[0] < 1 or any(int(n) != n for n in self.babble_speakers):
            raise ValueError(f"babble_speakers must be whole numbers >= 1, got {self.babble_speakers}")
        if self.rt60[0] < MIN_RT60 or self.rt60[1] > MAX_RT60:
            raise ValueError(f"rt60 must lie in [{MIN_RT60}, {MAX_RT60}] seconds, got {self.rt60}")
        if self.noise_dir_prob > 0 and not self.noise_dir:
            raise ValueError("noise_dir_prob > 0 needs noise_dir (a folder of noise recordings)")

    @property
    def enabled(self) -> bool:
        """True when any kind of augmentation has a probability above 0."""
        return any(getattr(self, name) > 0 for name in _probability_fields())


def _probability_fields() -> list[str]:
    return [f.name for f in fields(AugmentConfig) if f.name.endswith("_prob")]


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


def _check_range(name: str, value: tuple) -> None:
    if len(value) != 2 or not all(math.isfinite(v) for v in value) or value[0] > value[1]:
        raise ValueError(f"{name} must be an ordered (low, high) pair of finite numbers, got {value}")


def _check_choices(name: str, values: tuple[str, ...], known: tuple[str, ...]) -> None:
    unknown = [v for v in values if v not in known]
    if not values or unknown:
        raise ValueError(f"{name} must be a non-empty selection of {known}, got {values}")


# ---------------------------------------------------------------------------- level and noise


def apply_gain(samples: np.ndarray, gain_db: float) -> np.ndarray:
    """samples (N,) scaled by gain_db decibels (amplitude x 10^(gain_db / 20)), clipped to [-1, 1]."""
    scaled = samples.astype(np.float32) * np.float32(10 ** (gain_db / 20))
    return np.clip(scaled, -AUDIO_PEAK, AUDIO_PEAK)


def limit_peak(samples: np.ndarray) -> np.ndarray:
    """samples (N,) scaled down (never up) so the peak is at most 1: keeps ratios, unlike clipping."""
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    return samples / np.float32(peak) if peak > AUDIO_PEAK else samples


def coloured_noise(num_samples: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise (N,) float32 with unit RMS and power spectral density ∝ 1 / f**k:
    white k = 0 (flat), pink k = 1 (-3 dB per octave), brown k = 2 (-6 dB per octave).

    White noise is shaped in the frequency domain (its rfft scaled by f^(-k/2)); the DC bin is
    zeroed. Pink and brown noise are shaped at a 5-smooth length (fast_fft_length) and cut to
    num_samples: an utterance's length often has a large prime factor, which made each FFT ~10x
    slower. Draws num_samples (white) or that length (pink, brown) standard normals from rng.
    """
    if colour not in NOISE_POWER_EXPONENTS:
        raise ValueError(f"unknown noise colour {colour!r}; expected one of {NOISE_COLOURS}")
    exponent = NOISE_POWER_EXPONENTS[colour]
    shaped = bool(exponent) and num_samples > 1
    length = fast_fft_length(num_samples) if shaped else num_samples
    white = rng.standard_normal(length)
    if shaped:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(length)  # cycles per sample: the slope does not depend on the rate
        amplitude = np.zeros_like(freqs)
        amplitude[1:] = freqs[1:] ** (-exponent / 2)
        white = np.fft.irfft(spectrum * amplitude, n=length)[:num_samples]
    rms = math.sqrt(float(np.mean(white**2))) if num_samples else 0.0
    return (white / rms if rms > 0 else white).astype(np.float32)


def loop_to_length(noise: np.ndarray, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """noise (M,) repeated end to end and cut to (num_samples,), starting at a random offset
    (one rng.integers draw) when rng is given, else at 0."""
    if len(noise) == 0:
        raise ValueError("cannot loop an empty noise signal")
    offset = int(rng.integers(len(noise))) if rng is not None else 0
    repeats = -(-(offset + num_samples) // len(noise))  # ceiling division
    return np.tile(noise, repeats)[offset:offset + num_samples]


def mix_at_snr(
    signal: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """signal (N,) + noise scaled so that 10 log10(P_signal / P_noise) = snr_db, as float32.

    P = mean square over the whole signal (pauses included) and over the noise actually added
    (noise looped or cut to N samples; from a random offset when rng is given, see
    loop_to_length). A silent signal or silent noise leaves the signal unchanged. Not clipped:
    the sum may exceed [-1, 1] (see limit_peak).
    """
    signal = signal.astype(np.float32)
    segment = loop_to_length(noise, len(signal), rng).astype(np.float64)
    signal_power = float(np.mean(signal.astype(np.float64) ** 2)) if len(signal) else 0.0
    noise_power = float(np.mean(segment**2)) if len(segment) else 0.0
    if signal_power == 0.0 or noise_power == 0.0:
        return signal
    scale = math.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (signal + scale * segment).astype(np.float32)


def babble(utterances: list[np.ndarray], num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """The sum (num_samples,) float32 of several utterances, each looped or cut to num_samples
    from a random offset (one rng.integers draw each) and scaled to unit RMS, so every talker is
    equally loud. Silent utterances add nothing."""
    total = np.zeros(num_samples, dtype=np.float64)
    for utterance in utterances:
        talker = loop_to_length(utterance, num_samples, rng).astype(np.float64)
        rms = math.sqrt(float(np.mean(talker**2))) if num_samples else 0.0
        if rms > 0:
            total += talker / rms
    return total.astype(np.float32)


# ---------------------------------------------------------------------------- rooms


def simulated_rir(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response (L,) float32 at sample_rate from pyroomacoustics' image-source
    model of a shoebox room with reverberation time rt60 seconds (Sabine, pra.inverse_sabine).

    Drawn from rng, in order: the room's length, width and height (uniform in ROOM_MIN_M ..
    ROOM_MAX_M), then the source's and microphone's positions (uniform, WALL_CLEARANCE_M from
    the walls, redrawn until MIN_SOURCE_MIC_M apart). A room too large to decay within rt60 even
    with fully absorbing walls is shrunk (ROOM_SHRINK at a time) until it can. The response
    starts at its direct-path peak, normalised to 1, so convolving with it does not delay speech.
    Cost: ~50 ms for rt60 0.2 s, 0.2-0.8 s for 0.5 s, 0.5-8 s for 1 s (see RirBank).
    """
    import pyroomacoustics as pra  # imported here: only reverberation needs it

    if not MIN_RT60 <= rt60 <= MAX_RT60:
        raise ValueError(f"rt60 must lie in [{MIN_RT60}, {MAX_RT60}] seconds, got {rt60}")
    room_dims = rng.uniform(ROOM_MIN_M, ROOM_MAX_M)
    absorption, max_order, room_dims = _room_for_rt60(pra, rt60, room_dims)
    source, mic = _source_and_mic(room_dims, rng)
    room = pra.ShoeBox(room_dims, fs=sample_rate, materials=pra.Material(absorption), max_order=max_order)
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    direct_delay = int(sample_rate * np.linalg.norm(source - mic) / pra.constants.get("c"))
    filter_delay = pra.constants.get("frac_delay_length") // 2  # pra centres each tap in a fractional-delay filter
    return align_to_direct_path(rir, search_end=direct_delay + 2 * filter_delay + 1)


def _room_for_rt60(pra, rt60: float, room_dims: np.ndarray) -> tuple[float, int, np.ndarray]:
    """(wall energy absorption, image-source order, room dims) giving rt60; shrinks a room that
    cannot decay that fast (inverse_sabine raises) down to ROOM_MIN_M."""
    while True:
        try:
            absorption, max_order = pra.inverse_sabine(rt60, room_dims)
            return absorption, max_order, room_dims
        except ValueError:
            if np.all(room_dims <= ROOM_MIN_M):
                raise ValueError(f"rt60 {rt60} s is too short for a {ROOM_MIN_M} m room") from None
            room_dims = np.maximum(room_dims * ROOM_SHRINK, ROOM_MIN_M)


def _source_and_mic(room_dims: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Source and microphone positions (3,) in metres, uniform inside the room's clearance box."""
    low, high = np.full(3, WALL_CLEARANCE_M), room_dims - WALL_CLEARANCE_M
    source = rng.uniform(low, high)
    mic = rng.uniform(low, high)
    while np.linalg.norm(source - mic) < MIN_SOURCE_MIC_M:
        mic = rng.uniform(low, high)
    return source, mic


def align_to_direct_path(rir: np.ndarray, search_end: int | None = None) -> np.ndarray:
    """rir (L,) from its direct-path peak on (the largest |tap| among the first search_end taps,
    default all), divided by that peak so it is +1: float32 (L - peak index,)."""
    window = np.abs(rir[:search_end]) if search_end else np.abs(rir)
    peak = int(np.argmax(window))
    if rir[peak] == 0:
        raise ValueError("impulse response is all zeros")
    return (rir[peak:] / rir[peak]).astype(np.float32)


def reverberate(samples: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """samples (N,) convolved with rir (L,) (torchaudio fftconvolve), the whole tail kept:
    (N + L - 1,) float32, scaled to the input's peak level (a silent input stays silent).

    The RIR is zero-padded so that the FFT length is 5-smooth (fast_fft_length): an FFT of a
    length with a large prime factor is several times slower (95,999 points: 6x 96,000)."""
    full = len(samples) + len(rir) - 1
    padded_rir = np.pad(rir.astype(np.float32), (0, fast_fft_length(full) - full))
    wet = AF.fftconvolve(torch.from_numpy(samples.astype(np.float32)), torch.from_numpy(padded_rir))
    wet = wet.numpy()[:full]
    dry_peak, wet_peak = float(np.max(np.abs(samples), initial=0.0)), float(np.max(np.abs(wet), initial=0.0))
    if wet_peak == 0.0:
        return wet
    return (wet * np.float32(dry_peak / wet_peak)).astype(np.float32)


def fast_fft_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: a length every FFT library transforms quickly."""
    best = 1 << max(0, (n - 1).bit_length())  # the next power of two always qualifies
    power_of_5 = 1
    while power_of_5 < best:
        power_of_3 = power_of_5
        while power_of_3 < best:
            candidate = power_of_3 << max(0, (-(-n // power_of_3) - 1).bit_length())  # times the least 2^a reaching n
            best = min(best, candidate)
            power_of_3 *= 3
        power_of_5 *= 5
    return best


def _simulate_room(rt60_range: tuple[float, float], sample_rate: int, seed: int, index: int) -> tuple[float, np.ndarray]:
    """Room `index` of a RirBank: (rt60, RIR (L,)), both drawn from default_rng([seed, index])."""
    room_rng = np.random.default_rng([seed, index])
    rt60 = float(room_rng.uniform(*rt60_range))
    return rt60, simulated_rir(rt60, sample_rate, room_rng)


class RirBank:
    """`size` simulated room impulse responses, each made once, when first drawn, then reused.

    One simulated room costs 50 ms to several seconds (simulated_rir), too slow to make per
    training item; made on first use, a short run (or a test) pays only for the rooms it draws.
    Room i is simulated_rir(rt60_i, sample_rate, default_rng([seed, i])) with rt60_i uniform in
    config.rt60 from that same Generator, so a bank is a deterministic function of (config.rt60,
    sample_rate, size, seed), whatever order its rooms are made in, and a smaller bank is a prefix
    of a larger one.
    """

    def __init__(self, config: AugmentConfig, sample_rate: int, size: int = RIR_BANK_SIZE, seed: int = RIR_BANK_SEED):
        if size < 1:
            raise ValueError(f"a RIR bank needs at least one room, got size {size}")
        self.config, self.sample_rate, self.size, self.seed = config, sample_rate, size, seed
        self._rooms: dict[int, tuple[float, np.ndarray]] = {}

    def room(self, index: int) -> tuple[float, np.ndarray]:
        """(rt60 in seconds, RIR (L,)) of room `index`, simulated on first use."""
        if index not in self._rooms:
            self._rooms[index] = _simulate_room(self.config.rt60, self.sample_rate, self.seed, index)
        return self._rooms[index]

    def make_all(self, processes: int | None = None) -> None:
        """Simulate every room not made yet, in `processes` forked processes (default: one per CPU
        core, up to the rooms missing; 1: in this process). The same rooms as one at a time: each
        comes from its own Generator. Parallel by default because it is faster (bench/results/augment_throughput.json)."""
        missing = [i for i in range(self.size) if i not in self._rooms]
        processes = min(processes or os.cpu_count() or 1, len(missing))
        if processes <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            for index in missing:
                self.room(index)
            return
        import pyroomacoustics  # noqa: F401  (imported once here, inherited by the forked processes)

        jobs = [(self.config.rt60, self.sample_rate, self.seed, index) for index in missing]
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            for index, made in zip(missing, pool.starmap(_simulate_room, jobs, chunksize=1)):
                self._rooms[index] = made

    @property
    def rt60s(self) -> list[float]:
        return [self.room(i)[0] for i in range(self.size)]

    @property
    def rirs(self) -> list[np.ndarray]:
        return [self.room(i)[1] for i in range(self.size)]

    def __len__(self) -> int:
        return self.size

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One of the bank's RIRs (L,), chosen uniformly (one rng.integers draw)."""
        return self.room(int(rng.integers(self.size)))[1]


# ---------------------------------------------------------------------------- telephone


def telephone_band(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """samples (N,) at sample_rate -> (M,) float32 at TELEPHONE_RATE, band-limited to
    TELEPHONE_BAND_HZ by 4th-order Butterworth high- and low-pass filters (torchaudio biquads;
    torchaudio clamps their output to [-1, 1], as a channel clips). No codec: see telephone_channel."""
    waveform = torch.from_numpy(samples.astype(np.float32))
    if sample_rate != TELEPHONE_RATE:
        waveform = AF.resample(waveform, sample_rate, TELEPHONE_RATE, **RESAMPLE_OPTIONS)
    waveform = waveform.double()  # the recursive filters in double precision
    low, high = TELEPHONE_BAND_HZ
    for q in BUTTERWORTH_4_QS:
        waveform = AF.highpass_biquad(waveform, TELEPHONE_RATE, low, Q=q)
    for q in BUTTERWORTH_4_QS:
        waveform = AF.lowpass_biquad(waveform, TELEPHONE_RATE, high, Q=q)
    return waveform.numpy().astype(np.float32)


def mu_law_round_trip(samples: np.ndarray) -> np.ndarray:
    """samples (N,) in [-1, 1] through 8-bit mu-law (mu = 255) encoding and decoding (torchaudio)."""
    waveform = torch.from_numpy(np.clip(samples, -AUDIO_PEAK, AUDIO_PEAK).astype(np.float32))
    codes = AF.mu_law_encoding(waveform, CODEC_LEVELS)
    return AF.mu_law_decoding(codes, CODEC_LEVELS).numpy().astype(np.float32)


def a_law_round_trip(samples: np.ndarray) -> np.ndarray:
    """samples (N,) in [-1, 1] through 8-bit A-law companding (G.711 formula, A = 87.6):
    F(x) = sgn(x) A|x| / (1 + ln A) for |x| < 1/A, else sgn(x) (1 + ln(A|x|)) / (1 + ln A);
    F(x) quantised to CODEC_LEVELS uniform levels in [-1, 1], then expanded by F's inverse."""
    x = np.clip(samples.astype(np.float64), -AUDIO_PEAK, AUDIO_PEAK)
    magnitude = np.abs(x)
    log_a = 1 + math.log(A_LAW_A)
    small = magnitude < 1 / A_LAW_A
    compressed = np.where(small, A_LAW_A * magnitude, 1 + np.log(np.maximum(A_LAW_A * magnitude, 1.0))) / log_a
    step = 2 / (CODEC_LEVELS - 1)
    quantised = np.round((np.sign(x) * compressed + 1) / step) * step - 1  # level k at -1 + k * step
    y = np.abs(quantised)
    expanded = np.where(y < 1 / log_a, y * log_a / A_LAW_A, np.exp(y * log_a - 1) / A_LAW_A)
    return (np.sign(quantised) * expanded).astype(np.float32)


CODEC_ROUND_TRIPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mulaw": mu_law_round_trip,
    "alaw": a_law_round_trip,
}


def telephone_channel(samples: np.ndarray, sample_rate: int, codec: str) -> np.ndarray:
    """samples (N,) at sample_rate as heard through a G.711 telephone line, (N,) float32 at
    sample_rate: down to 8 kHz, 300-3400 Hz band (telephone_band), 8-bit mu-law or A-law
    (codec), and back up to sample_rate (torchaudio resample)."""
    if codec not in CODEC_ROUND_TRIPS:
        raise ValueError(f"unknown telephone codec {codec!r}; expected one of {TELEPHONE_CODECS}")
    narrow = CODEC_ROUND_TRIPS[codec](telephone_band(samples, sample_rate))
    waveform = torch.from_numpy(narrow)
    if sample_rate != TELEPHONE_RATE:
        waveform = AF.resample(waveform, TELEPHONE_RATE, sample_rate, **RESAMPLE_OPTIONS)
    wide = waveform.numpy().astype(np.float32)[: len(samples)]
    return np.pad(wide, (0, len(samples) - len(wide)))


# ---------------------------------------------------------------------------- silence

TRIM_FRAME_MS = 25.0  # librosa.effects.trim's analysis frames
TRIM_HOP_MS = 10.0


def trim_to_speech(
    samples: np.ndarray, sample_rate: int, top_db: float, margin_before_s: float = 0.0, margin_after_s: float = 0.0
) -> np.ndarray:
    """samples (N,) without the leading and trailing silence, keeping margin_before_s /
    margin_after_s seconds of it: a clip cut tight to the speech, as users' clips often are.

    Silence = the 25 ms frames more than top_db below the loudest frame (librosa.effects.trim);
    a signal that is all silence is returned unchanged."""
    import librosa

    frame, hop = round(sample_rate * TRIM_FRAME_MS / 1000), round(sample_rate * TRIM_HOP_MS / 1000)
    trimmed, (start, end) = librosa.effects.trim(samples, top_db=top_db, frame_length=frame, hop_length=hop)
    if len(trimmed) == 0:
        return samples
    start = max(0, start - round(margin_before_s * sample_rate))
    end = min(len(samples), end + round(margin_after_s * sample_rate))
    return samples[start:end]


# ---------------------------------------------------------------------------- user folders


def load_noise_dir(path: str | os.PathLike, sample_rate: int) -> list[np.ndarray]:
    """Every audio file under `path` (recursive, sorted; e.g. MUSAN's noise/ or music/) as
    samples (N,) float32 at sample_rate. Raises ASRError for a missing or audio-less folder."""
    return [load_audio(p, sample_rate) for p in _audio_files(path, "noise")]


def load_rir_dir(path: str | os.PathLike, sample_rate: int) -> list[np.ndarray]:
    """Every impulse response under `path` (recursive, sorted) as (L,) float32 at sample_rate,
    starting at its direct-path peak normalised to 1 (align_to_direct_path). Raises ASRError
    for a missing or audio-less folder, or an all-zero response."""
    rirs = []
    for file in _audio_files(path, "impulse response"):
        try:
            rirs.append(align_to_direct_path(load_audio(file, sample_rate)))
        except ValueError:
            raise ASRError(f"{file}: impulse response is all zeros") from None
    return rirs


def _audio_files(path: str | os.PathLike, what: str) -> list:
    if not os.path.isdir(path):
        raise ASRError(f"{path}: {what} folder not found (augment config)")
    files = find_audio_files(path)
    if not files:
        raise ASRError(f"{path}: {what} folder contains no audio files (.wav, .flac, ...)")
    return files


# ---------------------------------------------------------------------------- the chain


class Augmenter:
    """Applies an AugmentConfig to training utterances: samples (N,) -> (N,) float32 in [-1, 1].

    Built once per dataset: loads noise_dir and rir_dir up front (a simulated RirBank makes each room on first use).
    `babble_source(rng, num_samples)` returns one other training utterance's samples (N',)
    at sample_rate (any length; it is looped or cut to num_samples); babble needs it.
    """

    def __init__(
        self,
        config: AugmentConfig,
        sample_rate: int,
        babble_source: Callable[[np.random.Generator, int], np.ndarray] | None = None,
    ) -> None:
        if config.babble_prob > 0 and babble_source is None:
            raise ValueError("babble_prob > 0 needs a babble_source (other training utterances)")
        self.config = config
        self.sample_rate = sample_rate
        self.babble_source = babble_source
        self.noises = load_noise_dir(config.noise_dir, sample_rate) if config.noise_dir_prob > 0 else []
        self.rirs: list[np.ndarray] | RirBank = []
        if config.reverb_prob > 0:
            self.rirs = load_rir_dir(config.rir_dir, sample_rate) if config.rir_dir else RirBank(config, sample_rate, RIR_BANK_SIZE, RIR_BANK_SEED)

    def prepare(self) -> None:
        """Make every simulated room (and warm up librosa's trimming) now: before DataLoader workers
        fork, so that they share them instead of each making its own (workers are new every epoch)."""
        if isinstance(self.rirs, RirBank):
            self.rirs.make_all()
        if self.config.trim_prob > 0:  # librosa's first trim imports and compiles (numba) for seconds: once, here
            trim_to_speech(np.zeros(self.sample_rate // 10, np.float32), self.sample_rate, self.config.trim_top_db[0])

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """samples (N,) at sample_rate -> augmented (N',) float32 in [-1, 1]; N' = N unless trimmed.

        For each kind with probability > 0, in this order, one rng.random() decides whether it
        applies; when it does, it draws:
          trim: the silence threshold (rng.uniform in trim_top_db), then the margins kept before
              and after the speech (rng.uniform in trim_margin_ms, each); the other steps then
              work on the trimmed clip, as on a user's clip cut tight in a noisy room.
          reverberation: which RIR (rng.integers); the reverberant signal is cut back to N
              samples, so the speech stays where it was (same CTC alignment).
          babble: the number of talkers (rng.integers in babble_speakers), each talker's samples
              (babble_source(rng, N)) and offset (rng.integers), then the SNR (rng.uniform).
          noise_dir: which recording (rng.integers), its offset (rng.integers), the SNR (rng.uniform).
          coloured noise: the colour (rng.integers), the normals of coloured_noise, the SNR (rng.uniform).
          telephone: the codec (rng.integers).
          gain: the gain in dB (rng.uniform); the only step that clips.
        Before the gain, a signal whose peak exceeds 1 is scaled down (limit_peak), not clipped.
        The same rng state gives the same output.
        """
        out = samples.astype(np.float32)
        if len(out) == 0:
            return out
        for probability, step in self._steps():
            if probability > 0 and rng.random() < probability:
                out = step(out, rng)
        out = limit_peak(out)
        if self.config.gain_prob > 0 and rng.random() < self.config.gain_prob:
            out = apply_gain(out, float(rng.uniform(*self.config.gain_db)))
        return out.astype(np.float32)

    def _steps(self) -> list[tuple[float, Callable[[np.ndarray, np.random.Generator], np.ndarray]]]:
        c = self.config
        return [
            (c.trim_prob, self._trim),
            (c.reverb_prob, self._reverberate),
            (c.babble_prob, self._add_babble),
            (c.noise_dir_prob, self._add_recorded_noise),
            (c.noise_prob, self._add_coloured_noise),
            (c.telephone_prob, self._telephone),
        ]

    def _trim(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top_db = float(rng.uniform(*self.config.trim_top_db))
        before, after = (float(rng.uniform(*self.config.trim_margin_ms)) / 1000 for _ in range(2))
        return trim_to_speech(samples, self.sample_rate, top_db, before, after)

    def _reverberate(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rirs = self.rirs
        rir = rirs.draw(rng) if isinstance(rirs, RirBank) else rirs[int(rng.integers(len(rirs)))]
        return reverberate(samples, rir[: len(samples)])[: len(samples)]  # later taps reach only the cut tail

    def _add_babble(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        low, high = self.config.babble_speakers
        talkers = [self.babble_source(rng, len(samples)) for _ in range(int(rng.integers(low, high + 1)))]
        crowd = babble([t for t in talkers if len(t)], len(samples), rng)
        return mix_at_snr(samples, crowd, float(rng.uniform(*self.config.babble_snr_db)))

    def _add_recorded_noise(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = self.noises[int(rng.integers(len(self.noises)))]
        return mix_at_snr(samples, noise, float(rng.uniform(*self.config.noise_dir_snr_db)), rng)

    def _add_coloured_noise(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        colour = self.config.noise_colors[int(rng.integers(len(self.config.noise_colors)))]
        noise = coloured_noise(len(samples), colour, rng)
        return mix_at_snr(samples, noise, float(rng.uniform(*self.config.noise_snr_db)))

    def _telephone(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        codec = self.config.telephone_codecs[int(rng.integers(len(self.config.telephone_codecs)))]
        return telephone_channel(samples, self.sample_rate, codec)
