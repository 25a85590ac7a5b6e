"""Long audio: streamed reading and features, windowed inference, and the long-file path of transcribe."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import asr.transcribe as transcribe_module
from asr.audio import AudioError, load_audio, stream_audio
from asr.checkpoint import LoadedModel
from asr.errors import ASRError
from asr.frontend import Cmvn, FeatureConfig, StreamingLogMel, log_mel
from asr.model import AcousticModel, ModelConfig
from asr.text import Vocab
from asr.transcribe import Transcriber, windowed_log_probs

from .conftest import write_tone


@pytest.mark.parametrize("block", [160, 1000, 4321, 50_000])
def test_streaming_log_mel_equals_whole_signal_log_mel(block):
    config = FeatureConfig()
    signal = np.random.default_rng(0).standard_normal(16_000 * 3 + 77).astype(np.float32) * 0.1
    stream = StreamingLogMel(config)
    frames = [stream.push(signal[i : i + block]) for i in range(0, len(signal), block)] + [stream.finish()]
    np.testing.assert_allclose(np.concatenate(frames), log_mel(signal, config), atol=1e-4, rtol=1e-5)


def test_streaming_log_mel_rejects_a_too_short_signal():
    stream = StreamingLogMel(FeatureConfig())
    stream.push(np.zeros(100, dtype=np.float32))
    with pytest.raises(ASRError, match=r"^signal too short for streaming features \(100 samples\)$"):
        stream.finish()


def test_stream_audio_at_the_model_rate_is_exactly_load_audio(tmp_path):
    write_tone(tmp_path / "a.wav", seconds=2.5, channels=2)
    blocks = list(stream_audio(tmp_path / "a.wav", block_seconds=0.3))
    assert len(blocks) == 9  # 2.5 s in 0.3 s blocks
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(tmp_path / "a.wav"))


def test_stream_audio_resamples_other_rates_to_the_same_length(tmp_path):
    write_tone(tmp_path / "a.wav", seconds=2.0, rate=44_100)
    streamed = np.concatenate(list(stream_audio(tmp_path / "a.wav", block_seconds=0.25)))
    whole = load_audio(tmp_path / "a.wav")
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.max(np.abs(streamed[100 : n - 100] - whole[100 : n - 100])) < 1e-3


def test_stream_audio_errors_like_load_audio(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match="zero length"):
        list(stream_audio(tmp_path / "empty.wav"))
    with pytest.raises(AudioError, match="no such file"):
        list(stream_audio(tmp_path / "missing.wav"))


def small_model(frame_stack: int = 3) -> AcousticModel:
    torch.manual_seed(0)
    return AcousticModel(ModelConfig(num_layers=2, hidden_size=24, frame_stack=frame_stack), 80, 9).eval()


def forward_of(model: AcousticModel):
    """The model's Forward (feats [(T, F)] -> numpy log-probs, out_lens), as LoadedModel runs it."""
    return LoadedModel(model=model, features=FeatureConfig(), cmvn=Cmvn((0.0,) * 80, (1.0,) * 80),
                       vocab=Vocab.from_texts(["ABCDEFG"]), path="test", frame_stack=model.config.frame_stack).forward


@pytest.mark.parametrize("frames, block", [(1234, 97), (900, 900), (301, 50)])
def test_windowed_inference_with_full_context_equals_one_pass(frames, block):
    model = small_model()
    feats = torch.randn(1, frames, 80)
    whole, out_lens = model(feats, torch.tensor([frames]))
    windowed = windowed_log_probs(forward_of(model), 3, iter(feats[0].split(block)), window_frames=150,
                                  context_frames=frames)
    assert windowed.shape == (int(out_lens), 9)
    torch.testing.assert_close(torch.from_numpy(windowed), whole[0], atol=1e-5, rtol=1e-5)


def test_windowed_inference_with_short_context_stays_close():
    model = small_model()
    feats = torch.randn(1, 2000, 80)
    whole, _ = model(feats, torch.tensor([2000]))
    windowed = windowed_log_probs(forward_of(model), 3, iter(feats[0].split(333)), window_frames=300,
                                  context_frames=150)
    assert (torch.from_numpy(windowed) - whole[0]).abs().max() < 1e-2


