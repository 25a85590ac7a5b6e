"""bench/word_recall.py: recall of reference words by their training count (and synthetic text)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from asr.errors import ASRError

from .conftest import bench_module


@pytest.fixture(scope="module")
def word_recall():
    with bench_module("word_recall") as module:
        yield module


def test_words_are_binned_by_training_count_and_counted_correct_where_the_alignment_matches_them(word_recall):
    train = Counter({"THE": 60, "CAT": 3, "SAT": 10})
    refs = {"a": "THE CAT SAT", "b": "THE DOG"}
    hyps = {"a": "THE BAT SAT", "b": "A DOG"}  # CAT substituted; b: THE substituted, DOG right
    rows = word_recall.recall(refs, hyps, train, synth=Counter({"DOG": 1}))
    by_bin = {(r["train_count"], r["in_synth"]): (r["words"], r["correct"]) for r in rows}
    assert by_bin == {("0", True): (1, 1), ("1-4", False): (1, 0), ("5-49", False): (1, 1), ("50+", False): (2, 1)}
    assert [r["train_count"] for r in rows] == ["0", "1-4", "5-49", "50+"]
    assert word_recall.recall(refs, hyps, train, synth=None)[0]["in_synth"] is None


def test_a_missing_hypothesis_or_a_bad_line_is_named(word_recall, tmp_path):
    with pytest.raises(ASRError, match="no hypothesis for 1 reference utterances \\(first: b\\)"):
        word_recall.recall({"a": "X", "b": "Y"}, {"a": "X"}, Counter(), None)
    path = tmp_path / "hyp.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "X"}) + "\n{\"id\": \"b\"}\n")
    with pytest.raises(ASRError, match=r"hyp.jsonl:2: expected a JSON object"):  # asr score's reader
        word_recall.read_transcripts(path)
