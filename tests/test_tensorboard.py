"""TensorBoard event files of a training run (asr.tblog), read back with tensorboard's own reader."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asr.train import train

from .conftest import make_tone_experiment, read_metric, tiny_config, write_config
from .test_training_faults import poison_training_steps

BLOCK_TENSORBOARD = "import sys; sys.modules['tensorboard'] = None; from asr.cli import main; sys.exit(main())"


def read_events(log_dir):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_event_files_hold_losses_grad_norms_dev_scores_and_transcripts(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    config = tiny_config(make_tone_experiment(tmp_path), tmp_path / "run", epochs=2, max_frames=150,
                         max_batch_size=2, threads=1)
    poison_training_steps(monkeypatch, {2})
    train(config, progress=False)
    events = read_events(tmp_path / "run" / "tensorboard")
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "grad_norm/layer1", "grad_norm/layer2", "grad_norm/output",
            "train/skipped_steps", "dev/wer", "dev/cer", "train/epoch_seconds"} <= tags
    losses = events.Scalars("train/loss")
    assert [e.value for e in losses] == pytest.approx(read_metric(tmp_path / "run", "loss"), rel=1e-5)
    assert [e.value for e in events.Scalars("train/skipped_steps")] == [1]  # the second step, counted once
    assert [e.value for e in events.Scalars("dev/wer")] == pytest.approx(
        [100 * v for v in read_metric(tmp_path / "run", "dev_wer")], rel=1e-5)
    assert len(events.Scalars("grad_norm/layer1")) == len(losses)
    (text_tag,) = [t for t in events.Tags()["tensors"] if t.startswith("dev/transcripts")]
    shown = events.Tensors(text_tag)
    assert len(shown) == 2  # one per epoch
    table = shown[-1].tensor_proto.string_val[0].decode()
    assert "| id | reference | hypothesis |" in table and "| t1 | YES |" in table


def test_no_event_files_when_turned_off(tmp_path):
    pytest.importorskip("tensorboard")
    config = tiny_config(make_tone_experiment(tmp_path), tmp_path / "run", epochs=1, max_frames=300, threads=1,
                         tensorboard=False)
    train(config, progress=False)
    assert (tmp_path / "run" / "metrics.csv").exists() and not (tmp_path / "run" / "tensorboard").exists()


def test_training_without_tensorboard_installed_is_unchanged(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config(make_tone_experiment(tmp_path), tmp_path / "run",
                                                           epochs=1, max_frames=300, threads=1))
    result = subprocess.run([sys.executable, "-c", BLOCK_TENSORBOARD, "train", "--config", str(config), "--no-progress"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert read_metric(tmp_path / "run", "loss") and read_metric(tmp_path / "run", "dev_wer")
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert "tensorboard" not in result.stdout + result.stderr
