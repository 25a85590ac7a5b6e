"""asr.lm_edit: vocabulary restriction, pruning and interpolation keep every distribution summing to 1."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from asr.arpa import (BackoffLM, context_masses, next_word_logprobs, normalise_unigrams, parse_arpa, predicted_mask,
                      recompute_backoffs)
from asr.errors import ASRError
from asr.lm import build_arpa
from asr.lm_edit import mix, ngram_scores, prune_ngrams, restrict_vocab

from .test_arpa import HAND, arpa, prob


def corpus_lm(seed: int = 0, n: int = 300) -> BackoffLM:
    """A Kneser-Ney 3-gram of random Zipf-ish sentences over 12 words: every order well filled,
    normalised to float precision (the ARPA text's 6-7 printed digits leave each distribution
    summing to 1 within ~1e-5 only; the edits recompute back-off weights exactly)."""
    rng = random.Random(seed)
    words = "the cat dog sat ran on a mat away bird big red".split()
    weights = [1 / (rank + 1) for rank in range(len(words))]
    sentences = [" ".join(rng.choices(words, weights, k=rng.randint(1, 7))) for _ in range(n)]
    return renormalised(parse_arpa(build_arpa(sentences, order=3)))


def renormalised(lm: BackoffLM) -> BackoffLM:
    return recompute_backoffs(normalise_unigrams(lm))


def contexts_of(lm: BackoffLM) -> list[np.ndarray]:
    """Every listed n-gram below the top order (as a context), and a few unlisted bigram contexts."""
    rng = np.random.default_rng(0)
    return [lm.grams[n] for n in range(1, lm.order)] + [rng.integers(0, len(lm.words), (20, 2))]


def assert_normalised(lm: BackoffLM, atol: float = 1e-6) -> None:
    for contexts in contexts_of(lm):
        np.testing.assert_allclose(context_masses(lm, contexts), 1.0, atol=atol)
    uni = 10 ** lm.logp[1][predicted_mask(lm)]
    assert uni.sum() == pytest.approx(1.0, abs=atol)


def assert_closed(lm: BackoffLM) -> None:
    for n in range(2, lm.order + 1):
        assert (lm.find(lm.grams[n][:, :-1]) >= 0).all() and (lm.find(lm.grams[n][:, 1:]) >= 0).all()


@pytest.mark.parametrize("keep", [["a", "</s>"], ["the", "cat", "sat", "on", "mat"], ["bird", "red", "<unk>"]])
def test_restrict_vocab_is_the_model_conditioned_on_the_kept_words(keep):
    lm = parse_arpa(HAND) if "a" in keep else corpus_lm()
    small = restrict_vocab(lm, keep)
    assert set(small.words) == (set(keep) | {"<s>", "</s>"}) & set(lm.words)
    assert_normalised(small)
    assert_closed(small)
    # brute force: in every context, the kept words' probabilities renormalised
    kept = lm.ids(small.words)
    for contexts in contexts_of(small):
        ours = next_word_logprobs(small, contexts)
        full = 10 ** next_word_logprobs(lm, kept[contexts])[:, kept]
        np.testing.assert_allclose(10 ** ours, full / full.sum(axis=1, keepdims=True), atol=1e-9)


def test_restrict_vocab_on_the_hand_model():
    small = restrict_vocab(parse_arpa(HAND), ["a"])
    # after a: b dropped; a 0.4 * 0.5 = 0.2 and </s> 0.2, so each 0.5
    assert prob(small, "a", "a") == pytest.approx(0.5)
    assert prob(small, "a", "</s>") == pytest.approx(0.5)
    # unigrams: a 0.5, </s> 0.2 -> 5/7, 2/7
    assert prob(small, "a") == pytest.approx(5 / 7)


def brute_force_relative_entropy(lm: BackoffLM, row: int) -> float:
    """P(h) * KL(p(. | h) || p'(. | h)) for dropping bigram `row` of a bigram model, by recomputing
    its context's back-off weight and comparing whole distributions."""
    h, w = lm.grams[2][row]
    before = 10 ** next_word_logprobs(lm, np.array([[h]]))[0]
    keep = [None, np.ones(len(lm.words), bool), np.arange(len(lm.grams[2])) != row]
    from asr.arpa import recompute_backoffs, select_ngrams

    after = 10 ** next_word_logprobs(recompute_backoffs(select_ngrams(lm, keep)), np.array([[h]]))[0]
    on = before > 0
    history = prob(lm, "</s>") if lm.words[h] == "<s>" else 10 ** lm.logp[1][h]
    return history * float(np.sum(before[on] * np.log(before[on] / after[on])))


def test_entropy_scores_equal_the_brute_force_relative_entropy():
    lm = renormalised(parse_arpa(build_arpa(["the cat sat", "the dog sat", "a cat ran", "the cat ran away", "a dog sat"],
                                            order=2)))
    scores = ngram_scores(lm, 2)
    for row in range(len(lm.grams[2])):
        assert scores[row] == pytest.approx(brute_force_relative_entropy(lm, row), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("criterion", ["entropy", "probability"])
def test_pruning_keeps_the_best_and_what_they_stand_on_and_renormalises(criterion):
    lm = corpus_lm()
    budget = (len(lm.grams[2]) + len(lm.grams[3])) // 3
    pruned = prune_ngrams(lm, max_ngrams=budget, criterion=criterion)
    assert pruned.words == lm.words and pruned.counts()[0] == lm.counts()[0]
    assert sum(pruned.counts()[1:]) < sum(lm.counts()[1:])
    assert len(pruned.grams[3]) <= budget
    assert_closed(pruned)
    assert_normalised(pruned)
    # kept n-grams keep their probabilities (SRILM's pruning); only back-off weights change
    for n in (2, 3):
        rows = lm.find(pruned.grams[n])
        np.testing.assert_allclose(pruned.logp[n], lm.logp[n][rows])
    # the best-scoring trigram survives
    best = lm.grams[3][np.argmax(ngram_scores(lm, 3, criterion))]
    assert pruned.find(best[None])[0] >= 0


def test_pruning_by_threshold_and_with_nothing_to_prune():
    lm = corpus_lm()
    assert prune_ngrams(lm) is lm
    assert prune_ngrams(lm, max_ngrams=10**9).counts() == lm.counts()
    pruned = prune_ngrams(lm, threshold=1e-4)
    assert sum(pruned.counts()) < sum(lm.counts())
    assert_normalised(pruned)
    with pytest.raises(ASRError, match="criterion"):
        prune_ngrams(lm, max_ngrams=5, criterion="size")


# a second hand model over a, c: p(</s>) 0.5, p(a) 0.25, p(c) 0.25; after c: a 0.5, bo(c) = 0.5 / 0.75
OTHER = arpa(
    [(0.5, "</s>"), (1.0, "<s>"), (0.25, "a"), (0.25, "c", 0.5 / 0.75)],
    [(0.5, "c a")],
)


def test_mix_interpolates_with_each_models_back_off():
    a, b = parse_arpa(HAND), parse_arpa(OTHER)
    mixed = mix(a, b, 0.3)
    assert set(mixed.words) == {"</s>", "<s>", "a", "b", "c"}
    assert mixed.order == 3
    assert_normalised(mixed)
    assert_closed(mixed)
    # listed in one model, backed off in the other
    assert prob(mixed, "a", "b") == pytest.approx(0.3 * 0.6 + 0.7 * 0.0)  # b is not in OTHER
    assert prob(mixed, "c", "a") == pytest.approx(0.3 * 0.5 + 0.7 * 0.5)  # c not in HAND: p(a) there
    assert prob(mixed, "a", "</s>") == pytest.approx(0.3 * 0.2 + 0.7 * 0.5)  # OTHER: no bo(a), p(</s>)
    assert prob(mixed, "<s>", "a", "b") == pytest.approx(0.3 * 0.9)
    assert prob(mixed, "c") == pytest.approx(0.7 * 0.25)
    assert prob(mixed, "<s>", "a") == pytest.approx(0.3 * 0.7 + 0.7 * 0.25)


def test_mix_of_a_model_with_weight_one_is_that_model_on_its_words():
    a, b = corpus_lm(0), corpus_lm(1)
    mixed = mix(a, b, 1.0)
    grams = np.random.default_rng(0).integers(0, len(a.words), (200, 3))
    np.testing.assert_allclose(mixed.logprob(mixed.ids([a.words[i] for i in grams.ravel()]).reshape(-1, 3)),
                               a.logprob(grams), atol=1e-9)


def test_mix_of_two_corpus_models_is_normalised_and_exact_on_the_union():
    a, b = corpus_lm(0), restrict_vocab(corpus_lm(1, 200), ["the", "cat", "mat", "big"])
    mixed = mix(a, b, 0.6)
    assert_normalised(mixed)
    for n in (1, 2, 3):
        for gram in mixed.grams[n][:50]:
            words = [mixed.words[i] for i in gram]
            expected = 0.6 * prob(a, *words) + 0.4 * (prob(b, *words) if all(w in b.words for w in words[-1:]) else 0)
            assert prob(mixed, *words) == pytest.approx(expected, rel=1e-9)


def test_mix_weight_must_be_a_probability():
    with pytest.raises(ASRError, match="between 0 and 1"):
        mix(parse_arpa(HAND), parse_arpa(OTHER), 1.5)


def test_restricted_pruned_mixed_perplexity_is_finite():
    from asr.arpa import perplexity

    lm = mix(corpus_lm(0), prune_ngrams(restrict_vocab(corpus_lm(1), ["the", "cat", "red"]), max_ngrams=20), 0.5)
    result = perplexity(lm, ["the cat sat on the mat", "red bird"])
    assert math.isfinite(result.perplexity) and result.oovs == 0
