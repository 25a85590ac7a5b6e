"""Real-time factor (processing seconds / audio seconds) of transcription on the AN4 test set, CPU.

    python bench/transcribe_rtf.py [--quick] [--threads 2] [--repeats 3]
                                   [--model exp/an4/blstm/best.pt] [--lm-model exp/an4/blstm/best_lm.pt]

(a) whole process, as a user runs it: `asr transcribe --model M <the test files>` as a child
    process (interpreter start-up, imports, model and LM load included), greedy and the LM
    model's default (beam + LM); plus the same command on one file, i.e. the fixed cost.
(b) warm: an in-process Transcriber, model loaded once, files sorted by length in batches of
    16 (the CLI default), greedy and beam + LM; split into feature / model / decode time.
Targets: warm greedy RTF <= 0.01, warm beam + LM <= 0.02, whole process <= 0.03.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from measure import asr_command, child_env, run_child
from report import Report

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"warm_greedy": 0.01, "warm_beam_lm": 0.02, "process": 0.03}
BATCH_SIZE = 16  # `asr transcribe --batch-size` default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 files, 1 repeat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--manifest", default="exp/an4/data/test.jsonl")
    parser.add_argument("--model", default="exp/an4/blstm/best.pt")
    parser.add_argument("--lm-model", default="exp/an4/blstm/best_lm.pt", help="a model carrying an LM (asr tune-lm)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rep = Report("transcribe_rtf", quick=args.quick)
    for path in (args.manifest, args.model):
        if not Path(path).exists():
            rep.skip(f"{path} not found: run the AN4 recipe first (bash recipes/an4/run.sh)")
    has_lm = Path(args.lm_model).exists()
    if not has_lm:
        print(f"transcribe_rtf: {args.lm_model} not found: beam + LM rows skipped")

    from asr.audio import audio_info
    from asr.manifest import read_manifest

    utterances = read_manifest(args.manifest)
    repeats = args.repeats
    if args.quick:
        utterances, repeats = utterances[:20], 1
    paths = [u.audio for u in utterances]
    durations = {p: n / rate for p, (n, rate) in zip(paths, map(audio_info, paths))}
    audio_seconds = sum(durations.values())
    by_length = sorted(paths, key=durations.__getitem__)  # what a caller batching by length passes
    refs = {u.audio: u.text for u in utterances}
    print(f"{len(paths)} files, {audio_seconds:.1f} s of audio, {args.threads} threads, {repeats} repeat(s)")

    decodings = [("greedy", args.model, ["--decoder", "greedy"])]
    if has_lm:
        decodings.append(("beam_lm", args.lm_model, []))

    process_rows = []
    for name, model, flags in decodings:
        for files, label in ((paths, f"{len(paths)} files"), (paths[:1], "1 file (fixed cost)")):
            command = [*asr_command(), "transcribe", "--model", model, *flags, *files]
            runs = [run_child(command, env=child_env(args.threads)) for _ in range(repeats)]
            seconds = statistics.median(r.seconds for r in runs)
            row = {"decoding": name, "files": label, "seconds": round(seconds, 2),
                   "peak_rss_mb": round(max(r.max_rss_mb for r in runs), 1),
                   "command": " ".join(command[:6 + len(flags)]) + (" ..." if len(files) > 1 else "")}
            if len(files) == len(paths):
                row["rtf"] = round(seconds / audio_seconds, 4)
                row["target"] = TARGETS["process"]
                row["met"] = row["rtf"] <= TARGETS["process"]
                hyps = dict(line.split("\t", 1) for line in runs[-1].stdout.splitlines() if "\t" in line)
                row["wer"] = round(wer(refs, hyps), 4)
            process_rows.append(row)
            print(f"  process {name} {label}: {seconds:.2f} s", flush=True)

    warm_rows = [warm(name, model, by_length, refs, audio_seconds, repeats) for name, model, _ in decodings]
    model_rows = model_batch_sweep(args.model, by_length, audio_seconds, repeats)

    rep.write(
        {"files": len(paths), "audio_seconds": round(audio_seconds, 2), "threads": args.threads, "repeats": repeats,
         "batch_size": BATCH_SIZE, "targets": TARGETS, "process": process_rows, "warm": warm_rows,
         "model_batch_sweep": model_rows},
        tables=[
            ("Whole process (`asr transcribe`, start-up and model load included)", process_rows,
             ["decoding", "files", "seconds", "rtf", "target", "met", "wer", "peak_rss_mb"]),
            ("Warm model (in-process Transcriber)", warm_rows,
             ["decoding", "seconds", "rtf", "target", "met", "feature_s", "model_s", "decode_s", "wer"]),
            ("Model forward alone vs batch size (greedy model)", model_rows, ["batch_size", "model_s", "rtf"]),
        ],
    )


def wer(refs: dict[str, str], hyps: dict[str, str]) -> float:
    from asr.metrics import error_rates

    return error_rates(list(refs.values()), [hyps.get(p, "") for p in refs]).wer


def warm(name: str, model_path: str, ordered: list[str], refs: dict[str, str], audio_seconds: float, repeats: int) -> dict:
    """End-to-end in-process time over files `ordered` by length (median of repeats after a
    warm-up pass), then the same work split into feature, model and decode time."""
    from asr.checkpoint import load_model
    from asr.decode import word_timings
    from asr.transcribe import Transcriber

    loaded = load_model(model_path)
    decoding = dataclasses.replace(loaded.decoding, decoder="greedy") if name == "greedy" else None
    transcriber = Transcriber(loaded, "cpu", batch_size=BATCH_SIZE, decoding=decoding)

    def transcribe_all() -> list:
        return list(transcriber.transcribe((p, None) for p in ordered))

    transcripts = transcribe_all()  # warm-up: first-call costs (allocator, mel filterbank, decoder tables)
    totals = []
    for _ in range(repeats):
        started = time.perf_counter()
        transcribe_all()
        totals.append(time.perf_counter() - started)
    total = statistics.median(totals)

    # The same work in three timed parts (median over repeats of each).
    feature_s, model_s, decode_s = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        feats = [transcriber.features(p) for p in ordered]
        feature_s.append(time.perf_counter() - started)
        outputs, seconds = [], 0.0
        with torch.no_grad():
            for start in range(0, len(feats), BATCH_SIZE):
                chunk = feats[start:start + BATCH_SIZE]
                padded = torch.nn.utils.rnn.pad_sequence([f for f, _ in chunk], batch_first=True)
                lens = torch.tensor([f.shape[0] for f, _ in chunk])
                started = time.perf_counter()
                log_probs, out_lens = loaded.model(padded, lens)
                seconds += time.perf_counter() - started
                outputs.append((log_probs, out_lens, [d for _, d in chunk]))
        model_s.append(seconds)
        started = time.perf_counter()
        for log_probs, out_lens, durations in outputs:
            for i, hypothesis in enumerate(transcriber.decode(log_probs, out_lens)):
                word_timings(hypothesis, log_probs[i], loaded.vocab, loaded.frame_seconds, durations[i])
                loaded.vocab.decode(hypothesis.tokens)
        decode_s.append(time.perf_counter() - started)
    target = TARGETS[f"warm_{name}"]
    row = {
        "decoding": name + (f" (beam {loaded.decoding.beam_size}, lm_weight {loaded.decoding.lm_weight:g}, "
                            f"word_score {loaded.decoding.word_score:g})" if name != "greedy" else ""),
        "seconds": round(total, 3),
        "rtf": round(total / audio_seconds, 4),
        "target": target,
        "met": total / audio_seconds <= target,
        "feature_s": round(statistics.median(feature_s), 3),
        "model_s": round(statistics.median(model_s), 3),
        "decode_s": round(statistics.median(decode_s), 3),
        "wer": round(wer(refs, {t.audio: t.text for t in transcripts}), 4),
    }
    print(f"  warm {name}: {total:.2f} s (features {row['feature_s']} s, model {row['model_s']} s, "
          f"decode {row['decode_s']} s)", flush=True)
    return row


def model_batch_sweep(model_path: str, paths: list[str], audio_seconds: float, repeats: int) -> list[dict]:
    """Model forward time alone over all files (`paths` sorted by length) for a few batch sizes."""
    from asr.checkpoint import load_model
    from asr.transcribe import Transcriber

    loaded = load_model(model_path)
    transcriber = Transcriber(loaded, "cpu")
    feats = [transcriber.features(p)[0] for p in paths]
    rows = []
    for batch_size in (1, 4, 16, 64, len(feats)):
        times = []
        for _ in range(repeats + 1):  # the first is a warm-up
            started = time.perf_counter()
            with torch.no_grad():
                for start in range(0, len(feats), batch_size):
                    chunk = feats[start:start + batch_size]
                    padded = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
                    loaded.model(padded, torch.tensor([f.shape[0] for f in chunk]))
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times[1:])
        rows.append({"batch_size": batch_size, "model_s": round(seconds, 3), "rtf": round(seconds / audio_seconds, 4)})
    return rows


if __name__ == "__main__":
    main()
