"""asr.text: transcript normalisation and the character vocabulary."""

import json
import re

import pytest

from asr.errors import ASRError
from asr.text import BLANK, BLANK_ID, SPACE, Vocab, normalise_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hello world", "HELLO WORLD"),
        ("Hello, world!  How are you?", "HELLO WORLD HOW ARE YOU"),
        ("  leading and trailing  ", "LEADING AND TRAILING"),
        ("don't stop", "DON'T STOP"),
        ("room 101 at 9", "ROOM 101 AT 9"),
        ("Café", "CAFE"),
        ("naïve résumé", "NAIVE RESUME"),
        ("tabs\tand\nnewlines", "TABS AND NEWLINES"),
        ("a--b...c", "A B C"),
        ("(quoted) \"words\"", "QUOTED WORDS"),
        ("", ""),
        ("?!.,", ""),
    ],
)
def test_normalise_text(raw, expected):
    assert normalise_text(raw) == expected


def test_normalise_text_is_idempotent():
    text = normalise_text("It's 5 o'clock -- Crème Brûlée, please!")
    assert text == "IT'S 5 O'CLOCK CREME BRULEE PLEASE"
    assert normalise_text(text) == text


# --- Vocab -------------------------------------------------------------------------------------


def test_blank_is_id_zero():
    assert BLANK_ID == 0
    vocab = Vocab.from_texts(["AB"])
    assert vocab.tokens[BLANK_ID] == BLANK == "<blank>"


def test_from_texts_sorted_with_space():
    vocab = Vocab.from_texts(["CAB", "BAD"])  # no space in either text
    assert vocab.tokens == (BLANK, " ", "A", "B", "C", "D")
    assert SPACE in vocab.tokens
    assert len(vocab) == 6


def test_from_texts_characters_of_all_texts_once():
    vocab = Vocab.from_texts(["HELLO WORLD", "IT'S 42"])
    chars = set("HELLO WORLD") | set("IT'S 42")
    assert vocab.tokens[1:] == tuple(sorted(chars))


def test_encode_decode_round_trip():
    vocab = Vocab.from_texts(["HELLO WORLD", "IT'S"])
    text = "HELLO IT'S WORLD"
    ids = vocab.encode(text)
    assert len(ids) == len(text)
    assert BLANK_ID not in ids
    assert [vocab.tokens[i] for i in ids] == list(text)
    assert vocab.decode(ids) == text


def test_decode_drops_blanks_and_collapses_spaces():
    vocab = Vocab.from_texts(["AB"])  # <blank>, ' ', A, B -> ids 0, 1, 2, 3
    ids = [0, 1, 2, 0, 1, 1, 0, 1, 3, 1, 0]  # " A  _ B " with blanks sprinkled in
    assert vocab.decode(ids) == "A B"
    assert vocab.decode([]) == ""
    assert vocab.decode([0, 0, 1]) == ""


def test_encode_unknown_char_raises_listing_it():
    vocab = Vocab.from_texts(["ABC"])
    with pytest.raises(ASRError) as info:
        vocab.encode("ABZ Q")
    assert "'Z'" in str(info.value) and "'Q'" in str(info.value)
    assert vocab.unknown_chars("ABZ Q") == {"Z", "Q"}
    assert vocab.unknown_chars("CAB") == set()


def test_vocab_save_load_round_trip(tmp_path):
    vocab = Vocab.from_texts(["HELLO WORLD", "IT'S 42"])
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = Vocab.load(path)
    assert loaded == vocab
    assert loaded.encode("HELLO") == vocab.encode("HELLO")


NOT_BLANK_FIRST = f"^vocabulary must start with {re.escape(repr(BLANK))} at id {BLANK_ID}$"


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (("A", BLANK, "B"), NOT_BLANK_FIRST),  # blank not first
        (("A", "B"), NOT_BLANK_FIRST),  # no blank at all
        ((), NOT_BLANK_FIRST),  # empty
        ((BLANK, "A", "B", "A"), "^vocabulary has duplicate tokens$"),  # duplicate
        ((BLANK, BLANK, "A"), "^vocabulary has duplicate tokens$"),  # blank twice
    ],
)
def test_invalid_vocab_rejected(tokens, message):
    with pytest.raises(ASRError, match=message):
        Vocab(tokens=tokens)


def test_vocab_load_rejects_invalid_tokens(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"tokens": ["A", BLANK]}))
    with pytest.raises(ASRError, match=f"^{re.escape(str(path))}: {NOT_BLANK_FIRST[1:]}"):
        Vocab.load(path)


@pytest.mark.parametrize("content", ["not json", '{"chars": ["<blank>"]}', "[1, 2]"])
def test_vocab_load_garbage_raises_naming_file(tmp_path, content):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(ASRError, match="vocab.json"):
        Vocab.load(path)


def test_vocab_load_missing_file_raises_naming_file(tmp_path):
    with pytest.raises(ASRError, match="nothere.json"):
        Vocab.load(tmp_path / "nothere.json")
