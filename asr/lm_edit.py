"""Change back-off n-gram models (`asr.arpa.BackoffLM`): restrict the vocabulary, prune n-grams,
interpolate two models. Every result is normalised: each context's next-word distribution
sums to 1 over the result's vocabulary (`<s>` aside, see asr.arpa).

- `restrict_vocab` conditions the model on the next word being in the kept vocabulary: exact,
  the kept words keep their relative probabilities in every context.
- `prune_ngrams` drops bigrams and up by relative entropy (Stolcke 1998, SRILM's `-prune`) or
  by joint probability, keeping every context and suffix of what it keeps, and recomputes the
  back-off weights (the listed probabilities stay, as in SRILM).
- `mix` is SRILM's static interpolation (`ngram -lm A -mix-lm B -lambda L -write-lm`): the
  union of both models' n-grams, each with p = L pA(w | h) + (1 - L) pB(w | h), every p with
  its own model's back-off (0 for a word outside a model's vocabulary), then back-off weights
  recomputed for the mixture.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from asr.arpa import (BackoffLM, close_ngrams, context_rows, normalise_unigrams, predicted_mask,
                      recompute_backoffs, select_ngrams)
from asr.errors import ASRError
from asr.lm import BOS, EOS

_TINY = 1e-300  # keeps log10 finite where a mass underflows


def _suffix_rows(lm: BackoffLM, n: int) -> np.ndarray:
    """Row of each n-gram's suffix (its last n-1 words) among the (n-1)-grams; needs a closed model."""
    rows = lm.find(lm.grams[n][:, 1:])
    if (rows < 0).any():
        raise ASRError(f"an LM's {n}-gram has no listed suffix: close the model first (asr.arpa.close_ngrams)")
    return rows


def restrict_vocab(lm: BackoffLM, keep: Iterable[str]) -> BackoffLM:
    """The model over the words of `keep` (plus `<s>` and `</s>`; words the model lacks are
    ignored), conditioned on the next word being one of them, exactly:

        p'(w | h) = p(w | h) / Z(h)   and   bo'(h) = bo(h) Z(h') / Z(h),

    Z(h) being the kept words' mass after h: the sum over kept w of p(w | h), computed order
    by order as Z(h) = sum of listed p(w | h) over kept w + bo(h) (Z(h') - sum of p(w | h') over
    the same w). N-grams with a dropped word are removed. Needs a closed model."""
    wanted = set(keep) | {BOS, EOS}
    kept = np.array([w in wanted for w in lm.words])
    predicted = predicted_mask(lm) & kept
    log_z0 = np.log10(max(float(np.sum(10.0 ** lm.logp[1][predicted])), _TINY))  # Z() of the empty context
    log_z = [None]  # log_z[k][i]: log10 Z of k-gram row i as a context (k = 1..N-1)
    for n in range(2, lm.order + 1):
        ctx = context_rows(lm, n)
        size = len(lm.grams[n - 1])
        on = predicted[lm.grams[n][:, -1]]
        listed = np.bincount(ctx, np.where(on, 10.0 ** lm.logp[n], 0.0), minlength=size)
        lower = np.bincount(ctx, np.where(on, 10.0 ** lm.logprob(lm.grams[n][:, 1:]), 0.0), minlength=size)
        lower_z = 10.0 ** (log_z0 if n == 2 else log_z[n - 2][_suffix_rows(lm, n - 1)])
        z = listed + 10.0 ** lm.logbo[n - 1] * np.maximum(lower_z - lower, 0.0)
        log_z.append(np.log10(np.maximum(z, _TINY)))
    logp, logbo = list(lm.logp), list(lm.logbo)
    logp[1] = np.where(predicted_mask(lm), lm.logp[1] - log_z0, lm.logp[1])  # <s> keeps its value
    for n in range(2, lm.order + 1):
        logp[n] = lm.logp[n] - log_z[n - 1][context_rows(lm, n)]
    for k in range(1, lm.order):  # bo'(h) = bo(h) Z(h') / Z(h), which is 1 where h has no extensions
        lower = log_z0 if k == 1 else log_z[k - 1][_suffix_rows(lm, k)]
        extended = np.bincount(context_rows(lm, k + 1), minlength=len(lm.grams[k])) > 0
        logbo[k] = np.where(extended, lm.logbo[k] + lower - log_z[k], 0.0)
    mask = [None] + [kept[lm.grams[n]].all(axis=1) for n in range(1, lm.order + 1)]
    return select_ngrams(lm.replace(logp=logp, logbo=logbo), mask, words=kept)


def _history_log10_prob(lm: BackoffLM, histories: np.ndarray) -> np.ndarray:
    """log10 P(h) of each history (rows of word ids) as a word sequence: the product of its
    words' probabilities, each given the words before it; `<s>` counts as often as `</s>`."""
    bos, eos = lm.words.index(BOS) if BOS in lm.words else -1, lm.words.index(EOS)
    total = np.zeros(len(histories))
    for i in range(histories.shape[1]):
        gram = histories[:, :i + 1].copy()
        if i == 0:
            gram[gram[:, 0] == bos, 0] = eos
        total += lm.logprob(gram)
    return total


