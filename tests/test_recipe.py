"""The AN4 recipe on a tiny generated corpus in SphinxTrain layout (WAV and NIST SPHERE audio)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, write_tone

RECIPE = REPO / "recipes" / "an4" / "run.sh"
PREPARE = REPO / "recipes" / "an4" / "local" / "prepare.py"

TRAIN = {"spk1": ["YES", "NO", "GO"], "spk2": ["A B C", "TWO", "YES"], "spk3": ["NO", "GO", "A"]}
TEST = {"spk9": ["YES NO", "GO"]}
TINY_TRAINING = "train.device=cpu model.num_layers=1 model.hidden_size=16 train.max_frames=2000 train.warmup_steps=2"


def fake_an4(root: Path, suffix: str = ".wav") -> Path:
    """An AN4-shaped corpus: etc/an4_{train,test}.{fileids,transcription} + wav/<fileid><suffix>."""
    (root / "etc").mkdir(parents=True)
    fmt = "NIST" if suffix == ".sph" else None
    for split, folder, speakers in (("train", "an4_clstk", TRAIN), ("test", "an4test_clstk", TEST)):
        fileids, transcription = [], []
        for speaker, texts in speakers.items():
            (root / "wav" / folder / speaker).mkdir(parents=True)
            for n, text in enumerate(texts):
                utt_id = f"an{n}-{speaker}-b"
                write_tone(root / "wav" / folder / speaker / f"{utt_id}{suffix}", seconds=0.6 + 0.2 * n,
                           freq=200.0 + 100 * n, format=fmt)
                fileids.append(f"{folder}/{speaker}/{utt_id}")
                marks = ("<s> ", " </s>") if split == "train" else ("", "")
                transcription.append(f"{marks[0]}{text}{marks[1]} ({utt_id})")
        (root / "etc" / f"an4_{split}.fileids").write_text("\n".join(fileids) + "\n")
        (root / "etc" / f"an4_{split}.transcription").write_text("\n".join(transcription) + "\n")
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".sph"])
def test_prepare_writes_speaker_disjoint_manifests(tmp_path, suffix):
    corpus = fake_an4(tmp_path / "an4", suffix)
    out = tmp_path / "data"
    result = subprocess.run([sys.executable, str(PREPARE), "--data-dir", str(corpus), "--out-dir", str(out),
                             "--dev-speakers", "1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    train, dev, test = (read_jsonl(out / f"{name}.jsonl") for name in ("train", "dev", "test"))
    assert len(train) + len(dev) == 9 and len(test) == 2
    assert {u["speaker"] for u in dev}.isdisjoint({u["speaker"] for u in train})
    first = next(u for u in train + dev if u["id"] == "an2-spk2-b")
    assert first["text"] == "YES" and first["audio"].endswith(f"an2-spk2-b{suffix}")
    assert first["duration"] == pytest.approx(1.0)
    assert [u["text"] for u in test] == ["YES NO", "GO"]


def test_prepare_reports_a_missing_audio_file(tmp_path):
    corpus = fake_an4(tmp_path / "an4")
    (corpus / "wav" / "an4_clstk" / "spk1" / "an1-spk1-b.wav").unlink()
    result = subprocess.run([sys.executable, str(PREPARE), "--data-dir", str(corpus), "--out-dir", str(tmp_path / "d")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "an1-spk1-b" in result.stderr and "audio file not found" in result.stderr
    assert "Traceback" not in result.stderr


def run_tiny_recipe(tmp_path: Path) -> tuple[list[str], dict, subprocess.CompletedProcess]:
    """The recipe's stages 0-4 with a tiny model on fake_an4: (its command, env, the finished run)."""
    corpus = fake_an4(tmp_path / "an4")
    env = dict(os.environ, PYTHON=sys.executable)
    overrides = f"train.epochs=2 {TINY_TRAINING}"
    args = ["bash", str(RECIPE), "--data-dir", str(corpus), "--exp-dir", str(tmp_path / "exp"), "--dev-speakers", "1",
            "--overrides", overrides]
    first = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    return args, env, first


