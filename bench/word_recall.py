"""Which words does a model write? Recall of reference words (the share aligned as correct by the
WER alignment) by how often each word occurs in the real training transcripts, and whether it occurs
in synthetic training speech.

    python bench/word_recall.py --ref exp/english/data/dev_so762.jsonl --train exp/english/data/train.jsonl \\
        [--synth exp/english/data/synth/synth.jsonl] \\
        --hyp before=exp/english/blstm4x256_bpe/hyp_dev_so762_greedy.jsonl \\
        --hyp after=exp/english/blstm5x256_bpe_synth/hyp_dev_so762_greedy.jsonl [--name word_recall]

--hyp NAME=FILE: a hypothesis file as `asr decode` writes it (what `asr score` reads: JSONL with id and text), scored against
--ref's transcripts (every reference utterance needs a hypothesis). Bins by real training count:
0, 1-4, 5-49, 50+; with --synth each bin is split by whether the word is in the synthetic speech's
text. Dev sets only: this reads a choice, it does not make one. Writes results/NAME.json.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import jiwer

from asr.errors import ASRError
from asr.manifest import read_manifest, read_transcripts
from report import Report

BINS = ((0, 0), (1, 4), (5, 49), (50, None))


def bin_name(count: int) -> str:
    for low, high in BINS:
        if count >= low and (high is None or count <= high):
            return f"{low}+" if high is None else (f"{low}" if low == high else f"{low}-{high}")
    raise ValueError(count)


def word_counts(paths: list[Path]) -> Counter:
    return Counter(w for path in paths for u in read_manifest(path, check_audio=False) for w in u.text.split())


def recall(refs: dict[str, str], hyps: dict[str, str], train: Counter, synth: Counter | None) -> list[dict]:
    """Rows (bin, in_synth, words, correct, recall %) over every reference word."""
    missing = sorted(set(refs) - set(hyps))
    if missing:
        raise ASRError(f"no hypothesis for {len(missing)} reference utterances (first: {missing[0]})")
    totals: Counter = Counter()
    hits: Counter = Counter()
    ids = sorted(refs)
    out = jiwer.process_words([refs[i] for i in ids], [hyps[i] or "" for i in ids])
    for words, chunks in zip(out.references, out.alignments):
        correct = set()
        for chunk in chunks:
            if chunk.type == "equal":
                correct.update(range(chunk.ref_start_idx, chunk.ref_end_idx))
        for position, word in enumerate(words):
            key = (bin_name(train[word]), None if synth is None else synth[word] > 0)
            totals[key] += 1
            hits[key] += position in correct
    order = {bin_name(low): i for i, (low, _) in enumerate(BINS)}
    return [{"train_count": key[0], "in_synth": key[1], "words": totals[key], "correct": hits[key],
             "recall_pct": round(100 * hits[key] / totals[key], 2)}
            for key in sorted(totals, key=lambda k: (order[k[0]], bool(k[1])))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", type=Path, required=True)
    parser.add_argument("--train", type=Path, nargs="+", required=True)
    parser.add_argument("--synth", type=Path, nargs="*", default=[])
    parser.add_argument("--hyp", action="append", required=True, metavar="NAME=FILE")
    parser.add_argument("--name", default="word_recall")
    args = parser.parse_args()
    rep = Report(args.name)
    try:
        refs = {u.id: u.text for u in read_manifest(args.ref, check_audio=False)}
        train = word_counts(args.train)
        synth = word_counts(args.synth) if args.synth else None
        models = {}
        for spec in args.hyp:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise ASRError(f"--hyp {spec!r}: expected NAME=FILE")
            models[name] = recall(refs, read_transcripts(path), train, synth)
    except ASRError as err:
        print(f"word_recall.py: {err}", file=sys.stderr)
        return 1
    columns = ["train_count", "in_synth", "words", "correct", "recall_pct"]
    rep.write({"ref": str(args.ref), "models": models},
              tables=[(f"{name}: recall of {args.ref.name}'s words", rows, columns) for name, rows in models.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
