"""Build the n-gram LM (over words, or over BPE pieces) and the lexicon used by beam search (no KenLM/SRILM needed).

`build_arpa` does what KenLM's `lmplz --discount_fallback` does, without pruning:

- Each sentence is whitespace-split and wrapped in `<s> ... </s>`.
- Counts: the highest order and n-grams starting with `<s>` keep raw counts; every other
  lower-order n-gram counts its distinct left extensions (Kneser-Ney continuation counts).
- Discounts D1, D2, D3+ per order from that order's count-of-counts t1..t4 (Chen & Goodman):
  Y = t1 / (t1 + 2 t2), Dk = k - (k + 1) Y t(k+1) / t(k). lmplz accepts them when t1, t2, t3 > 0
  and 0 <= Dk <= k (so t4 = 0, giving D3+ = 3, is fine); otherwise, as in tiny corpora, the
  order uses the fallback (0.5, 1, 1.5), as `lmplz --discount_fallback` does.
- Interpolation: p(w | h) = (c(hw) - D(c(hw))) / c(h.) + gamma(h) p(w | h'), where
  gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / c(h.) is the mass taken by discounting.
  Unigrams interpolate with the uniform distribution over the vocabulary (every word, `</s>`
  and `<unk>`; not `<s>`, which is never predicted).
- `<unk>` is never counted, so its whole probability is its uniform share gamma() / |V|:
  the mass the unigram discounts set aside, split evenly over the vocabulary.
- ARPA output: the interpolated probability of each seen n-gram, and back-off weight
  gamma(h) for each context h, so that back-off reproduces the interpolated model exactly
  and every context's distribution sums to 1. `<s>` has probability 1 (log10 0), as lmplz writes
  it: it is never predicted, only its back-off weight is used.
"""

from __future__ import annotations

import io
import math
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from dataclasses import dataclass

from asr.atomic import write_text_atomically
from asr.errors import ASRError
from asr.text import Vocab

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
WORD_BOUNDARY = "|"  # the token that ends every lexicon spelling (flashlight/torchaudio style)
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz --discount_fallback defaults for D1, D2, D3+
WORD_LM_ORDER, PIECE_LM_ORDER = 3, 6  # pieces are shorter than words: a piece LM needs a longer history

Ngram = tuple[str, ...]


@dataclass(frozen=True)
class Discounts:
    """Modified Kneser-Ney discounts of one order: D1, D2 and D3+ (for counts >= 3)."""

    d1: float
    d2: float
    d3: float

    def __call__(self, count: int) -> float:
        return self.d1 if count == 1 else self.d2 if count == 2 else self.d3

    @classmethod
    def estimate(cls, counts: Iterable[int]) -> Discounts:
        """From count-of-counts t1..t4, as lmplz does; its fallback when t1, t2 or t3 is 0 or a
        discount falls outside [0, k] (kpu/kenlm lm/builder/adjust_counts.cc)."""
        t = [0] * 5
        for c in counts:
            if c <= 4:
                t[c] += 1
        if 0 in t[1:4]:
            return cls(*FALLBACK_DISCOUNTS)
        y = t[1] / (t[1] + 2 * t[2])
        ds = tuple(k - (k + 1) * y * t[k + 1] / t[k] for k in (1, 2, 3))
        if not all(0 <= d <= k for k, d in zip((1, 2, 3), ds)):
            return cls(*FALLBACK_DISCOUNTS)
        return cls(*ds)


def lm_words(sentences: Iterable[str]) -> set[str]:
    """Every whitespace-separated word of the sentences."""
    return {w for s in sentences for w in s.split()}


def _count(sentences: Iterable[str], order: int) -> list[dict[Ngram, int]]:
    """counts[n] maps each n-gram (n = 1..order) to its raw or continuation count; counts[0] unused."""
    counts: list[dict[Ngram, int]] = [defaultdict(int) for _ in range(order + 1)]
    n_sentences = 0
    for line_no, sentence in enumerate(sentences, 1):
        words = sentence.split()
        if not words:
            continue
        if BOS in words or EOS in words:
            raise ASRError(f"LM text line {line_no}: {BOS!r} and {EOS!r} are added automatically; remove them")
        n_sentences += 1
        tokens = (BOS, *words, EOS)
        for i in range(1, len(tokens)):  # the n-gram ending at each predicted token
            gram = tokens[max(0, i - order + 1):i + 1]  # shorter than `order` only when it starts with <s>
            counts[len(gram)][gram] += 1
    if n_sentences == 0:
        raise ASRError("LM text is empty: give at least one sentence with a word in it")
    for n in range(order - 1, 0, -1):  # continuation counts: distinct left extensions
        for gram in counts[n + 1]:
            counts[n][gram[1:]] += 1
    return counts


