"""Training faults: kill -9 and resume, half-written checkpoints, non-finite losses, bad output
folders and incompatible checkpoints. Tiny models on generated tones, on the CPU."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from asr.checkpoint import FORMAT_VERSION, export_payload, read_checkpoint
from asr.cli import main
from asr.specaugment import SpecAugmentConfig
from asr.model import AcousticModel
from asr.train import train

from .conftest import ASR, make_tone_experiment, read_metric, tiny_config, write_config, write_tone

TIMING_METRICS = {"epoch_seconds", "realtime_factor"}  # differ between any two runs


def metric_rows(out_dir: Path) -> list[tuple[str, ...]]:
    """metrics.csv rows (step, epoch, name, value) without the timing ones."""
    rows = [tuple(line.split(",")) for line in (out_dir / "metrics.csv").read_text().splitlines()[1:]]
    return [row for row in rows if row[2] not in TIMING_METRICS]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = read_checkpoint(a), read_checkpoint(b)
    assert first["train_state"]["step"] == second["train_state"]["step"]
    for name, tensor in first["model"].items():
        assert torch.equal(tensor, second["model"][name]), name


# --- kill -9 at any moment, then --resume: the same weights as a run never interrupted -----------


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory):
    """A config with dropout and SpecAugment, 5 batches per epoch, last.pt after every step,
    and the weights of one uninterrupted run of it (all through the `asr` command)."""
    tmp = tmp_path_factory.mktemp("kill")
    base = tiny_config(make_tone_experiment(tmp), tmp / "unused", epochs=20, max_frames=150, checkpoint_every=1,
                       threads=1)
    config = write_config(tmp / "config.yaml", dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, dropout=0.3, hidden_size=32),
        specaugment=SpecAugmentConfig(freq_masks=1, freq_mask_width=10, time_masks=1, time_mask_width=10),
    ))
    straight = tmp / "straight"
    result = subprocess.run([ASR, "train", "--config", str(config), "--no-progress", f"train.out_dir={straight}"],
                            capture_output=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr
    return config, straight


@pytest.mark.parametrize("kill_after_steps", [3, 30])  # of 100
def test_sigkilled_training_resumes_to_the_same_weights_and_metrics(kill_setup, tmp_path, kill_after_steps):
    config, straight = kill_setup
    out = tmp_path / "killed"
    command = [ASR, "train", "--config", str(config), "--no-progress", f"train.out_dir={out}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            metrics = out / "metrics.csv"
            if metrics.exists() and metrics.read_text().count(",loss,") >= kill_after_steps:
                process.send_signal(signal.SIGKILL)  # wherever it is: mid-step, mid-save, mid-evaluation
                break
            time.sleep(0.002)
    finally:
        if process.poll() is None and time.monotonic() >= deadline:
            process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run ended before it was killed"
    total_steps = read_checkpoint(straight / "last.pt")["train_state"]["step"]
    assert 0 < read_checkpoint(out / "last.pt")["train_state"]["step"] < total_steps

    resumed = subprocess.run(command + ["--resume"], capture_output=True, encoding="utf-8", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert_same_weights(straight / "last.pt", out / "last.pt")
    assert metric_rows(out) == metric_rows(straight)  # steps redone after the kill are not logged twice
    assert not list(out.glob(".*.tmp*"))


# --- half-written checkpoints -------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A run of one epoch (in this process), and its config as YAML for `asr train`."""
    tmp = tmp_path_factory.mktemp("one_epoch")
    config = tiny_config(make_tone_experiment(tmp), tmp / "run", epochs=1, max_frames=400)
    train(config, progress=False)
    return tmp / "run", write_config(tmp / "config.yaml", config)


