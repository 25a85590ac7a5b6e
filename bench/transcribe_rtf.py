"""Real-time factor (processing seconds / audio seconds) of transcription on the AN4 test set, CPU.

    python bench/transcribe_rtf.py [--quick] [--threads 2] [--repeats 3] [--side-by-side-only]
                                   [--model exp/an4/blstm/best.pt] [--lm-model exp/an4/blstm/best_lm.pt]
                                   [--bundled asr/pretrained/an4_blstm] [--name NAME]

(0) side by side, whole processes as a user runs them, median of --repeats after one warm-up run,
    with peak RSS: `asr --help`; the bundled model's exported folder (onnxruntime, no torch: what
    `asr transcribe` runs by default), the same model as its PyTorch checkpoint, and its dynamic
    int8 export (made in a temp dir when the onnx package is installed); and CMU pocketsphinx 5
    (en-us acoustic model with AN4's unigram LM and dictionary, as in bench/robustness.py) when
    installed, in a fresh `python` that reads the files with soundfile. Each on one short file
    (examples/an4_test_example.wav) and on the 130 AN4 test files in one process, with the WER.
    The AN4 test manifest is --manifest, else made from --an4-dir with recipes/an4/local/prepare.py.
    Targets: one file <= 1.0 s and <= 300 MB, `asr --help` <= 0.3 s, 130 files <= 0.005 x audio.

(a) whole process, as a user runs it: `asr transcribe --model M <the test files>` as a child
    process (interpreter start-up, imports, model and LM load included), greedy and the LM
    model's default (beam + LM); plus the same command on one file, i.e. the fixed cost.
(b) warm: an in-process Transcriber, model loaded once, files sorted by length in batches of
    16 (the CLI default), greedy and beam + LM; split into feature / model / decode time.
Targets: warm greedy RTF <= 0.01, warm beam + LM <= 0.02, whole process <= 0.03.
(a) and (b) need the AN4 recipe's models; without them (or with --side-by-side-only) only (0) runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from measure import asr_command, child_env, run_child
from report import Report

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"warm_greedy": 0.01, "warm_beam_lm": 0.02, "process": 0.03}
SIDE_BY_SIDE_TARGETS = {"help_s": 0.3, "one_file_s": 1.0, "one_file_mb": 300, "all_files_rtf": 0.005}
BATCH_SIZE = 16  # `asr transcribe --batch-size` default
EXAMPLE = ROOT / "examples" / "an4_test_example.wav"
BUNDLED = ROOT / "asr" / "pretrained" / "an4_blstm"
AN4_DIR = ROOT.parent / "shared" / "data" / "an4"
POCKETSPHINX = """
import os, sys
import numpy as np, soundfile as sf
from pocketsphinx import Config, Decoder, get_model_path
etc = sys.argv[1]
decoder = Decoder(Config(hmm=os.path.join(get_model_path(), "en-us", "en-us"), lm=os.path.join(etc, "an4.lm"),
                         dict=os.path.join(etc, "an4.dic"), logfn=os.devnull, fwdflat=False))
