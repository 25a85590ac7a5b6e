"""The training loop: CTC loss, AdamW, warm-up + cosine decay, clipping, AMP, resume, dev WER.

Outputs in `train.out_dir`:
    last.pt      the latest state (every `checkpoint_every` steps and each epoch), for --resume
    best.pt      the weights with the lowest dev WER so far
    metrics.csv  step,epoch,name,value rows (loss, lr, grad_norm, dev_wer, ...)
    config.yaml  the resolved configuration
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from asr.checkpoint import checkpoint_payload, read_checkpoint, save_checkpoint
from asr.config import to_dict
from asr.data import FeatureDataset, LengthBucketSampler, Utterance, collate, compute_speed_variants, read_manifest
from asr.decode import greedy_decode
from asr.errors import ASRError
from asr.features import Cmvn, FeatureConfig, SpecAugmentConfig
from asr.metrics import ErrorReport, error_rates
from asr.model import AcousticModel, ModelConfig
from asr.text import BLANK_ID, Vocab


class TrainingError(ASRError):
    """Training cannot go on (e.g. too many non-finite losses in a row)."""


@dataclass(frozen=True)
class DataConfig:
    train_manifest: str = "exp/an4/data/train.jsonl"
    dev_manifest: str = "exp/an4/data/dev.jsonl"
    vocab: str = "exp/an4/data/vocab.json"
    cmvn: str = "exp/an4/data/cmvn.json"


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str = "exp/an4/blstm"
    epochs: int = 60
    max_frames: int = 20_000  # padded 10 ms input frames per batch
    max_batch_size: int = 64
    lr: float = 2e-3  # peak learning rate, reached after warmup_steps
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    final_lr_ratio: float = 0.02  # cosine decay ends at lr * final_lr_ratio
    grad_clip: float = 5.0  # max global gradient norm
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    num_workers: int = 0  # DataLoader workers (features are precomputed, so 0 is usually fastest)
    checkpoint_every: int = 200  # steps between last.pt writes (plus one at each epoch end)
    max_bad_steps: int = 50  # consecutive non-finite steps before training stops
    speed_perturb: tuple[float, ...] = (1.0,)  # speed factors; each epoch an utterance uses one (1.0 first)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ASRError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def ctc_min_frames(tokens: list[int]) -> int:
    """Fewest CTC output frames that can emit `tokens`: one per token plus a blank between repeats."""
    return len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)


def lr_factor(step: int, warmup_steps: int, total_steps: int, final_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to final_ratio at total_steps (and flat after)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ScalarLog:
    """Appends step,epoch,name,value rows to a CSV file."""

    def __init__(self, path: Path) -> None:
        new = not path.exists()
        self.file = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(["step", "epoch", "name", "value"])

    def log(self, step: int, epoch: int, **values: float) -> None:
        for name, value in values.items():
            self.writer.writerow([step, epoch, name, f"{value:.6g}"])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def prepare_split(
    manifest: str, config: RunConfig, vocab: Vocab, model: AcousticModel, say, speeds: tuple[float, ...] = (1.0,)
) -> tuple[list[Utterance], list[tuple[torch.Tensor, ...]]]:
    """Read a manifest, compute features (one per speed), and drop (reporting each) what cannot be trained on."""
    utterances = read_manifest(manifest)
    utterances, feats, failures = compute_speed_variants(utterances, config.features, speeds, progress=True)
    for failure in failures:
        say(f"skipped {failure}")
    kept_utts, kept_feats = [], []
    for utt, f in zip(utterances, feats):
        unknown = vocab.unknown_chars(utt.text)
        if unknown:
            say(f"skipped {utt.id} ({manifest}): characters not in the vocabulary {sorted(unknown)}")
            continue
        shortest = min(v.shape[0] for v in f)
        out_frames = int(model.output_lengths(torch.tensor([shortest])))
        needed = ctc_min_frames(vocab.encode(utt.text))
        if needed > out_frames:
            say(f"skipped {utt.id} ({manifest}): transcript needs {needed} CTC frames, audio gives {out_frames}")
            continue
        kept_utts.append(utt)
        kept_feats.append(f)
    dropped = len(utterances) + len(failures) - len(kept_utts)
    if dropped:
        say(f"{manifest}: {dropped} utterance(s) skipped, {len(kept_utts)} kept")
    if not kept_utts:
        raise TrainingError(f"{manifest}: no usable utterances")
    return kept_utts, kept_feats


def evaluate(
    model: AcousticModel, dataset: FeatureDataset, vocab: Vocab, device: torch.device, max_frames: int
) -> tuple[ErrorReport, dict[str, str]]:
    """Greedy-decode a dataset (no augmentation); returns the error report and id -> hypothesis."""
    model.eval()
    sampler = LengthBucketSampler(dataset.num_frames, max_frames=max_frames, shuffle=False)
    hyps: dict[str, str] = {}
    with torch.no_grad():
        for indices in sampler:
            batch = collate([dataset[i] for i in indices]).to(device)
            log_probs, out_lens = model(batch.feats, batch.feat_lens)
            for utt_id, ids in zip(batch.ids, greedy_decode(log_probs.float(), out_lens)):
                hyps[utt_id] = vocab.decode(ids)
    refs = [u.text for u in dataset.utterances]
    return error_rates(refs, [hyps[u.id] for u in dataset.utterances]), hyps


def _rng_state() -> dict:
    """Torch's RNG states: the only randomness in training is dropout (SpecAugment is seeded per item)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(config: RunConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train per config; returns the path of the best checkpoint."""
    tc = config.train
    out_dir = Path(tc.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise ASRError(f"{out_dir}: output directory is not writable ({err.strerror})") from None

    def say(message: str) -> None:
        tqdm.write(message)

    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    device = pick_device(tc.device)
    torch.manual_seed(tc.seed)

    vocab = Vocab.load(config.data.vocab)
    cmvn = Cmvn.load(config.data.cmvn)
    if len(cmvn.mean) != config.features.n_mels:
        raise ASRError(f"{config.data.cmvn}: stats have {len(cmvn.mean)} bins, features.n_mels is {config.features.n_mels}")
    model = AcousticModel(config.model, input_dim=config.features.n_mels, vocab_size=len(vocab))

    train_utts, train_feats = prepare_split(
        config.data.train_manifest, config, vocab, model, say, speeds=tc.speed_perturb
    )
    dev_utts, dev_feats = prepare_split(config.data.dev_manifest, config, vocab, model, say)
    train_set = FeatureDataset(train_utts, train_feats, vocab, cmvn, config.specaugment, seed=tc.seed)
    dev_set = FeatureDataset(dev_utts, dev_feats, vocab, cmvn)
    sampler = LengthBucketSampler(train_set.num_frames, tc.max_frames, tc.max_batch_size, shuffle=True, seed=tc.seed)
    steps_per_epoch = len(sampler)
    total_steps = tc.epochs * steps_per_epoch

    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, tc.warmup_steps, total_steps, tc.final_lr_ratio)
    )
    ctc_loss = torch.nn.CTCLoss(blank=BLANK_ID, reduction="mean", zero_infinity=True)
    use_amp = tc.amp and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    state = {"epoch": 0, "batches_done": 0, "step": 0, "best_wer": float("inf"), "best_cer": float("inf"), "bad_steps": 0}
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume and last_path.exists():
        saved = read_checkpoint(last_path)
        if saved.get("run_config", {}).get("model") != to_dict(config.model) or saved["vocab"] != list(vocab.tokens):
            raise ASRError(f"{last_path}: was trained with a different model config or vocabulary; use a new train.out_dir")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state.update(saved["train_state"])
        _restore_rng(saved["rng"])
        say(f"resumed from {last_path}: epoch {state['epoch']}, step {state['step']}")
    elif resume:
        say(f"no checkpoint at {last_path}; starting from scratch")

    with open(out_dir / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False)
    say(
        f"model: {config.model.cell} {config.model.num_layers}x{config.model.hidden_size} "
        f"{'bi' if config.model.bidirectional else 'uni'}, {model.num_parameters() / 1e6:.2f} M parameters; "
        f"{len(train_set)} train / {len(dev_set)} dev utterances; {steps_per_epoch} steps/epoch on {device}"
    )

    def checkpoint(path: Path) -> None:
        save_checkpoint(
            path,
            checkpoint_payload(
                model, config.features, cmvn, vocab,
                run_config=to_dict(config),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                train_state=dict(state),
                rng=_rng_state(),
            ),
        )

    log = ScalarLog(out_dir / "metrics.csv")
    try:
        while state["epoch"] < tc.epochs:
            epoch = state["epoch"]
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            batches = sampler.batches()[state["batches_done"]:]
            loader = torch.utils.data.DataLoader(
                train_set, batch_sampler=batches, collate_fn=collate, num_workers=tc.num_workers,
                generator=torch.Generator().manual_seed(tc.seed),  # keeps the global RNG untouched
            )
            model.train()
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not progress, leave=False, unit="batch")
            started, utts_seen, audio_seen = time.monotonic(), 0, 0.0
            for batch in bar:
                batch = batch.to(device)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                    log_probs, out_lens = model(batch.feats, batch.feat_lens)
                loss = ctc_loss(log_probs.float().transpose(0, 1), batch.tokens, out_lens, batch.token_lens)
                optimizer.zero_grad(set_to_none=True)
                finite = bool(torch.isfinite(loss))
                if finite:
                    loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                    finite = bool(torch.isfinite(grad_norm))
                if finite:
                    optimizer.step()
                    state["bad_steps"] = 0
                else:
                    optimizer.zero_grad(set_to_none=True)
                    state["bad_steps"] += 1
                    state["skipped_steps"] = state.get("skipped_steps", 0) + 1
                    say(f"step {state['step']}: non-finite loss or gradient, batch skipped ({batch.ids[0]}, ...)")
                    log.log(state["step"], epoch, skipped_steps=state["skipped_steps"])
                    if state["bad_steps"] >= tc.max_bad_steps:
                        raise TrainingError(
                            f"{state['bad_steps']} non-finite steps in a row: lower train.lr or check the data"
                        )
                scheduler.step()
                state["step"] += 1
                state["batches_done"] += 1
                utts_seen += len(batch.ids)
                audio_seen += float(batch.feat_lens.sum()) * config.features.hop_ms / 1000
                elapsed = time.monotonic() - started
                if finite:
                    lr = scheduler.get_last_lr()[0]
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", utt_s=f"{utts_seen / elapsed:.0f}")
                    log.log(state["step"], epoch, loss=loss.item(), lr=lr, grad_norm=float(grad_norm))
                if tc.checkpoint_every and state["step"] % tc.checkpoint_every == 0:
                    checkpoint(last_path)
            epoch_time = time.monotonic() - started

            report, _ = evaluate(model, dev_set, vocab, device, tc.max_frames)
            state["epoch"] += 1
            state["batches_done"] = 0
            improved = (report.wer, report.cer) < (state["best_wer"], state["best_cer"])
            if improved:
                state["best_wer"], state["best_cer"] = report.wer, report.cer
            log.log(state["step"], epoch, dev_wer=report.wer, dev_cer=report.cer, epoch_seconds=epoch_time,
                    realtime_factor=audio_seen / max(epoch_time, 1e-9))
            checkpoint(last_path)
            if improved:
                checkpoint(best_path)
            say(
                f"epoch {epoch + 1}/{tc.epochs}: dev WER {100 * report.wer:.2f}% CER {100 * report.cer:.2f}%"
                f"{' (best)' if improved else ''}  {epoch_time:.1f}s, {audio_seen / max(epoch_time, 1e-9):.0f}x real time"
            )
    finally:
        log.close()
    if not best_path.exists():
        checkpoint(best_path)
    say(f"done: best dev WER {100 * state['best_wer']:.2f}% -> {best_path}")
    return best_path
