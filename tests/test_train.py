"""Training: schedule, CTC feasibility, learning on real AN4 audio, and exact kill/resume."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
import torch

import asr.train as train_module
from asr.checkpoint import load_model, read_checkpoint
from asr.augment import AugmentConfig
from asr.specaugment import SpecAugmentConfig
from asr.machine import cpu_has_fast_bf16
from asr.train import lr_factor, train
from asr.training_data import ctc_min_frames
from asr.runconfig import RunConfig, TrainConfig
from asr.transcribe import Transcriber

from .conftest import OVERFIT_SET, make_experiment, make_tone_experiment, tiny_config


def test_lr_factor_warms_up_then_decays_to_final_ratio():
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100, 0.1) == pytest.approx(1.0)
    middle = lr_factor(55, 10, 100, 0.1)
    assert 0.1 < middle < 1.0
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 10, 100, 0.1) == pytest.approx(0.1)


def test_ctc_min_frames_counts_a_blank_between_repeats():
    assert ctc_min_frames([]) == 0
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 5 + 3


def read_metric(out_dir: Path, name: str) -> list[float]:
    with open(out_dir / "metrics.csv", newline="") as f:
        return [float(row["value"]) for row in csv.DictReader(f) if row["name"] == name]


@pytest.mark.an4
def test_model_overfits_real_an4_utterances_and_decodes_them(overfit_model, an4_dir):
    best = overfit_model
    losses = read_metric(best.parent, "loss")
    assert losses[-1] < 0.1 * losses[0], f"loss did not fall enough: {losses[0]:.2f} -> {losses[-1]:.2f}"
    assert read_metric(best.parent, "dev_wer")[-1] == 0.0
    for layer in ("grad_norm_layer1", "grad_norm_layer2", "grad_norm_output"):
        norms = read_metric(best.parent, layer)
        assert len(norms) == len(losses) and all(n > 0 for n in norms), layer

    transcriber = Transcriber(load_model(best))
    paths = [(str(an4_dir / "wav" / "an4_clstk" / spk / f"{i}.wav"), None) for i, (spk, _) in OVERFIT_SET.items()]
    texts = [t.text for t in transcriber.transcribe(paths)]
    assert texts == [text for _, text in OVERFIT_SET.values()]


# Every kind of waveform augmentation, often (the rooms short, so the test stays quick).
EVERY_AUGMENTATION = AugmentConfig(
    gain_prob=0.5, noise_prob=0.5, babble_prob=0.5, reverb_prob=0.5, rt60=(0.2, 0.3), telephone_prob=0.5, trim_prob=0.5,
)


@pytest.mark.an4
@pytest.mark.parametrize("augmented", [False, True], ids=["features_cached", "waveforms_augmented"])
def test_killed_and_resumed_training_ends_with_the_same_weights(tmp_path, an4_dir, monkeypatch, augmented):
    data = make_experiment(tmp_path, an4_dir)
    # Dropout and SpecAugment on, several batches per epoch, a checkpoint after every step; with
    # `augmented`, speed perturbation and waveform augmentation too (drawn per item from its seed).
    settings = dict(epochs=3, max_frames=500, checkpoint_every=1)
    if augmented:
        settings["speed_perturb"] = (1.0, 0.9, 1.1)

    def config(out_dir):
        base = tiny_config(data, out_dir, **settings)
        return dataclasses.replace(
            base,
            model=dataclasses.replace(base.model, dropout=0.3, hidden_size=32),
            specaugment=SpecAugmentConfig(freq_masks=1, freq_mask_width=10, time_masks=1, time_mask_width=10),
            augment=EVERY_AUGMENTATION if augmented else AugmentConfig(),
        )

    train(config(tmp_path / "straight"), progress=False)

    real_evaluate, calls = train_module.evaluate, []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the dev pass at the end of the 2nd epoch: "killed" mid-evaluation
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "killed"), progress=False)
    interrupted = read_checkpoint(tmp_path / "killed" / "last.pt")["train_state"]
    assert interrupted["epoch"] == 1 and interrupted["batches_done"] > 0  # a mid-epoch checkpoint

    monkeypatch.setattr(train_module, "evaluate", real_evaluate)
    train(config(tmp_path / "killed"), resume=True, progress=False)

    straight = read_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = read_checkpoint(tmp_path / "killed" / "last.pt")
    assert straight["train_state"]["step"] == resumed["train_state"]["step"]
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


@pytest.mark.an4
def test_untrainable_utterances_are_reported_and_skipped(tmp_path, an4_dir, capsys):
    ids = dict(OVERFIT_SET)
    # 0.7 s of audio gives 35 output frames at frame_stack 2: far too few for this transcript.
    ids["an253-fash-b"] = ("fash", "GO " * 20)
    data = make_experiment(tmp_path, an4_dir, {k: (s, " ".join(t.split())) for k, (s, t) in ids.items()})
    train(tiny_config(data, tmp_path / "run", epochs=1), progress=False)
    out = capsys.readouterr().out
    assert "skipped an253-fash-b" in out and "needs" in out


def test_unwritable_output_directory_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = RunConfig(train=TrainConfig(out_dir=str(blocker / "run")))
    with pytest.raises(train_module.ASRError, match="not writable"):
        train(config, progress=False)


@pytest.mark.parametrize("override, problem", [
    ("train.keep=newest", "train.keep must be 'best' or 'last', got 'newest'"),
    ("train.consistency_weight=-0.2", "train.consistency_weight must be 0 (off) or positive, got -0.2"),
])
def test_a_bad_train_setting_is_refused_by_the_config_before_training(tmp_path, override, problem):
    from asr.config import ConfigError, load_config

    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, None, [override, f"train.out_dir={tmp_path / 'run'}"])
    assert str(info.value) == f"<defaults>: {problem}"
    assert not (tmp_path / "run").exists()


def test_keep_last_saves_the_final_epoch_as_best(tmp_path):
    data = make_tone_experiment(tmp_path)
    best = train(tiny_config(data, tmp_path / "run", epochs=3, keep="last"), progress=False)
    final = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    kept = torch.load(best, weights_only=True)["model"]
    assert all(torch.equal(final[k], kept[k]) for k in final)


def test_average_of_the_last_epochs_is_saved_and_kept_when_better(tmp_path):
    data = make_tone_experiment(tmp_path)
    config = tiny_config(data, tmp_path / "run", epochs=4, average_last=3, lr=3e-3)
    train(config, progress=False)
    run = tmp_path / "run"
    epochs = [read_checkpoint(run / f"epoch{n}.pt")["model"] for n in (2, 3, 4)]
    assert not (run / "epoch1.pt").exists()
    averaged = read_checkpoint(run / "averaged.pt")["model"]
    for name, tensor in averaged.items():
        expected = sum(e[name].double() for e in epochs) / 3
        torch.testing.assert_close(tensor, expected.float())
    averaged_score = (read_metric(run, "averaged_dev_wer"), read_metric(run, "averaged_dev_cer"))
    assert len(averaged_score[0]) == 1
    best_epoch = min(zip(read_metric(run, "dev_wer"), read_metric(run, "dev_cer")))
    best = read_checkpoint(run / "best.pt")
    best_is_average = all(torch.equal(best["model"][k], averaged[k]) for k in averaged)
    assert best_is_average == ((averaged_score[0][0], averaged_score[1][0]) < best_epoch)  # ties keep the epoch


# --- consistency training (CR-CTC) -------------------------------------------------------------


def _two_view_batch(seed: int = 0) -> "Batch":
    import dataclasses as dc

    one = _random_batch(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    other = one.feats + 0.5 * torch.randn(one.feats.shape, generator=generator)  # a second, different view
    return dc.replace(one, feats=torch.cat([one.feats, other]), feat_lens=one.feat_lens.repeat(2),
                      tokens=one.tokens.repeat(2, 1), token_lens=one.token_lens.repeat(2), ids=one.ids * 2, views=2)


def test_consistency_loss_is_zero_for_equal_views_and_ignores_padding():
    log_probs = torch.randn(2, 10, 6).log_softmax(-1)
    same = torch.cat([log_probs, log_probs])  # (2B, T, V): both views agree
    batch = _two_view_batch()
    lens = torch.tensor([10, 6, 10, 6])
    assert float(train_module.consistency_loss(same, lens, batch)) == pytest.approx(0.0, abs=1e-6)
    other = torch.cat([log_probs, torch.randn(2, 10, 6).log_softmax(-1)])
    loss = float(train_module.consistency_loss(other, lens, batch))
    assert loss > 0
    changed_padding = other.clone()
    changed_padding[1, 6:] = torch.randn(4, 6).log_softmax(-1)  # beyond utterance 1's 6 frames
    assert float(train_module.consistency_loss(changed_padding, lens, batch)) == pytest.approx(loss)
    expected = sum(  # KL(q || p) both ways over the valid frames, per target token
        (q.exp() * (q - p)).sum() for a, b, n in ((0, 2, 10), (1, 3, 6))
        for p, q in ((other[a, :n], other[b, :n]), (other[b, :n], other[a, :n]))
    ) / batch.token_lens.sum()
    assert loss == pytest.approx(float(expected), rel=1e-5)


def test_a_two_view_step_adds_the_weighted_consistency_and_learns():
    batch = _two_view_batch()
    plain, weighted = _small_model(), _small_model()
    results = [train_module.optimisation_step(model, batch, torch.optim.AdamW(model.parameters(), lr=0.01), 5.0,
                                              consistency_weight=weight)
               for model, weight in ((plain, 0.0), (weighted, 1.0))]
    assert results[0].consistency is None and results[1].consistency > 0
    assert results[0].loss.item() == pytest.approx(results[1].loss.item())  # .loss is the CTC part alone
    assert any(not torch.equal(a, b) for a, b in zip(plain.parameters(), weighted.parameters()))
    optimizer = torch.optim.AdamW(weighted.parameters(), lr=0.01)
    steps = [train_module.optimisation_step(weighted, batch, optimizer, 5.0, consistency_weight=1.0) for _ in range(40)]
    assert steps[-1].loss.item() < 0.7 * steps[0].loss.item()
    assert steps[-1].consistency < steps[0].consistency  # the two views' posteriors come together


def test_consistency_training_logs_its_term_and_learns(tmp_path):
    data = make_tone_experiment(tmp_path)
    config = tiny_config(data, tmp_path / "run", epochs=25, consistency_weight=0.2)
    config = dataclasses.replace(config, specaugment=SpecAugmentConfig(freq_masks=1, freq_mask_width=4, time_masks=2,
                                                                       time_mask_width=5))
    train(config, progress=False)
    losses, consistency = read_metric(tmp_path / "run", "loss"), read_metric(tmp_path / "run", "consistency")
    assert len(consistency) == len(losses) and all(c > 0 for c in consistency)  # two views each step
    assert losses[-1] < 0.1 * losses[0]
    assert min(read_metric(tmp_path / "run", "dev_wer")) < 1.0


# --- float16 autocast with a GradScaler (what a GPU without bf16 would train with) ----------------


def _random_batch(seed: int = 0) -> "Batch":
    from asr.data import Batch

    generator = torch.Generator().manual_seed(seed)
    feats = torch.randn(4, 60, 8, generator=generator)
    tokens = torch.randint(1, 6, (4, 5), generator=generator)
    return Batch(feats, torch.full((4,), 60), tokens, torch.full((4,), 5), ["a", "b", "c", "d"])


def _small_model() -> torch.nn.Module:
    from asr.model import AcousticModel, ModelConfig

    torch.manual_seed(0)
    return AcousticModel(ModelConfig(num_layers=1, hidden_size=16, dropout=0.0, frame_stack=2), input_dim=8,
                         vocab_size=6)


def test_a_grad_scaler_step_learns():
    # float16 autocast itself is for CUDA (oneDNN has no float16 LSTM on the CPU); the scaling is the same
    model, batch = _small_model(), _random_batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    losses = [train_module.optimisation_step(model, batch, optimizer, 5.0, scaler=scaler).loss.item()
              for _ in range(40)]
    assert all(map(lambda x: x == x, losses))
    assert losses[-1] < 0.7 * losses[0]  # the model fits the batch through scaled gradients
    assert scaler.get_scale() == 2.0**8  # no overflow at this scale: it stayed


def test_a_grad_scaler_step_makes_the_update_of_an_unscaled_one():
    scaled, plain, batch = _small_model(), _small_model(), _random_batch()
    results = [train_module.optimisation_step(model, batch, torch.optim.AdamW(model.parameters(), lr=0.01), 0.5,
                                              scaler=scaler)
               for model, scaler in ((scaled, torch.amp.GradScaler("cpu", init_scale=2.0**12)), (plain, None))]
    assert results[0].grad_norm == pytest.approx(results[1].grad_norm, rel=1e-5)  # norms of unscaled gradients
    assert results[0].layer_norms == pytest.approx(results[1].layer_norms, rel=1e-5)
    for a, b in zip(scaled.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b)  # clipped to 0.5 the same way, the same step


def test_a_grad_scaler_overflow_skips_the_update_and_lowers_the_scale():
    model, batch = _small_model(), _random_batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=3e38)  # scaled gradients overflow to inf
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    result = train_module.optimisation_step(model, batch, optimizer, 5.0, scaler=scaler)
    assert not result.finite
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert scaler.get_scale() < 3e38


# --- bf16 autocast on the CPU (train.cpu_amp; fast on CPUs with AMX) ------------------------------


needs_fast_bf16 = pytest.mark.skipif(not cpu_has_fast_bf16(), reason="this CPU has no AMX or AVX512-BF16 "
                                     "(oneDNN may not build a bf16 LSTM on it; the trainer falls back to fp32)")


@needs_fast_bf16
def test_a_cpu_bf16_autocast_step_learns_and_keeps_fp32_weights():
    model, batch = _small_model(), _random_batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(batch.feats, batch.feat_lens)[0].dtype == torch.bfloat16  # the layers really run in bf16
    losses = [train_module.optimisation_step(model, batch, optimizer, 5.0, use_amp=True).loss.item() for _ in range(40)]
    assert losses[-1] < 0.7 * losses[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast computes in bf16, keeps fp32 weights


def record_use_amp(monkeypatch) -> list[bool]:
    """The use_amp of every optimisation step the trainer takes from now on, in order."""
    seen = []
    step = train_module.optimisation_step

    def recording_step(model, batch, optimizer, grad_clip, use_amp=False, *args, **kwargs):
        seen.append(use_amp)
        return step(model, batch, optimizer, grad_clip, use_amp, *args, **kwargs)

    monkeypatch.setattr(train_module, "optimisation_step", recording_step)
    return seen


@pytest.mark.parametrize("cpu_amp", [False, True])
def test_cpu_amp_switches_bf16_autocast_on_for_cpu_training(tmp_path, monkeypatch, cpu_amp):
    if cpu_amp and not cpu_has_fast_bf16():
        pytest.skip("this CPU has no AMX or AVX512-BF16: cpu_amp falls back to fp32 (tested below)")
    data = make_tone_experiment(tmp_path)
    seen = record_use_amp(monkeypatch)
    train(tiny_config(data, tmp_path / "run", epochs=25, cpu_amp=cpu_amp), progress=False)
    assert seen and set(seen) == {cpu_amp}  # amp (CUDA's switch, on by default) does not turn it on
    losses = read_metric(tmp_path / "run", "loss")
    assert losses[-1] < 0.1 * losses[0]
    assert min(read_metric(tmp_path / "run", "dev_wer")) < 1.0


def test_cpu_amp_on_a_cpu_without_bf16_hardware_trains_in_fp32_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_module, "cpu_has_fast_bf16", lambda: False)
    seen = record_use_amp(monkeypatch)
    train(tiny_config(make_tone_experiment(tmp_path), tmp_path / "run", epochs=1, cpu_amp=True), progress=False)
    captured = capsys.readouterr()
    assert "train.cpu_amp: this CPU has no AMX or AVX512-BF16 instructions: training in fp32" in captured.out + captured.err
    assert seen and set(seen) == {False}


def test_a_warm_up_longer_than_the_run_is_warned_about(tmp_path, capsys):
    data = make_tone_experiment(tmp_path)
    train(tiny_config(data, tmp_path / "short", epochs=2, warmup_steps=300), progress=False)
    warned = capsys.readouterr()
    assert "warning: train.warmup_steps=300 is longer than the whole run (2 epochs x" in warned.out + warned.err
    train(tiny_config(data, tmp_path / "long", epochs=40, warmup_steps=2), progress=False)
    quiet = capsys.readouterr()
    assert "warmup_steps" not in quiet.out + quiet.err
