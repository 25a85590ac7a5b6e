"""Transcript normalisation and the character vocabulary (blank id 0)."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Vocab:
    """Characters to ids. tokens[0] is the blank; ' ' separates words."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[BLANK_ID] != BLANK:
            raise ASRError(f"vocabulary must start with {BLANK!r} at id {BLANK_ID}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ASRError("vocabulary has duplicate tokens")
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocab:
        """Every character of the (already normalised) texts, sorted, after the blank."""
        chars = set()
        for text in texts:
            chars.update(text)
        chars.add(SPACE)
        return cls(tokens=(BLANK, *sorted(chars)))

    def __len__(self) -> int:
        return len(self.tokens)

    def unknown_chars(self, text: str) -> set[str]:
        return {c for c in text if c not in self._ids}

    def encode(self, text: str) -> list[int]:
        """Normalised text -> ids. Raises ASRError naming any character not in the vocabulary."""
        try:
            return [self._ids[c] for c in text]
        except KeyError:
            raise ASRError(f"characters not in the vocabulary: {sorted(self.unknown_chars(text))}") from None

    def decode(self, ids: Sequence[int]) -> str:
        """ids (already CTC-collapsed, no blanks) -> text with single spaces, stripped."""
        text = "".join(self.tokens[i] for i in ids if i != BLANK_ID)
        return _SPACES.sub(" ", text).strip()

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"tokens": list(self.tokens)}, f, ensure_ascii=False, indent=0)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        try:
            with open(path, encoding="utf-8") as f:
                return cls(tokens=tuple(json.load(f)["tokens"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ASRError(f"{path}: not a vocabulary file ({err})") from None
