"""Robustness: word error rate of models on deterministic degraded copies of AN4 dev and test.

    python bench/robustness.py [--an4-dir ../shared/data/an4 | --data-dir exp/an4/data]
        [--model PATH ...] [--decoders default,greedy] [--splits dev,test] [--conditions clean,white_10dB,...]
        [--cache exp/robustness/audio] [--noise-dir ../shared/data/noise] [--pocketsphinx] [--threads 2] [--sphinx-jobs 1] [--quick]

Data: dev = the 6 training speakers the AN4 recipe holds out, test = an4test_clstk, built with
recipes/an4/local/prepare.py from --an4-dir (or read from --data-dir: the recipe's dev.jsonl,
test.jsonl and train.jsonl). Babble is made of training utterances of the other speakers.

The 15 conditions (clean, gain, peak, white/pink noise, babble, simulated rooms, mu-law telephone,
trimmed, recorded noise) are asr.degrade's, listed in its docstring: each utterance's copy a
deterministic function of (condition, utterance id), written once as WAV under --cache (reused
while complete).
Attribution: real_noise_10dB uses the background-noise recordings of the Speech Commands
dataset v0.01 (P. Warden, 2018, arXiv:1804.03209), CC BY 4.0, unchanged; see
../shared/data/noise/LICENSE. The results JSON repeats this notice.

Each model is scored with its own default decoding and with greedy decoding (--decoders);
--pocketsphinx adds CMU pocketsphinx 5 (its en-us acoustic model with AN4's own unigram LM and
dictionary, etc/an4.lm and etc/an4.dic) when it is installed; --pocketsphinx-en-us adds it with its
own general US-English 3-gram and CMU dictionary (the peer for general English).
--extra-split NAME=MANIFEST[:N] scores another corpus's utterances too (e.g.
so762_test=exp/english/data/test_so762.jsonl:500: N utterances spread evenly over the manifest,
every speaker kept); its degraded copies are made the same way (babble from AN4 training speakers). Writes results/robustness.json
(a subset of splits or conditions: results/robustness_partial.json; --quick: 10 utterances per
split, results/robustness_quick.json) and prints the WER table and the decode time per condition.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from asr.an4 import DEV_SPEAKERS, read_split, split_dev
from asr.degrade import CONDITIONS, NOISE_ATTRIBUTION, Degrader, babble_pool, cached_condition, load_real_noises
from asr.errors import ASRError
from asr.manifest import Utterance, read_manifest
from pocketsphinx_peer import POCKETSPHINX_AN4, sphinx_transcriber

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_MODEL = ROOT / "asr" / "pretrained" / "an4_blstm" / "model.pt"
QUICK_UTTERANCES = 10  # per split, for --quick
BATCH_SIZE = 32

# ---------------------------------------------------------------------------- data and cache


def an4_splits(an4_dir: Path | None, data_dir: Path | None) -> dict[str, list[Utterance]]:
    """{"train", "dev", "test"} utterances: the recipe's manifests in data_dir, else made from an4_dir."""
    if data_dir is not None:
        return {split: read_manifest(data_dir / f"{split}.jsonl") for split in ("train", "dev", "test")}
    train, dev = split_dev(read_split(an4_dir, "train"), DEV_SPEAKERS)
    return {"train": train, "dev": dev, "test": read_split(an4_dir, "test")}


# ---------------------------------------------------------------------------- decoding


def model_label(path: Path) -> str:
    """asr/pretrained/an4_blstm/model.pt -> an4_blstm; exp/an4_s1/blstm/best_lm.pt -> an4_s1/best_lm;
    an exported folder exp/an4_s3/bundle/onnx_int8 -> bundle/onnx_int8."""
    if path.is_dir():
        return f"{path.parent.name}/{path.name}"
    return path.parent.name if path.stem == "model" else f"{path.parent.parent.name}/{path.stem}"


def load_transcriber(path: Path, device: str = "cpu", threads: int | None = None):
    """(back end, Transcriber with the model's own decoding) for a checkpoint (PyTorch on
    `device`) or an exported folder (onnxruntime, `threads` intra-op threads): asr.loading."""
    from asr.loading import load_backend

    loaded = load_backend(path, device, threads)
    return loaded, transcriber_for(loaded)


