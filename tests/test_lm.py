"""asr.lm: the Kneser-Ney ARPA builder, its reader, and the lexicon."""

import random
from math import log10

import pytest
import torch
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary
from torchaudio.models.decoder import ctc_decoder

from asr.errors import ASRError
from asr.lm import (BOS, EOS, FALLBACK_DISCOUNTS, UNK, Discounts, _count, build_arpa, lm_words, read_arpa,
                    read_lexicon, write_arpa, write_lexicon)


def make_corpus(n: int = 300, seed: int = 0) -> list[str]:
    """Half grammar sentences, half Zipf-distributed word strings: real count-of-counts at every order."""
    rng = random.Random(seed)
    subjects = ["the cat", "the dog", "a bird", "my friend", "the old man", "she", "he"]
    verbs = ["sees", "likes", "chases", "finds", "wants"]
    objects = ["the ball", "a fish", "the red car", "some bread", "it", "the cat"]
    tails = ["", "", "today", "again", "in the park", "every day"]
    words = [f"w{i}" for i in range(60)]
    zipf = [1 / rank for rank in range(1, 61)]

    def sentence() -> str:
        if rng.random() < 0.5:
            parts = [rng.choice(subjects), rng.choice(verbs), rng.choice(objects), rng.choice(tails)]
            return " ".join(filter(None, parts))
        return " ".join(rng.choices(words, zipf, k=rng.randint(2, 7)))

    return [sentence() for _ in range(n)]


CORPUS = make_corpus()
TINY = ["the cat sat", "the dog sat", "a cat ran"]


def log10_prob(tables, context: tuple[str, ...], word: str) -> float:
    """Standard ARPA back-off: P(w | h) = P(hw) if listed, else bow(h) * P(w | h minus its first word)."""
    longest = len(tables) - 2  # tables[0] is empty; the longest context is order - 1 words
    context = context[-longest:] if longest else ()
    backoff = 0.0
    while True:
        gram = (*context, word)
        if gram in tables[len(gram)]:
            return backoff + tables[len(gram)][gram][0]
        if not context:
            raise AssertionError(f"{word!r} is not in the unigrams")
        backoff += tables[len(context)].get(context, (0.0, 0.0))[1]
        context = context[1:]


def seen_contexts(sentences, order: int) -> set[tuple[str, ...]]:
    """Every history of (at most) order - 1 tokens that precedes a predicted token in the corpus."""
    contexts = set()
    for s in sentences:
        tokens = (BOS, *s.split(), EOS)
        for i in range(1, len(tokens)):
            contexts.add(tokens[max(0, i - order + 1):i])
    return contexts


def sentence_log10(tables, sentence: str) -> float:
    tokens = (BOS, *sentence.split(), EOS)
    return sum(log10_prob(tables, tokens[:i], tokens[i]) for i in range(1, len(tokens)))


@pytest.fixture(scope="module", params=[1, 2, 3])
def model(request, tmp_path_factory):
    order = request.param
    path = tmp_path_factory.mktemp("lm") / f"{order}gram.arpa"
    write_arpa(path, CORPUS, order=order)
    return order, path, read_arpa(path)


# --- ARPA structure and normalisation ----------------------------------------------------------


def test_header_counts_match_sections(model):
    order, path, tables = model
    text = path.read_text()
    assert text.startswith("\\data\\\n") and text.rstrip().endswith("\\end\\")
    assert len(tables) == order + 1
    for n in range(1, order + 1):
        assert f"ngram {n}={len(tables[n])}" in text
        assert all(len(gram) == n for gram in tables[n])


def test_unigrams_have_special_tokens(model):
    order, _, tables = model
    unigrams = {g[0]: v for g, v in tables[1].items()}
    assert set(unigrams) == lm_words(CORPUS) | {BOS, EOS, UNK}
    assert unigrams[BOS][0] == 0.0  # p(<s>) = 1, as lmplz writes it: never predicted
    assert -99 < unigrams[UNK][0] < min(p for w, (p, _) in unigrams.items() if w not in (BOS, UNK))
    assert all(p < 0 for w, (p, _) in unigrams.items() if w != BOS)


