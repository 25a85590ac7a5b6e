"""Distributed training: torchrun with 2 CPU processes (gloo) matches one process with the same global batch."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asr.checkpoint import read_checkpoint
from asr.data import LengthBucketSampler, compute_features
from asr.manifest import Utterance, write_manifest
from asr.frontend import FeatureConfig, compute_cmvn
from asr.text import Vocab

from .conftest import write_tone

TEXTS = ["A B", "B A", "A", "B", "AB", "BA", "A A", "B B"]


@pytest.mark.parametrize("num_replicas", [2, 3])
def test_distributed_sampler_splits_each_global_batch_across_ranks(num_replicas):
    lengths = [50 + (i * 37) % 200 for i in range(60)]
    whole = LengthBucketSampler(lengths, max_frames=900 * num_replicas, max_batch_size=8 * num_replicas, seed=4)
    ranks = [LengthBucketSampler(lengths, 900, 8, seed=4, num_replicas=num_replicas, rank=r) for r in range(num_replicas)]
    for epoch in (0, 1):
        for sampler in [whole, *ranks]:
            sampler.set_epoch(epoch)
        per_rank = [r.batches() for r in ranks]
        assert len({len(b) for b in per_rank}) == 1  # every rank takes the same number of steps
        kept = [b for b in whole.batches() if len(b) >= num_replicas]
        for step, global_batch in enumerate(kept):
            parts = [per_rank[r][step] for r in range(num_replicas)]
            assert sorted(i for part in parts for i in part) == sorted(global_batch)
            assert all(parts) and max(map(len, parts)) - min(map(len, parts)) <= 1
    assert per_rank[0] != per_rank[1]


def read_losses(out_dir: Path) -> list[float]:
    with open(out_dir / "metrics.csv", newline="") as f:
        return [float(row["value"]) for row in csv.DictReader(f) if row["name"] == "loss"]


def test_distributed_training_matches_a_single_process_with_the_same_global_batch(tmp_path):
    utterances = []
    for i, text in enumerate(TEXTS):  # equal lengths: every rank batch holds the same number of utterances
        path = tmp_path / f"u{i}.wav"
        write_tone(path, seconds=1.0, freq=200 + 60 * i)
        utterances.append(Utterance(f"u{i}", str(path), 1.0, text, "spk"))
    write_manifest(tmp_path / "train.jsonl", utterances)
    Vocab.from_texts(TEXTS).save(tmp_path / "vocab.json")
    compute_cmvn(compute_features(utterances, FeatureConfig())[1]).save(tmp_path / "cmvn.json")
    frames = FeatureConfig().num_frames(16_000)

    def config(out_dir: str, per_process_utts: int) -> Path:
        cfg = {
            "data": {"train_manifest": str(tmp_path / "train.jsonl"), "dev_manifest": str(tmp_path / "train.jsonl"),
                     "vocab": str(tmp_path / "vocab.json"), "cmvn": str(tmp_path / "cmvn.json")},
            "specaugment": {"freq_masks": 0, "time_masks": 0},
            "model": {"num_layers": 1, "hidden_size": 16, "dropout": 0.0, "frame_stack": 2},
            "train": {"out_dir": out_dir, "epochs": 2, "max_frames": frames * per_process_utts,
                      "max_batch_size": per_process_utts, "lr": 0.01, "warmup_steps": 1, "device": "cpu",
                      "threads": 1, "checkpoint_every": 0, "seed": 5},
        }
        path = tmp_path / f"{Path(out_dir).name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "asr", "train", "--no-progress",
                             "--config", str(config(str(tmp_path / "single"), 4))],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "asr", "train", "--no-progress", "--config", str(config(str(tmp_path / "ddp"), 2))],
                         capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert "x 2 processes" in ddp.stdout + ddp.stderr
    if importlib.util.find_spec("tensorboard") is not None:  # event files come from rank 0 alone
        assert len(list((tmp_path / "ddp" / "tensorboard").glob("events.out.tfevents.*"))) == 1

    single_losses, ddp_losses = read_losses(tmp_path / "single"), read_losses(tmp_path / "ddp")
    assert len(single_losses) == len(ddp_losses) == 4  # 8 utterances / global batch 4, 2 epochs
    assert ddp_losses == pytest.approx(single_losses, rel=1e-4)
    assert single_losses[-1] < single_losses[0]
    a, b = read_checkpoint(tmp_path / "single" / "last.pt"), read_checkpoint(tmp_path / "ddp" / "last.pt")
    for name, tensor in a["model"].items():
        assert (tensor - b["model"][name]).abs().max() < 1e-4, name
