"""asr.lm: the Kneser-Ney ARPA builder, its reader, and the lexicon."""

import random

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
    assert unigrams[BOS][0] == -99
    assert -99 < unigrams[UNK][0] < min(p for w, (p, _) in unigrams.items() if w not in (BOS, UNK))
    assert all(p < 0 for g, (p, _) in tables[1].items())


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
