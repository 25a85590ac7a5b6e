"""asr.metrics.error_rates: WER/CER with substitution, deletion and insertion counts."""

import math

import pytest

from asr.metrics import ErrorCounts, error_rates


def test_perfect_match_is_zero():
    report = error_rates(["HELLO WORLD", "YES"], ["HELLO WORLD", "YES"])
    assert report.wer == 0.0 and report.cer == 0.0
    assert report.words == ErrorCounts(0, 0, 0, 3)
    assert report.chars == ErrorCounts(0, 0, 0, len("HELLO WORLD") + len("YES"))
    assert report.num_utterances == 2


def test_one_substitution():
    # THE CAT SAT -> THE BAT SAT: 1 of 3 words substituted; C -> B: 1 of 11 chars
    report = error_rates(["THE CAT SAT"], ["THE BAT SAT"])
    assert report.words == ErrorCounts(substitutions=1, deletions=0, insertions=0, reference_length=3)
    assert report.wer == pytest.approx(1 / 3)
    assert report.chars == ErrorCounts(1, 0, 0, 11)
    assert report.cer == pytest.approx(1 / 11)


def test_deletion_and_insertion():
    # A B C D -> A C D E: B deleted, E inserted (alignment A=A, B del, C=C, D=D, E ins)
    report = error_rates(["A B C D"], ["A C D E"])
    assert report.words == ErrorCounts(0, 1, 1, 4)
    assert report.wer == pytest.approx(2 / 4)
    # chars "A B C D" -> "A C D E" (7 each): B->C, C->D, D->E is 3 edits, cheaper than
    # deleting "B " and inserting " E" (4), and no 2-edit path exists (3 positions differ)
    assert report.chars == ErrorCounts(3, 0, 0, 7)


def test_corpus_counts_are_summed_over_utterances():
    refs = ["ONE TWO THREE", "FOUR FIVE", "SIX"]
    hyps = ["ONE TOO THREE", "FOUR", "SIX SEVEN EIGHT"]  # 1 sub, 1 del, 2 ins
    report = error_rates(refs, hyps)
    assert report.words == ErrorCounts(1, 1, 2, 6)
    assert report.wer == pytest.approx(4 / 6)
    assert report.words.errors == 4


def test_all_words_deleted():
    report = error_rates(["GO NOW"], [""])
    assert report.words == ErrorCounts(0, 2, 0, 2)
    assert report.wer == 1.0
    assert report.chars == ErrorCounts(0, 6, 0, 6)


def test_empty_reference_counts_insertions():
    report = error_rates(["", "HI"], ["EXTRA WORDS", "HI"])
    assert report.words == ErrorCounts(0, 0, 2, 1)  # reference length only from "HI"
    assert report.wer == pytest.approx(2.0)
    assert report.chars == ErrorCounts(0, 0, len("EXTRA WORDS"), 2)


def test_only_empty_references():
    assert error_rates([""], [""]).wer == 0.0
    report = error_rates(["  "], ["A B"])
    assert report.words == ErrorCounts(0, 0, 2, 0)
    assert math.isinf(report.wer)


def test_surrounding_whitespace_ignored():
    assert error_rates(["  HELLO WORLD "], ["HELLO WORLD"]).cer == 0.0


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="^2 references but 1 hypotheses$"):
        error_rates(["A", "B"], ["A"])


def test_summary_mentions_rates_and_counts():
    summary = error_rates(["THE CAT SAT"], ["THE BAT SAT"]).summary()
    assert "WER 33.33%" in summary
    assert "S=1" in summary and "D=0" in summary and "I=0" in summary
    assert "utts=1" in summary
