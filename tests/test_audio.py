"""asr.audio: reading WAV/FLAC/SPHERE to float32 mono 16 kHz, resampling, downmixing, errors."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import SAMPLE_RATE, AudioError, audio_info, change_speed, find_audio_files, load_audio
from asr.errors import ASRError


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def write(path: Path, data: np.ndarray, rate: int = SAMPLE_RATE, **kwargs) -> Path:
    sf.write(str(path), data, rate, **kwargs)
    return path


def assert_audio_error(path: Path, problem: str, *, fn=load_audio) -> AudioError:
    """fn(path) raises AudioError whose message is `PATH: problem...`."""
    with pytest.raises(AudioError) as info:
        fn(path)
    assert str(info.value).startswith(f"{path}: {problem}"), str(info.value)
    return info.value


# --- reading -----------------------------------------------------------------------------------


def test_audio_error_is_an_asr_error():
    assert issubclass(AudioError, ASRError)


def test_wav_16k_mono_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    data = (0.3 * rng.standard_normal(8000)).clip(-1, 1).astype(np.float32)  # (8000,)
    path = write(tmp_path / "a.wav", data, subtype="PCM_16")
    out = load_audio(path)
    assert out.dtype == np.float32 and out.shape == (8000,)
    np.testing.assert_allclose(out, data, atol=1 / 2**15 + 1e-6)  # 16-bit quantisation


@pytest.mark.parametrize("rate", [8000, 44100])
def test_wav_other_rates_resampled_to_16k(tmp_path, rate):
    data = sine(440.0, rate, 1.3)  # N = 1.3 * rate samples
    path = write(tmp_path / f"s{rate}.wav", data, rate, subtype="PCM_16")
    out = load_audio(path)
    expected_len = len(data) * SAMPLE_RATE / rate
    assert abs(len(out) - expected_len) <= 3
    assert out.dtype == np.float32
    assert abs(peak_frequency(out, SAMPLE_RATE) - 440.0) <= 2.0
    # a band-limited resampler keeps the amplitude of an in-band tone (away from the edges)
    middle = out[len(out) // 4 : 3 * len(out) // 4]
    assert np.max(np.abs(middle)) == pytest.approx(0.5, abs=0.02)


def test_load_audio_honours_other_target_rate(tmp_path):
    data = sine(300.0, SAMPLE_RATE, 1.0)  # 16000 samples
    out = load_audio(write(tmp_path / "a.wav", data), sample_rate=8000)
    assert abs(len(out) - 8000) <= 2
    assert abs(peak_frequency(out, 8000) - 300.0) <= 2.0


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_downmixed_to_channel_mean(tmp_path, channels):
    rng = np.random.default_rng(channels)
    data = (0.2 * rng.standard_normal((4000, channels))).astype(np.float32)  # (N, C)
    path = write(tmp_path / "multi.wav", data, subtype="FLOAT")
    out = load_audio(path)
    assert out.shape == (4000,)
    np.testing.assert_allclose(out, data.mean(axis=1), atol=1e-6)


def test_flac_read(tmp_path):
    data = sine(1000.0, SAMPLE_RATE, 0.5)
    path = write(tmp_path / "a.flac", data, format="FLAC", subtype="PCM_16")
    out = load_audio(path)
    np.testing.assert_allclose(out, data, atol=1 / 2**15 + 1e-6)


def test_nist_sphere_read(tmp_path):
    data = sine(500.0, SAMPLE_RATE, 0.5)
    path = write(tmp_path / "a.sph", data, format="NIST", subtype="PCM_16")
    out = load_audio(path)
    assert out.shape == data.shape
    np.testing.assert_allclose(out, data, atol=1 / 2**15 + 1e-6)


@pytest.mark.parametrize(
    ("subtype", "atol"),
    [("PCM_U8", 1 / 2**7 + 1e-6), ("PCM_24", 1 / 2**23 + 1e-6), ("FLOAT", 1e-7), ("DOUBLE", 1e-7)],
)
def test_wav_sample_formats(tmp_path, subtype, atol):
    data = sine(700.0, SAMPLE_RATE, 0.25)
    path = write(tmp_path / f"{subtype}.wav", data, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.shape == data.shape
    np.testing.assert_allclose(out, data, atol=atol)


def test_audio_info_returns_frames_and_rate(tmp_path):
    path = write(tmp_path / "a.wav", np.zeros(12345, dtype=np.float32), 22050)
    assert audio_info(path) == (12345, 22050)


# --- errors ------------------------------------------------------------------------------------


def test_missing_file_error(tmp_path):
    assert_audio_error(tmp_path / "nope.wav", "no such file")
    assert_audio_error(tmp_path / "nope.wav", "no such file", fn=audio_info)


def test_directory_error(tmp_path):
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    assert_audio_error(folder, "is a directory, not an audio file")
    assert_audio_error(folder, "is a directory, not an audio file", fn=audio_info)


def test_empty_file_error(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert_audio_error(path, "empty file (0 bytes)")
    assert_audio_error(path, "empty file (0 bytes)", fn=audio_info)


def test_text_file_renamed_wav_error(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio, just some text\n" * 10)
    assert_audio_error(path, "not readable as audio (")
    assert_audio_error(path, "not readable as audio (", fn=audio_info)


def test_truncated_header_error(tmp_path):
    good = write(tmp_path / "good.wav", sine(440.0, SAMPLE_RATE, 0.1), subtype="PCM_16")
    path = tmp_path / "truncated.wav"
    path.write_bytes(good.read_bytes()[:20])
    assert_audio_error(path, "not readable as audio (")


def test_wav_with_zero_samples_error(tmp_path):
    path = write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), subtype="PCM_16")
    assert path.stat().st_size > 0  # a valid header, just no samples
    assert_audio_error(path, "contains no audio samples (zero length)")


# --- finding files -----------------------------------------------------------------------------


def test_find_audio_files_recursive_sorted(tmp_path):
    for rel in ["b/2.wav", "a/x/1.flac", "a/0.wav", "c.WAV", "notes.txt", "a/readme.txt"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (tmp_path / "dir.wav").mkdir()  # a directory named like audio is not a file
    found = find_audio_files(tmp_path)
    expected = sorted(tmp_path / rel for rel in ["b/2.wav", "a/x/1.flac", "a/0.wav", "c.WAV"])
    assert found == expected
    assert all(isinstance(p, Path) for p in found)


def test_find_audio_files_empty_directory(tmp_path):
    assert find_audio_files(tmp_path) == []


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_change_speed_scales_length_and_pitch(factor):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    faster = change_speed(tone, factor)
    assert abs(len(faster) - len(tone) / factor) <= 2
    spectrum = np.abs(np.fft.rfft(faster))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(faster)
    assert peak_hz == pytest.approx(1000 * factor, abs=5)


def test_change_speed_by_one_is_the_identity():
    samples = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert change_speed(samples, 1.0) is samples
