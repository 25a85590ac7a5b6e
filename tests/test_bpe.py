"""BPE units (sentencepiece): the vocabulary, its storage, beam search + LM over pieces, training."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from asr.checkpoint import checkpoint_payload, load_model, save_checkpoint
from asr.beam_search import BeamSearchDecoder
from asr.decode import DecodeConfig, Hypothesis, greedy_search
from asr.word_timing import word_timings
from asr.errors import ASRError
from asr.frontend import Cmvn, FeatureConfig
from asr.lm import build_arpa, check_piece_lm, piece_sentences
from asr.model import AcousticModel, ModelConfig
from asr.text import BLANK, BLANK_ID, WORD_START, Vocab, build_vocab

from .conftest import OVERFIT_SET, decoded_text, frame_log_probs, make_experiment, read_metric, run_asr, tiny_config

TEXTS = ["CAT CUT", "CATS CUT CAT", "A CAT", "THE CUT", "CAT CATS"] * 20
VOCAB = build_vocab(TEXTS, "bpe", bpe_size=14)  # whole-word pieces for CAT and CUT, CATS = CAT + S


def pieces(text: str) -> list[str]:
    return [VOCAB.tokens[i] for i in VOCAB.encode(text)]


def test_bpe_vocabulary_starts_with_the_blank_then_the_sentencepiece_pieces():
    assert VOCAB.kind == "bpe" and VOCAB.tokens[BLANK_ID] == BLANK
    assert "<unk>" in VOCAB.tokens and WORD_START + "CAT" in VOCAB.tokens
    assert len(VOCAB) <= 15
    assert VOCAB.separator_id is None


def test_bpe_round_trip_for_seen_and_unseen_words_of_known_characters():
    for text in ["CAT CUT", "CATS", "TAC SUCCA THE", "A"]:
        assert VOCAB.decode(VOCAB.encode(text)) == text
    assert len(VOCAB.encode("CAT CUT")) < len("CAT CUT")  # pieces are longer than characters


def test_bpe_word_starts_are_marked_pieces():
    ids = VOCAB.encode("CATS CUT")
    starts = [VOCAB.starts_word(i) for i in ids]
    assert starts[0] and sum(starts) == 2


def test_bpe_unknown_characters_are_named():
    assert VOCAB.unknown_chars("CAT ZOO") == {"Z", "O"}
    with pytest.raises(ASRError, match="'O', 'Z'"):
        VOCAB.encode("CAT ZOO")


def test_bpe_training_is_deterministic():
    again = build_vocab(TEXTS, "bpe", bpe_size=14)
    assert again.tokens == VOCAB.tokens and again.model == VOCAB.model


def test_bpe_size_is_an_upper_bound_on_a_small_corpus():
    small = build_vocab(["YES", "NO"], "bpe", bpe_size=500)
    assert small.decode(small.encode("YES NO")) == "YES NO"
    assert len(small) < 500


def test_unknown_units_rejected():
    with pytest.raises(ASRError, match="units must be one of"):
        build_vocab(["A"], "phones")


def test_bpe_vocab_save_load_round_trip(tmp_path):
    VOCAB.save(tmp_path / "vocab.json")
    loaded = Vocab.load(tmp_path / "vocab.json")
    assert loaded == VOCAB and loaded.encode("CATS CUT") == VOCAB.encode("CATS CUT")


def test_bpe_vocab_with_a_broken_model_is_rejected_naming_the_file(tmp_path):
    with pytest.raises(ASRError, match="not a sentencepiece model"):
        Vocab(tokens=VOCAB.tokens, model=b"not a model")
    with pytest.raises(ASRError, match="do not match"):
        Vocab(tokens=VOCAB.tokens[:-1], model=VOCAB.model)
    path = tmp_path / "vocab.json"
    path.write_text('{"tokens": ["<blank>", "A"], "bpe_model": "%%%"}', encoding="utf-8")
    with pytest.raises(ASRError, match=f"{path}: not a vocabulary file"):
        Vocab.load(path)


def test_bpe_vocabulary_travels_inside_the_checkpoint(tmp_path):
    features = FeatureConfig()
    model = AcousticModel(ModelConfig(num_layers=1, hidden_size=8), features.n_mels, len(VOCAB))
    cmvn = Cmvn(mean=(0.0,) * features.n_mels, std=(1.0,) * features.n_mels)
    save_checkpoint(tmp_path / "m.pt", checkpoint_payload(model, features, cmvn, VOCAB))
    loaded = load_model(tmp_path / "m.pt")  # weights_only loading
    assert loaded.vocab == VOCAB and loaded.vocab.kind == "bpe"


def emissions(frames: list[dict[str, float]]) -> torch.Tensor:
    return frame_log_probs(VOCAB, frames)


def text_of(decode, log_probs: torch.Tensor) -> str:
    return decoded_text(decode, VOCAB, log_probs)


CAT, CUT = WORD_START + "CAT", WORD_START + "CUT"
# one piece that is "CAT" (0.45) or "CUT" (0.55): acoustically "CUT" by a little
CAT_OR_CUT = emissions([{}, {CAT: 0.45, CUT: 0.55}, {}])


def test_whole_word_pieces_exist_for_the_test_words():
    assert pieces("CAT") == [CAT] and pieces("CUT") == [CUT]
    assert pieces("CATS")[0] == CAT and len(pieces("CATS")) == 2


def test_bpe_beam_without_lm_finds_the_acoustic_best_path():
    assert text_of(BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam")), CAT_OR_CUT) == "CUT"


def test_bpe_beam_width_one_equals_greedy_on_random_log_probs():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 25, len(VOCAB)).mul(3).log_softmax(-1)
    lens = torch.tensor([25, 17, 2])
    beam = BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam", beam_size=1))(log_probs, lens)
    assert [h.tokens for h in beam] == [h.tokens for h in greedy_search(log_probs, lens)]


def piece_lm(texts: list[str], order: int = 3) -> str:
    return build_arpa(piece_sentences(texts, VOCAB), order=order)


def test_bpe_piece_lm_changes_the_winner():
    with_lm = BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam", lm_weight=1.0), piece_lm(["CAT"] * 20 + ["CUT"]))
    assert text_of(with_lm, CAT_OR_CUT) == "CAT"
    weak_lm = BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam", lm_weight=0.0), piece_lm(["CAT"] * 20 + ["CUT"]))
    assert text_of(weak_lm, CAT_OR_CUT) == "CUT"


def test_bpe_beam_with_lm_decodes_multi_piece_words_and_repeated_frames():
    cats, s = pieces("CATS")
    frames = emissions([{cats: 0.9}, {cats: 0.9}, {}, {s: 0.9}, {}, {CUT: 0.9}, {CUT: 0.9}, {}])
    decode = BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam", lm_weight=0.5), piece_lm(["CATS CUT", "CAT CUT"]))
    assert text_of(decode, frames) == "CATS CUT"


def test_bpe_models_take_no_lexicon():
    with pytest.raises(ASRError, match="BPE models decode with a piece LM and no lexicon"):
        BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam"), lexicon=["CAT", "CUT"])


def test_a_word_lm_is_not_taken_for_a_piece_lm():
    check_piece_lm(piece_lm(["CAT CUT", "THE CAT"]), VOCAB, "pieces.arpa")
    with pytest.raises(ASRError, match="not an LM over this model's pieces"):
        check_piece_lm(build_arpa(["CAT CUT", "THE CAT"], order=2), VOCAB, "words.arpa")


def test_bpe_word_timings_split_where_a_piece_starts_a_word():
    ids = VOCAB.encode("CATS CUT A")
    hypothesis = Hypothesis(ids, [2 * n for n in range(len(ids))])
    log_probs = torch.zeros(2 * len(ids), len(VOCAB)).log_softmax(-1)
    words = word_timings(hypothesis, log_probs, VOCAB, frame_seconds=0.03)
    assert [w.word for w in words] == ["CATS", "CUT", "A"]
    assert words[0].start == 0.0 and words[1].start == pytest.approx(0.03 * 2 * len(pieces("CATS")))
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))


def test_asr_vocab_builds_bpe_from_the_config(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(f'{{"id": "u{i}", "audio": "x.wav", "duration": 1.0, "text": "{t}"}}\n' for i, t in enumerate(TEXTS)),
        encoding="utf-8",
    )
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  units: bpe\n  bpe_size: 14\n", encoding="utf-8")
    result = run_asr("vocab", "--manifest", str(manifest), "--config", str(config), "--out", str(tmp_path / "v.json"))
    assert result.returncode == 0, result.stderr
    assert "bpe tokens" in result.stderr
    assert Vocab.load(tmp_path / "v.json") == VOCAB


@pytest.mark.an4
def test_bpe_model_overfits_real_an4_utterances_and_decodes_them_with_beam_and_piece_lm(tmp_path, an4_dir):
    from asr.train import train
    from asr.transcribe import Transcriber

    data = make_experiment(tmp_path, an4_dir, units="bpe")
    best = train(tiny_config(data, tmp_path / "run"), progress=False)
    losses = read_metric(best.parent, "loss")
    assert losses[-1] < 0.1 * losses[0], f"loss did not fall enough: {losses[0]:.2f} -> {losses[-1]:.2f}"
    assert read_metric(best.parent, "dev_wer")[-1] == 0.0

    loaded = load_model(best)
    assert loaded.vocab.kind == "bpe"
    texts = [text for _, text in OVERFIT_SET.values()]
    loaded.lm_arpa = build_arpa(piece_sentences(texts, loaded.vocab), order=4)
    loaded.decoding = DecodeConfig(decoder="beam", lm_weight=0.5)
    paths = [(str(an4_dir / "wav" / "an4_clstk" / spk / f"{i}.wav"), None) for i, (spk, _) in OVERFIT_SET.items()]
    results = list(Transcriber(loaded).transcribe(paths))
    assert [t.text for t in results] == texts
    assert [len(t.words) for t in results] == [len(text.split()) for text in texts]


def test_training_refuses_a_vocabulary_in_other_units(tmp_path):
    from asr.train import train

    from .conftest import make_tone_experiment

    data = make_tone_experiment(tmp_path)  # characters
    config = dataclasses.replace(tiny_config(data, tmp_path / "run", epochs=1), data=dataclasses.replace(data, units="bpe"))
    with pytest.raises(ASRError, match="holds char units but data.units is 'bpe'"):
        train(config, progress=False)
