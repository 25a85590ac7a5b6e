"""Beam threshold: decoding time against WER on the clean and degraded AN4 copies of bench/robustness.py.

    python bench/beam_threshold.py [--model PATH ...] [--thresholds 25,15,10,7] [--splits dev,test]
        [--conditions clean,white_10dB,...] [--cache exp/robustness/audio] [--threads 2] [--quick] [--name NAME]

A model is a checkpoint (.pt, run with PyTorch) or an exported folder (onnxruntime); each decodes
with its own beam settings and LMs, only beam_threshold changes (flashlight drops hypotheses
scoring that much below the best). The acoustic model runs once per copy; the timed part is beam
search alone (with its LM calls), one utterance at a time as `asr transcribe` decodes them.
Writes results/beam_threshold.json (--quick: 10 utterances per split, beam_threshold_quick.json)
with the WER and decode seconds per model, threshold, split and condition, and prints per model
and threshold the mean WER over the conditions, the largest change on any one condition against
the first threshold given, and the decode time.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asr.degrade import CONDITIONS, cached_condition
from robustness import (  # the same copies and options as bench/robustness.py
    DEFAULT_MODEL, QUICK_UTTERANCES, add_copy_arguments, copy_sources, load_transcriber, model_label, parse_list, score,
)


def decode_timed(decode, log_probs: Sequence[np.ndarray], vocab) -> tuple[list[str], float]:
    """Texts of each utterance's log-probs (T', V) decoded alone, and the seconds it took."""
    started = time.perf_counter()
    texts = []
    for lp in log_probs:
        (hypothesis,) = decode(lp[None], np.array([lp.shape[0]]))
        texts.append(vocab.decode(hypothesis.tokens))
    return texts, time.perf_counter() - started


def summary(rows: list[dict], thresholds: Sequence[float], splits: Sequence[str]) -> list[dict]:
    """Per model and threshold: mean WER % over the conditions, the largest |change| on one
    condition against the first threshold, and the decode seconds, per split."""
    table = []
    for model in dict.fromkeys(r["model"] for r in rows):
        reference = {(r["split"], r["condition"]): r["wer"] for r in rows
                     if r["model"] == model and r["beam_threshold"] == thresholds[0]}
        for threshold in thresholds:
            line = {"model": model, "beam_threshold": threshold}
            for split in splits:
                mine = [r for r in rows if r["model"] == model and r["beam_threshold"] == threshold and r["split"] == split]
                line[f"{split} mean WER %"] = round(100 * float(np.mean([r["wer"] for r in mine])), 2)
                line[f"{split} max |change|"] = round(100 * max(abs(r["wer"] - reference[split, r["condition"]]) for r in mine), 2)
                line[f"{split} decode s"] = round(sum(r["decode_seconds"] for r in mine), 2)
            table.append(line)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_copy_arguments(parser)
    parser.add_argument("--model", type=Path, action="append", help="repeatable (default: the bundled model.pt)")
    parser.add_argument("--thresholds", default="25,15,10,7", help="comma-separated; the first is the reference")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_UTTERANCES} utterances per split")
    parser.add_argument("--name", default="beam_threshold", help="results/NAME.json")
    args = parser.parse_args()

    import torch

    from report import Report

    torch.set_num_threads(args.threads)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    splits_wanted = parse_list(args.splits, ("dev", "test"), "split")
    conditions = parse_list(args.conditions, CONDITIONS, "condition")
    rep = Report(args.name, quick=args.quick)
    cache, evaluated, degrader = copy_sources(args, rep, splits_wanted, conditions)
    copies = {(split, condition): cached_condition(cache, split, condition, evaluated[split], degrader).utterances
              for condition in conditions for split in splits_wanted}

    rows = []
    models = args.model or [DEFAULT_MODEL]
    for path in models:
        loaded, transcriber = load_transcriber(path, threads=args.threads)
        label = model_label(path)
        log_probs = {key: transcriber.log_probs([u.audio for u in utts]) for key, utts in copies.items()}
        for threshold in thresholds:
            decoding = dataclasses.replace(loaded.decoding, beam_threshold=threshold)
            decode = loaded.decoder(decoding)
            for (split, condition), utts in copies.items():
                texts, seconds = decode_timed(decode, log_probs[split, condition], loaded.vocab)
                rows.append({"model": label, "decoding": dataclasses.asdict(decoding), "beam_threshold": threshold,
                             "split": split, "condition": condition, **score([u.text for u in utts], texts),
                             "decode_seconds": round(seconds, 3)})
            print(f"  {label} threshold {threshold:g}: " + ", ".join(
                f"{s} {100 * np.mean([r['wer'] for r in rows if r['beam_threshold'] == threshold and r['model'] == label and r['split'] == s]):.2f} %"
                for s in splits_wanted), flush=True)

    table = summary(rows, thresholds, splits_wanted)
    columns = ["model", "beam_threshold", *[f"{s} {c}" for s in splits_wanted for c in ("mean WER %", "max |change|", "decode s")]]
    rep.write({"models": [str(m) for m in models], "thresholds": thresholds, "conditions": conditions,
               "splits": {s: len(evaluated[s]) for s in splits_wanted}, "threads": args.threads, "rows": rows},
              tables=[("Beam threshold: mean WER % over the conditions, largest change on one condition against "
                       f"threshold {thresholds[0]:g}, beam-search seconds", table, columns)])


if __name__ == "__main__":
    main()
