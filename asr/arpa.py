"""Back-off n-gram models (the ARPA format) as numpy arrays: read, write, score, renormalise.

A `BackoffLM` over words `words[0..V)` holds, for each order n = 1..N,

    grams[n]  (count, n) word ids, rows sorted (lexicographically, first word most significant)
    logp[n]   (count,)   log10 p(w_n | w_1 .. w_{n-1})
    logbo[n]  (count,)   log10 back-off weight of the n-gram as a context (0: none; always 0 at order N)

Unigram row i is word i (`grams[1]` is `arange(V)`); lists are indexed by order, index 0 unused,
as `asr.lm.read_arpa`'s tables are. Back-off: p(w | h) = p(hw) if hw is listed, else
bo(h) p(w | h'), with h' = h less its first word and bo(h) = 1 when h is not listed.

`<s>` is never predicted: it is left out of every distribution (sums, renormalisation), and
its unigram log-probability is kept as the model gives it (lmplz writes 0, SRILM and
pocketsphinx -99). A model is *closed* when every listed n-gram's context (its first n-1
words) and suffix (its last n-1 words) are listed too; lmplz and SRILM write closed models,
and renormalisation needs one (`close_ngrams` makes one without changing any probability).

This module is for building LMs (numpy only); decoding hands the ARPA text to KenLM.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr.atomic import write_text_atomically
from asr.errors import ASRError
from asr.lm import BOS, EOS, UNK

LOG10_ZERO = -99.0  # what ARPA files write for probability 0 (SRILM's convention)
MIN_BACKOFF_MASS = 1e-9  # a context's explicit n-grams may hold at most 1 - this of its mass
MIN_LOWER_MASS = 1e-9  # the smallest lower-order mass a back-off weight is divided by


@dataclass
class BackoffLM:
    """A back-off n-gram model; see the module docstring for the arrays. Build one with
    `BackoffLM.from_arrays` (which sorts the rows and checks them), not by hand."""

    words: tuple[str, ...]
    grams: list[np.ndarray]
    logp: list[np.ndarray]
    logbo: list[np.ndarray]
    _keys: list[np.ndarray] = field(default_factory=list, repr=False)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def from_arrays(cls, words: Sequence[str], grams: Sequence[np.ndarray], logp: Sequence[np.ndarray],
                    logbo: Sequence[np.ndarray]) -> BackoffLM:
        """The model of these arrays (indexed by order, index 0 unused); rows of each order are
        sorted here. Unigrams must be one row per word: row i (any order) of `grams[1]` names word
        grams[1][i, 0], and every word has exactly one."""
        words = tuple(words)
        if len(set(words)) != len(words):
            raise ASRError(f"an LM lists a word twice: {sorted(w for w in set(words) if words.count(w) > 1)[:5]}")
        order = len(grams) - 1
        if order < 1:
            raise ASRError("an LM needs at least unigrams")
        lm = cls(words, [np.zeros((0, 0), np.int32)], [np.zeros(0)], [np.zeros(0)], [np.zeros(0, np.int64)])
        for n in range(1, order + 1):
            g = np.asarray(grams[n], dtype=np.int64).reshape(-1, n)
            p = np.asarray(logp[n], dtype=np.float64).reshape(-1)
            b = np.asarray(logbo[n], dtype=np.float64).reshape(-1)
            if not len(g) == len(p) == len(b):
                raise ASRError(f"{n}-grams: {len(g)} rows, {len(p)} probabilities, {len(b)} back-off weights")
            if len(g) and (g.min() < 0 or g.max() >= len(words)):
                raise ASRError(f"{n}-grams: word ids outside 0..{len(words) - 1}")
            keys = lm._pack(g)
            sort = np.argsort(keys, kind="stable")
            keys = keys[sort]
            if len(keys) > 1 and (keys[1:] == keys[:-1]).any():
                dup = g[sort][1:][keys[1:] == keys[:-1]][0]
                raise ASRError(f"an LM lists the {n}-gram {' '.join(words[i] for i in dup)!r} twice")
            if n == 1 and not np.array_equal(keys, np.arange(len(words))):
                raise ASRError("an LM's unigrams must list every word exactly once")
            lm.grams.append(g[sort].astype(np.int32))
            lm.logp.append(p[sort])
            lm.logbo.append(b[sort] if n < order else np.zeros(len(g)))
            lm._keys.append(keys)
        lm._index = {w: i for i, w in enumerate(words)}
        return lm

    @property
    def order(self) -> int:
        return len(self.grams) - 1

    def counts(self) -> list[int]:
        """Number of n-grams of each order n = 1..N."""
        return [len(self.grams[n]) for n in range(1, self.order + 1)]

    def ids(self, words: Iterable[str]) -> np.ndarray:
        """Word ids, -1 for words outside the model."""
        return np.array([self._index.get(w, -1) for w in words], dtype=np.int64)

    def _pack(self, grams: np.ndarray) -> np.ndarray:
        """One int64 key per row of word ids (first word most significant); -1 where a row has an id < 0."""
        n = grams.shape[1]
        bits = max(1, len(self.words).bit_length())
        if n * bits > 63:
            raise ASRError(f"{n}-grams over {len(self.words)} words do not fit a 63-bit key")
        keys = np.zeros(len(grams), dtype=np.int64)
        for i in range(n):
            keys = (keys << bits) | np.maximum(grams[:, i], 0)
        return np.where((grams < 0).any(axis=1), -1, keys) if len(grams) else keys

    def find(self, grams: np.ndarray) -> np.ndarray:
        """Row of each n-gram (rows of word ids, n = grams.shape[1] <= order) in its order's
        arrays, -1 where it is not listed."""
        grams = np.asarray(grams, dtype=np.int64)
        n = grams.shape[1]
        keys = self._pack(grams)
        table = self._keys[n]
        if len(table) == 0:
            return np.full(len(grams), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(table, keys), len(table) - 1)
        return np.where((table[pos] == keys) & (keys >= 0), pos, -1)

    def logprob(self, grams: np.ndarray) -> np.ndarray:
        """log10 p(w_n | w_1 .. w_{n-1}) of each row of word ids (-1: a word outside the model),
        with back-off; rows longer than the order use their last N words. A word outside the model
        has probability 0 (-inf); one in the history is a context nothing extends."""
        grams = np.asarray(grams, dtype=np.int64)
        if grams.ndim != 2 or grams.shape[1] < 1:
            raise ValueError("logprob needs rows of at least one word id")
        if grams.shape[1] > self.order:
            grams = grams[:, -self.order:]
        n = grams.shape[1]
        out = np.full(len(grams), -np.inf)
        pos = self.find(grams)
        hit = pos >= 0
        out[hit] = self.logp[n][pos[hit]]
        miss = ~hit
        if n > 1 and miss.any():
            rest = grams[miss]
            ctx = self.find(rest[:, :-1])
            backoff = np.where(ctx >= 0, self.logbo[n - 1][np.maximum(ctx, 0)], 0.0)
            out[miss] = backoff + self.logprob(rest[:, 1:])
        return out

    def replace(self, logp: Sequence[np.ndarray] | None = None, logbo: Sequence[np.ndarray] | None = None) -> BackoffLM:
        """The same n-grams with new log-probabilities and/or back-off weights (arrays in this model's row order)."""
        return BackoffLM(self.words, self.grams, list(logp) if logp is not None else list(self.logp),
                         list(logbo) if logbo is not None else list(self.logbo), self._keys, self._index)


def select_ngrams(lm: BackoffLM, keep: Sequence[np.ndarray], words: np.ndarray | None = None) -> BackoffLM:
    """The model's rows where keep[n] (a boolean mask per order, index 0 unused) is true, its
    probabilities and weights unchanged; with `words` (a mask over word ids) the kept words get
    new, dense ids. Unigram masks must agree with `words`."""
    if words is None:
        words = keep[1]
    new_id = np.cumsum(words) - 1
    grams, logp, logbo = [None], [None], [None]
    for n in range(1, lm.order + 1):
        mask = keep[n]
        grams.append(new_id[lm.grams[n][mask]])
        logp.append(lm.logp[n][mask])
        logbo.append(lm.logbo[n][mask])
    return BackoffLM.from_arrays([w for w, k in zip(lm.words, words) if k], grams, logp, logbo)


def close_ngrams(lm: BackoffLM) -> BackoffLM:
    """The model with every missing context and suffix of a listed n-gram added, each with its
    back-off probability and no back-off weight of its own: the same distributions, now closed.
    (pocketsphinx's trie, for one, keeps suffixes but not always contexts.)"""
    grams, logp, logbo = list(lm.grams), list(lm.logp), list(lm.logbo)
    current = lm
    for n in range(lm.order, 1, -1):
        needed = np.concatenate([grams[n][:, :-1], grams[n][:, 1:]])
        missing = needed[current.find(needed) < 0]
        if len(missing) == 0:
            continue
        missing = np.unique(missing, axis=0)
        grams[n - 1] = np.concatenate([grams[n - 1], missing])
        logp[n - 1] = np.concatenate([logp[n - 1], current.logprob(missing)])
        logbo[n - 1] = np.concatenate([logbo[n - 1], np.zeros(len(missing))])
        current = BackoffLM.from_arrays(lm.words, grams, logp, logbo)
        grams, logp, logbo = list(current.grams), list(current.logp), list(current.logbo)
    return current


def context_rows(lm: BackoffLM, n: int) -> np.ndarray:
    """Row of each n-gram's context (its first n-1 words) among the (n-1)-grams; needs a closed model."""
    ctx = lm.find(lm.grams[n][:, :-1])
    if (ctx < 0).any():
        bad = lm.grams[n][ctx < 0][0]
        raise ASRError(f"the {n}-gram {' '.join(lm.words[i] for i in bad)!r} has no listed context: "
                       "close the model first (asr.arpa.close_ngrams)")
    return ctx


def predicted_mask(lm: BackoffLM) -> np.ndarray:
    """True for every word a distribution covers: all but `<s>`."""
    mask = np.ones(len(lm.words), dtype=bool)
    if BOS in lm._index:
        mask[lm._index[BOS]] = False
    return mask


def normalise_unigrams(lm: BackoffLM) -> BackoffLM:
    """The model with its unigram probabilities (all but `<s>`'s) scaled to sum to 1."""
    predicted = predicted_mask(lm)
    logp = list(lm.logp)
    uni = logp[1].copy()
    uni[predicted] -= math.log10(np.sum(10.0 ** uni[predicted]))
    logp[1] = uni
    return lm.replace(logp=logp)


def recompute_backoffs(lm: BackoffLM) -> BackoffLM:
    """The model with every back-off weight set so that each context's distribution sums to 1:
    bo(h) = (1 - sum of p(w | h) over the w listed after h) / (1 - sum of p(w | h') over the
    same w), order by order from the bigrams up, each with the lower orders' new weights. The
    listed probabilities are kept (as SRILM does after pruning), except in a context whose
    listed n-grams hold more than 1 - MIN_BACKOFF_MASS, where they are scaled down to that.
    Unigrams should already sum to 1 (`normalise_unigrams`). Needs a closed model."""
    logp, logbo = list(lm.logp), list(lm.logbo)
    current = lm
    for n in range(2, lm.order + 1):
        ctx = context_rows(lm, n)
        size = len(lm.grams[n - 1])
        explicit = np.bincount(ctx, 10.0 ** logp[n], minlength=size)
        full = explicit > 1 - MIN_BACKOFF_MASS
        if full.any():  # scale the listed probabilities of over-full contexts down
            scale = np.where(full, np.log10((1 - MIN_BACKOFF_MASS) / np.maximum(explicit, 1e-300)), 0.0)
            logp[n] = logp[n] + scale[ctx]
            explicit = np.where(full, 1 - MIN_BACKOFF_MASS, explicit)
        lower = np.bincount(ctx, 10.0 ** current.logprob(lm.grams[n][:, 1:]), minlength=size)
        extended = np.bincount(ctx, minlength=size) > 0
        numerator = 1 - explicit
        denominator = np.maximum(1 - lower, MIN_LOWER_MASS)
        logbo[n - 1] = np.where(extended, np.log10(np.where(extended, numerator / denominator, 1.0)), 0.0)
        current = lm.replace(logp=logp, logbo=logbo)
    return current


def next_word_logprobs(lm: BackoffLM, contexts: np.ndarray) -> np.ndarray:
    """(C, V) log10 p(w | context) of every word after each context (rows of word ids); `<s>`: -inf."""
    contexts = np.asarray(contexts, dtype=np.int64).reshape(len(contexts), -1)
    vocab = len(lm.words)
    grams = np.concatenate([np.repeat(contexts, vocab, axis=0),
                            np.tile(np.arange(vocab), len(contexts))[:, None]], axis=1)
    out = lm.logprob(grams).reshape(len(contexts), vocab)
    out[:, ~predicted_mask(lm)] = -np.inf
    return out


def context_masses(lm: BackoffLM, contexts: np.ndarray) -> np.ndarray:
    """Total probability of the next word after each context (rows of word ids): 1 in a normalised model."""
    return np.sum(10.0 ** next_word_logprobs(lm, contexts), axis=1)


@dataclass(frozen=True)
class Perplexity:
    """Per-word perplexity as KenLM's `query` reports it: each sentence's words and its `</s>` are
    predicted; a word outside the model (an OOV) is `<unk>`, in the history too. `perplexity`
    leaves the OOVs' own predictions out (as SRILM's `ngram -ppl` does); `perplexity_with_oovs`
    scores them as `<unk>` (nan when the model has no `<unk>`)."""

    perplexity: float
    perplexity_with_oovs: float
    words: int
    oovs: int
    sentences: int

    @property
    def oov_rate(self) -> float:
        return self.oovs / self.words if self.words else 0.0


def perplexity(lm: BackoffLM, sentences: Iterable[str]) -> Perplexity:
    """Perplexity of the whitespace-split sentences (see `Perplexity`)."""
    queries: dict[tuple[int, bool], list[list[int]]] = {}
    words = oovs = n_sentences = 0
    bos, eos, unk = lm._index.get(BOS, -1), lm._index[EOS], lm._index.get(UNK, -1)
    for sentence in sentences:
        ids = lm.ids(sentence.split())
        if not len(ids):
            continue
        n_sentences += 1
        words += len(ids)
        oov = [False, *(ids < 0).tolist(), False]
        tokens = [bos, *np.where(ids < 0, unk, ids).tolist(), eos]
        for i in range(1, len(tokens)):
            oovs += oov[i]
            gram = tokens[max(0, i - lm.order + 1):i + 1]
            queries.setdefault((len(gram), oov[i]), []).append(gram)
    known = sum(float(np.sum(lm.logprob(np.array(rows)))) for (_, o), rows in queries.items() if not o)
    unknown = sum(float(np.sum(lm.logprob(np.array(rows)))) for (_, o), rows in queries.items() if o)
    scored = words - oovs + n_sentences
    return Perplexity(10 ** (-known / scored) if scored else float("nan"),
                      10 ** (-(known + unknown) / (words + n_sentences)) if unk >= 0 and n_sentences else float("nan"),
                      words, oovs, n_sentences)


# -- ARPA text -----------------------------------------------------------------------------------

def parse_arpa(text: str, source: str | os.PathLike = "ARPA text") -> BackoffLM:
    """A `BackoffLM` from ARPA text (anything before `\\data\\` is ignored); raises ASRError
    naming `source` and the line on anything else, or when the header's counts and the sections
    disagree."""
    expected: dict[int, int] = {}
    sections: list[tuple[list[str], list[float], list[float]]] = [([], [], [])]
    lines = iter(text.splitlines())
    line_no = 0
    for line_no, line in enumerate(lines, 1):
        if line.strip() == "\\data\\":
            break
    else:
        raise ASRError(f"{source}: not ARPA (no \\data\\ line)")
    ended = False
    for line_no, line in enumerate(lines, line_no + 1):
        line = line.strip()
        if not line:
            continue
        try:
            if line == "\\end\\":
                ended = True
                break
            if line.startswith("ngram "):
                n, count = line[6:].split("=")
                expected[int(n)] = int(count)
            elif line.startswith("\\") and line.endswith("-grams:"):
                if int(line[1:-len("-grams:")]) != len(sections):
                    raise ValueError("sections out of order")
                sections.append(([], [], []))
            else:
                n = len(sections) - 1
                fields = line.split()
                if n == 0 or len(fields) not in (n + 1, n + 2):
                    raise ValueError(f"expected log10 prob, {n} words, optional back-off weight")
                grams, logp, logbo = sections[n]
                grams.append(" ".join(fields[1:n + 1]))
                logp.append(float(fields[0]))
                logbo.append(float(fields[n + 1]) if len(fields) > n + 1 else 0.0)
        except ValueError as err:
            raise ASRError(f"{source}:{line_no}: not ARPA ({err}): {line!r}") from None
    found = {n: len(sections[n][0]) for n in range(1, len(sections))}
    if not ended or not found or found != expected:
        missing_end = "" if ended else " and there is no \\end\\ line"
        raise ASRError(f"{source}: header says {expected} n-grams per order, sections hold {found}"
                       f"{missing_end} (a truncated file?)")
    words = sections[1][0]
    index = {w: i for i, w in enumerate(words)}
    grams, logp, logbo = [None], [None], [None]
    for n in range(1, len(sections)):
        names, p, b = sections[n]
        try:
            ids = [index[w] for gram in names for w in gram.split()]
        except KeyError as err:
            raise ASRError(f"{source}: the {n}-grams use a word that is not a unigram: {err}") from None
        grams.append(np.array(ids, dtype=np.int64).reshape(-1, n))
        logp.append(np.array(p))
        logbo.append(np.array(b))
    grams[1] = np.arange(len(words))[:, None]
    return BackoffLM.from_arrays(words, grams, logp, logbo)


def read_arpa_lm(path: str | os.PathLike) -> BackoffLM:
    """The ARPA file at `path` as a `BackoffLM` (see `parse_arpa`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ASRError(f"{path}: cannot read ({err})") from None
    return parse_arpa(text, path)


def arpa_text(lm: BackoffLM, digits: int = 6) -> str:
    """The model as ARPA text: log10 values with `digits` significant digits (probability 0 as
    -99), a back-off weight on each line of a lower order whose weight is not 0."""
    fmt = f".{digits}g"
    lines = ["\\data\\", *(f"ngram {n}={c}" for n, c in enumerate(lm.counts(), 1))]
    words = lm.words
    for n in range(1, lm.order + 1):
        lines += ["", f"\\{n}-grams:"]
        logp = np.maximum(lm.logp[n], LOG10_ZERO).tolist()
        logbo = lm.logbo[n].tolist()
        grams = lm.grams[n].tolist()
        if n < lm.order:
            lines += [f"{p:{fmt}}\t{' '.join(words[i] for i in g)}" + (f"\t{b:{fmt}}" if b != 0.0 else "")
                      for p, g, b in zip(logp, grams, logbo)]
        else:
            lines += [f"{p:{fmt}}\t{' '.join(words[i] for i in g)}" for p, g in zip(logp, grams)]
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def write_arpa_lm(path: str | os.PathLike, lm: BackoffLM, digits: int = 6) -> int:
    """Write the model to `path` as ARPA text (see `arpa_text`); returns the file's size in bytes."""
    text = arpa_text(lm, digits)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, text)
    return len(text.encode("utf-8"))


