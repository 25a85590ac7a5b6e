"""Transcript normalisation and the output vocabulary: characters or BPE pieces (blank id 0)."""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asr.errors import ASRError

BLANK = "<blank>"
BLANK_ID = 0  # the CTC blank; the only place this id is defined
SPACE = " "

_NOT_KEPT = re.compile(r"[^A-Z0-9' ]+")
_SPACES = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Upper-case; keep letters A-Z, digits as written, apostrophes and single spaces.

    Accented letters lose their accents (É -> E); every other character becomes a space.
    """
    folded = unicodedata.normalize("NFKD", text.upper())
    ascii_only = "".join(c for c in folded if not unicodedata.combining(c))
    kept = _NOT_KEPT.sub(" ", _SPACES.sub(" ", ascii_only))
    return _SPACES.sub(" ", kept).strip()


UNITS = ("char", "bpe")
WORD_START = "\u2581"  # sentencepiece's mark on a piece that starts a word


@dataclass(frozen=True)
class Vocab:
    """Output units to ids; tokens[0] is the CTC blank.

    Characters (model is None): one token per character, " " separates words.
    BPE (model is a serialised sentencepiece model): tokens[1:] are its pieces in its id order;
    a piece starting with WORD_START begins a word, and there is no separator token.
    """

    tokens: tuple[str, ...]
    model: bytes | None = None

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[BLANK_ID] != BLANK:
            raise ASRError(f"vocabulary must start with {BLANK!r} at id {BLANK_ID}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ASRError("vocabulary has duplicate tokens")
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})
        if self.model is None:
            object.__setattr__(self, "_alphabet", set(self.tokens[1:]))
            return
        processor = _sentencepiece(self.model)
        pieces = tuple(processor.id_to_piece(i) for i in range(processor.get_piece_size()))
        if pieces != self.tokens[1:]:
            raise ASRError("vocabulary tokens do not match its sentencepiece model")
        alphabet = {
            c for i, piece in enumerate(pieces) if not (processor.is_control(i) or processor.is_unknown(i)) for c in piece
        }
        object.__setattr__(self, "_processor", processor)
        object.__setattr__(self, "_alphabet", {SPACE if c == WORD_START else c for c in alphabet} | {SPACE})

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocab:
        """Every character of the (already normalised) texts, sorted, after the blank."""
        chars = set()
        for text in texts:
            chars.update(text)
        chars.add(SPACE)
        return cls(tokens=(BLANK, *sorted(chars)))

    @classmethod
    def bpe_from_texts(cls, texts: Iterable[str], size: int) -> Vocab:
        """A sentencepiece BPE model of about `size` pieces (fewer if the texts cannot fill it)
        trained on the (already normalised) texts; every character of the texts is covered."""
        import sentencepiece

        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter([t for t in texts if t]), model_writer=model, vocab_size=size,
            model_type="bpe", character_coverage=1.0, hard_vocab_limit=False,
            normalization_rule_name="identity", unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
            num_threads=1, minloglevel=2,
        )
        processor = _sentencepiece(model.getvalue())
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        return cls(tokens=(BLANK, *pieces), model=model.getvalue())

    @property
    def kind(self) -> str:
        return "char" if self.model is None else "bpe"

    @property
    def separator_id(self) -> int | None:
        """Id of the token between words (" "), or None when pieces mark word starts (BPE)."""
        return self._ids.get(SPACE) if self.model is None else None

    def starts_word(self, token_id: int) -> bool:
        """True for a BPE piece that begins a word (characters never do: " " separates them)."""
        return self.model is not None and self.tokens[token_id].startswith(WORD_START)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def alphabet(self) -> frozenset[str]:
        """The characters a transcript may use."""
        return frozenset(self._alphabet)

    def unknown_chars(self, text: str) -> set[str]:
        return {c for c in text if c not in self._alphabet}

    def encode(self, text: str) -> list[int]:
        """Normalised text -> ids. Raises ASRError naming any character not in the vocabulary."""
        if self.model is None:
            try:
                return [self._ids[c] for c in text]
            except KeyError:
                pass
        elif not self.unknown_chars(text):  # sentencepiece would quietly map them to <unk>
            return [i + 1 for i in self._processor.encode(text)]
        raise ASRError(f"characters not in the vocabulary: {sorted(self.unknown_chars(text))}")

    def decode(self, ids: Sequence[int]) -> str:
        """ids (already CTC-collapsed, no blanks) -> text with single spaces, stripped."""
        if self.model is not None:
            text = self._processor.decode([i - 1 for i in ids if i != BLANK_ID])
        else:
            text = "".join(self.tokens[i] for i in ids if i != BLANK_ID)
        return _SPACES.sub(" ", text).strip()

    def save(self, path: str | os.PathLike) -> None:
        """JSON: {"tokens": [...]}, plus {"bpe_model": base64 of the sentencepiece model} for BPE."""
        data: dict = {"tokens": list(self.tokens)}
        if self.model is not None:
            data["bpe_model"] = base64.b64encode(self.model).decode("ascii")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=0)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            model = data.get("bpe_model")
            if model is not None:
                model = base64.b64decode(model, validate=True)
            return cls(tokens=tuple(data["tokens"]), model=model)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error) as err:
            raise ASRError(f"{path}: not a vocabulary file ({err})") from None
        except ASRError as err:
            raise ASRError(f"{path}: {err}") from None


def build_vocab(texts: Iterable[str], units: str = "char", bpe_size: int = 256) -> Vocab:
    """The vocabulary of normalised texts in the chosen units (see UNITS)."""
    if units == "char":
        return Vocab.from_texts(texts)
    if units == "bpe":
        return Vocab.bpe_from_texts(texts, bpe_size)
    raise ASRError(f"units must be one of {UNITS}, got {units!r}")


def _sentencepiece(model: bytes):
    """A sentencepiece processor for a serialised model (ASRError if it is not one)."""
    try:
        import sentencepiece
    except ImportError as err:
        raise ASRError(f"BPE units need the sentencepiece package ({err})") from None
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(model)
    except (RuntimeError, OSError, TypeError) as err:
        raise ASRError(f"not a sentencepiece model ({err})") from None
    return processor
