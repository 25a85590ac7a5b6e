"""DC offset: greedy WER of a checkpoint on AN4 dev/test with and without the front end's per-frame
DC removal (features.remove_dc), on the clean files and with a constant offset added.

    python bench/dc_offset.py [--model asr/pretrained/an4_blstm/model.pt] [--data-dir exp/english/data/an4]

Offsets (applied to the float samples, no clipping): x + 0.1 and 0.5 x + 0.3 (a cheap sound card's
bias; the two cases of the issue that asked for DC removal). Writes results/dc_offset.json.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from asr.audio import load_audio
from asr.checkpoint import load_model
from asr.decode import greedy_decode
from asr.manifest import read_manifest
from asr.metrics import error_rates

ROOT = Path(__file__).resolve().parent.parent
OFFSETS = {"clean": (1.0, 0.0), "x+0.1": (1.0, 0.1), "0.5x+0.3": (0.5, 0.3)}  # name -> (scale, offset)


def greedy_wer(loaded, utterances, scale: float, offset: float) -> float:
    front_end, hyps = loaded.front_end, []
    for utt in utterances:
        samples = load_audio(utt.audio) * np.float32(scale) + np.float32(offset)
        feats = torch.from_numpy(front_end(samples))[None]
        with torch.no_grad():
            log_probs, out_lens = loaded.model(feats, torch.tensor([feats.shape[1]]))
        hyps.append(loaded.vocab.decode(greedy_decode(log_probs, out_lens)[0]))
    return error_rates([u.text for u in utterances], hyps).wer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "asr" / "pretrained" / "an4_blstm" / "model.pt")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "exp" / "english" / "data" / "an4",
                        help="AN4 manifests dev.jsonl and test.jsonl (recipes/an4/local/prepare.py)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from report import Report

    rep = Report("dc_offset")
    if not (args.data_dir / "test.jsonl").is_file():
        rep.skip(f"no AN4 manifests in {args.data_dir} (recipes/an4/local/prepare.py --out-dir {args.data_dir})")
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    trained_with = loaded.features.remove_dc
    rows, table = [], []  # one row per (split, remove_dc, input); the table has the inputs as columns
    for split in ("dev", "test"):
        utterances = read_manifest(args.data_dir / f"{split}.jsonl")
        for remove_dc in (False, True):
            loaded.features = dataclasses.replace(loaded.features, remove_dc=remove_dc)
            table_row = {"split": split, "remove_dc": remove_dc}
            for name, (scale, offset) in OFFSETS.items():
                wer = round(100 * greedy_wer(loaded, utterances, scale, offset), 2)
                rows.append({"split": split, "remove_dc": remove_dc, "input": name, "greedy_wer": wer})
                table_row[name] = wer
                print(f"  {split} remove_dc={remove_dc} {name}: {wer:.2f} %", flush=True)
            table.append(table_row)
    rep.write({"model": str(args.model), "trained_with_remove_dc": trained_with, "rows": rows},
              tables=[("Greedy WER % by input", table, ["split", "remove_dc", *OFFSETS])])


if __name__ == "__main__":
    main()