def test_long_files_take_the_streaming_path_and_agree_with_whole_file_decoding(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(path, (rng.standard_normal(16_000 * 8) * 0.1).astype(np.float32), 16_000)
    vocab = Vocab.from_texts(["ABCDEFG"])
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(num_layers=2, hidden_size=24), 80, len(vocab)).eval()
    cmvn = Cmvn(mean=(-5.0,) * 80, std=(3.0,) * 80)
    loaded = LoadedModel(model=model, features=FeatureConfig(), cmvn=cmvn, vocab=vocab, path="test",
                         frame_stack=model.config.frame_stack)
    whole = next(Transcriber(loaded).transcribe([(str(path), None)]))

    monkeypatch.setattr(transcribe_module, "LONG_AUDIO_SECONDS", 5.0)
    monkeypatch.setattr(transcribe_module, "WINDOW_SECONDS", 2.0)
    # context covering the whole file: the windowed pass must then reproduce the one-pass output
    # exactly (an untrained model's near-tied posteriors would flip on tiny differences otherwise)
    monkeypatch.setattr(transcribe_module, "CONTEXT_SECONDS", 8.0)
    called = []
    real = Transcriber.transcribe_long
    monkeypatch.setattr(Transcriber, "transcribe_long", lambda self, p: called.append(p) or real(self, p))
    streamed = next(Transcriber(loaded).transcribe([(str(path), None)]))
    assert called == [str(path)]
    assert streamed.duration == pytest.approx(8.0)
    assert streamed.text == whole.text
    assert [w.word for w in streamed.words] == [w.word for w in whole.words]


def test_stream_audio_rejects_non_finite_samples(tmp_path):
    samples = np.zeros(16_000 * 2, dtype=np.float32)
    samples[20_000] = np.nan
    sf.write(tmp_path / "nan.wav", samples, 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match="non-finite"):
        list(stream_audio(tmp_path / "nan.wav", block_seconds=0.5))


def best_path(tokens: list[int], vocab_size: int = 5) -> torch.Tensor:
    """log_probs (T, V) whose argmax at frame t is tokens[t]."""
    return torch.nn.functional.one_hot(torch.tensor(tokens), vocab_size).float().mul(5).log_softmax(-1)


def test_split_at_pauses_cuts_in_the_middle_of_long_blank_runs_only():
    #        0  1  2  3  4  5  6  7  8  9 10 11 12 13 14
    frames = [0, 2, 0, 0, 0, 0, 3, 0, 3, 0, 0, 0, 0, 0, 0]
    segments = transcribe_module.split_at_pauses(best_path(frames), min_pause_frames=3)
    assert segments == [(0, 4), (4, 15)]  # run 2-5 cut at 4; run 9-14 reaches the end: no cut; run 7 too short
    assert transcribe_module.split_at_pauses(best_path([0, 0, 0, 0, 1]), 3) == [(0, 5)]  # leading silence: no cut
    assert transcribe_module.split_at_pauses(best_path([1, 1]), 3) == [(0, 2)]


def test_split_at_pauses_joins_pieces_up_to_the_segment_length():
    #        0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17 18 19
    frames = [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0]
    split = transcribe_module.split_at_pauses
    assert split(best_path(frames), 3) == [(0, 2), (2, 6), (6, 10), (10, 20)]  # a cut at every pause
    assert split(best_path(frames), 3, max_segment_frames=20) == [(0, 20)]  # the whole fits: decoded whole
    assert split(best_path(frames), 3, max_segment_frames=6) == [(0, 6), (6, 10), (10, 20)]  # 10-20 alone is longer
    assert split(best_path(frames), 3, max_segment_frames=10) == [(0, 10), (10, 20)]


def test_greedy_text_is_the_same_with_and_without_pause_segmentation():
    torch.manual_seed(2)
    tokens = torch.randint(0, 5, (300,))
    tokens[torch.rand(300) < 0.6] = 0  # mostly blanks, with pauses
    log_probs = best_path(tokens.tolist())
    from asr.decode import greedy_search

    (whole,) = greedy_search(log_probs.unsqueeze(0), torch.tensor([300]))
    pieces = []
    for start, end in transcribe_module.split_at_pauses(log_probs, 3):
        (part,) = greedy_search(log_probs[start:end].unsqueeze(0), torch.tensor([end - start]))
        pieces += [start + f for f in part.frames]
    assert pieces == whole.frames
