"""asr.arpa: back-off models as arrays, on a hand-made 3-gram whose every value is known."""

from __future__ import annotations

from math import log10

import numpy as np
import pytest

from asr.arpa import (BackoffLM, arpa_text, close_ngrams, context_masses, parse_arpa, perplexity, read_arpa_lm,
                      recompute_backoffs, sample_sentences, write_arpa_lm)
from asr.errors import ASRError


def arpa(unigrams, bigrams, trigrams=()) -> str:
    """ARPA text from (probability, words, back-off weight or None) rows: linear values."""
    def line(p, words, bo=None):
        return f"{log10(p) if p > 0 else -99:.10f}\t{words}" + ("" if bo is None else f"\t{log10(bo):.10f}")

    sections = [unigrams, bigrams, trigrams] if trigrams else [unigrams, bigrams]
    lines = ["\\data\\", *(f"ngram {n}={len(rows)}" for n, rows in enumerate(sections, 1))]
    for n, rows in enumerate(sections, 1):
        lines += ["", f"\\{n}-grams:", *(line(*row) for row in rows)]
    return "\n".join(lines + ["", "\\end\\", ""])


# p(</s>) 0.2, p(a) 0.5, p(b) 0.3. After a: b 0.6, </s> 0.2 listed, so bo(a) = 0.2 / (1 - 0.5) = 0.4.
# After <s>: a 0.7, bo(<s>) = 0.3 / 0.5 = 0.6. After b: a 0.5, bo(b) = 0.5 / 0.5 = 1.
# After <s> a: b 0.9, bo(<s> a) = 0.1 / (1 - p(b | a) = 0.4) = 0.25.
HAND = arpa(
    [(0.2, "</s>"), (1.0, "<s>", 0.6), (0.5, "a", 0.4), (0.3, "b", 1.0)],
    [(0.7, "<s> a", 0.25), (0.2, "a </s>"), (0.6, "a b"), (0.5, "b a")],
    [(0.9, "<s> a b")],
)


def prob(lm: BackoffLM, *words: str) -> float:
    return 10 ** lm.logprob(lm.ids(words)[None])[0]


def all_contexts(lm: BackoffLM) -> list[np.ndarray]:
    """Every listed n-gram below the top order as a context, plus the empty one's stand-in (each word)."""
    return [lm.grams[n] for n in range(1, lm.order)]


def test_parse_reads_words_counts_and_values():
    lm = parse_arpa(HAND)
    assert lm.order == 3 and lm.counts() == [4, 4, 1]
    assert set(lm.words) == {"</s>", "<s>", "a", "b"}
    assert prob(lm, "a") == pytest.approx(0.5)
    assert prob(lm, "<s>", "a", "b") == pytest.approx(0.9)


@pytest.mark.parametrize("words, expected", [
    (("a", "a"), 0.4 * 0.5),  # bo(a) p(a)
    (("<s>", "a", "</s>"), 0.25 * 0.2),  # bo(<s> a) p(</s> | a)
    (("b", "a", "a"), 0.4 * 0.5),  # "b a" is no context: p(a | a)
    (("<s>", "b", "b"), 1.0 * 0.3),  # "<s> b" unlisted: p(b | b) = bo(b) p(b)
    (("a", "b", "b", "a"), 0.5),  # longer than the order: the last 3 words
])
def test_back_off_probabilities(words, expected):
    assert prob(parse_arpa(HAND), *words) == pytest.approx(expected)


def test_word_outside_the_model_has_probability_zero_and_leaves_the_history():
    lm = parse_arpa(HAND)
    assert prob(lm, "a", "zebra") == 0.0
    assert prob(lm, "zebra", "a") == pytest.approx(0.5)


def test_every_context_sums_to_one():
    lm = parse_arpa(HAND)
    for contexts in all_contexts(lm):
        np.testing.assert_allclose(context_masses(lm, contexts), 1.0, atol=1e-9)


def test_write_then_read_round_trips(tmp_path):
    lm = parse_arpa(HAND)
    size = write_arpa_lm(tmp_path / "lm.arpa", lm)
    assert size == (tmp_path / "lm.arpa").stat().st_size
    again = read_arpa_lm(tmp_path / "lm.arpa")
    assert again.words == lm.words
    for n in (1, 2, 3):
        np.testing.assert_array_equal(again.grams[n], lm.grams[n])
        np.testing.assert_allclose(again.logp[n], lm.logp[n], atol=1e-6)
        np.testing.assert_allclose(again.logbo[n], lm.logbo[n], atol=1e-6)


def test_text_before_data_is_ignored():
    assert parse_arpa("made by some tool\n\n" + HAND).counts() == [4, 4, 1]


@pytest.mark.parametrize("broken, message", [
    (HAND.replace("ngram 2=4", "ngram 2=5"), "header says"),
    (HAND.split("\\3-grams:")[0], "truncated"),
    (HAND.replace("<s> a b", "<s> a zebra"), "not a unigram"),
    (HAND.replace("\t<s> a b", "\t<s> a"), "not ARPA"),
    ("no data here\n", "no \\\\data"),
])
def test_broken_files_raise_one_error_naming_the_source(broken, message):
    with pytest.raises(ASRError, match=message) as err:
        parse_arpa(broken, "bad.arpa")
    assert "bad.arpa" in str(err.value)