for path in sys.argv[2:]:
    samples, rate = sf.read(path, dtype="int16")
    assert rate == 16000, path
    decoder.start_utt()
    decoder.process_raw(samples.tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    print(f"{path}\t{hyp.hypstr if hyp else ''}")
"""  # the same decoder settings as bench/pocketsphinx_peer.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 files, 1 repeat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--manifest", default="exp/an4/data/test.jsonl")
    parser.add_argument("--model", default="exp/an4/blstm/best.pt")
    parser.add_argument("--lm-model", default="exp/an4/blstm/best_lm.pt", help="a model carrying an LM (asr tune-lm)")
    parser.add_argument("--an4-dir", type=Path, default=AN4_DIR, help="AN4 (for the test manifest and pocketsphinx's LM)")
    parser.add_argument("--bundled", type=Path, default=BUNDLED,
                        help="(0) times this folder's model.pt and onnx/ (default: the bundled model, as `asr transcribe` runs it)")
    parser.add_argument("--side-by-side-only", action="store_true", help="only (0): no recipe models needed")
    parser.add_argument("--name", help="results/NAME.json (default transcribe_rtf, or transcribe_rtf_side_by_side)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = args.name or ("transcribe_rtf_side_by_side" if args.side_by_side_only else "transcribe_rtf")
    rep = Report(name, quick=args.quick)
    with tempfile.TemporaryDirectory(prefix="transcribe-rtf-") as tmp:
        side_rows = side_by_side(args, Path(tmp))
    side_table = ("Side by side: whole processes, the bundled model and pocketsphinx", side_rows,
                  ["system", "workload", "seconds", "rtf", "peak_rss_mb", "wer", "target", "met"])
    missing = [path for path in (args.manifest, args.model) if not Path(path).exists()]
    if args.side_by_side_only or missing:
        if missing:
            print(f"transcribe_rtf: {missing[0]} not found (run the AN4 recipe): only the side-by-side table")
        rep.write({"threads": args.threads, "repeats": args.repeats, "targets": SIDE_BY_SIDE_TARGETS,
                   "side_by_side": side_rows}, tables=[side_table])
        return
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
         "model_batch_sweep": model_rows, "side_by_side": side_rows, "side_by_side_targets": SIDE_BY_SIDE_TARGETS},
        tables=[
            side_table,
            ("Whole process (`asr transcribe`, start-up and model load included)", process_rows,
             ["decoding", "files", "seconds", "rtf", "target", "met", "wer", "peak_rss_mb"]),
            ("Warm model (in-process Transcriber)", warm_rows,
             ["decoding", "seconds", "rtf", "target", "met", "feature_s", "model_s", "decode_s", "wer"]),
            ("Model forward alone vs batch size (greedy model)", model_rows, ["batch_size", "model_s", "rtf"]),
        ],
    )


def test_manifest(args: argparse.Namespace, tmp: Path) -> Path | None:
    """--manifest, else AN4 test prepared from --an4-dir into tmp; None when neither exists."""
    if Path(args.manifest).exists():
        return Path(args.manifest)
    if not (args.an4_dir / "etc").is_dir():
        return None
    subprocess.run([sys.executable, str(ROOT / "recipes" / "an4" / "local" / "prepare.py"), "--data-dir",
                    str(args.an4_dir), "--out-dir", str(tmp)], check=True, capture_output=True)
    return tmp / "test.jsonl"


def side_by_side(args: argparse.Namespace, tmp: Path) -> list[dict]:
    """(0): whole-process time and peak RSS of each system on `asr --help`, one file, all test files."""
    from asr.audio import audio_info
    from asr.manifest import read_manifest
    from pocketsphinx_peer import normalise_pocketsphinx  # fillers and variant marks out; asr's output is unchanged

    repeats = 1 if args.quick else args.repeats
    env = child_env(args.threads)
    exported = [] if args.bundled.resolve() == BUNDLED else ["--model", str(args.bundled / "onnx")]
    systems = [("asr, exported (onnxruntime)", [*asr_command(), "transcribe", *exported]),
               ("asr, PyTorch checkpoint", [*asr_command(), "transcribe", "--model", str(args.bundled / "model.pt")])]
    if importlib.util.find_spec("onnx") is not None:
        from asr.onnx_export import export_onnx

        export_onnx(args.bundled / "model.pt", tmp / "int8", int8=True)
        systems.append(("asr, exported int8", [*asr_command(), "transcribe", "--model", str(tmp / "int8")]))
    if importlib.util.find_spec("pocketsphinx") is not None and (args.an4_dir / "etc" / "an4.lm").is_file():
        systems.append(("pocketsphinx 5 (AN4 LM)", [sys.executable, "-c", POCKETSPHINX, str(args.an4_dir / "etc")]))
    else:
        print("transcribe_rtf: pocketsphinx (or AN4's etc/an4.lm) not found: no pocketsphinx rows")
    manifest = test_manifest(args, tmp)
    workloads = [("1 file (2.4 s)", [str(EXAMPLE)], {str(EXAMPLE): EXAMPLE.with_suffix(".txt").read_text().strip()})]
    if manifest is not None:
        utterances = read_manifest(manifest)[: 20 if args.quick else None]
        workloads.append((f"{len(utterances)} files, one process", [u.audio for u in utterances],
                          {u.audio: u.text for u in utterances}))
    else:
        print("transcribe_rtf: no AN4 test manifest: one-file rows only")

    def measure(command: list[str]) -> tuple[float, float, str]:
        runs = [run_child(command, env=env) for _ in range(repeats + 1)][1:]  # the first warms the page cache
        return statistics.median(r.seconds for r in runs), max(r.max_rss_mb for r in runs), runs[-1].stdout

    seconds, rss, _ = measure([*asr_command(), "--help"])
    rows = [{"system": "asr --help", "workload": "-", "seconds": round(seconds, 3), "peak_rss_mb": round(rss, 1),
             "target": SIDE_BY_SIDE_TARGETS["help_s"], "met": seconds <= SIDE_BY_SIDE_TARGETS["help_s"]}]
    for system, command in systems:
        for workload, files, refs in workloads:
            seconds, rss, stdout = measure([*command, *files])
            hyps = {path: normalise_pocketsphinx(text) for path, text in
                    (line.split("	", 1) for line in stdout.splitlines() if "	" in line)}
            row = {"system": system, "workload": workload, "seconds": round(seconds, 3), "peak_rss_mb": round(rss, 1),
                   "wer": round(wer(refs, hyps), 4)}
            if len(files) > 1:
                audio = sum(n / rate for n, rate in map(audio_info, files))
                row |= {"rtf": round(seconds / audio, 4), "target": SIDE_BY_SIDE_TARGETS["all_files_rtf"],
                        "met": seconds / audio <= SIDE_BY_SIDE_TARGETS["all_files_rtf"]}
            else:
                row |= {"target": f"{SIDE_BY_SIDE_TARGETS['one_file_s']} s, {SIDE_BY_SIDE_TARGETS['one_file_mb']} MB",
                        "met": seconds <= SIDE_BY_SIDE_TARGETS["one_file_s"] and rss <= SIDE_BY_SIDE_TARGETS["one_file_mb"]}
            rows.append(row)
            print(f"  {system}, {workload}: {seconds:.2f} s, {rss:.0f} MB, WER {row['wer']:.4f}", flush=True)
    return rows


def wer(refs: dict[str, str], hyps: dict[str, str]) -> float:
    from asr.metrics import error_rates

    return error_rates(list(refs.values()), [hyps.get(p, "") for p in refs]).wer


def warm(name: str, model_path: str, ordered: list[str], refs: dict[str, str], audio_seconds: float, repeats: int) -> dict:
    """End-to-end in-process time over files `ordered` by length (median of repeats after a
    warm-up pass), then the same work split into feature, model and decode time."""
    from asr.checkpoint import load_model
    from asr.word_timing import word_timings
    from asr.transcribe import Transcriber

    loaded = load_model(model_path)
    decoding = dataclasses.replace(loaded.decoding, decoder="greedy") if name == "greedy" else None
    transcriber = Transcriber(loaded, batch_size=BATCH_SIZE, decoding=decoding)

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
                padded = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(f) for f, _ in chunk], batch_first=True)
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
    transcriber = Transcriber(loaded)
    feats = [transcriber.features(p)[0] for p in paths]
    rows = []
    for batch_size in (1, 4, 16, 64, len(feats)):
        times = []
        for _ in range(repeats + 1):  # the first is a warm-up
            started = time.perf_counter()
            with torch.no_grad():
                for start in range(0, len(feats), batch_size):
                    chunk = feats[start:start + batch_size]
                    padded = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(f) for f in chunk], batch_first=True)
                    loaded.model(padded, torch.tensor([f.shape[0] for f in chunk]))
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times[1:])
        rows.append({"batch_size": batch_size, "model_s": round(seconds, 3), "rtf": round(seconds / audio_seconds, 4)})
    return rows


if __name__ == "__main__":
    main()