def test_every_seen_context_sums_to_one(model):
    order, _, tables = model
    vocab = [g[0] for g in tables[1] if g[0] != BOS]
    contexts = seen_contexts(CORPUS, order)
    assert len(contexts) > (10 if order > 1 else 0)
    for context in contexts:
        total = sum(10 ** log10_prob(tables, context, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), context


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_tiny_corpus_sums_to_one(order, tmp_path):
    """Degenerate count-of-counts (fallback discounts) still give proper distributions."""
    write_arpa(tmp_path / "lm.arpa", TINY, order=order)
    tables = read_arpa(tmp_path / "lm.arpa")
    vocab = [g[0] for g in tables[1] if g[0] != BOS]
    for context in seen_contexts(TINY, order):
        assert sum(10 ** log10_prob(tables, context, w) for w in vocab) == pytest.approx(1.0, abs=1e-4)


# --- Discounts ---------------------------------------------------------------------------------


def test_discounts_from_count_of_counts():
    counts = [1] * 40 + [2] * 20 + [3] * 10 + [4] * 5 + [9] * 3  # t1..t4 = 40, 20, 10, 5
    d = Discounts.estimate(counts)
    y = 40 / (40 + 2 * 20)
    assert (d.d1, d.d2, d.d3) == pytest.approx((1 - 2 * y * 20 / 40, 2 - 3 * y * 10 / 20, 3 - 4 * y * 5 / 10))
    assert d(1) == d.d1 and d(2) == d.d2 and d(3) == d(17) == d.d3


def test_test_corpus_estimates_discounts_at_every_order():
    """So the sums-to-one tests cover estimated discounts (CORPUS) as well as the fallback (TINY)."""
    counts = _count(CORPUS, 3)
    assert all(Discounts.estimate(counts[n].values()) != Discounts(*FALLBACK_DISCOUNTS) for n in (1, 2, 3))
    counts = _count(TINY, 3)
    assert all(Discounts.estimate(counts[n].values()) == Discounts(*FALLBACK_DISCOUNTS) for n in (1, 2, 3))


@pytest.mark.parametrize("counts", [[], [1, 1, 1], [1, 2, 5], [2, 2, 3]])
def test_degenerate_count_of_counts_fall_back(counts):
    assert Discounts.estimate(counts) == Discounts(*FALLBACK_DISCOUNTS)


# --- lmplz's numbers, by hand -------------------------------------------------------------------
#
# KenLM's estimator (lmplz -o 3; kpu/kenlm lm/builder: adjust_counts.cc, initial_probabilities.cc,
# interpolate.cc) on five sentences, worked out with exact fractions. Padded:
#   <s> a b </s>  (x2)      <s> a b b </s>      <s> b a b </s>  (x2)
#
# Counts. Trigrams keep raw counts; so do the shorter n-grams that start a sentence (<s> w).
# Every other lower-order n-gram gets its continuation count: the number of distinct words
# (<s> included) seen to its left.
#   3-grams: <s> a b 3, a b </s> 4, a b b 1, b b </s> 1, <s> b a 2, b a b 2
#   2-grams: <s> a 3, <s> b 2 (raw); a b 2 (<s>, b), b </s> 2 (a, b), b b 1 (a), b a 1 (<s>)
#   1-grams: a 2 (<s>, b), b 3 (<s>, a, b), </s> 1 (b); <unk> and <s> 0 (never predicted)
#
# Discounts per order from the count-of-counts t1..t4 (Chen & Goodman, eq. 26):
#   Y = t1 / (t1 + 2 t2),  Dk = k - (k + 1) Y t(k+1) / tk,  accepted when t1, t2, t3 > 0 and
#   0 <= Dk <= k (lmplz refuses the data otherwise, or with --discount_fallback uses 0.5, 1, 1.5).
#   3-grams: t = 2, 2, 1, 1  Y = 1/3  D1 = 1/3  D2 = 3/2  D3+ = 5/3
#   2-grams: t = 2, 3, 1, 0  Y = 1/4  D1 = 1/4  D2 = 7/4  D3+ = 3   (t4 = 0: D3+ = 3 exactly)
#   1-grams: t = 1, 1, 1, 0  Y = 1/3  D1 = 1/3  D2 = 1    D3+ = 3
#
# Interpolation: p(w | h) = (c(hw) - D(c(hw))) / c(h.) + g(h) p(w | h minus its first word),
# g(h) = sum over the words seen after h of D(c(hw)), / c(h.); the ARPA back-off of h is g(h).
# Unigrams interpolate with the uniform 1/|V|, |V| = 4 (a, b, </s>, <unk>; not <s>).
#   1-grams: c(.) = 6, g() = (D2 + D3 + D1) / 6 = (1 + 3 + 1/3) / 6 = 13/18; g()/|V| = 13/72
#     p(a) = (2 - 1)/6 + 13/72 = 25/72      p(b) = (3 - 3)/6 + 13/72 = 13/72
#     p(</s>) = (1 - 1/3)/6 + 13/72 = 21/72   p(<unk>) = 13/72   p(<s>) = 1 (log10 0, by KenLM's convention)
#   2-grams: contexts <s> (c = 5), a (c = 2), b (c = 4)
#     g(<s>) = (D3 + D2)/5 = 19/20   g(a) = D2/2 = 7/8   g(b) = (D2 + D1 + D1)/4 = 9/16
#     p(a | <s>) = (3 - 3)/5 + 19/20 * 25/72 = 95/288
#     p(b | <s>) = (2 - 7/4)/5 + 19/20 * 13/72 = 319/1440
#     p(b | a) = (2 - 7/4)/2 + 7/8 * 13/72 = 163/576
#     p(</s> | b) = (2 - 7/4)/4 + 9/16 * 21/72 = 29/128
#     p(b | b) = (1 - 1/4)/4 + 9/16 * 13/72 = 37/128
#     p(a | b) = (1 - 1/4)/4 + 9/16 * 25/72 = 49/128
#   3-grams: contexts <s> a (c = 3), a b (c = 5), b b (c = 1), <s> b (c = 2), b a (c = 2)
#     g(<s> a) = D3/3 = 5/9   g(a b) = (D3 + D1)/5 = 2/5   g(b b) = D1 = 1/3   g(<s> b) = g(b a) = D2/2 = 3/4
#     p(b | <s> a) = (3 - 5/3)/3 + 5/9 * 163/576 = 3119/5184
#     p(</s> | a b) = (4 - 5/3)/5 + 2/5 * 29/128 = 107/192
#     p(b | a b) = (1 - 1/3)/5 + 2/5 * 37/128 = 239/960
#     p(</s> | b b) = (1 - 1/3)/1 + 1/3 * 29/128 = 95/128
#     p(a | <s> b) = (2 - 3/2)/2 + 3/4 * 49/128 = 275/512
#     p(b | b a) = (2 - 3/2)/2 + 3/4 * 163/576 = 355/768
# n-grams that end in </s> or <unk> are no context: back-off log10 1 = 0, as for the trigrams.
LMPLZ_CORPUS = ["a b", "a b", "a b b", "b a b", "b a b"]
LMPLZ_ARPA = {  # n-gram: (log10 p, log10 back-off)
    ("<s>",): (0.0, log10(19 / 20)),
    ("</s>",): (log10(21 / 72), 0.0),
    ("<unk>",): (log10(13 / 72), 0.0),
    ("a",): (log10(25 / 72), log10(7 / 8)),
    ("b",): (log10(13 / 72), log10(9 / 16)),
    ("<s>", "a"): (log10(95 / 288), log10(5 / 9)),
    ("<s>", "b"): (log10(319 / 1440), log10(3 / 4)),
    ("a", "b"): (log10(163 / 576), log10(2 / 5)),
    ("b", "</s>"): (log10(29 / 128), 0.0),
    ("b", "b"): (log10(37 / 128), log10(1 / 3)),
    ("b", "a"): (log10(49 / 128), log10(3 / 4)),
    ("<s>", "a", "b"): (log10(3119 / 5184), 0.0),
    ("a", "b", "</s>"): (log10(107 / 192), 0.0),
    ("a", "b", "b"): (log10(239 / 960), 0.0),
    ("b", "b", "</s>"): (log10(95 / 128), 0.0),
    ("<s>", "b", "a"): (log10(275 / 512), 0.0),
    ("b", "a", "b"): (log10(355 / 768), 0.0),
}


def test_arpa_has_the_probabilities_and_backoffs_lmplz_gives(tmp_path):
    write_arpa(tmp_path / "lm.arpa", LMPLZ_CORPUS, order=3)
    tables = read_arpa(tmp_path / "lm.arpa")
    written = {gram: values for table in tables for gram, values in table.items()}
    assert set(written) == set(LMPLZ_ARPA)
    for gram, (log_p, log_backoff) in LMPLZ_ARPA.items():
        assert written[gram] == pytest.approx((log_p, log_backoff), abs=1e-4), gram


def test_discounts_at_the_ends_of_their_range_are_kept_as_lmplz_keeps_them():
    """No n-gram with count 4 (t4 = 0) gives D3+ = 3 exactly: lmplz accepts it, no fallback."""
    d = Discounts.estimate([1, 2, 3])  # t1..t4 = 1, 1, 1, 0
    assert (d.d1, d.d2, d.d3) == pytest.approx((1 / 3, 1.0, 3.0))


# --- Smoothing behaviour -----------------------------------------------------------------------


def test_frequent_bigram_beats_unseen(tmp_path):
    sentences = ["the cat sleeps"] * 10 + ["a dog barks"] * 3 + ["the bird sings"]
    write_arpa(tmp_path / "lm.arpa", sentences, order=2)
    tables = read_arpa(tmp_path / "lm.arpa")
    assert ("the", "dog") not in tables[2]
    assert log10_prob(tables, ("the",), "cat") > log10_prob(tables, ("the",), "bird") > log10_prob(
        tables, ("the",), "dog")


def test_kneser_ney_continuation_counts(tmp_path):
    """'francisco' is as frequent as 'dog' but only ever follows 'san': a lower unigram probability."""
    sentences = ["i saw san francisco"] * 6 + [f"{w} dog" for w in ["my", "a", "the", "that", "his", "one"]]
    assert sum(s.split().count("francisco") for s in sentences) == sum(s.split().count("dog") for s in sentences)
    write_arpa(tmp_path / "kn.arpa", sentences, order=2)
    unigrams = read_arpa(tmp_path / "kn.arpa")[1]
    assert unigrams[("francisco",)][0] < unigrams[("dog",)][0]
    write_arpa(tmp_path / "raw.arpa", sentences, order=1)  # a unigram model uses raw counts
    unigrams = read_arpa(tmp_path / "raw.arpa")[1]
    assert unigrams[("francisco",)][0] == pytest.approx(unigrams[("dog",)][0])


# --- flashlight-text KenLM ---------------------------------------------------------------------


def test_loads_in_flashlight_kenlm_with_same_scores(tmp_path):
    path = tmp_path / "lm.arpa"
    write_arpa(path, CORPUS, order=3)
    tables = read_arpa(path)
    words = sorted(lm_words(CORPUS)) + [UNK, BOS, EOS]
    dictionary = Dictionary(words)
    lm = KenLM(str(path), dictionary)

    def score(sentence: str) -> float:  # flashlight's KenLM reports log10 probabilities
        state, total = lm.start(False), 0.0
        for word in sentence.split():
            state, s = lm.score(state, dictionary.get_index(word))
            total += s
        return total + lm.finish(state)[1]

    frequent = max(set(CORPUS), key=CORPUS.count)
    shuffled = " ".join(reversed(frequent.split()))
    assert score(frequent) > score(shuffled) + 1
    for sentence in [frequent, shuffled, "the cat sees the dog", "she likes bread"]:
        assert score(sentence) == pytest.approx(sentence_log10(tables, sentence), abs=1e-3)


def test_loads_in_torchaudio_ctc_decoder(tmp_path):
    write_arpa(tmp_path / "lm.arpa", CORPUS, order=3)
    write_lexicon(tmp_path / "lexicon.txt", lm_words(CORPUS) | {UNK})
    tokens = ["-", "|", *sorted({c for w in lm_words(CORPUS) | {UNK} for c in w})]
    beam = ctc_decoder(lexicon=str(tmp_path / "lexicon.txt"), tokens=tokens, lm=str(tmp_path / "lm.arpa"),
                               beam_size=5)
    emissions = torch.randn(1, 20, len(tokens)).log_softmax(-1)
    hypotheses = beam(emissions)
    assert all(w in lm_words(CORPUS) | {UNK} for w in hypotheses[0][0].words)


# --- Lexicon and errors ------------------------------------------------------------------------


def test_lexicon_round_trip(tmp_path):
    path = tmp_path / "lexicon.txt"
    write_lexicon(path, ["THE", "CAT", "THE", "DON'T"])
    assert path.read_text().splitlines() == ["CAT C A T |", "DON'T D O N ' T |", "THE T H E |"]
    assert read_lexicon(path) == {"CAT": ["C", "A", "T", "|"], "DON'T": ["D", "O", "N", "'", "T", "|"],
                                  "THE": ["T", "H", "E", "|"]}
    assert [p.name for p in tmp_path.iterdir()] == ["lexicon.txt"]  # the temporary file was renamed into place


def test_lm_words():
    assert lm_words(["a b", " b  c ", ""]) == {"a", "b", "c"}


@pytest.mark.parametrize("sentences", [[], [""], ["   ", "\t"]])
def test_empty_corpus_is_an_error(sentences, tmp_path):
    with pytest.raises(ASRError, match="empty"):
        build_arpa(sentences)
    with pytest.raises(ASRError, match="empty"):
        write_arpa(tmp_path / "lm.arpa", sentences)
    assert not list(tmp_path.iterdir())


def test_bad_arguments_are_errors(tmp_path):
    with pytest.raises(ASRError, match="order"):
        build_arpa(TINY, order=0)
    with pytest.raises(ASRError, match="discount"):
        build_arpa(TINY, discount="witten-bell")
    with pytest.raises(ASRError, match="added automatically"):
        build_arpa(["<s> hello </s>"])
    with pytest.raises(ASRError, match="spaces"):
        write_lexicon(tmp_path / "lexicon.txt", ["ok", "two words"])
    (tmp_path / "bad.txt").write_text("LONELY\n")
    with pytest.raises(ASRError, match="bad.txt:1"):
        read_lexicon(tmp_path / "bad.txt")
    with pytest.raises(ASRError, match="cannot read"):
        read_lexicon(tmp_path / "missing.txt")
    with pytest.raises(ASRError, match="cannot read"):
        read_arpa(tmp_path / "missing.arpa")
    (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\ta b\n\n\\end\\\n")
    with pytest.raises(ASRError, match="bad.arpa:5"):
        read_arpa(tmp_path / "bad.arpa")
    (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\ta\n\n\\end\\\n")
    with pytest.raises(ASRError, match="header"):
        read_arpa(tmp_path / "bad.arpa")


def test_arpa_order_and_unigrams_are_read_from_the_text():
    from asr.lm import arpa_order, arpa_unigrams

    arpa = build_arpa(["A B C", "B C", "C A"], order=3)
    assert arpa_order(arpa) == 3
    assert arpa_unigrams(arpa) == {"A", "B", "C", "<s>", "</s>", "<unk>"}
    with pytest.raises(ASRError, match="not ARPA"):
        arpa_order("just text\n")
