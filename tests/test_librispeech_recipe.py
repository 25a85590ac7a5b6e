"""The LibriSpeech recipe end to end on a tiny fake LibriSpeech tree made of AN4 audio (FLAC files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from .conftest import REPO

RECIPE = REPO / "recipes" / "librispeech" / "run.sh"
PREPARE = REPO / "recipes" / "librispeech" / "local" / "prepare.py"
SUBSETS = {  # subset -> AN4 training speakers whose utterances it gets (3 utterances each)
    "train-clean-100": ["fash", "fbbh", "fclc", "fejs"],
    "dev-clean": ["ffmm"],
    "dev-other": ["fjam"],
    "test-clean": ["fkai"],
    "test-other": ["flrp"],
}


def fake_librispeech(root: Path, an4_dir: Path) -> Path:
    """LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac + <speaker>-<chapter>.trans.txt."""
    texts = {}
    for line in (an4_dir / "etc" / "an4_train.transcription").read_text().splitlines():
        text, utt_id = line.rsplit("(", 1)
        texts[utt_id.rstrip(")").strip()] = " ".join(w for w in text.split() if w not in ("<s>", "</s>"))
    speaker_number = 100
    for subset, speakers in SUBSETS.items():
        for an4_speaker in speakers:
            speaker_number += 1
            chapter = root / subset / str(speaker_number) / "7"
            chapter.mkdir(parents=True)
            wavs = sorted((an4_dir / "wav" / "an4_clstk" / an4_speaker).glob("*.wav"))[:3]
            lines = []
            for n, wav in enumerate(wavs):
                utt_id = f"{speaker_number}-7-{n:04d}"
                audio, rate = sf.read(wav)
                sf.write(chapter / f"{utt_id}.flac", audio, rate)
                lines.append(f"{utt_id} {texts[wav.stem]}")
            (chapter / f"{speaker_number}-7.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.an4
def test_prepare_reads_the_librispeech_layout(tmp_path, an4_dir):
    corpus = fake_librispeech(tmp_path / "LibriSpeech", an4_dir)
    out = tmp_path / "data"
    result = subprocess.run([sys.executable, str(PREPARE), "--data-dir", str(corpus), "--out-dir", str(out),
                             "--subsets", "train-clean-100", "dev-clean"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    train = read_jsonl(out / "train-clean-100.jsonl")
    assert len(train) == 12 and {u["speaker"] for u in train} == {"101", "102", "103", "104"}
    assert train[0]["id"] == "101-7-0000" and train[0]["audio"].endswith("101-7-0000.flac")
    assert train[0]["duration"] > 0.3 and train[0]["text"] == train[0]["text"].upper()
    missing = subprocess.run([sys.executable, str(PREPARE), "--data-dir", str(corpus), "--out-dir", str(out),
                              "--subsets", "test-other", "train-clean-360"], capture_output=True, text=True)
    assert missing.returncode == 1 and "train-clean-360" in missing.stderr and "Traceback" not in missing.stderr


def generated_lm_text(corpus: Path, path: Path, lines: int = 200) -> Path:
    """An LM corpus in the LibriSpeech LM text's form (one sentence a line): random sentences of the
    fake training transcripts' words."""
    import random

    words = sorted({w for f in (corpus / "train-clean-100").rglob("*.trans.txt")
                    for line in f.read_text().splitlines() for w in line.split()[1:]})
    rng = random.Random(0)
    path.write_text("".join(" ".join(rng.choices(words, k=rng.randint(2, 6))) + "\n" for _ in range(lines)))
    return path


@pytest.mark.an4
def test_librispeech_recipe_runs_end_to_end_on_a_fake_tree(tmp_path, an4_dir):
    corpus = fake_librispeech(tmp_path / "LibriSpeech", an4_dir)
    lm_text = generated_lm_text(corpus, tmp_path / "lm-norm.txt")
    overrides = ("train.epochs=1 train.device=cpu train.num_workers=0 model.num_layers=1 model.hidden_size=16 "
                 "train.max_frames=3000 train.warmup_steps=2 train.threads=1")
    result = subprocess.run(
        ["bash", str(RECIPE), "--data-dir", str(corpus), "--exp-dir", str(tmp_path / "exp"), "--overrides", overrides,
         "--lm-text", str(lm_text), "--rnnlm-args", "--epochs 2 --layers 1 --hidden-size 16"],
        capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1"), timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = tmp_path / "exp" / "blstm_100"
    results = (run_dir / "RESULTS.md").read_text()
    for split in ("dev-clean", "dev-other", "test-clean", "test-other"):
        for decoding in ("greedy", "beam, no LM", "beam + LM"):
            assert f"| {split} | {decoding} | 3 |" in results
    assert (tmp_path / "exp" / "data" / "train_100" / "char" / "lm" / "lm.arpa").is_file()
    # the recurrent LM was trained on the LM text (its words, not only the transcripts') and fused
    from asr.checkpoint import load_model
    from asr.rnnlm import load_lm

    rnnlm = load_lm(tmp_path / "exp" / "data" / "train_100" / "char" / "rnnlm" / "rnnlm.pt")
    assert rnnlm.vocab.units == "word" and len(rnnlm.vocab.words) > 10
    tuned = load_model(run_dir / "best_lm.pt")
    assert tuned.lm_arpa is not None and "rnnlm_weight=" in (run_dir / "tune_lm.txt").read_text()
    assert (tuned.rnnlm is not None) == (tuned.decoding.rnnlm_weight > 0)  # kept only where it helped on dev
    assert "cache_features: false" in (run_dir / "config.yaml").read_text()  # trained from audio on the fly