def transcriber_for(loaded, decoding=None):
    """A Transcriber of a loaded back end, with `decoding` or the model's own."""
    from asr.transcribe import Transcriber

    return Transcriber(loaded, batch_size=BATCH_SIZE, decoding=decoding)


def describe_decoding(loaded, decoding) -> str:
    """greedy, beam (no LM), beam+LM (n-gram), beam+RNNLM or beam+LM+RNNLM: the LMs whose weight is not 0."""
    if decoding.decoder == "greedy":
        return "greedy"
    ngram = "+LM" if loaded.lm_arpa and decoding.lm_weight else ""
    recurrent = "+RNNLM" if loaded.rnnlm is not None and decoding.rnnlm_weight else ""
    return f"beam{ngram}{recurrent}"


def model_decoders(model_path: Path, decoders: Sequence[str], device: str, threads: int | None = None
                   ) -> list[tuple[str, object]]:
    """[(column label, Transcriber)] for one model (a checkpoint or an exported folder): its default
    decoding and/or greedy (one column when they are the same)."""
    loaded, own = load_transcriber(model_path, device, threads)
    columns: dict[str, object] = {}
    for name in decoders:
        decoding = loaded.decoding if name == "default" else dataclasses.replace(loaded.decoding, decoder="greedy")
        label = f"{model_label(model_path)} {describe_decoding(loaded, decoding)}"
        if label not in columns:
            columns[label] = own if name == "default" else transcriber_for(loaded, decoding)
    return list(columns.items())


def transcribe_all(transcriber, paths: Sequence[str]) -> list[str]:
    transcripts = list(transcriber.transcribe((path, None) for path in paths))
    failed = [t.error for t in transcripts if t.error]
    if failed:
        raise ASRError(failed[0])
    return [t.text for t in transcripts]


def score(refs: Sequence[str], hyps: Sequence[str]) -> dict:
    from asr.metrics import error_rates

    report = error_rates(refs, hyps)
    w = report.words
    return {"wer": round(report.wer, 4), "cer": round(report.cer, 4), "word_errors": w.errors, "words": w.reference_length,
            "substitutions": w.substitutions, "deletions": w.deletions, "insertions": w.insertions}


# ---------------------------------------------------------------------------- main


