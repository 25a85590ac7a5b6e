"""asr.augment: each augmentation measured on a signal (levels, SNRs, spectra, decay), the
Augmenter's determinism and identity, config validation, and user folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.augment import (
    AugmentConfig,
    Augmenter,
    RirBank,
    a_law_round_trip,
    align_to_direct_path,
    apply_gain,
    babble,
    coloured_noise,
    fast_fft_length,
    load_noise_dir,
    load_rir_dir,
    loop_to_length,
    mix_at_snr,
    mu_law_round_trip,
    reverberate,
    simulated_rir,
    telephone_channel,
    trim_to_speech,
)
from asr.errors import ASRError

RATE = 16_000
SECONDS = 2.0


def speech_like(seconds: float = SECONDS, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A stand-in for speech (N,) float32: harmonics of 150 Hz up to 6 kHz, syllable-rate
    amplitude modulation, a pause at each end, peak 0.5."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    voiced = sum(np.sin(2 * np.pi * 150 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 41))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) * ((t > 0.2) & (t < seconds - 0.2))
    signal = voiced * envelope
    return (0.5 * signal / np.max(np.abs(signal))).astype(np.float32)


def power_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2))


def band_energy(x: np.ndarray, low: float, high: float, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def octave_slope_db(noise: np.ndarray, low: float = 100.0, high: float = 4000.0, rate: int = RATE) -> float:
    """Power-spectrum slope in dB per octave between low and high Hz (averaged periodograms of
    1024-sample segments, least-squares line against log2 frequency)."""
    segments = noise[: len(noise) // 1024 * 1024].reshape(-1, 1024)
    psd = (np.abs(np.fft.rfft(segments * np.hanning(1024), axis=1)) ** 2).mean(axis=0)
    freqs = np.fft.rfftfreq(1024, 1 / rate)
    band = (freqs >= low) & (freqs <= high)
    return float(np.polyfit(np.log2(freqs[band]), 10 * np.log10(psd[band]), 1)[0])


# ---------------------------------------------------------------------------- gain


@pytest.mark.parametrize("gain_db", [-30.0, -6.0, 0.0, 3.0])
def test_gain_changes_the_level_by_exactly_that_many_db(gain_db):
    x = speech_like()
    y = apply_gain(x, gain_db)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert power_db(y) - power_db(x) == pytest.approx(gain_db, abs=1e-3)


def test_gain_clips_to_the_unit_range():
    y = apply_gain(speech_like(), 20.0)  # peak 0.5 x 10 = 5
    assert y.max() == 1.0 and y.min() == -1.0


# ---------------------------------------------------------------------------- noise


@pytest.mark.parametrize("length", [4 * RATE, 4 * RATE + 7], ids=["5-smooth", "prime"])  # 64007 is prime
@pytest.mark.parametrize("colour, slope", [("white", 0.0), ("pink", -3.01), ("brown", -6.02)])
def test_coloured_noise_has_unit_rms_and_its_spectral_slope(colour, slope, length):
    noise = coloured_noise(length, colour, np.random.default_rng(1))
    assert noise.dtype == np.float32 and noise.shape == (length,)
    assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
    assert octave_slope_db(noise) == pytest.approx(slope, abs=0.5)


def test_coloured_noise_is_a_function_of_the_rng_state():
    a = coloured_noise(1000, "pink", np.random.default_rng(5))
    b = coloured_noise(1000, "pink", np.random.default_rng(5))
    c = coloured_noise(1000, "pink", np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 5.0, 10.0, 20.0, 30.0])
def test_mix_at_snr_achieves_the_requested_snr(colour, snr_db):
    x = speech_like()
    noise = coloured_noise(RATE // 2, colour, np.random.default_rng(2))  # shorter than x: looped
    y = mix_at_snr(x, noise, snr_db, np.random.default_rng(3))
    assert y.dtype == np.float32 and y.shape == x.shape
    achieved = power_db(x) - power_db(y - x)
    assert achieved == pytest.approx(snr_db, abs=0.5)


def test_mix_at_snr_leaves_a_silent_signal_alone():
    silence = np.zeros(RATE, dtype=np.float32)
    assert np.array_equal(mix_at_snr(silence, coloured_noise(RATE, "white", np.random.default_rng(0)), 10.0), silence)


def test_loop_to_length_repeats_from_a_random_offset():
    noise = np.arange(5, dtype=np.float32)
    assert loop_to_length(noise, 12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    shifted = loop_to_length(noise, 7, np.random.default_rng(0))
    assert len(shifted) == 7 and np.all(np.diff(shifted) % 5 == 1)  # consecutive, wrapping around


def test_babble_sums_equally_loud_talkers():
    rng = np.random.default_rng(0)
    quiet, loud = 0.01 * speech_like(1.0, seed=1), 0.9 * speech_like(1.5, seed=2)
    crowd = babble([quiet, loud], RATE, rng)
    assert crowd.shape == (RATE,)
    # two unit-RMS talkers: about twice the power of one (they are uncorrelated), not dominated by the loud one
    assert power_db(crowd) == pytest.approx(10 * np.log10(2), abs=1.5)


# ---------------------------------------------------------------------------- rooms


def decay_time(signal: np.ndarray, start: int, drop_db: float = 20.0, rate: int = RATE) -> float:
    """Seconds after `start` until the remaining energy (Schroeder backward integral) has fallen by drop_db."""
    remaining = np.cumsum((signal[start:].astype(np.float64) ** 2)[::-1])[::-1]
    level_db = 10 * np.log10(remaining / remaining[0] + 1e-30)
    return float(np.argmax(level_db <= -drop_db)) / rate


@pytest.fixture(scope="module")
def rirs() -> dict[float, np.ndarray]:
    """Simulated rooms of two reverberation times (together ~0.3 s to make)."""
    return {rt60: simulated_rir(rt60, RATE, np.random.default_rng(7)) for rt60 in (0.2, 0.5)}


def test_simulated_rir_starts_at_its_direct_path_peak(rirs):
    for rir in rirs.values():
        assert rir.dtype == np.float32 and rir.ndim == 1
        assert rir[0] == 1.0 and np.max(np.abs(rir)) <= 1.0 + 1e-6


def test_a_longer_rt60_gives_a_longer_measured_decay(rirs):
    import pyroomacoustics as pra

    measured = {rt60: pra.experimental.measure_rt60(rir, RATE, decay_db=20) for rt60, rir in rirs.items()}
    assert measured[0.5] > 1.5 * measured[0.2]
    for rt60, value in measured.items():  # Sabine's design; simulated shoeboxes tend to decay a little slower
        assert 0.7 * rt60 < value < 1.6 * rt60


def test_reverberation_adds_a_decaying_tail(rirs):
    x = speech_like()
    end = len(x)
    tails = {}
    for rt60, rir in rirs.items():
        y = reverberate(x, rir)
        assert y.shape == (len(x) + len(rir) - 1,) and y.dtype == np.float32
        assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(x)), rel=1e-5)  # rescaled to the input's peak
        after = y[end:]
        assert np.mean(after[: RATE // 20] ** 2) > 0  # energy after the original end
        quarters = np.array_split(after[: int(rt60 * RATE)] ** 2, 4)
        assert all(a.mean() > b.mean() for a, b in zip(quarters, quarters[1:]))  # and it decays
        speech_end = end - int(0.2 * RATE)  # x's last 0.2 s is silent
        tails[rt60] = decay_time(y, speech_end)
    assert tails[0.5] > tails[0.2]


def test_reverberate_is_the_full_convolution_at_the_input_peak():
    rng = np.random.default_rng(0)
    x, rir = rng.standard_normal(997).astype(np.float32) * 0.1, rng.standard_normal(89).astype(np.float32)
    expected = np.convolve(x, rir)
    expected *= np.max(np.abs(x)) / np.max(np.abs(expected))
    assert np.allclose(reverberate(x, rir), expected, atol=1e-5)


def test_fast_fft_length_is_the_next_5_smooth_number():
    assert [fast_fft_length(n) for n in (1, 7, 11, 95_999, 1_000_001)] == [1, 8, 12, 96_000, 1_012_500]


def test_simulated_rir_is_a_function_of_the_rng_state():
    a = simulated_rir(0.2, RATE, np.random.default_rng(3))
    b = simulated_rir(0.2, RATE, np.random.default_rng(3))
    assert np.array_equal(a, b)


def test_rt60_too_short_for_a_big_room_shrinks_the_room():
    rir = simulated_rir(0.1, RATE, np.random.default_rng(0))  # 0.1 s needs a room under ~5 x 5 x 3 m
    assert rir[0] == 1.0 and decay_time(rir, 0) < 0.1


def test_rir_bank_is_deterministic_and_a_prefix_of_a_larger_one():
    config = AugmentConfig(reverb_prob=1.0, rt60=(0.15, 0.25))
    small, large = RirBank(config, RATE, size=1, seed=4), RirBank(config, RATE, size=2, seed=4)
    assert len(small) == 1 and len(large) == 2
    assert np.array_equal(small.rirs[0], large.rirs[0]) and not np.array_equal(large.rirs[0], large.rirs[1])
    assert all(0.15 <= rt60 <= 0.25 for rt60 in large.rt60s)
    assert large.draw(np.random.default_rng(0)) is large.draw(np.random.default_rng(0))


def test_rir_bank_made_in_parallel_holds_the_rooms_made_one_at_a_time(monkeypatch):
    import asr.augment

    config = AugmentConfig(reverb_prob=1.0, rt60=(0.15, 0.25))
    one_by_one, parallel = RirBank(config, RATE, size=4, seed=7), RirBank(config, RATE, size=4, seed=7)
    parallel.room(1)  # a room drawn before is kept, the others are made by the pool
    parallel.make_all(processes=2)
    expected_rt60s, expected_rirs = one_by_one.rt60s, one_by_one.rirs
    monkeypatch.setattr(asr.augment, "simulated_rir", lambda *args: pytest.fail("a room was made after make_all"))
    assert parallel.rt60s == expected_rt60s
    assert all(np.array_equal(a, b) for a, b in zip(parallel.rirs, expected_rirs))


def test_align_to_direct_path_drops_the_lead_in_and_normalises():
    rir = np.array([0.0, 0.0, -0.5, 0.25, 0.1], dtype=np.float32)
    assert align_to_direct_path(rir) == pytest.approx([1.0, -0.5, -0.2])


# ---------------------------------------------------------------------------- telephone


@pytest.mark.parametrize("codec", ["mulaw", "alaw"])
def test_telephone_channel_keeps_only_the_telephone_band(codec):
    x = (0.1 * np.random.default_rng(0).standard_normal(2 * RATE)).astype(np.float32)  # flat spectrum
    y = telephone_channel(x, RATE, codec)
    assert y.shape == x.shape and y.dtype == np.float32

    def attenuation_db(low: float, high: float) -> float:
        return 10 * np.log10(band_energy(y, low, high) / band_energy(x, low, high))

    assert attenuation_db(4000, 8000) < -40  # above the 8 kHz channel's Nyquist: gone
    assert attenuation_db(0, 150) < -25  # below the band: strongly attenuated (4th-order high-pass)
    assert attenuation_db(500, 3000) == pytest.approx(0.0, abs=1.0)  # the speech band kept


def test_telephone_codecs_quantise_to_8_bits():
    x = np.linspace(-1, 1, 10_001, dtype=np.float32)
    for round_trip in (mu_law_round_trip, a_law_round_trip):
        y = round_trip(x)
        assert len(np.unique(y)) <= 256 and np.max(np.abs(y - x)) < 0.04
        assert np.all(np.diff(y) >= 0)  # monotonic
    # A-law near zero is linear: a compressed step of 2/255 is (2/255) (1 + ln A) / A = 0.00049 in x,
    # and (as in G.711) zero is not a level, so the error there is at most half a step
    small = np.array([0.0, 0.001, 0.002, -0.003], dtype=np.float32)
    assert np.all(np.abs(a_law_round_trip(small) - small) <= 0.00025)


def test_telephone_codec_noise_follows_the_level():
    """Companding: the quantisation SNR stays about the same at -30 dB as at full level."""
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)
    for round_trip in (mu_law_round_trip, a_law_round_trip):
        snrs = [power_db(s) - power_db(round_trip(s) - s) for s in (tone, tone * 10 ** (-30 / 20))]
        assert min(snrs) > 25 and abs(snrs[0] - snrs[1]) < 8


# ---------------------------------------------------------------------------- user folders


def test_noise_dir_is_searched_recursively(tmp_path):
    (tmp_path / "noise" / "free-sound").mkdir(parents=True)
    sf.write(tmp_path / "noise" / "free-sound" / "a.wav", np.full(800, 0.1, np.float32), RATE)
    sf.write(tmp_path / "noise" / "b.flac", np.full(1600, 0.2, np.float32), RATE)
    (tmp_path / "noise" / "README.txt").write_text("not audio")
    noises = load_noise_dir(tmp_path, RATE)
    assert [len(n) for n in noises] == [1600, 800]  # sorted by path: noise/b.flac, noise/free-sound/a.wav


@pytest.mark.parametrize("loader", [load_noise_dir, load_rir_dir])
def test_missing_or_empty_folders_name_the_folder(tmp_path, loader):
    with pytest.raises(ASRError, match=str(tmp_path / "nowhere")):
        loader(tmp_path / "nowhere", RATE)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not audio")
    with pytest.raises(ASRError, match=f"{tmp_path / 'empty'}.*no audio files"):
        loader(tmp_path / "empty", RATE)


def test_rir_dir_responses_start_at_their_peak(tmp_path):
    sf.write(tmp_path / "room.wav", np.array([0, 0, 0, 0.5, 0.2] + [0.0] * 800, np.float32), RATE)
    (rir,) = load_rir_dir(tmp_path, RATE)
    assert rir[0] == pytest.approx(1.0) and rir[1] == pytest.approx(0.4, abs=1e-3)


# ---------------------------------------------------------------------------- the Augmenter


def everything_on(tmp_path: Path) -> AugmentConfig:
    """Every kind at probability 1, with a one-file noise folder and a one-room RIR folder."""
    (tmp_path / "noise").mkdir(exist_ok=True)
    (tmp_path / "rirs").mkdir(exist_ok=True)
    sf.write(tmp_path / "noise" / "hum.wav", 0.1 * speech_like(0.5, seed=9), RATE)
    sf.write(tmp_path / "rirs" / "room.wav", simulated_rir(0.2, RATE, np.random.default_rng(0)), RATE)
    return AugmentConfig(
        gain_prob=1.0, noise_prob=1.0, babble_prob=1.0, noise_dir=str(tmp_path / "noise"), noise_dir_prob=1.0,
        reverb_prob=1.0, rir_dir=str(tmp_path / "rirs"), telephone_prob=1.0, trim_prob=1.0,
    )


def other_utterance(rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """A babble source: one of three 'training utterances', chosen by rng."""
    return speech_like(1.0, seed=int(rng.integers(3)))


def burst_in_room_tone(lead_s: float = 0.4, burst_s: float = 0.8, tail_s: float = 0.3) -> np.ndarray:
    """lead_s of room tone 50 dB below a burst_s speech-like burst, then tail_s of room tone (N,)."""
    rng = np.random.default_rng(5)

    def room(seconds: float) -> np.ndarray:
        return (0.5 * 10 ** (-50 / 20) * rng.standard_normal(int(seconds * RATE))).astype(np.float32)

    burst = speech_like(burst_s + 0.4)[int(0.2 * RATE): int((0.2 + burst_s) * RATE)]  # no pauses of its own
    return np.concatenate([room(lead_s), burst, room(tail_s)])


def test_trim_to_speech_cuts_the_silence_at_both_ends_to_the_margins():
    x = burst_in_room_tone(lead_s=0.4, burst_s=0.8, tail_s=0.3)
    tight = trim_to_speech(x, RATE, top_db=35.0)
    assert abs(len(tight) / RATE - 0.8) < 0.05  # within two 25 ms frames of the burst
    start = next(int(i) for i in np.flatnonzero(x == tight[0]) if np.array_equal(x[i: i + len(tight)], tight))
    assert abs(start / RATE - 0.4) < 0.03
    kept = trim_to_speech(x, RATE, top_db=35.0, margin_before_s=0.1, margin_after_s=0.05)
    assert len(kept) - len(tight) == round(0.15 * RATE)
    loose = trim_to_speech(x, RATE, top_db=35.0, margin_before_s=1.0, margin_after_s=1.0)
    assert np.array_equal(loose, x)  # margins never reach past the ends


def test_trim_to_speech_leaves_all_silence_and_pause_free_speech_alone():
    silence = np.zeros(RATE, np.float32)
    assert np.array_equal(trim_to_speech(silence, RATE, top_db=30.0), silence)
    speech = burst_in_room_tone(lead_s=0.0, burst_s=1.0, tail_s=0.0)
    assert len(trim_to_speech(speech, RATE, top_db=30.0)) >= len(speech) - int(0.025 * RATE)


def test_augmenter_trims_with_margins_drawn_from_the_rng():
    x = burst_in_room_tone(lead_s=0.5, burst_s=0.8, tail_s=0.5)
    augment = Augmenter(AugmentConfig(trim_prob=1.0, trim_top_db=(30.0, 40.0), trim_margin_ms=(0.0, 100.0)), RATE)
    augment.prepare()
    outs = [augment(x, np.random.default_rng(seed)) for seed in range(8)]
    lengths = [len(y) / RATE for y in outs]
    assert all(0.75 < s < 1.05 for s in lengths), lengths  # the burst, plus 0-100 ms each side
    assert len(set(lengths)) > 4  # the margins vary
    assert np.array_equal(outs[3], augment(x, np.random.default_rng(3)))


def test_augmenter_is_a_function_of_the_rng_state(tmp_path):
    augment = Augmenter(everything_on(tmp_path), RATE, babble_source=other_utterance)
    x = speech_like()
    a, b = augment(x, np.random.default_rng(11)), augment(x, np.random.default_rng(11))
    c = augment(x, np.random.default_rng(12))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for y in (a, c):
        assert y.ndim == 1 and y.dtype == np.float32 and np.max(np.abs(y)) <= 1.0
        assert len(x) - 0.45 * RATE <= len(y) <= len(x) - 0.2 * RATE  # trimmed (x has 0.2 s pauses), 0-0.1 s margins
        assert not np.allclose(y, x[: len(y)])


def test_augmenter_with_all_probabilities_zero_is_the_identity():
    config = AugmentConfig()
    assert not config.enabled
    x = speech_like()
    assert np.array_equal(Augmenter(config, RATE)(x, np.random.default_rng(0)), x)


def test_augmenter_applies_each_kind_by_its_probability():
    config = AugmentConfig(gain_prob=0.5, gain_db=(-6.0, -6.0))
    assert config.enabled
    augment, x = Augmenter(config, RATE), speech_like()
    changed = [not np.array_equal(augment(x, np.random.default_rng(seed)), x) for seed in range(200)]
    assert 0.4 < np.mean(changed) < 0.6


def test_augmenter_simulates_rooms_when_no_rir_dir_is_given(monkeypatch):
    monkeypatch.setattr("asr.augment.RIR_BANK_SIZE", 2)  # 32 rooms would take ~10 s
    config = AugmentConfig(reverb_prob=1.0, rt60=(0.15, 0.2))
    augment = Augmenter(config, RATE)
    assert isinstance(augment.rirs, RirBank)
    x = speech_like()
    y = augment(x, np.random.default_rng(0))
    assert y.shape == x.shape and not np.array_equal(y, x)


def test_babble_needs_a_source():
    with pytest.raises(ValueError, match="babble_source"):
        Augmenter(AugmentConfig(babble_prob=0.5), RATE)


@pytest.mark.parametrize("overrides, message", [
    ({"gain_prob": 1.5}, "gain_prob"),
    ({"noise_prob": -0.1}, "noise_prob"),
    ({"gain_db": (10.0, -10.0)}, "gain_db"),
    ({"noise_snr_db": (30.0, 0.0)}, "noise_snr_db"),
    ({"rt60": (0.9, 0.3)}, "rt60"),
    ({"rt60": (0.01, 0.3)}, "rt60"),
    ({"babble_speakers": (0, 3)}, "babble_speakers"),
    ({"babble_speakers": (5, 2)}, "babble_speakers"),
    ({"noise_colors": ("white", "purple")}, "noise_colors"),
    ({"noise_colors": ()}, "noise_colors"),
    ({"telephone_codecs": ("gsm",)}, "telephone_codecs"),
    ({"noise_dir_prob": 0.5}, "noise_dir"),
    ({"trim_prob": 2.0}, "trim_prob"),
    ({"trim_top_db": (0.0, 30.0)}, "trim_top_db"),
    ({"trim_margin_ms": (-10.0, 50.0)}, "trim_margin_ms"),
    ({"trim_margin_ms": (100.0, 50.0)}, "trim_margin_ms"),
])
def test_bad_config_values_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**overrides)


def test_config_round_trips_through_yaml_style_dicts():
    from asr.config import build, to_dict

    config = AugmentConfig(noise_prob=0.3, noise_colors=("pink",), babble_speakers=(2, 4), rt60=(0.3, 0.6))
    assert build(AugmentConfig, to_dict(config), "augment.yaml") == config  # lists in YAML, tuples again here
