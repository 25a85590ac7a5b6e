"""Shared fixtures: the AN4 corpus (skipped when absent), generated audio, a random-weight model."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from asr.audio import audio_info
from asr.checkpoint import checkpoint_payload, save_checkpoint
from asr.config import to_dict
from asr.data import compute_features
from asr.manifest import Utterance, write_manifest
from asr.frontend import Cmvn, FeatureConfig, compute_cmvn
from asr.specaugment import SpecAugmentConfig
from asr.model import AcousticModel, ModelConfig
from asr.text import BLANK_ID, Vocab, build_vocab
from asr.train import train
from asr.runconfig import DataConfig, RunConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # the prepared corpora (../shared/data, see its README)
AN4 = Path(os.environ.get("AN4_DIR", SHARED / "data" / "an4"))
ASR = str(Path(sys.executable).with_name("asr"))


def run_asr(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The `asr` console script as a user runs it."""
    return subprocess.run([ASR, *args], capture_output=True, encoding="utf-8", cwd=cwd, timeout=300)


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory) -> Path:
    """A random-weight checkpoint: enough to exercise the command line, not to recognise speech."""
    torch.manual_seed(0)
    features = FeatureConfig()
    vocab = Vocab.from_texts(["ABC"])
    model = AcousticModel(ModelConfig(num_layers=1, hidden_size=16), features.n_mels, len(vocab))
    cmvn = Cmvn(mean=(0.0,) * features.n_mels, std=(1.0,) * features.n_mels)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(path, checkpoint_payload(model, features, cmvn, vocab))
    return path


def frame_log_probs(vocab: Vocab, frames: list[dict[str, float]]) -> torch.Tensor:
    """log_probs (1, T, V) from per-frame {token: probability}; the rest of each frame's mass goes to blank."""
    rows = []
    for frame in frames:
        probs = torch.full((len(vocab),), 1e-4)
        for token, p in frame.items():
            probs[vocab.tokens.index(token)] = p
        probs[BLANK_ID] = max(1e-4, 1 - sum(frame.values()))
        rows.append((probs / probs.sum()).log())
    return torch.stack(rows).unsqueeze(0)


def decoded_text(decode, vocab: Vocab, log_probs: torch.Tensor) -> str:
    """The text a decoder gives for one utterance's log_probs (1, T, V)."""
    (hyp,) = decode(log_probs, torch.tensor([log_probs.shape[1]]))
    return vocab.decode(hyp.tokens)


@pytest.fixture(scope="session")
def an4_dir() -> Path:
    """The AN4 corpus in SphinxTrain layout; tests using it skip when it is not there."""
    if not (AN4 / "etc" / "an4_train.fileids").is_file():
        pytest.skip(f"AN4 corpus not found at {AN4} (set AN4_DIR)")
    return AN4


