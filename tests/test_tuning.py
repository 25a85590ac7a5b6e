"""What a model may decode with when its LM weights are tuned (asr.tuning), and the n-gram `asr lm` builds."""

import pytest

from asr.decode import DecodeConfig
from asr.errors import ASRError
from asr.lm import arpa_order, build_model_lm, read_arpa_text, read_lexicon, write_lexicon
from asr.text import build_vocab
from asr.tuning import kept_rnnlm, tuning_plan

TEXTS = ["SEND THE CAT HOME", "THE CAT SAT", "SEND IT HOME NOW", "NOW THE DOG", "HOME IS WHERE THE DOG SAT"] * 4


def test_a_character_model_with_a_word_lm_needs_its_lexicon(tmp_path):
    chars = build_vocab(TEXTS)
    with pytest.raises(ASRError, match="^m.pt: a character model decodes with a word LM and needs --lexicon"):
        tuning_plan(chars, "m.pt", "ARPA", "lm.arpa", None, False, [0.0, 1.0])
    write_lexicon(tmp_path / "lexicon.txt", ["THE", "CAT"])
    lexicon, scores = tuning_plan(chars, "m.pt", "ARPA", "lm.arpa", str(tmp_path / "lexicon.txt"), False, [0.0, 1.0])
    assert lexicon == sorted(read_lexicon(tmp_path / "lexicon.txt")) and scores == [0.0, 1.0]
    assert tuning_plan(chars, "m.pt", None, None, None, True, [2.0]) == (None, [2.0])  # a recurrent LM alone
    with pytest.raises(ASRError, match="needs --lm .* --rnnlm"):
        tuning_plan(chars, "m.pt", None, None, None, False, [0.0])


def test_a_bpe_model_tunes_a_piece_lm_without_lexicon_or_word_score(tmp_path):
    pieces = build_vocab(TEXTS, units="bpe", bpe_size=30)
    build_model_lm(TEXTS, pieces, tmp_path)
    arpa = read_arpa_text(tmp_path / "lm.arpa")
    assert tuning_plan(pieces, "m.pt", arpa, "lm.arpa", None, False, [0.0, 1.0, 2.0]) == (None, [0.0])
    with pytest.raises(ASRError, match="^m.pt: recurrent LMs decode character models only"):
        tuning_plan(pieces, "m.pt", arpa, "lm.arpa", None, True, [0.0])
    assert arpa_order(arpa) == 6 and not (tmp_path / "lexicon.txt").exists()


def test_the_word_lm_of_a_character_model_comes_with_its_lexicon(tmp_path):
    summary = build_model_lm(TEXTS, build_vocab(TEXTS), tmp_path)
    assert summary == f"3-gram LM over 10 words from 20 sentences -> {tmp_path}"
    assert set(read_lexicon(tmp_path / "lexicon.txt")) == {w for t in TEXTS for w in t.split()}
    (tmp_path / "bad.arpa").write_bytes(b"\\data\\\n\xff\xfe")
    with pytest.raises(ASRError, match="bad.arpa: not an ARPA language model .* at byte 7"):
        read_arpa_text(tmp_path / "bad.arpa")


def test_a_recurrent_lm_that_did_not_help_is_dropped():
    lm = object()
    assert kept_rnnlm(DecodeConfig(decoder="beam", rnnlm_weight=0.0), lm) is None
    assert kept_rnnlm(DecodeConfig(decoder="beam", rnnlm_weight=0.4), lm) is lm
    assert kept_rnnlm(DecodeConfig(decoder="beam"), None) is None
