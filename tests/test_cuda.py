"""The CUDA path: training, mixed precision, pinned batches, checkpoints moved between devices and
decoding, on a GPU. Skipped where torch sees none (the development machines and CI); run on a GPU
machine by bench/gpu_checks.sh (`python -m pytest -q -m cuda tests/test_cuda.py`)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import asr.train as train_module
from asr.checkpoint import load_model, read_checkpoint
from asr.data import Batch
from asr.model import AcousticModel, ModelConfig
from asr.train import train
from asr.transcribe import Transcriber

from .conftest import TONE_SET, make_tone_experiment, read_metric, tiny_config

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _batch(seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    feats = torch.randn(4, 60, 80, generator=generator)
    tokens = torch.randint(1, 6, (4, 5), generator=generator)
    return Batch(feats, torch.tensor([60, 55, 50, 40]), tokens, torch.full((4,), 5), ["a", "b", "c", "d"])


def test_a_pinned_batch_reaches_the_gpu_unchanged():
    batch = _batch()
    pinned = batch.pin_memory()
    assert pinned.feats.is_pinned() and pinned.tokens.is_pinned()
    on_gpu = pinned.to("cuda")
    torch.cuda.synchronize()
    assert on_gpu.feats.device.type == "cuda"
    assert torch.equal(on_gpu.feats.cpu(), batch.feats) and torch.equal(on_gpu.feat_lens.cpu(), batch.feat_lens)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_steps_on_the_gpu_fit_a_batch_in_each_precision(precision):
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(num_layers=2, hidden_size=64, dropout=0.0), input_dim=80, vocab_size=6).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    batch = _batch().to("cuda")
    losses = []
    for _ in range(60):
        result = train_module.optimisation_step(model, batch, optimizer, 5.0, use_amp=amp_dtype is not None,
                                                amp_dtype=amp_dtype or torch.bfloat16, scaler=scaler)
        losses.append(result.loss.item())
    finite = [x for x in losses if x == x and x != float("inf")]
    assert len(finite) >= 55  # fp16 may skip a few steps while the scaler finds its scale
    assert finite[-1] < 0.5 * finite[0], f"{precision}: {finite[0]:.2f} -> {finite[-1]:.2f}"


def test_cudnn_and_native_lstm_give_the_same_outputs():
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(num_layers=2, hidden_size=64, dropout=0.0), input_dim=80, vocab_size=6).cuda()
    model.eval()
    batch = _batch().to("cuda")
    with torch.no_grad():
        with torch.backends.cudnn.flags(enabled=True):
            fused = model(batch.feats, batch.feat_lens)[0]
        with torch.backends.cudnn.flags(enabled=False):
            native = model(batch.feats, batch.feat_lens)[0]
        on_cpu = model.cpu()(batch.feats.cpu(), batch.feat_lens.cpu())[0]
    torch.testing.assert_close(fused, native, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(fused.cpu(), on_cpu, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_training_on_the_gpu_learns_and_its_checkpoint_decodes_on_the_cpu(tmp_path, amp):
    config = tiny_config(make_tone_experiment(tmp_path), tmp_path / "run", epochs=60, device="cuda", amp=amp)
    best = train(config, progress=False)
    losses = read_metric(best.parent, "loss")
    assert losses[-1] < 0.1 * losses[0], f"loss did not fall enough: {losses[0]:.2f} -> {losses[-1]:.2f}"
    assert read_metric(best.parent, "dev_wer")[-1] == 0.0
    paths = [(str(tmp_path / "audio" / f"{utt_id}.wav"), None) for utt_id in TONE_SET]
    on_cpu = [t.text for t in Transcriber(load_model(best, "cpu")).transcribe(paths)]
    on_gpu = [t.text for t in Transcriber(load_model(best, "cuda")).transcribe(paths)]
    assert on_cpu == on_gpu == list(TONE_SET.values())


class _Stop(Exception):
    pass


def test_training_on_the_gpu_resumes_exactly_after_a_crash(tmp_path, monkeypatch):
    data = make_tone_experiment(tmp_path)
    straight = tiny_config(data, tmp_path / "straight", epochs=6, device="cuda", max_frames=150, seed=5,
                           checkpoint_every=1)
    train(straight, progress=False)
    crashed = dataclasses.replace(straight, train=dataclasses.replace(straight.train, out_dir=str(tmp_path / "split")))
    real_step, calls = train_module.optimisation_step, []

    def step_then_crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:  # mid-epoch, after six steps were checkpointed
            raise _Stop()
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "optimisation_step", step_then_crash)
    with pytest.raises(_Stop):
        train(crashed, progress=False)
    calls.clear()
    monkeypatch.setattr(train_module, "optimisation_step", lambda *a, **k: calls.append(1) or real_step(*a, **k))
    train(crashed, resume=True, progress=False)
    a = read_checkpoint(tmp_path / "straight" / "last.pt")
    b = read_checkpoint(tmp_path / "split" / "last.pt")
    assert a["train_state"]["step"] == b["train_state"]["step"] == len(calls) + 6  # went on from step 6
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], atol=1e-5, rtol=1e-5)  # cuDNN: maybe not bitwise