def parse_list(value: str, known: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in known]
    if unknown or not items:
        raise SystemExit(f"robustness.py: unknown {what} {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    return items


def add_copy_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which degraded copies to score and where they are (shared with
    bench/beam_threshold.py): --an4-dir / --data-dir, --noise-dir, --cache, --splits, --conditions."""
    parser.add_argument("--an4-dir", type=Path, default=SHARED_DATA / "an4")
    parser.add_argument("--data-dir", type=Path, default=None, help="the recipe's manifests (train/dev/test.jsonl) instead")
    parser.add_argument("--noise-dir", type=Path, default=SHARED_DATA / "noise")
    parser.add_argument("--cache", type=Path, default=Path("exp/robustness/audio"))
    parser.add_argument("--splits", default="dev,test")
    parser.add_argument("--extra-split", action="append", default=[], metavar="NAME=MANIFEST[:N]",
                        help="also score this manifest's utterances (N: spread evenly over it), e.g. "
                             "so762_test=exp/english/data/test_so762.jsonl:500")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))


def copy_sources(args: argparse.Namespace, rep, splits: Sequence[str], conditions: Sequence[str]
                 ) -> tuple[Path, dict[str, list[Utterance]], Degrader]:
    """(cache folder, the utterances evaluated per split, the Degrader) for add_copy_arguments'
    options; skips the benchmark (rep.skip) when AN4 is not there. --quick: QUICK_UTTERANCES per
    split, in a cache of their own."""
    if args.data_dir is None and not (args.an4_dir / "etc" / "an4_train.fileids").is_file():
        rep.skip(f"AN4 not found at {args.an4_dir} (--an4-dir, or --data-dir with the recipe's manifests)")
    cache = args.cache.with_name(args.cache.name + "_quick") if args.quick else args.cache
    corpus = an4_splits(args.an4_dir, args.data_dir)
    an4_only = [s for s in splits if s in corpus]  # the others are --extra-split manifests
    evaluated = {s: sorted(corpus[s], key=lambda u: u.id)[:QUICK_UTTERANCES] if args.quick else corpus[s]
                 for s in an4_only}
    for name, utterances in extra_splits(args.extra_split).items():
        evaluated[name] = utterances[:QUICK_UTTERANCES] if args.quick else utterances
    noises = load_real_noises(args.noise_dir) if "real_noise_10dB" in conditions else []
    return cache, evaluated, Degrader(babble_pool(corpus, an4_only), noises)


def extra_splits(specs: Sequence[str]) -> dict[str, list[Utterance]]:
    """--extra-split NAME=MANIFEST[:N] -> {NAME: utterances}; with N, N of them spread evenly (every
    len/N-th in the manifest's order, so every speaker of a speaker-sorted manifest stays)."""
    splits = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        path, _, count = rest.partition(":")
        if not name or not path or (count and not count.isdigit()):
            raise SystemExit(f"robustness.py: --extra-split {spec!r}: expected NAME=MANIFEST[:N]")
        utterances = read_manifest(path)
        if count and int(count) < len(utterances):
            step = len(utterances) / int(count)
            utterances = [utterances[int(i * step)] for i in range(int(count))]
        splits[name] = utterances
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_copy_arguments(parser)
    parser.add_argument("--model", type=Path, action="append", help=f"repeatable (default {DEFAULT_MODEL.relative_to(ROOT)})")
    parser.add_argument("--no-model", action="store_true",
                        help="score only the pocketsphinx rows (beside an earlier run's models: the copies are the same)")
    parser.add_argument("--decoders", default="default,greedy")
    parser.add_argument("--pocketsphinx", action="store_true", help="also score pocketsphinx with AN4's LM (if installed)")
    parser.add_argument("--pocketsphinx-en-us", action="store_true",
                        help="also score pocketsphinx with its own general US-English LM and dictionary")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sphinx-jobs", type=int, default=1,
                        help="pocketsphinx worker processes (it is single-threaded; its decode seconds are then wall time)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_UTTERANCES} utterances per split")
    parser.add_argument("--name", default="robustness", help="results/NAME.json (default robustness)")
    args = parser.parse_args()

    import torch

    from report import Report

    torch.set_num_threads(args.threads)
    splits_wanted = parse_list(args.splits, ("dev", "test"), "split") + list(extra_splits(args.extra_split))
    conditions = parse_list(args.conditions, CONDITIONS, "condition")
    partial_run = len(splits_wanted) < 2 or len(conditions) < len(CONDITIONS)
    rep = Report(f"{args.name}_partial" if partial_run else args.name, quick=args.quick)  # a subset never overwrites the full table
    decoders = parse_list(args.decoders, ("default", "greedy"), "decoder")
    models = [] if args.no_model else args.model or [DEFAULT_MODEL]
    cache, evaluated, degrader = copy_sources(args, rep, splits_wanted, conditions)

    copies: dict[tuple[str, str], list[Utterance]] = {}
    build_seconds, condition_info = {}, {}
    for condition in conditions:
        started = time.perf_counter()
        made = False
        for split in splits_wanted:
            copy = cached_condition(cache, split, condition, evaluated[split], degrader)
            copies[split, condition], made = copy.utterances, made or copy.made
            condition_info[condition] = copy.info or condition_info.get(condition, {})
        build_seconds[condition] = round(time.perf_counter() - started, 1) if made else None
        print(f"  {condition}: {'made' if made else 'cached'} ({time.perf_counter() - started:.1f} s)", flush=True)

    systems: list[tuple[str, Callable[[list[str]], list[str]]]] = []
    for model in models:
        for label, transcriber in model_decoders(model, decoders, args.device, args.threads):
            transcribe_all(transcriber, [u.audio for u in evaluated[splits_wanted[0]][:BATCH_SIZE]])  # warm-up
            systems.append((label, partial(transcribe_all, transcriber)))
    for wanted, an4_dir in ((args.pocketsphinx, args.an4_dir), (args.pocketsphinx_en_us, None)):
        if not wanted:
            continue
        try:
            systems.append(sphinx_transcriber(an4_dir, args.sphinx_jobs))
        except ImportError:
            print("robustness: pocketsphinx is not installed: its row is skipped (pip install pocketsphinx)")

    rows = []
    for label, transcribe in systems:
        for condition in conditions:
            for split in splits_wanted:
                utterances = copies[split, condition]
                started = time.perf_counter()
                hyps = transcribe([u.audio for u in utterances])
                seconds = time.perf_counter() - started
                rows.append({"system": label, "split": split, "condition": condition,
                             **score([u.text for u in utterances], hyps), "decode_seconds": round(seconds, 2),
                             "audio_seconds": round(sum(u.duration for u in utterances), 1)})
            print(f"  {label} {condition}: " + ", ".join(
                f"{r['split']} {100 * r['wer']:.2f} %" for r in rows[-len(splits_wanted):]), flush=True)

    labels = [label for label, _ in systems]
    wer_table, time_table = tables(rows, labels, conditions, splits_wanted)
    summary_table, summary_columns = seed_summary(rows, conditions, splits_wanted)
    rep.write(
        {"splits": {s: len(evaluated[s]) for s in splits_wanted}, "models": [str(m) for m in models],
         "systems": labels, "conditions": conditions, "cache": str(cache), "cache_build_seconds": build_seconds,
         "condition_info": {c: info for c, info in condition_info.items() if info},
         "babble_pool_utterances": len(degrader.babble_pool), "noise_attribution": NOISE_ATTRIBUTION,
         "threads": args.threads, "sphinx_jobs": args.sphinx_jobs, "rows": rows},
        tables=[
            ("WER % by condition (rows) and system / split (columns)", wer_table, ["condition", *wer_columns(labels, splits_wanted)]),
            ("Decode seconds per condition (all evaluated splits)", time_table, ["condition", *labels]),
            ("WER % over the models given: mean (min-max), per decoding", summary_table, ["condition", *summary_columns]),
        ],
    )
    print(f"\n{NOISE_ATTRIBUTION}")


def seed_summary(rows: list[dict], conditions: Sequence[str], splits: Sequence[str]) -> tuple[list[dict], list[str]]:
    """With several models (e.g. seeds of one config): per condition, decoding and split, the mean
    WER % and its range over the models, as 'mean (min-max)'. Empty with fewer than 2 models."""
    models = [r for r in rows if not r["system"].startswith(POCKETSPHINX_AN4)]
    kinds = sorted({r["system"].rsplit(" ", 1)[1] for r in models})
    columns = [f"{kind} {split}" for kind in kinds for split in splits]
    table = []
    for condition in conditions:
        row = {"condition": condition}
        for kind in kinds:
            for split in splits:
                wers = [100 * r["wer"] for r in models if r["condition"] == condition and r["split"] == split
                        and r["system"].rsplit(" ", 1)[1] == kind]
                if len(wers) >= 2:
                    row[f"{kind} {split}"] = f"{np.mean(wers):.2f} ({min(wers):.2f}-{max(wers):.2f})"
        table.append(row)
    return (table, columns) if any(len(r) > 1 for r in table) else ([], [])


def wer_columns(labels: Sequence[str], splits: Sequence[str]) -> list[str]:
    return [f"{label} {split}" for label in labels for split in splits]


def tables(rows: list[dict], labels: Sequence[str], conditions: Sequence[str], splits: Sequence[str]) -> tuple[list[dict], list[dict]]:
    """(WER % table, decode seconds table): one row per condition."""
    wer_rows, time_rows = [], []
    for condition in conditions:
        mine = [r for r in rows if r["condition"] == condition]
        wer_rows.append({"condition": condition, **{
            f"{r['system']} {r['split']}": f"{100 * r['wer']:.2f}" for r in mine}})
        time_rows.append({"condition": condition, **{
            label: round(sum(r["decode_seconds"] for r in mine if r["system"] == label), 2) for label in labels}})
    return wer_rows, time_rows


if __name__ == "__main__":
    main()