def build_arpa(sentences: Iterable[str], order: int = 3, discount: str = "kneser-ney") -> str:
    """ARPA text of an interpolated modified Kneser-Ney word `order`-gram model of the sentences."""
    if order < 1:
        raise ASRError(f"LM order must be at least 1, got {order}")
    if discount != "kneser-ney":
        raise ASRError(f"unknown LM discount {discount!r}; only 'kneser-ney' is implemented")
    counts = _count(sentences, order)
    vocab = sorted({g[0] for g in counts[1]} | {UNK})  # every predictable word; <s> is not one
    prob: list[dict[Ngram, float]] = [{} for _ in range(order + 1)]  # interpolated probabilities
    bow: dict[Ngram, float] = {}  # gamma(h) of every context h that has extensions
    for n in range(1, order + 1):
        discounts = Discounts.estimate(counts[n].values())
        total: dict[Ngram, int] = defaultdict(int)
        taken: dict[Ngram, float] = defaultdict(float)
        for gram, c in counts[n].items():
            total[gram[:-1]] += c
            taken[gram[:-1]] += discounts(c)
        for h in total:
            bow[h] = taken[h] / total[h]
        grams = counts[n] if n > 1 else {(w,): counts[1].get((w,), 0) for w in vocab}
        for gram, c in grams.items():
            h = gram[:-1]
            lower = prob[n - 1][gram[1:]] if n > 1 else 1 / len(vocab)
            own = (c - discounts(c)) / total[h] if c else 0.0  # only <unk> has c == 0
            prob[n][gram] = own + bow[h] * lower
    prob[1][(BOS,)] = 1.0  # never predicted: lmplz's probability 1; listed for its back-off weight
    lines = ["\\data\\"]
    lines += [f"ngram {n}={len(prob[n])}" for n in range(1, order + 1)]
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        for gram in sorted(prob[n]):
            line = f"{math.log10(prob[n][gram]):.7g}\t{' '.join(gram)}"
            if n < order and gram in bow:
                line += f"\t{math.log10(bow[gram]):.7g}"
            lines.append(line)
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def write_arpa(path: str | os.PathLike, sentences: Iterable[str], order: int = 3) -> None:
    """Build the LM of the sentences (see `build_arpa`) and write it to `path` as ARPA text."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, build_arpa(sentences, order))


def _read_lines(path: str | os.PathLike) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ASRError(f"{path}: cannot read ({err})") from None


def read_arpa(path: str | os.PathLike) -> list[dict[Ngram, tuple[float, float]]]:
    """ARPA file -> tables[n][ngram] = (log10 prob, log10 back-off weight or 0.0); tables[0] is empty."""
    tables: list[dict[Ngram, tuple[float, float]]] = [{}]
    expected: dict[int, int] = {}
    for line_no, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        try:
            if not fields or line in ("\\data\\", "\\end\\"):
                continue
            if fields[0] == "ngram":
                n, count = fields[1].split("=")
                expected[int(n)] = int(count)
            elif line.startswith("\\") and line.endswith("-grams:"):
                if int(line[1:-len("-grams:")]) != len(tables):
                    raise ValueError("sections out of order")
                tables.append({})
            else:
                n = len(tables) - 1
                if n == 0 or len(fields) not in (n + 1, n + 2):
                    raise ValueError(f"expected log10 prob, {n} words, optional back-off weight")
                backoff = float(fields[n + 1]) if len(fields) > n + 1 else 0.0
                tables[n][tuple(fields[1:n + 1])] = (float(fields[0]), backoff)
        except ValueError as err:
            raise ASRError(f"{path}:{line_no}: not ARPA ({err}): {line!r}") from None
    found = {n: len(tables[n]) for n in range(1, len(tables))}
    if not found or found != expected:
        raise ASRError(f"{path}: header says {expected} n-grams per order, sections hold {found}")
    return tables


def piece_sentences(texts: Iterable[str], vocab: Vocab) -> list[str]:
    """Normalised texts as space-separated BPE pieces: the sentences of a piece LM."""
    return [" ".join(vocab.tokens[i] for i in vocab.encode(text)) for text in texts]


def arpa_order(arpa: str) -> int:
    """The highest n in an ARPA text's `ngram n=count` header lines."""
    orders = [int(line.split()[1].split("=")[0]) for line in io.StringIO(arpa) if line.startswith("ngram ")]
    if not orders:
        raise ASRError("not ARPA: no `ngram n=count` header lines")
    return max(orders)


