"""Word and character error rates with substitution/deletion/insertion counts (jiwer)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer


@dataclass(frozen=True)
class ErrorCounts:
    """Edit-distance counts over a corpus; rate = (S + D + I) / reference length."""

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int  # words for WER, characters for CER

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_length


@dataclass(frozen=True)
class ErrorReport:
    words: ErrorCounts
    chars: ErrorCounts
    num_utterances: int

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    def summary(self) -> str:
        w, c = self.words, self.chars
        return (
            f"WER {100 * self.wer:.2f}% ({w.errors}/{w.reference_length}: S={w.substitutions} D={w.deletions} "
            f"I={w.insertions})  CER {100 * self.cer:.2f}% ({c.errors}/{c.reference_length})  utts={self.num_utterances}"
        )


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorReport:
    """WER and CER of hypotheses against references (same order, same length).

    Empty references are allowed: every hypothesis word there is an insertion.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    return ErrorReport(
        words=_counts(references, hypotheses, jiwer.process_words, str.split),
        chars=_counts(references, hypotheses, jiwer.process_characters, list),
        num_utterances=len(references),
    )


def _counts(references, hypotheses, process, units) -> ErrorCounts:
    pairs = [(r.strip(), h.strip()) for r, h in zip(references, hypotheses)]
    scored = [(r, h) for r, h in pairs if r]
    # jiwer rejects empty references; an empty reference contributes only insertions.
    insertions = sum(len(units(h)) for r, h in pairs if not r)
    if not scored:
        return ErrorCounts(0, 0, insertions, 0)
    out = process([r for r, _ in scored], [h for _, h in scored])
    return ErrorCounts(
        substitutions=out.substitutions,
        deletions=out.deletions,
        insertions=out.insertions + insertions,
        reference_length=sum(len(units(r)) for r, _ in scored),
    )
