"""asr.frontend.FrontEnd: the one feature pipeline, its level normalisation, and the same
features in training and transcription."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.checkpoint import checkpoint_payload, load_model, save_checkpoint
from asr.data import AudioDataset, FeatureDataset, compute_speed_variants
from asr.frontend import (
    LOG_FLOOR, Cmvn, FeatureConfig, FrontEnd, StreamingLogMel, analysis_window, compute_cmvn, log_mel, mel_filterbank,
)
from asr.manifest import Utterance
from asr.model import AcousticModel, ModelConfig
from asr.text import Vocab
from asr.transcribe import Transcriber

from .conftest import run_asr, write_tone

RATE = 16_000
LEVEL = FeatureConfig(level_norm=True)
FLOOR = math.log(10 ** (LEVEL.level_floor_db / 10))


def speech_like(seed: int = 0, pause_seconds: float = 0.3) -> np.ndarray:
    """Three 'syllables' (harmonic tones with noise, rising and falling) between pauses of room
    noise: loud frames, quiet frames and a noise floor, like an utterance. (N,) float32."""
    rng = np.random.default_rng(seed)
    pieces = [0.002 * rng.standard_normal(int(pause_seconds * RATE))]
    for f0 in (140.0, 210.0, 180.0):
        t = np.arange(int(0.25 * RATE)) / RATE
        envelope = np.sin(np.pi * t / t[-1])
        voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
        pieces.append(0.2 * envelope * voiced + 0.002 * rng.standard_normal(len(t)))
        pieces.append(0.002 * rng.standard_normal(int(pause_seconds * RATE)))
    return np.concatenate(pieces).astype(np.float32)


@pytest.mark.parametrize("gain_db", [-40.0, -20.0, 6.0])
def test_level_normalised_features_do_not_depend_on_the_input_gain(gain_db):
    samples = speech_like()
    scaled = samples * 10 ** (gain_db / 20)
    assert np.abs(scaled).max() < 1.0  # up to just below clipping
    front_end = FrontEnd(LEVEL)
    torch.testing.assert_close(front_end(scaled), front_end(samples), atol=1e-3, rtol=0)


def test_without_level_normalisation_a_gain_shifts_every_bin():
    samples = speech_like()
    plain = FrontEnd(FeatureConfig())
    shift = (plain(samples * 0.1) - plain(samples))[2:-2]  # the edge frames hold almost nothing
    np.testing.assert_allclose(shift, 2 * math.log(0.1), atol=1e-2, rtol=0)


def test_silence_sits_at_the_floor_below_the_level():
    feats = FrontEnd(LEVEL)(np.zeros(RATE, dtype=np.float32))
    np.testing.assert_allclose(feats, FLOOR, rtol=1e-5)


def test_the_floor_fills_an_empty_band_at_the_same_place_whatever_the_gain():
    # 8 kHz audio upsampled to 16 kHz: nothing above 4 kHz, so the upper mel bins sit at the floor
    from asr.audio import resample

    narrow = resample(resample(speech_like(), RATE, 8000), 8000, RATE)
    for gain in (1.0, 0.01):
        feats = FrontEnd(LEVEL)(narrow * gain)
        assert feats[:, -10:].max() < FLOOR + 1.0  # within 4.3 dB of the floor


def test_speech_keeps_its_features_within_1_5_db_when_the_silence_around_it_is_trimmed():
    # the level is the loudest 20 % of frames: 55 of 75 speech frames padded, 35 of them trimmed
    samples = speech_like(pause_seconds=0.5)
    hop = LEVEL.hop_length
    start, end = int(0.5 * RATE), len(samples) - int(0.5 * RATE)  # the first and last syllables' edges
    padded, trimmed = FrontEnd(LEVEL)(samples), FrontEnd(LEVEL)(samples[start:end])
    first, count = start // hop + 2, trimmed.shape[0] - 4  # frames whose windows lie inside the trimmed part
    shift = padded[first:first + count] - trimmed[2:2 + count]
    assert shift.std() < 0.05  # one level change for the whole utterance (bins near the floor move less) ...
    assert np.abs(shift).max() < 0.35  # ... of less than 1.5 dB (0.35 in natural-log units)


def test_a_stream_read_in_one_block_gives_the_whole_file_features():
    samples = speech_like()
    cmvn = Cmvn(mean=tuple(np.linspace(-5, 0, 80)), std=(2.0,) * 80)
    front_end = FrontEnd(LEVEL, cmvn)
    streamed = np.concatenate(list(front_end.stream([samples])))
    # the level is measured without the last frames (the tail comes after the block): 0.02 dB apart
    torch.testing.assert_close(streamed, front_end(samples), atol=1e-2, rtol=0)


def test_a_stream_does_not_boost_a_long_pause_to_speech_level():
    speech, pause = speech_like(), 0.002 * np.random.default_rng(1).standard_normal(10 * RATE).astype(np.float32)
    blocks = list(FrontEnd(LEVEL).stream([speech, pause]))
    pause_feats = np.concatenate(blocks[1:])
    alone = FrontEnd(LEVEL)(pause)  # the pause normalised to its own level: boosted to speech level
    assert pause_feats.mean() < alone.mean() - 3.0  # at least 13 dB below that


def test_default_front_end_is_log_mel_then_cmvn():
    samples = speech_like()
    cmvn = compute_cmvn([log_mel(samples, FeatureConfig())])
    torch.testing.assert_close(FrontEnd(FeatureConfig(), cmvn)(samples), cmvn.apply(log_mel(samples, FeatureConfig())))


def test_training_and_transcription_compute_the_same_features_for_a_file(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, speech_like(), RATE, subtype="PCM_16")
    utterance = Utterance("a", str(path), 1.95, "A")
    _, [raw], _ = compute_speed_variants([utterance], LEVEL, (1.0,))
    cmvn = compute_cmvn([raw[0]])
    vocab = Vocab.from_texts(["A"])
    model = AcousticModel(ModelConfig(num_layers=1, hidden_size=8), LEVEL.n_mels, len(vocab))
    save_checkpoint(tmp_path / "m.pt", checkpoint_payload(model, LEVEL, cmvn, vocab))
    transcribed, _ = Transcriber(load_model(tmp_path / "m.pt")).features(str(path))
    cached = FeatureDataset([utterance], [raw], vocab, cmvn)[0][1]
    on_the_fly = AudioDataset([utterance], FrontEnd(LEVEL, cmvn), vocab)[0][1]
    torch.testing.assert_close(cached, torch.from_numpy(transcribed))
    torch.testing.assert_close(on_the_fly, torch.from_numpy(transcribed))


def test_input_below_the_model_rate_gets_a_note_not_an_error(untrained_model, tmp_path):
    write_tone(tmp_path / "phone.wav", rate=8000)
    result = run_asr("transcribe", "--model", str(untrained_model), str(tmp_path / "phone.wav"))
    assert result.returncode == 0, result.stderr
    assert (f"asr: note: {tmp_path / 'phone.wav'}: sample rate 8000 Hz is below the model's 16000 Hz"
            in result.stderr)
    assert result.stdout.startswith(str(tmp_path / "phone.wav"))


DC_REMOVED = FeatureConfig(level_norm=True, remove_dc=True)


@pytest.mark.parametrize("offset", [0.1, 0.3, -0.5])
def test_with_dc_removal_an_offset_changes_the_features_by_almost_nothing(offset):
    samples = speech_like()
    clean = FrontEnd(DC_REMOVED)(samples)
    shifted = FrontEnd(DC_REMOVED)(samples + np.float32(offset))
    # what is left is the offset's leakage through the window's side lobes: far below speech
    assert np.abs(shifted - clean).mean() < 0.05
    without = FrontEnd(LEVEL)(samples + np.float32(offset)) - FrontEnd(LEVEL)(samples)
    assert np.abs(without).mean() > 0.5  # the offset fills the lowest bins and moves the level without it


def test_dc_removal_is_the_same_in_whole_and_streamed_features():
    samples = speech_like() * np.float32(0.5) + np.float32(0.3)
    blocks = np.array_split(samples, 7)
    whole = log_mel(samples, DC_REMOVED)
    stream = StreamingLogMel(DC_REMOVED)
    streamed = np.concatenate([stream.push(b) for b in blocks] + [stream.finish()])
    np.testing.assert_allclose(streamed, whole, atol=1e-4, rtol=0)
    frame = 40  # one frame by hand: the mean over the window's support taken out before the window
    hop, n_fft, win = DC_REMOVED.hop_length, DC_REMOVED.n_fft, DC_REMOVED.win_length
    padded = np.pad(samples, n_fft // 2, mode="reflect")[frame * hop : frame * hop + n_fft]
    left = (n_fft - win) // 2
    centred = padded - padded[left:left + win].mean()
    power = np.abs(np.fft.rfft(centred * analysis_window(DC_REMOVED))) ** 2
    expected = np.log(power @ mel_filterbank(DC_REMOVED) + LOG_FLOOR)
    np.testing.assert_allclose(whole[frame], expected, atol=1e-3, rtol=1e-4)


def test_an_old_config_without_the_field_keeps_its_features():
    samples = speech_like() + np.float32(0.05)
    assert not FeatureConfig().remove_dc  # checkpoints written before the option decode as trained
    assert not np.allclose(log_mel(samples, FeatureConfig()), log_mel(samples, FeatureConfig(remove_dc=True)))