# -- sampling ------------------------------------------------------------------------------------

MAX_REDRAWS = 200  # back-off redraws of one word before the last draw is kept (a non-normalised model)


def sample_sentences(lm: BackoffLM, count: int, rng: np.random.Generator, max_words: int = 40) -> list[str]:
    """`count` sentences drawn from the model, word by word from p(w | the last N-1 words) after
    `<s>` until `</s>` (or `max_words` words), back-off included; `<unk>` is drawn like any word.

    Each draw is exact for a normalised model: with the probability mass m(h) of the n-grams
    listed after the context h, one of them (in proportion to its probability); otherwise a
    draw from p(w | h') (h less its first word, recursively) redrawn while the word is one of
    those listed after h, since bo(h) p(w | h') is the probability of exactly the words not
    listed there. Sentences are drawn in parallel, one word position at a time. A sentence
    that reaches max_words ends there."""
    if count < 1:
        return []
    sampler = _Sampler(lm)
    bos, eos = lm._index.get(BOS, -1), lm._index[EOS]
    history = np.full((count, max(lm.order - 1, 0)), -1, dtype=np.int64)
    if lm.order > 1:
        history[:, -1] = bos
    words: list[list[int]] = [[] for _ in range(count)]
    active = np.arange(count)
    for _ in range(max_words):
        drawn = sampler.draw(lm.order, history[active], rng)
        ended = drawn == eos
        for i, w in zip(active[~ended].tolist(), drawn[~ended].tolist()):
            words[i].append(w)
        active, drawn = active[~ended], drawn[~ended]
        if not len(active):
            break
        if lm.order > 1:
            history[active] = np.concatenate([history[active, 1:], drawn[:, None]], axis=1)
    return [" ".join(lm.words[w] for w in sentence) for sentence in words]