def write_tone(path: Path, seconds: float = 1.0, rate: int = 16_000, freq: float = 440.0, channels: int = 1,
               subtype: str = "PCM_16", format: str | None = None) -> np.ndarray:
    """Write a sine tone (plus a little noise) and return the mono float samples written."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    mono = (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)
    data = np.stack([mono] * channels, axis=1) if channels > 1 else mono
    sf.write(path, data, rate, subtype=subtype, format=format)
    return mono


# Six short AN4 training utterances: single words, spelled letters and digit strings.
OVERFIT_SET = {
    "an251-fash-b": ("fash", "YES"),
    "an253-fash-b": ("fash", "GO"),
    "cen2-fash-b": ("fash", "A M Y"),
    "an87-fbbh-b": ("fbbh", "ENTER SIX TWO FOUR"),
    "an90-fbbh-b": ("fbbh", "NO"),
    "cen3-fclc-b": ("fclc", "FIVE FIVE THREE FIVE"),
}


def make_experiment(tmp_path: Path, an4_dir: Path, ids=OVERFIT_SET, units: str = "char") -> DataConfig:
    """Manifest, vocab (in `units`) and CMVN for a few AN4 utterances; train = dev."""
    audio = {utt_id: an4_dir / "wav" / "an4_clstk" / speaker / f"{utt_id}.wav" for utt_id, (speaker, _) in ids.items()}
    return experiment_files(tmp_path, [
        Utterance(utt_id, str(audio[utt_id]), seconds(audio[utt_id]), text, speaker)
        for utt_id, (speaker, text) in ids.items()
    ], units)


# Six generated "utterances" (tones of different lengths and pitches): trains like speech, needs no corpus.
TONE_SET = {"t1": "YES", "t2": "GO", "t3": "A M Y", "t4": "NO", "t5": "ONE TWO", "t6": "SIX"}


def make_tone_experiment(tmp_path: Path, texts=TONE_SET) -> DataConfig:
    """Like make_experiment, on tones of 0.5-1.0 s written to tmp_path/audio."""
    (tmp_path / "audio").mkdir(exist_ok=True)
    utterances = []
    for n, (utt_id, text) in enumerate(texts.items()):
        path = tmp_path / "audio" / f"{utt_id}.wav"
        write_tone(path, seconds=0.5 + 0.1 * (n % 6), freq=200.0 + 80 * n)
        utterances.append(Utterance(utt_id, str(path), seconds(path), text, f"spk{n % 2}"))
    return experiment_files(tmp_path, utterances)


def seconds(path: Path) -> float:
    frames, rate = audio_info(path)
    return round(frames / rate, 3)


def experiment_files(tmp_path: Path, utterances: list[Utterance], units: str = "char") -> DataConfig:
    """train.jsonl (also the dev set), vocab.json and cmvn.json for `utterances` in tmp_path."""
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, utterances)
    vocab_path, cmvn_path = tmp_path / "vocab.json", tmp_path / "cmvn.json"
    build_vocab((u.text for u in utterances), units, bpe_size=40).save(vocab_path)
    _, feats, failures = compute_features(utterances, RunConfig().features)
    assert not failures
    compute_cmvn(feats).save(cmvn_path)
    return DataConfig(str(manifest), str(manifest), str(vocab_path), str(cmvn_path), units=units)


def tiny_config(data: DataConfig, out_dir: Path, **train_overrides) -> RunConfig:
    train_settings = dict(
        out_dir=str(out_dir), epochs=100, max_frames=100_000, lr=5e-3, warmup_steps=10, seed=3,
        device="cpu", checkpoint_every=0, weight_decay=0.0,
    )
    train_settings.update(train_overrides)
    return RunConfig(
        data=data,
        specaugment=SpecAugmentConfig(freq_masks=0, time_masks=0),
        model=ModelConfig(cell="lstm", num_layers=2, hidden_size=96, dropout=0.0, frame_stack=2),
        train=TrainConfig(**train_settings),
    )


def write_config(path: Path, config: RunConfig) -> Path:
    """A RunConfig as the YAML file `asr train --config` reads."""
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
    return path


def read_metric(out_dir: Path, name: str) -> list[float]:
    with open(out_dir / "metrics.csv", newline="") as f:
        return [float(row["value"]) for row in csv.DictReader(f) if row["name"] == name]


@pytest.fixture(scope="session")
def overfit_model(tmp_path_factory, an4_dir) -> Path:
    """best.pt of a small BiLSTM trained until it reproduces OVERFIT_SET (about a minute on 2 cores)."""
    tmp = tmp_path_factory.mktemp("overfit")
    return train(tiny_config(make_experiment(tmp, an4_dir), tmp / "run"), progress=False)


@contextlib.contextmanager
def bench_module(script: str):
    """bench/<script>.py imported as a module named <script>_bench (bench scripts import their
    neighbours, so bench/ is on the path meanwhile); removed again afterwards."""
    name = f"{script}_bench"
    sys.path.insert(0, str(REPO / "bench"))
    try:
        spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{script}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
        sys.path.remove(str(REPO / "bench"))
