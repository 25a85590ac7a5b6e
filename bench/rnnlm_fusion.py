"""n-gram vs recurrent LMs in beam search on AN4: dev perplexity, dev WER (weights tuned there),
test WER (scored once per variant) and warm real-time factor.

    python bench/rnnlm_fusion.py [--quick] [--threads 2] [--data exp/an4/data]
                                 [--model asr/pretrained/an4_blstm/model.pt] [--work exp/bench_rnnlm]
                                 [--word-shapes 2x256,2x128,1x256,1x128]

Rows: none (beam, no LM), 3-gram (the n-gram `asr lm` builds), char LSTM, word LSTM (one row per
--word-shapes entry, layers x hidden size; the first is "word LSTM"), 3-gram + the first word LSTM
(log-linear). The LMs are built from the training transcripts only, early-stopped on
dev; each is trained once into --work by the `asr lm` command recorded in the results (an LM
already there is reused, so a killed run resumes). Every row's weights are tuned on dev
(asr.tuning.tune_lm, the grids below), then test is decoded once with the best.

Perplexity is per word (EOS counted), natural-log based, for all LMs alike; the log-linear
combination is not a normalised distribution, so it has none. RTF warm = (features + acoustic
model time over test, measured once) + that row's beam-search time, over the test audio seconds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from report import Report

ROOT = Path(__file__).resolve().parent.parent
NGRAM_GRID = {"lm_weights": [0.5, 1, 1.5, 2, 2.5, 3], "word_scores": [0, 1, 2, 3, 4]}
RNN_GRID = {"rnnlm_weights": [0.2, 0.4, 0.6, 0.8, 1.0], "word_scores": [0, 1, 2, 3, 4, 5]}  # as the bundled model's
CHAR_GRID = {"rnnlm_weights": [0.3, 0.5, 0.8, 1.0, 1.2], "word_scores": [0, 1, 2, 3]}
# The char LSTM's shape (layers, hidden size): 2 x 128 was chosen on dev among 2 x 256, 1 x 256 and
# 2 x 128 (16.33 % vs 16.78 / 17.23 % at 4 tokens per frame) and steps 4x cheaper.
CHAR_SHAPE = (2, 128)
WORD_SHAPES = "2x256,2x128,1x256,1x128"  # word LSTMs compared (--word-shapes); the first is "word LSTM"
BEAM = {"beam_size": 50}  # the bundled model's n-gram decoding
RNN_BEAM = {"beam_size": 20, "beam_size_token": 8}  # recurrent rows: Python is called per expansion
CHAR_BEAM = {"beam_size": 20, "beam_size_token": 4}  # lexicon-free: every token tried is an LM call;
# on dev 4 tokens a frame were as good as 8 for all three character LMs, and ~2x faster
TARGET_RTF = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 15 dev and 15 test utterances, 1-point grids")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default="exp/an4/data", help="AN4 manifests train/dev/test.jsonl")
    parser.add_argument("--model", default="asr/pretrained/an4_blstm/model.pt")
    parser.add_argument("--work", default="exp/bench_rnnlm", help="LMs are trained (or found) here")
    parser.add_argument("--repeats", type=int, default=1, help="test decodes timed per row; the median is kept")
    parser.add_argument("--word-shapes", default=WORD_SHAPES, help="comma-separated LAYERSxHIDDEN word LSTMs")
    args = parser.parse_args()
    word_shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.word_shapes.split(",")]
    shapes = [("char", CHAR_SHAPE)] + [("word", shape) for shape in word_shapes]
    torch.set_num_threads(args.threads)
    rep = Report("rnnlm_fusion", quick=args.quick)
    data, work = Path(args.data), Path(args.work)
    for path in (data / "train.jsonl", data / "dev.jsonl", data / "test.jsonl", Path(args.model)):
        if not path.exists():
            rep.skip(f"{path} not found: run the AN4 recipe's stage 1 first (bash recipes/an4/run.sh --stop-stage 1)")

    from asr.checkpoint import load_model
    from asr.decode import DecodeConfig, make_decoder
    from asr.lm import build_arpa, lm_words, read_arpa
    from asr.manifest import read_manifest
    from asr.metrics import error_rates
    from asr.rnnlm import load_lm
    from asr.rnnlm_train import ngram_perplexity
    from asr.transcribe import Transcriber
    from asr.tuning import decode_all, tune_lm

    train = [u.text for u in read_manifest(data / "train.jsonl", check_audio=False)]
    dev_utts, test_utts = read_manifest(data / "dev.jsonl"), read_manifest(data / "test.jsonl")
    grids = {"ngram": NGRAM_GRID, "word": RNN_GRID, "char": CHAR_GRID}
    if args.quick:
        dev_utts, test_utts = dev_utts[:15], test_utts[:15]
        grids = {k: {name: values[len(values) // 2:len(values) // 2 + 1] for name, values in g.items()}
                 for k, g in grids.items()}

    lm_commands, lm_seconds = {}, {}
    for units, (layers, hidden) in shapes:
        out = lm_dir(work, units, (layers, hidden))
        name = out.name
        command = [sys.executable, "-m", "asr", "lm", "--type", "lstm", "--units", units, "--manifest",
                   str(data / "train.jsonl"), "--dev-manifest", str(data / "dev.jsonl"), "--out-dir", str(out),
                   "--layers", str(layers), "--hidden-size", str(hidden)]
        lm_commands[name] = " ".join(["asr", *command[3:]])
        if not (out / "rnnlm.pt").exists():
            started = time.perf_counter()
            subprocess.run(command, check=True, cwd=ROOT)
            lm_seconds[name] = round(time.perf_counter() - started, 1)
    lms = {row_name(units, shape, word_shapes): load_lm(lm_dir(work, units, shape) / "rnnlm.pt") for units, shape in shapes}
    arpa = build_arpa(train, 3)
    (work / "ngram").mkdir(parents=True, exist_ok=True)
    (work / "ngram" / "lm.arpa").write_text(arpa, encoding="utf-8")
    lexicon = sorted(lm_words(train))
    dev_refs, test_refs = [u.text for u in dev_utts], [u.text for u in test_utts]
    ppl = {"3-gram": ngram_perplexity(read_arpa(work / "ngram" / "lm.arpa"), dev_refs)}
    ppl |= {name: lm.perplexity(dev_refs) for name, lm in lms.items()}

    loaded = load_model(args.model)
    vocab = loaded.vocab
    transcriber = Transcriber(loaded, batch_size=16)
    dev_em = transcriber.log_probs([u.audio for u in dev_utts])
    transcriber.log_probs([u.audio for u in test_utts[:4]])  # warm-up
    started = time.perf_counter()
    test_em = transcriber.log_probs([u.audio for u in test_utts])
    acoustic_s = time.perf_counter() - started
    test_audio = sum(u.duration for u in test_utts)
    print(f"dev {len(dev_utts)} utts, test {len(test_utts)} utts ({test_audio:.1f} s); features + model on test "
          f"{acoustic_s:.2f} s", flush=True)

    variants = [
        ("none", dict(lm_arpa=None, lexicon=None, rnnlm=None), {"lm_weights": [0], "word_scores": [0]}, BEAM),
        ("3-gram", dict(lm_arpa=arpa, lexicon=lexicon, rnnlm=None), grids["ngram"], BEAM),
        ("word LSTM", dict(lm_arpa=None, lexicon=None, rnnlm=lms["word LSTM"]), grids["word"], RNN_BEAM),
        ("3-gram + word LSTM", dict(lm_arpa=arpa, lexicon=lexicon, rnnlm=lms["word LSTM"]), None, RNN_BEAM),
        ("char LSTM", dict(lm_arpa=None, lexicon=None, rnnlm=lms["char LSTM"]), grids["char"], CHAR_BEAM),
    ] + [(name, dict(lm_arpa=None, lexicon=None, rnnlm=lm), grids["word"], RNN_BEAM)
         for name, lm in lms.items() if name.startswith("word LSTM ")]
    rows, best = [], {}
    for name, lm, grid, beam in variants:
        if grid is None:  # around the two single LMs' best weights: halves and wholes of each
            alpha, gamma = best["3-gram"].lm_weight, best["word LSTM"].rnnlm_weight
            grid = {"lm_weights": sorted({alpha / 2, alpha}), "rnnlm_weights": sorted({gamma / 2, gamma}),
                    "word_scores": sorted({best["3-gram"].word_score, best["word LSTM"].word_score})}
        base = DecodeConfig(decoder="beam", **beam)
        started = time.perf_counter()
        if name == "none":
            config = base
            dev_report = error_rates(dev_refs, decode_all(make_decoder(vocab, config), dev_em, vocab))
            points = 1
        else:
            results = tune_lm(dev_em, dev_refs, vocab, lm["lm_arpa"], lm["lexicon"], grid.get("lm_weights", [0]),
                              grid["word_scores"], base=base, rnnlm=lm["rnnlm"],
                              rnnlm_weights=grid.get("rnnlm_weights", [0.0]))
            config, dev_report = results[0]
            points = len(results)
        tune_s = time.perf_counter() - started
        best[name] = config
        decode = make_decoder(vocab, config, lm["lm_arpa"], lm["lexicon"], rnnlm=lm["rnnlm"])
        times, texts = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            texts = decode_all(decode, test_em, vocab)
            times.append(time.perf_counter() - started)
        decode_s = statistics.median(times)
        test_report = error_rates(test_refs, texts)
        row = {
            "lm": name,
            "dev_ppl": round(ppl[name], 2) if name in ppl else None,
            "dev_wer": round(100 * dev_report.wer, 2),
            "test_wer": round(100 * test_report.wer, 2),
            "rtf_warm": round((acoustic_s + decode_s) / test_audio, 4),
            "rtf_decode": round(decode_s / test_audio, 4),
            "weights": {k: v for k, v in asdict(config).items() if k in ("lm_weight", "rnnlm_weight", "word_score")},
            "beam": {k: v for k, v in asdict(config).items() if k in ("beam_size", "beam_size_token", "beam_threshold")},
            "grid_points": points,
            "tune_seconds": round(tune_s, 1),
            "test_errors": test_report.words.errors,
        }
        if lm["rnnlm"] is not None:
            row["lm_steps"] = decode.lm.steps
            row["lm_batches"] = decode.lm.batches
        rows.append(row)
        _write(rep, args, data, test_audio, acoustic_s, rows, lm_commands, lm_seconds, work, shapes, grids, dev_utts,
               test_utts)
        print(f"  {name}: dev ppl {row['dev_ppl']}, dev WER {row['dev_wer']}, test WER {row['test_wer']}, "
              f"RTF warm {row['rtf_warm']} (decode {row['rtf_decode']}), {row['weights']}, tuned in {tune_s:.0f} s",
              flush=True)


def _write(rep, args, data, test_audio, acoustic_s, rows, lm_commands, lm_seconds, work, shapes, grids, dev_utts,
           test_utts):
    """Results so far (rewritten after every row, so a long run killed midway keeps its finished rows)."""
    rep.write(
        {"model": args.model, "data": str(data), "threads": args.threads, "test_audio_seconds": round(test_audio, 2),
         "acoustic_seconds": round(acoustic_s, 3), "target_rtf_warm": TARGET_RTF, "rows": rows,
         "lm_commands": lm_commands, "lm_train_seconds": lm_seconds,
         "lm_summaries": {lm_dir(work, u, shape).name: _summary(lm_dir(work, u, shape) / "rnnlm.json")
                          for u, shape in shapes},
         "grids": grids, "dev_utterances": len(dev_utts), "test_utterances": len(test_utts)},
        tables=[("AN4: LMs in beam search (dev for choices, test once)", rows,
                 ["lm", "dev_ppl", "dev_wer", "test_wer", "rtf_warm", "rtf_decode", "weights", "beam"])],
    )


def lm_dir(work: Path, units: str, shape: tuple[int, int]) -> Path:
    layers, hidden = shape
    return work / f"{units}_lstm_{layers}x{hidden}"


def row_name(units: str, shape: tuple[int, int], word_shapes: list[tuple[int, int]]) -> str:
    """'char LSTM'; 'word LSTM' for the first word shape, 'word LSTM 2x128' for the others."""
    if units == "char" or shape == word_shapes[0]:
        return f"{units} LSTM"
    return f"word LSTM {shape[0]}x{shape[1]}"


def _summary(path: Path) -> dict | None:
    import json

    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return {k: summary[k] for k in ("dev_ppl", "ngram3_dev_ppl", "train_sentences", "dev_sentences", "vocab_size",
                                    "dev_oov_words", "config", "train_config") if k in summary} | {
        "epochs_run": len(summary.get("epochs", []))}


if __name__ == "__main__":
    main()
