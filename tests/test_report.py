"""The sclite-style scoring report."""

from __future__ import annotations

from asr.metrics import alignment_report

IDS = ["u1", "u2", "u3"]
REFS = ["A B C D", "YES", "GO HOME NOW"]
HYPS = ["A X C D E", "YES", "GO NOW"]
SPEAKERS = {"u1": "spk1", "u2": "spk1", "u3": "spk2"}


def test_report_marks_substitutions_deletions_and_insertions_under_the_words():
    report = alignment_report(IDS, REFS, HYPS, SPEAKERS)
    block = report[report.index("u1  ("):].splitlines()[:4]
    assert block == [
        "u1  (S=1 D=0 I=1)",
        "REF: A B C D *",
        "HYP: A X C D E",
        "       S     I",
    ]
    u3 = report[report.index("u3  ("):].splitlines()[:4]
    assert u3 == ["u3  (S=0 D=1 I=0)", "REF: GO HOME NOW", "HYP: GO **** NOW", "        D"]
    assert "u2  (S=0 D=0 I=0)\nREF: YES\nHYP: YES\n\n" in report  # no marks line when all correct


def test_report_has_totals_per_speaker_wer_and_top_substitutions():
    report = alignment_report(IDS, REFS, HYPS, SPEAKERS)
    assert report.startswith("Total: WER 37.50% (3/8: S=1 D=1 I=1)")
    # spk1: u1 + u2 = 5 words, 2 errors -> 40 %; spk2: 3 words, 1 error -> 33.33 %
    assert "  spk1             2      5   40.00" in report
    assert "  spk2             1      3   33.33" in report
    assert "  B -> X: 1" in report


def test_report_without_speakers_or_errors():
    report = alignment_report(["a"], ["YES"], ["YES"])
    assert "Per speaker" not in report
    assert "Most frequent substitutions (ref -> hyp: count):\n  none" in report