def ngram_scores(lm: BackoffLM, n: int, criterion: str = "entropy") -> np.ndarray:
    """How much each n-gram (n >= 2) matters, larger = keep. "entropy": the relative entropy the
    model gains by dropping it alone (Stolcke 1998, as SRILM's -prune computes it):

        D = -P(h) [ p(w|h) (log p'(w|h) - log p(w|h)) + (log bo'(h) - log bo(h)) (1 - S(h)) ]

    with S(h) the listed mass after h, p'(w|h) = bo'(h) p(w|h'), bo'(h) = (1 - S(h) + p(w|h)) /
    (1 - S'(h) + p(w|h')) and S'(h) the same words' mass after h'. "probability": P(h) p(w|h),
    the n-gram's joint probability. Needs a closed model."""
    if criterion not in ("entropy", "probability"):
        raise ASRError(f"unknown pruning criterion {criterion!r}: use 'entropy' or 'probability'")
    grams = lm.grams[n]
    history = _history_log10_prob(lm, grams[:, :-1])
    logp = lm.logp[n]
    if criterion == "probability":
        return history + logp
    ctx = context_rows(lm, n)
    size = len(lm.grams[n - 1])
    p = 10.0 ** logp
    lower_logp = lm.logprob(grams[:, 1:])
    lower = 10.0 ** lower_logp
    numerator = np.maximum(1 - np.bincount(ctx, p, minlength=size), 0.0)[ctx]
    denominator = np.maximum(1 - np.bincount(ctx, lower, minlength=size), 0.0)[ctx]
    log_bo = np.log10(np.maximum(numerator, _TINY)) - np.log10(np.maximum(denominator, _TINY))
    log_bo_new = np.log10(numerator + p) - np.log10(np.maximum(denominator + lower, _TINY))
    ln10 = np.log(10.0)
    change = p * (log_bo_new + lower_logp - logp) + (log_bo_new - log_bo) * numerator
    return -(10.0 ** history) * change * ln10


def prune_ngrams(lm: BackoffLM, threshold: float | None = None, max_ngrams: int | None = None,
                 criterion: str = "entropy", scores: list[np.ndarray] | None = None) -> BackoffLM:
    """The model without the bigrams and up that matter least (`ngram_scores`): those scoring
    below `threshold`, and/or all but the `max_ngrams` best (over all orders >= 2 together).
    Every context and suffix of a kept n-gram is kept; the unigrams all stay. Back-off weights
    are then recomputed so each context sums to 1 (the kept probabilities are unchanged, as in
    SRILM). Scores are computed on the unpruned model, n-gram by n-gram (`scores`, indexed by
    order, gives them precomputed: several prunings of one model). Needs a closed model."""
    if lm.order < 2 or (threshold is None and max_ngrams is None):
        return lm
    if scores is None:
        scores = [None, None] + [ngram_scores(lm, n, criterion) for n in range(2, lm.order + 1)]
    keep = [None, np.ones(len(lm.words), dtype=bool)] + [np.ones(len(s), dtype=bool) for s in scores[2:]]
    if threshold is not None:
        for n in range(2, lm.order + 1):
            keep[n] &= scores[n] >= threshold
    if max_ngrams is not None:
        pooled = np.concatenate(scores[2:])
        if max_ngrams < len(pooled):
            cut = np.partition(pooled, len(pooled) - max_ngrams)[len(pooled) - max_ngrams] if max_ngrams > 0 else np.inf
            for n in range(2, lm.order + 1):
                keep[n] &= scores[n] >= cut
    for n in range(lm.order, 2, -1):  # keep what the kept n-grams stand on
        keep[n - 1][context_rows(lm, n)[keep[n]]] = True
        keep[n - 1][_suffix_rows(lm, n)[keep[n]]] = True
    return recompute_backoffs(select_ngrams(lm, keep))


def mix(lm_a: BackoffLM, lm_b: BackoffLM, weight_a: float) -> BackoffLM:
    """The linear interpolation weight_a * lm_a + (1 - weight_a) * lm_b as one back-off model
    (SRILM's `-mix-lm -lambda`, see the module docstring). Both models should be normalised
    and closed; the result is both. `<s>` keeps lm_a's unigram value (lm_b's if lm_a lacks it)."""
    if not 0.0 <= weight_a <= 1.0:
        raise ASRError(f"an interpolation weight is between 0 and 1, got {weight_a}")
    in_a = set(lm_a.words)
    words = list(lm_a.words) + [w for w in lm_b.words if w not in in_a]
    index = {w: i for i, w in enumerate(words)}
    to_union = [np.array([index[w] for w in lm.words]) for lm in (lm_a, lm_b)]
    from_union = []
    for lm in (lm_a, lm_b):
        back = np.full(len(words), -1, dtype=np.int64)
        back[[index[w] for w in lm.words]] = np.arange(len(lm.words))
        from_union.append(back)
    order = max(lm_a.order, lm_b.order)
    grams, logp, logbo = [None], [None], [None]
    for n in range(1, order + 1):
        parts = [mapping[lm.grams[n]] for lm, mapping in zip((lm_a, lm_b), to_union) if n <= lm.order]
        union = np.unique(np.concatenate(parts), axis=0) if n > 1 else np.arange(len(words))[:, None]
        prob = np.zeros(len(union))
        for lm, back, w in zip((lm_a, lm_b), from_union, (weight_a, 1 - weight_a)):
            if w > 0:
                prob += w * 10.0 ** lm.logprob(back[union])
        grams.append(union)
        with np.errstate(divide="ignore"):
            logp.append(np.log10(prob))
        logbo.append(np.zeros(len(union)))
    if BOS in index:
        source = lm_a if BOS in lm_a.words else lm_b
        logp[1][index[BOS]] = source.logp[1][source.words.index(BOS)]
    mixed = BackoffLM.from_arrays(words, grams, logp, logbo)
    return recompute_backoffs(normalise_unigrams(close_ngrams(mixed)))
