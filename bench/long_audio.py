"""One hour of audio in one file: wall time, peak memory and WER of `asr transcribe` on it.

    python bench/long_audio.py [--quick] [--minutes 60] [--threads 2] [--name long_audio]
                               [--model exp/an4/blstm/best.pt] [--lm-model exp/an4/blstm/best_lm.pt]

--model and --lm-model may be exported model folders (`asr export --onnx`), e.g. the bundled
asr/pretrained/an4_blstm/onnx for both: the torch-free runtime.
Builds a WAV in a temporary folder from AN4 test then train utterances with 0.5-1.5 s pauses
between them (seeded; a pause is low-level noise at the median level of the first 100 ms of AN4
test files, RMS 0.0009, as in a real recording: digital zeros never occur in the training audio), transcribes it with `asr transcribe` in a child process (files longer than
a minute take the streaming, windowed path) and measures the child's wall time and peak RSS. The
WER of the long-file transcript against the concatenated references is compared with that of the
same utterances transcribed as separate files (`asr transcribe` on all of them; batching does not
change the output, padded batches are exact). Greedy, and the LM model's default (beam + LM).
Target: peak RSS <= 1 GiB with PyTorch, <= 500 MB for an exported model (no torch in the process).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asr.audio import SAMPLE_RATE
from measure import asr_command, child_env, run_child
from report import Report

SILENCE_SECONDS = (0.5, 1.5)
PAUSE_NOISE_RMS = 0.0009  # median RMS of the first 100 ms of the AN4 test files (room noise)
RSS_TARGET_MB = 1024  # 1 GiB
EXPORTED_RSS_TARGET_MB = 500  # an exported model: onnxruntime and numpy, no torch


def build_long_wav(path: Path, utterances, minutes: float, seed: int = 0) -> tuple[list, float]:
    """Write utterances (in order) separated by random silences until `minutes` of audio; returns
    the utterances used and the duration. Written block by block: this process stays small."""
    from asr.audio import load_audio

    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    used, samples = [], 0
    limit = minutes * 60 * SAMPLE_RATE
    with sf.SoundFile(str(path), "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16") as out:
        for utt in utterances:
            if samples >= limit:
                break
            if used:
                silence = round(rng.uniform(*SILENCE_SECONDS) * SAMPLE_RATE)
                out.write((noise.standard_normal(silence) * PAUSE_NOISE_RMS).astype(np.float32))
                samples += silence
            audio = load_audio(utt.audio, SAMPLE_RATE)
            out.write(audio)
            samples += len(audio)
            used.append(utt)
    return used, samples / SAMPLE_RATE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 minutes, greedy only")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default="exp/an4/data", help="folder with test.jsonl and train.jsonl")
    parser.add_argument("--model", default="exp/an4/blstm/best.pt")
    parser.add_argument("--lm-model", default="exp/an4/blstm/best_lm.pt", help="a model carrying an LM (asr tune-lm)")
    parser.add_argument("--name", default="long_audio", help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rep = Report(args.name, quick=args.quick)
    rss_target = EXPORTED_RSS_TARGET_MB if Path(args.model).is_dir() else RSS_TARGET_MB
    data = Path(args.data_dir)
    for path in (data / "test.jsonl", data / "train.jsonl", Path(args.model)):
        if not path.exists():
            rep.skip(f"{path} not found: run the AN4 recipe first (bash recipes/an4/run.sh)")
    minutes = 3.0 if args.quick else args.minutes

    from asr.manifest import read_manifest
    from asr.metrics import error_rates

    decodings = [("greedy", args.model, ["--decoder", "greedy"])]
    if Path(args.lm_model).exists() and not args.quick:
        decodings.append(("beam_lm", args.lm_model, []))
    utterances = read_manifest(data / "test.jsonl") + read_manifest(data / "train.jsonl")
    baseline = run_child([sys.executable, "-c", "import torch"], env=child_env(args.threads))
    print(f"python -c 'import torch': {baseline.seconds:.1f} s, peak RSS {baseline.max_rss_mb:.0f} MB", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        wav = Path(tmp) / "long.wav"
        used, duration = build_long_wav(wav, utterances, minutes)
        print(f"{wav}: {duration / 60:.1f} min from {len(used)} utterances", flush=True)
        reference = " ".join(u.text for u in used)
        for name, model, flags in decodings:
            env = child_env(args.threads)
            long_run = run_child([*asr_command(), "transcribe", "--model", model, *flags, str(wav)], env=env)
            long_text = long_run.stdout.split("\t", 1)[1].strip() if "\t" in long_run.stdout else ""
            print(f"  {name} long file: {long_run.seconds:.1f} s, {long_run.max_rss_mb:.0f} MB", flush=True)
            files_run = run_child([*asr_command(), "transcribe", "--model", model, *flags, *[u.audio for u in used]],
                                  env=env)
            hyps = dict(line.split("\t", 1) for line in files_run.stdout.splitlines() if "\t" in line)
            files_text = " ".join(hyps.get(u.audio, "").strip() for u in used)
            print(f"  {name} separate files: {files_run.seconds:.1f} s, {files_run.max_rss_mb:.0f} MB", flush=True)
            for how, run, text in (("one long file", long_run, long_text), ("separate files", files_run, files_text)):
                report = error_rates([reference], [text])
                rows.append({
                    "decoding": name, "input": how, "seconds": round(run.seconds, 1),
                    "rtf": round(run.seconds / duration, 4), "peak_rss_mb": round(run.max_rss_mb, 1),
                    "rss_target_met": run.max_rss_mb <= rss_target if how == "one long file" else None,
                    "wer": round(report.wer, 4), "cer": round(report.cer, 4),
                    "substitutions": report.words.substitutions, "deletions": report.words.deletions,
                    "insertions": report.words.insertions, "words": report.words.reference_length,
                })
    rep.write(
        {"audio_seconds": round(duration, 1), "utterances": len(used), "silence_seconds": SILENCE_SECONDS,
         "threads": args.threads, "rss_target_mb": rss_target,
         "import_torch_only": {"seconds": round(baseline.seconds, 2), "peak_rss_mb": round(baseline.max_rss_mb, 1)},
         "runs": rows},
        tables=[(f"{duration / 60:.1f} min of AN4 in one WAV vs as {len(used)} separate files", rows,
                 ["decoding", "input", "seconds", "rtf", "peak_rss_mb", "rss_target_met", "wer", "cer",
                  "substitutions", "deletions", "insertions"])],
    )


if __name__ == "__main__":
    main()
