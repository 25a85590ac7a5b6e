"""`asr lm`, `asr tune-lm`, `asr export`, beam decoding options and subtitle output through the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asr.checkpoint import load_model, read_checkpoint
from asr.lm import read_arpa, read_lexicon

from .conftest import OVERFIT_SET

ASR = str(Path(sys.executable).with_name("asr"))


def run_asr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ASR, *args], capture_output=True, text=True, timeout=300)


def an4_wav(an4_dir: Path, utt_id: str) -> str:
    return str(an4_dir / "wav" / "an4_clstk" / OVERFIT_SET[utt_id][0] / f"{utt_id}.wav")


@pytest.fixture(scope="module")
def lm_dir(overfit_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm")
    result = run_asr("lm", "--manifest", str(overfit_model.parents[1] / "train.jsonl"), "--order", "2", "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def model_with_lm(overfit_model, lm_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tuned") / "model_lm.pt"
    result = run_asr("tune-lm", "--model", str(overfit_model), "--manifest", str(overfit_model.parents[1] / "train.jsonl"),
                     "--lm", str(lm_dir / "lm.arpa"), "--lexicon", str(lm_dir / "lexicon.txt"), "--out", str(out),
                     "--lm-weights", "0,0.5", "--word-scores", "0,1", "--beam-threshold", "12")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("lm_weight=") == 4 + 1  # the grid, then the best line
    return out


@pytest.mark.an4
def test_lm_command_writes_an_arpa_lm_and_a_lexicon_of_training_words(lm_dir):
    words = {w for _, text in OVERFIT_SET.values() for w in text.split()}
    assert set(read_lexicon(lm_dir / "lexicon.txt")) == words
    unigrams = read_arpa(lm_dir / "lm.arpa")[1]
    assert {w for (w,) in unigrams} == words | {"<s>", "</s>", "<unk>"}


@pytest.mark.an4
def test_tuned_model_carries_its_lm_and_decodes_with_beam_by_default(model_with_lm, an4_dir):
    loaded = load_model(model_with_lm)
    assert loaded.decoding.decoder == "beam" and loaded.lm_arpa and loaded.lexicon
    assert loaded.decoding.beam_threshold == 12.0  # tune-lm searched with it, and the model decodes with it
    wavs = [an4_wav(an4_dir, "cen2-fash-b"), an4_wav(an4_dir, "an87-fbbh-b")]
    for decoder in ([], ["--decoder", "greedy"]):
        result = run_asr("transcribe", "--model", str(model_with_lm), "--format", "jsonl", *decoder, *wavs)
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["text"] for r in records] == ["A M Y", "ENTER SIX TWO FOUR"]
        words = records[1]["words"]
        assert [w["word"] for w in words] == ["ENTER", "SIX", "TWO", "FOUR"]
        assert all(0 <= w["start"] < w["end"] <= records[1]["duration"] for w in words)
        assert all(a["end"] <= b["start"] for a, b in zip(words, words[1:]))


@pytest.mark.an4
def test_tune_lm_pools_several_dev_manifests(overfit_model, lm_dir, tmp_path):
    train = overfit_model.parents[1] / "train.jsonl"
    lines = train.read_text().splitlines()
    (tmp_path / "one.jsonl").write_text(lines[0] + "\n")
    result = run_asr("tune-lm", "--model", str(overfit_model), "--manifest", str(train), str(tmp_path / "one.jsonl"),
                     "--lm", str(lm_dir / "lm.arpa"), "--lexicon", str(lm_dir / "lexicon.txt"),
                     "--out", str(tmp_path / "tuned.pt"), "--lm-weights", "0.5", "--word-scores", "1")
    assert result.returncode == 0, result.stderr
    best = result.stdout.split("best: ")[1]
    assert f"utts={len(lines) + 1}" in best  # both manifests' utterances scored together


@pytest.mark.an4
def test_subtitles_and_ctm_written_one_file_per_input(model_with_lm, an4_dir, tmp_path):
    wavs = [an4_wav(an4_dir, "an87-fbbh-b"), an4_wav(an4_dir, "an90-fbbh-b")]
    for fmt in ("srt", "vtt", "ctm"):
        result = run_asr("transcribe", "--model", str(model_with_lm), "--format", fmt, "--output-dir", str(tmp_path), *wavs)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "an87-fbbh-b.srt").read_text().startswith("1\n00:00:")
    assert (tmp_path / "an90-fbbh-b.vtt").read_text().startswith("WEBVTT\n\n00:00:")
    assert (tmp_path / "an87-fbbh-b.ctm").read_text().split("\n")[0].split()[4] == "ENTER"
    several = run_asr("transcribe", "--model", str(model_with_lm), "--format", "srt", *wavs)
    assert several.returncode == 1 and "--output-dir" in several.stderr


@pytest.mark.an4
def test_export_drops_training_state_and_fp16_halves_the_size(overfit_model, tmp_path):
    fp32, fp16 = tmp_path / "fp32.pt", tmp_path / "fp16.pt"
    assert run_asr("export", "--model", str(overfit_model), "--out", str(fp32)).returncode == 0
    assert run_asr("export", "--model", str(overfit_model), "--out", str(fp16), "--fp16").returncode == 0
    assert "optimizer" not in read_checkpoint(fp32) and "optimizer" in read_checkpoint(overfit_model)
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size
    wav_dir = str(overfit_model.parents[1])  # no audio here: use the manifest instead
    manifest = str(Path(wav_dir) / "train.jsonl")
    for model in (fp32, fp16):
        hyp = tmp_path / f"{model.stem}.jsonl"
        assert run_asr("decode", "--model", str(model), "--manifest", manifest, "--out", str(hyp)).returncode == 0
        assert "WER 0.00%" in run_asr("score", "--ref", manifest, "--hyp", str(hyp)).stdout


@pytest.mark.an4
def test_score_report_through_the_cli(overfit_model, tmp_path):
    manifest = overfit_model.parents[1] / "train.jsonl"
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("an251-fash-b NO\nan253-fash-b GO\ncen2-fash-b A M Y\n")  # half the references: scored
    report = tmp_path / "report.txt"
    result = run_asr("score", "--ref", str(manifest), "--hyp", str(hyp), "--report", str(report))
    assert result.returncode == 0
    text = report.read_text()
    assert "an251-fash-b  (S=1 D=0 I=0)\nREF: YES\nHYP: NO\n     S" in text
    assert "Per speaker:" in text and "  YES -> NO: 1" in text