class _Sampler:
    """Draws next words for many contexts at once (see `sample_sentences`)."""

    def __init__(self, lm: BackoffLM) -> None:
        self.lm = lm
        self.cum = [None] + [np.concatenate([[0.0], np.cumsum(10.0 ** lm.logp[n])]) for n in range(1, lm.order + 1)]
        unigram = np.where(predicted_mask(lm), 10.0 ** lm.logp[1], 0.0)
        self.unigram_cum = np.cumsum(unigram / unigram.sum())

    def draw(self, n: int, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One word after each row of `contexts` (the last n-1 words, -1 for none) at order n."""
        if n == 1 or contexts.shape[1] == 0:
            pick = np.searchsorted(self.unigram_cum, rng.random(len(contexts)) * self.unigram_cum[-1], side="right")
            return np.minimum(pick, len(self.unigram_cum) - 1)
        contexts = contexts[:, -(n - 1):]
        lo, hi = self._successors(n, contexts)
        mass = self.cum[n][hi] - self.cum[n][lo]
        u = rng.random(len(contexts))
        out = np.empty(len(contexts), dtype=np.int64)
        listed = u < mass
        if listed.any():
            row = np.searchsorted(self.cum[n], self.cum[n][lo[listed]] + u[listed], side="right") - 1
            out[listed] = self.lm.grams[n][np.clip(row, lo[listed], hi[listed] - 1), -1]
        pending = np.flatnonzero(~listed)
        for _ in range(MAX_REDRAWS):
            if not len(pending):
                break
            out[pending] = self.draw(n - 1, contexts[pending, 1:], rng)
            grams = np.concatenate([contexts[pending], out[pending, None]], axis=1)
            pending = pending[self.lm.find(grams) >= 0]
        return out

    def _successors(self, n: int, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) rows of the n-grams that extend each context (empty for a context with -1)."""
        keys = self.lm._keys[n]
        base = self.lm._pack(np.concatenate([contexts, np.zeros((len(contexts), 1), np.int64)], axis=1))
        lo = np.searchsorted(keys, base, side="left")
        hi = np.searchsorted(keys, base + len(self.lm.words) - 1, side="right")
        unknown = base < 0
        hi[unknown] = lo[unknown]
        return lo, hi