def arpa_unigrams(arpa: str) -> set[str]:
    """The words of an ARPA text's 1-gram section; the text after that section is not read."""
    words: set[str] = set()
    inside = False
    for line in io.StringIO(arpa):
        line = line.strip()
        if line == "\\1-grams:":
            inside = True
        elif inside and (line.startswith("\\") or not line):
            break
        elif inside:
            words.add(line.split()[1])
    return words


def check_piece_lm(arpa: str, vocab: Vocab, source: str | os.PathLike) -> None:
    """Raise ASRError (naming source) unless the ARPA text is an LM over this vocabulary's pieces."""
    foreign = sorted(arpa_unigrams(arpa) - {BOS, EOS, UNK} - set(vocab.tokens))
    if foreign:
        raise ASRError(f"{source}: not an LM over this model's pieces (unknown units {foreign[:5]}); "
                       "build it with `asr lm --vocab`")


def write_lexicon(path: str | os.PathLike, words: Iterable[str]) -> None:
    """One line per word, sorted and unique: `WORD W O R D |` (its characters, then the boundary)."""
    unique = sorted(set(words))
    bad = [w for w in unique if not w or any(c.isspace() for c in w)]
    if bad:
        raise ASRError(f"lexicon words must be non-empty and have no spaces: {bad[:5]}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, lexicon_text(unique))


def lexicon_text(words: Iterable[str]) -> str:
    """The lexicon format flashlight reads: one `WORD W O R D |` line per word (its characters, then
    the word boundary)."""
    return "".join(f"{w} {' '.join(w)} {WORD_BOUNDARY}\n" for w in words)


def read_lexicon(path: str | os.PathLike) -> dict[str, list[str]]:
    """Lexicon file -> {word: spelling tokens}; the first spelling of a word listed twice wins."""
    lexicon: dict[str, list[str]] = {}
    for line_no, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        if len(fields) == 1:
            raise ASRError(f"{path}:{line_no}: a lexicon line is a word then its spelling, got {line!r}")
        if fields:
            lexicon.setdefault(fields[0], fields[1:])
    return lexicon


def build_model_lm(texts: list[str], vocab: Vocab | None, out_dir: str | os.PathLike, order: int = 0) -> str:
    """The n-gram LM a model decodes with, from training texts, into out_dir: for a BPE model an
    `order`-gram (default PIECE_LM_ORDER) over its pieces (lm.arpa); otherwise over words (default
    WORD_LM_ORDER), with the lexicon of those words (lexicon.txt). Returns a one-line summary."""
    os.makedirs(out_dir, exist_ok=True)
    if vocab is not None and vocab.kind == "bpe":
        sentences, order, units = piece_sentences(texts, vocab), order or PIECE_LM_ORDER, "pieces"
    else:
        sentences, order, units = texts, order or WORD_LM_ORDER, "words"
        write_lexicon(os.path.join(out_dir, "lexicon.txt"), lm_words(texts))
    write_arpa(os.path.join(out_dir, "lm.arpa"), sentences, order=order)
    return f"{order}-gram LM over {len(lm_words(sentences))} {units} from {len(texts)} sentences -> {out_dir}"


def read_arpa_text(path: str | os.PathLike) -> str:
    """An ARPA file's text, for a checkpoint to carry; a file that is not UTF-8 text is an ASRError."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ASRError(f"{path}: not an ARPA language model (ARPA is text; this file is not UTF-8 text "
                       f"at byte {err.start}); make one with `asr lm`") from None
