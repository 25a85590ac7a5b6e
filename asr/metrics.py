"""Word and character error rates with substitution/deletion/insertion counts (jiwer)."""

from __future__ import annotations

from collections import Counter
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


def alignment_report(
    ids: Sequence[str],
    references: Sequence[str],
    hypotheses: Sequence[str],
    speakers: dict[str, str] | None = None,
    top_substitutions: int = 20,
) -> str:
    """An sclite-style report: totals, per-speaker WER, the most frequent substitutions, and each
    utterance's word alignment with S/D/I marked under the words."""
    report = error_rates(references, hypotheses)
    aligned = jiwer.process_words([r or "" for r in references], [h or "" for h in hypotheses])
    lines = [f"Total: {report.summary()}", ""]

    if speakers:
        lines += ["Per speaker:", f"  {'speaker':<12} {'utts':>5} {'words':>6} {'WER %':>7}"]
        by_speaker: dict[str, list[int]] = {}
        for index, utt_id in enumerate(ids):
            by_speaker.setdefault(speakers.get(utt_id, "?"), []).append(index)
        for speaker, indices in sorted(by_speaker.items()):
            sub = error_rates([references[i] for i in indices], [hypotheses[i] for i in indices])
            wer = f"{100 * sub.wer:>7.2f}" if sub.words.reference_length else f"{'-':>7}"  # no words: no rate
            lines.append(f"  {speaker:<12} {len(indices):>5} {sub.words.reference_length:>6} {wer}")
        lines.append("")

    substitutions: Counter[tuple[str, str]] = Counter()
    blocks: list[str] = []
    for utt_id, ref_words, hyp_words, chunks in zip(ids, aligned.references, aligned.hypotheses, aligned.alignments):
        ref_row, hyp_row, marks = [], [], []
        counts = {"S": 0, "D": 0, "I": 0}
        for chunk in chunks:
            refs = ref_words[chunk.ref_start_idx:chunk.ref_end_idx]
            hyps = hyp_words[chunk.hyp_start_idx:chunk.hyp_end_idx]
            if chunk.type == "equal":
                pairs, mark = zip(refs, hyps), ""
            elif chunk.type == "substitute":
                pairs, mark = zip(refs, hyps), "S"
            elif chunk.type == "delete":
                pairs, mark = ((r, "*" * len(r)) for r in refs), "D"
            else:
                pairs, mark = (("*" * len(h), h) for h in hyps), "I"
            for ref, hyp in pairs:
                width = max(len(ref), len(hyp))
                ref_row.append(ref.ljust(width))
                hyp_row.append(hyp.ljust(width))
                marks.append(mark.ljust(width))
                if mark:
                    counts[mark] += 1
                if mark == "S":
                    substitutions[(ref, hyp)] += 1
        status = " ".join(f"{k}={v}" for k, v in counts.items())
        blocks += [f"{utt_id}  ({status})", ("REF: " + " ".join(ref_row)).rstrip(), ("HYP: " + " ".join(hyp_row)).rstrip()]
        if any(m.strip() for m in marks):
            blocks.append("     " + " ".join(marks).rstrip())
        blocks.append("")

    common = sorted(substitutions.items(), key=lambda item: (-item[1], item[0]))[:top_substitutions]
    lines.append("Most frequent substitutions (ref -> hyp: count):")
    lines += [f"  {ref} -> {hyp}: {count}" for (ref, hyp), count in common] or ["  none"]
    lines.append("")
    return "\n".join(lines + blocks)