def copy_run(one_epoch, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the one-epoch run, and `asr train` arguments that continue it to 2 epochs."""
    run, config = one_epoch
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out, ["train", "--config", str(config), "--no-progress", f"train.out_dir={out}", "train.epochs=2"]


def dead_pid() -> int:
    for pid in range(4_000_000, 3_000_000, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.skip("no free process id found")


def test_resume_ignores_and_removes_a_temp_file_left_by_a_killed_save(one_epoch, tmp_path, capsys):
    out, argv = copy_run(one_epoch, tmp_path)
    leftover = out / f".last.pt.tmp{dead_pid()}"
    leftover.write_bytes((out / "last.pt").read_bytes()[:1000])  # what a save killed half-way leaves
    assert main(argv + ["--resume"]) == 0
    assert read_checkpoint(out / "last.pt")["train_state"]["epoch"] == 2
    assert not leftover.exists()
    assert f"removed {leftover}" in capsys.readouterr().out


def test_resume_drops_metrics_rows_written_after_the_checkpoint(one_epoch, tmp_path):
    out, argv = copy_run(one_epoch, tmp_path)
    with open(out / "metrics.csv", "a") as f:
        f.write("99,1,loss,1.5\r\n99,1,lr,0.001\r\n100,1,lo")  # logged after last.pt, then killed mid-line
    assert main(argv + ["--resume"]) == 0
    steps = [int(row[0]) for row in metric_rows(out) if row[2] == "loss"]
    assert steps == list(range(1, read_checkpoint(out / "last.pt")["train_state"]["step"] + 1))
    assert all(len(row) == 4 for row in metric_rows(out))


def test_resume_from_a_truncated_last_pt_is_a_one_line_error(one_epoch, tmp_path, capsys):
    out, argv = copy_run(one_epoch, tmp_path)
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # e.g. an interrupted copy
    assert main(argv + ["--resume"]) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"asr: error: {last}: not a readable checkpoint (")
    assert error.endswith("; move it away (or use a new train.out_dir) to start again")


# --- non-finite losses ----------------------------------------------------------------------------


def poison_training_steps(monkeypatch, bad_steps) -> None:
    """Make the model's output NaN on the given training forward passes (1-based; all if None)."""
    real_forward, calls = AcousticModel.forward, []

    def forward(self, feats, feat_lens):
        log_probs, out_lens = real_forward(self, feats, feat_lens)
        if self.training:
            calls.append(1)
            if bad_steps is None or len(calls) in bad_steps:
                log_probs = log_probs * float("nan")
        return log_probs, out_lens

    monkeypatch.setattr(AcousticModel, "forward", forward)


def test_non_finite_steps_are_skipped_counted_and_training_goes_on(one_epoch, tmp_path, monkeypatch, capsys):
    run, config = one_epoch
    steps_per_epoch = read_checkpoint(run / "last.pt")["train_state"]["step"]
    poison_training_steps(monkeypatch, {2, 3})
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--no-progress", f"train.out_dir={out}", "train.epochs=2"]) == 0
    assert read_metric(out, "skipped_steps") == [1, 2]
    assert len(read_metric(out, "loss")) == 2 * steps_per_epoch - 2
    state = read_checkpoint(out / "last.pt")["train_state"]
    assert state["epoch"] == 2 and state["skipped_steps"] == 2 and state["bad_steps"] == 0
    assert capsys.readouterr().out.count("non-finite loss or gradient, batch skipped") == 2


def test_too_many_non_finite_steps_in_a_row_stop_training_with_one_line(one_epoch, tmp_path, monkeypatch, capsys):
    _, config = one_epoch
    poison_training_steps(monkeypatch, None)
    out = tmp_path / "run"
    argv = ["train", "--config", str(config), "--no-progress", f"train.out_dir={out}", "train.max_bad_steps=3",
            "train.epochs=3"]
    assert main(argv) == 1
    assert capsys.readouterr().err.splitlines() == [
        "asr: error: 3 non-finite steps in a row: lower train.lr or check the data"
    ]
    assert read_metric(out, "skipped_steps") == [1, 2, 3] and read_metric(out, "loss") == []


# --- where training cannot start ------------------------------------------------------------------


def test_unwritable_output_directory_is_one_line_before_training(one_epoch, tmp_path, capsys):
    _, config = one_epoch
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert main(["train", "--config", str(config), "--no-progress", f"train.out_dir={blocker / 'run'}"]) == 1
    out, err = capsys.readouterr()
    (error,) = err.splitlines()
    assert error.startswith(f"asr: error: {blocker / 'run'}: output directory is not writable (")
    assert out == ""  # nothing started


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_directory_is_one_line_before_training(one_epoch, tmp_path, capsys):
    _, config = one_epoch
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    assert main(["train", "--config", str(config), "--no-progress", f"train.out_dir={folder}"]) == 1
    assert "output directory is not writable (Permission denied)" in capsys.readouterr().err


# --- incompatible checkpoints ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("version", "checkpoint format version 99, this toolkit reads version"),
        ("vocabulary", "weights do not match the stored configuration"),
        ("truncated", "not a readable checkpoint"),
    ],
)
def test_transcribe_with_an_incompatible_checkpoint_is_one_line(untrained_model, tmp_path, capsys, change, message):
    payload = read_checkpoint(untrained_model)
    bad = tmp_path / "bad.pt"
    if change == "version":
        torch.save({**payload, "format_version": 99}, bad)
    elif change == "vocabulary":
        torch.save({**payload, "vocab": [*payload["vocab"], "Z"]}, bad)  # one token more than the output layer
    else:
        bad.write_bytes(Path(untrained_model).read_bytes()[:2000])
    write_tone(tmp_path / "a.wav")
    assert main(["transcribe", "--model", str(bad), str(tmp_path / "a.wav")]) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"asr: error: {bad}: ") and message in error


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("version", "checkpoint format version 99, this toolkit reads version {version}"),
        ("vocabulary", "was trained with a different vocabulary than {vocab}"),
        ("model", "was trained with model.hidden_size=96 (now 48)"),
        ("features", "was trained with features.hop_ms=10.0 (now 12.5)"),
        ("exported", "has no training state (optimizer, scheduler, train_state, rng)"),
    ],
)
def test_resume_from_an_incompatible_checkpoint_is_one_line(one_epoch, tmp_path, capsys, change, message):
    out, argv = copy_run(one_epoch, tmp_path)
    last = out / "last.pt"
    payload = read_checkpoint(last)
    vocab = tmp_path / "vocab.json"
    if change == "version":
        torch.save({**payload, "format_version": 99}, last)
    elif change == "vocabulary":
        vocab.write_text('{"tokens": ["<blank>", " ", "A", "B"]}')
        argv.append(f"data.vocab={vocab}")
    elif change == "model":
        argv.append("model.hidden_size=48")
    elif change == "features":
        argv.append("features.hop_ms=12.5")
    else:
        torch.save(export_payload(payload), last)
    assert main(argv + ["--resume"]) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"asr: error: {last}: ")
    assert message.format(version=FORMAT_VERSION, vocab=vocab) in error
