"""Write <run-dir>/RESULTS.md from the scoring stage's files (recipes/lib/stages.sh: stage_score)."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from asr.checkpoint import model_from_payload, read_checkpoint
from asr.lm import arpa_order
from asr.machine import device_description


DECODINGS = (("greedy", "greedy"), ("beam", "beam, no LM"), ("beam_lm", "beam + LM"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--config", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--splits", nargs="+", default=["dev", "test"], help="evaluation manifests, in table order")
    parser.add_argument("--note", default="", help="a line to add under the table (e.g. how the model was made)")
    parser.add_argument("--lm-description", help="how the n-gram LM was made (default: from the training transcripts)")
    args = parser.parse_args()
    run = args.run_dir

    payload = read_checkpoint(run / "best.pt")
    loaded = model_from_payload(payload, run / "best.pt")
    model = loaded.model
    train_config = payload["run_config"]["train"]
    train_seconds = int((run / "train_seconds").read_text()) if (run / "train_seconds").exists() else None
    device = device_description()

    rows = []
    for split in args.splits:
        for decoding, label in DECODINGS:
            score = json.loads((run / f"score_{split}_{decoding}.json").read_text())
            decode = json.loads((run / f"decode_{split}_{decoding}.json").read_text())
            w = score["words"]
            rows.append(
                f"| {split} | {label} | {score['utterances']} | {100 * score['wer']:.2f} | {100 * score['cer']:.2f} "
                f"| {w['substitutions']}/{w['deletions']}/{w['insertions']} | {decode['rtf']:.4f} |"
            )
    decode_threads = json.loads((run / f"decode_{args.splits[-1]}_greedy.json").read_text())["threads"]
    train_threads = train_config.get("threads") or "torch's default"
    with_lm = model_from_payload(read_checkpoint(run / "best_lm.pt"), run / "best_lm.pt")
    tuned, order = with_lm.decoding, arpa_order(with_lm.lm_arpa)
    if loaded.vocab.kind == "bpe":
        units = f"{len(loaded.vocab)} BPE tokens (sentencepiece)"
        lm = (f"LM: {order}-gram over BPE pieces (modified Kneser-Ney) from the training transcripts, no lexicon; "
              f"lm_weight {tuned.lm_weight:g} chosen on dev by `asr tune-lm`.")
    else:
        units = f"{len(loaded.vocab)} character tokens"
        lm = (f"LM: word {order}-gram (modified Kneser-Ney) from the training transcripts, lexicon of training "
              f"words; lm_weight {tuned.lm_weight:g} and word_score {tuned.word_score:g} chosen on dev by `asr tune-lm`.")
    if args.lm_description:
        pieces = loaded.vocab.kind == "bpe"  # lexicon-free decoding: no word score
        kind = "" if pieces else f"word {order}-gram, "
        word_score = "" if pieces else f" and word_score {tuned.word_score:g}"
        lm = f"LM: {kind}{args.lm_description}; lm_weight {tuned.lm_weight:g}{word_score} chosen on dev by `asr tune-lm`."
    cfg = model.config
    lines = [
        f"# {run.parent.name} results: {run.name}",
        "",
        f"Model: {cfg.num_layers} x {cfg.hidden_size} {'bidirectional ' if cfg.bidirectional else ''}{cfg.cell.upper()}, "
        f"layer norm {'on' if cfg.layer_norm else 'off'}, frame stack {cfg.frame_stack}, "
        f"{model.num_parameters() / 1e6:.2f} M parameters, {units}; "
        f"{train_config['epochs']} epochs, config `{args.config}`.",
        "",
        "| set | decoder | utts | WER % | CER % | word S/D/I | decode RTF |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Beam search: flashlight-text, beam {tuned.beam_size}. {lm}",
        *([args.note] if args.note else []),
        f"Training time: {train_seconds} s" if train_seconds is not None else "Training time: unknown",
        f"Machine: {device}; torch threads: {train_threads} for training, {decode_threads} for decoding; "
        f"torch {torch.__version__}, Python {platform.python_version()}.",
        "Decode RTF = seconds / audio seconds of `asr decode` once the model is loaded (features, batched model, decoding).",
        "",
        f"Command: `{args.command}`",
        "",
    ]
    (run / "RESULTS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