def test_recompute_backoffs_finds_the_hand_computed_weights():
    lm = parse_arpa(HAND)
    zeroed = lm.replace(logbo=[np.zeros_like(b) if b is not None else None for b in lm.logbo])
    again = recompute_backoffs(zeroed)
    for n in (1, 2):
        np.testing.assert_allclose(again.logbo[n], lm.logbo[n], atol=1e-9)


def test_close_ngrams_adds_missing_contexts_without_changing_any_probability():
    open_model = parse_arpa(arpa(
        [(0.2, "</s>"), (1.0, "<s>", 0.6), (0.5, "a", 0.4), (0.3, "b", 1.0)],
        [(0.2, "a </s>"), (0.6, "a b"), (0.5, "b a")],
        [(0.9, "<s> a b")],  # its context "<s> a" is not listed
    ))
    closed = close_ngrams(open_model)
    assert closed.counts() == [4, 4, 1]
    assert prob(closed, "<s>", "a") == pytest.approx(0.6 * 0.5)  # added: bo(<s>) p(a)
    grams = np.array([[i, j, k] for i in range(4) for j in range(4) for k in range(4)])
    np.testing.assert_allclose(closed.logprob(grams), open_model.logprob(grams))


def test_arrays_are_checked():
    with pytest.raises(ASRError, match="twice"):
        BackoffLM.from_arrays(["a", "a"], [None, np.array([[0], [1]])], [None, np.zeros(2)], [None, np.zeros(2)])
    with pytest.raises(ASRError, match="exactly once"):
        BackoffLM.from_arrays(["a", "b"], [None, np.array([[1]])], [None, np.zeros(1)], [None, np.zeros(1)])


def test_perplexity_counts_as_kenlm_and_srilm_do():
    lm = parse_arpa(HAND)
    # <s> a b </s>: p(a | <s>) 0.7, p(b | <s> a) 0.9, p(</s> | a b) = p(</s> | b) = bo(b) p(</s>) 0.2
    result = perplexity(lm, ["a b", ""])
    assert (result.words, result.oovs, result.sentences) == (2, 0, 1)
    assert result.perplexity == pytest.approx((0.7 * 0.9 * 0.2) ** (-1 / 3))
    # an OOV is not scored (no <unk> to score it with) and breaks the history
    oov = perplexity(lm, ["a zebra"])
    assert (oov.words, oov.oovs, oov.oov_rate) == (2, 1, 0.5)
    assert oov.perplexity == pytest.approx((0.7 * 0.2) ** (-1 / 2))
    assert np.isnan(oov.perplexity_with_oovs)


def test_perplexity_with_oovs_scores_them_as_unk():
    lm = parse_arpa(arpa(
        [(0.2, "</s>"), (1.0, "<s>", 0.6), (0.4, "a", 0.4), (0.3, "b", 1.0), (0.1, "<unk>")],
        [(0.7, "<s> a"), (0.2, "a </s>"), (0.6, "a b"), (0.5, "b a")],
    ))
    result = perplexity(lm, ["a zebra"])
    # p(a | <s>) 0.7, p(<unk> | a) = bo(a) 0.1, p(</s> | <unk>) = 0.2 (no back-off weight)
    assert result.perplexity == pytest.approx((0.7 * 0.2) ** (-1 / 2))
    assert result.perplexity_with_oovs == pytest.approx((0.7 * 0.4 * 0.1 * 0.2) ** (-1 / 3))


def test_arpa_text_writes_probability_zero_as_minus_99_and_skips_zero_backoffs():
    lm = parse_arpa(HAND)
    zero = lm.replace(logp=[None, np.where(np.array(lm.words) == "b", -np.inf, lm.logp[1]), lm.logp[2], lm.logp[3]])
    text = arpa_text(zero)
    lines = text.splitlines()
    assert "-99\tb\t0" not in lines and any(line.startswith("-99\tb") for line in lines)
    assert "-0.221849\ta b" in lines  # weight 0 (1): no third column
    assert "-0.0457575\t<s> a b" in lines  # the top order has none
    assert "-0.154902\t<s> a\t-0.60206" in lines


def test_sampled_sentences_follow_the_models_probabilities_back_off_included():
    lm = parse_arpa(HAND)
    drawn = sample_sentences(lm, 40000, np.random.default_rng(0))
    first = np.array([s.split()[0] if s else "</s>" for s in drawn])
    for word in ("a", "b", "</s>"):  # after <s>: a listed (0.7); b and </s> by back-off, 0.6 x 0.3 and 0.6 x 0.2
        assert np.mean(first == word) == pytest.approx(prob(lm, "<s>", word), abs=0.01)
    after_a = np.array([(s.split() + ["</s>"])[1] for s in drawn if s.startswith("a")])
    for word in ("a", "b", "</s>"):  # after <s> a: b listed (0.9); a and </s> by two back-offs
        assert np.mean(after_a == word) == pytest.approx(prob(lm, "<s>", "a", word), abs=0.01)
    assert prob(lm, "<s>", "a", "a") > 0.01  # the rarest case above is drawn, not just allowed


def test_sampling_is_seeded_and_stops_at_the_length_limit():
    lm = parse_arpa(HAND)
    assert sample_sentences(lm, 50, np.random.default_rng(3)) == sample_sentences(lm, 50, np.random.default_rng(3))
    assert max(len(s.split()) for s in sample_sentences(lm, 2000, np.random.default_rng(1), max_words=2)) == 2
    assert sample_sentences(lm, 0, np.random.default_rng(1)) == []
