"""Write <run-dir>/RESULTS.md from stage 4's score and timing files."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from asr.checkpoint import model_from_payload, read_checkpoint


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--config", required=True)
    parser.add_argument("--command", required=True)
    args = parser.parse_args()
    run = args.run_dir

    payload = read_checkpoint(run / "best.pt")
    loaded = model_from_payload(payload, run / "best.pt")
    model = loaded.model
    train_config = payload["run_config"]["train"]
    train_seconds = int((run / "train_seconds").read_text()) if (run / "train_seconds").exists() else None
    device = "GPU: " + torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU: {cpu_name()}"

    rows = []
    for split in ("dev", "test"):
        score = json.loads((run / f"score_{split}.json").read_text())
        decode = json.loads((run / f"decode_{split}.json").read_text())
        w, c = score["words"], score["chars"]
        rows.append(
            f"| {split} | greedy | {score['utterances']} | {100 * score['wer']:.2f} | {100 * score['cer']:.2f} "
            f"| {w['substitutions']}/{w['deletions']}/{w['insertions']} | {decode['rtf']:.4f} |"
        )
    cfg = model.config
    lines = [
        f"# AN4 results: {run.name}",
        "",
        f"Model: {cfg.num_layers} x {cfg.hidden_size} {'bidirectional ' if cfg.bidirectional else ''}{cfg.cell.upper()}, "
        f"layer norm {'on' if cfg.layer_norm else 'off'}, frame stack {cfg.frame_stack}, "
        f"{model.num_parameters() / 1e6:.2f} M parameters, {len(loaded.vocab)} character tokens; "
        f"{train_config['epochs']} epochs, config `{args.config}`.",
        "",
        "| set | decoder | utts | WER % | CER % | word S/D/I | decode RTF |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Training time: {train_seconds} s" if train_seconds is not None else "Training time: unknown",
        f"Machine: {device}, {torch.get_num_threads()} torch threads; torch {torch.__version__}, Python {platform.python_version()}.",
        f"Decode RTF = decoding seconds / audio seconds for `asr decode` (batched, model loaded), on the machine above.",
        "",
        f"Command: `{args.command}`",
        "",
    ]
    (run / "RESULTS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