def test_recipe_runs_end_to_end_and_skips_finished_stages(tmp_path):
    args, env, first = run_tiny_recipe(tmp_path)
    exp = tmp_path / "exp"
    for stage in range(5):
        assert f"Stage {stage}:" in first.stdout
    results = (exp / "blstm" / "RESULTS.md").read_text()
    for decoding in ("greedy", "beam, no LM", "beam + LM"):
        assert f"| test | {decoding} | 2 |" in results
    assert "character tokens" in results and "word 3-gram" in results
    assert "torch threads: torch's default for training" in results  # train.threads 0 in the config
    assert (exp / "blstm" / "best.pt").is_file()

    results_written = (exp / "blstm" / "RESULTS.md").stat().st_mtime_ns
    again = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already done") == 5  # manifests, CMVN, vocabulary + LM, training, scoring
    assert f"Stage 4: tune LM weights on dev, decode and score\n  already done ({exp / 'blstm' / 'RESULTS.md'})\n" \
        in again.stdout
    assert (exp / "blstm" / "RESULTS.md").stat().st_mtime_ns == results_written  # not decoded and rewritten again


@pytest.mark.slow  # two more trainings (about 100 s); run with -m slow
def test_recipe_final_stage_and_a_bpe_config_after_the_first_run(tmp_path):
    args, env, _ = run_tiny_recipe(tmp_path)
    exp = tmp_path / "exp"

    # stage 5: the final model on train + dev, scored on test with stage 4's LM weights (not retuned)
    final = subprocess.run(args + ["--stage", "5", "--stop-stage", "5"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=600)
    assert final.returncode == 0, final.stdout + final.stderr
    results = (exp / "blstm" / "final" / "RESULTS.md").read_text()
    assert "| test | beam + LM | 2 |" in results and "| dev |" not in results
    assert "train + dev" in results
    trained_on = {json.loads(line)["id"] for line in (exp / "data" / "train_dev.jsonl").read_text().splitlines()}
    dev = {json.loads(line)["id"] for line in (exp / "data" / "dev.jsonl").read_text().splitlines()}
    assert dev and dev <= trained_on
    assert "done: the final epoch" in (exp / "blstm" / "final" / "train.log").read_text()
    tuned = (exp / "blstm" / "tune_lm.txt").read_text().split("best: ")[1].split()[:2]
    assert (exp / "blstm" / "final" / "tune_lm.txt").read_text().split("best: ")[1].split()[:2] == tuned

    # BPE units from another config: its own vocabulary and piece LM beside the character ones, same CMVN
    bpe = subprocess.run(args + ["--config", "conf/an4_blstm_bpe.yaml"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert bpe.returncode == 0, bpe.stdout + bpe.stderr
    assert bpe.stdout.count("already done") == 2  # manifests, CMVN
    assert (exp / "data" / "bpe128" / "vocab.json").is_file() and not (exp / "data" / "bpe128" / "lm" / "lexicon.txt").exists()
    results = (exp / "blstm_bpe" / "RESULTS.md").read_text()
    assert "| test | beam + LM | 2 |" in results
    assert "BPE tokens (sentencepiece)" in results and "6-gram over BPE pieces" in results


def test_a_bracketed_override_reaches_training_as_a_list_beside_a_file_its_pattern_matches(tmp_path):
    """`train.speed_perturb=[1.0,0.9]` is a shell glob pattern; a file it matches must not replace it."""
    root = tmp_path / "repo"  # a copy of the recipe, whose folder the stages run in
    for folder in ("recipes", "conf"):
        shutil.copytree(REPO / folder, root / folder)
    (root / "train.speed_perturb=1").write_text("")  # what the unquoted pattern would expand to
    corpus = fake_an4(tmp_path / "an4")
    exp = tmp_path / "exp"
    overrides = f"train.epochs=1 {TINY_TRAINING} train.speed_perturb=[1.0,0.9]"
    result = subprocess.run(["bash", str(root / "recipes" / "an4" / "run.sh"), "--data-dir", str(corpus),
                             "--exp-dir", str(exp), "--dev-speakers", "1", "--overrides", overrides, "--stop-stage", "3"],
                            capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable), cwd=tmp_path,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((exp / "blstm" / "config.yaml").read_text())
    assert config["train"]["speed_perturb"] == [1.0, 0.9]
