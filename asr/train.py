"""The training loop: CTC loss, AdamW, warm-up + cosine decay, clipping, AMP, resume, dev WER.

Outputs in `train.out_dir`:
    last.pt      the latest state (every `checkpoint_every` steps and each epoch), for --resume
    best.pt      the weights with the lowest dev WER so far (possibly an average of the last epochs),
                 or with train.keep: last, the final epoch's (or that average): for a model trained
                 on train + dev, whose dev WER no longer tells epochs apart
    epochN.pt    weights of the last train.average_last epochs; averaged.pt their average
    metrics.csv  step,epoch,name,value rows (loss, lr, grad_norm, grad_norm_layerN, dev_wer, ...)
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

from asr.checkpoint import TRAINING_STATE, CheckpointError, checkpoint_payload, read_checkpoint, save_checkpoint
from asr.config import to_dict
from asr.data import (
    AudioDataset,
    FeatureDataset,
    LengthBucketSampler,
    check_audio_headers,
    collate,
    compute_speed_variants,
    duration_mismatch,
    read_manifest,
)
from asr.decode import greedy_decode
from asr.distributed import setup_distributed
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
    vocab: str = "exp/an4/data/char/vocab.json"
    cmvn: str = "exp/an4/data/cmvn.json"
    units: str = "char"  # char | bpe (sentencepiece); `asr vocab --config` builds data.vocab in these units
    bpe_size: int = 256  # BPE pieces (an upper bound: small corpora may give fewer)


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
    num_workers: int = 0  # DataLoader workers: 0 with cached features; several without
    cache_features: bool = True  # compute features once and hold them in memory (small corpora)
    checkpoint_every: int = 200  # steps between last.pt writes (plus one at each epoch end)
    max_bad_steps: int = 50  # consecutive non-finite steps before training stops
    speed_perturb: tuple[float, ...] = (1.0,)  # speed factors; each epoch an utterance uses one (1.0 first)
    average_last: int = 0  # average the weights of the last N epochs; kept as best.pt if better on dev
    keep: str = "best"  # best.pt holds: best (lowest dev WER) | last (the final epoch, or the average)


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


def layer_grad_norms(model: AcousticModel) -> dict[str, float]:
    """Gradient L2 norm of each recurrent layer and of the output layer: makes vanishing or
    exploding gradients visible layer by layer."""
    norms = {}
    parts = [(f"grad_norm_layer{i + 1}", layer) for i, layer in enumerate(model.layers)]
    for name, module in parts + [("grad_norm_output", model.output)]:
        grads = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
        if grads:
            norms[name] = float(torch.stack(grads).norm())
    return norms


class ScalarLog:
    """Appends step,epoch,name,value rows to a CSV file (does nothing when not enabled).

    `rows` counts the data rows in the file. keep_rows=N first drops every row after the N-th:
    a resumed run passes the count its checkpoint saw, so the steps it repeats are not logged twice
    (nor a half-written last line kept).
    """

    def __init__(self, path: Path, enabled: bool = True, keep_rows: int | None = None) -> None:
        self.enabled, self.rows = enabled, 0
        if not enabled:
            return
        if path.exists():
            lines = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if line.endswith("\n")]
            self.rows = max(0, len(lines) - 1) if keep_rows is None else min(keep_rows, max(0, len(lines) - 1))
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(lines[: 1 + self.rows]), encoding="utf-8")
            os.replace(tmp, path)
        new = not path.exists() or path.stat().st_size == 0
        self.file = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(["step", "epoch", "name", "value"])

    def log(self, step: int, epoch: int, **values: float) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self.writer.writerow([step, epoch, name, f"{value:.6g}"])
        self.rows += len(values)
        self.file.flush()

    def close(self) -> None:
        if self.enabled:
            self.file.close()


def prepare_split(
    manifest: str,
    config: RunConfig,
    vocab: Vocab,
    cmvn: Cmvn,
    model: AcousticModel,
    say,
    speeds: tuple[float, ...] = (1.0,),
    progress: bool = True,
    augment: bool = False,
) -> FeatureDataset:
    """Read a manifest and build its dataset, dropping (and reporting each) what cannot be trained on.

    With train.cache_features, features (one per speed) are computed now and held in memory;
    otherwise audio headers are checked now and features computed as batches are read.
    """
    utterances = read_manifest(manifest)
    if config.train.cache_features:
        utterances, feats, failures = compute_speed_variants(utterances, config.features, speeds, progress)
        shortest = [min(v.shape[0] for v in f) for f in feats]
    else:
        utterances, failures = check_audio_headers(utterances)
        rate = config.features.sample_rate
        shortest = [config.features.num_frames(round(u.duration * rate / max(speeds))) for u in utterances]
    for failure in failures:
        say(f"skipped {failure}")
    if config.train.cache_features:  # the audio's own length: the manifest's duration is only a hint
        hop_seconds = config.features.hop_ms / 1000
        for utt, f in zip(utterances, feats):
            mismatch = duration_mismatch(utt.duration, (f[0].shape[0] - 1) * hop_seconds * speeds[0])
            if mismatch:
                say(f"warning: {utt.id} ({manifest}): {mismatch}")
    keep = []
    for index, (utt, frames) in enumerate(zip(utterances, shortest)):
        unknown = vocab.unknown_chars(utt.text)
        if unknown:
            say(f"skipped {utt.id} ({manifest}): characters not in the vocabulary {sorted(unknown)}")
            continue
        out_frames = int(model.output_lengths(torch.tensor([frames])))
        needed = ctc_min_frames(vocab.encode(utt.text))
        if needed > out_frames:
            say(f"skipped {utt.id} ({manifest}): transcript needs {needed} CTC frames, audio gives {out_frames}")
            continue
        keep.append(index)
    dropped = len(utterances) + len(failures) - len(keep)
    if dropped:
        say(f"{manifest}: {dropped} utterance(s) skipped, {len(keep)} kept")
    if not keep:
        raise TrainingError(f"{manifest}: no usable utterances")
    kept = [utterances[i] for i in keep]
    empty = sum(1 for u in kept if not u.text)
    if empty:
        say(f"{manifest}: {empty} utterance(s) with an empty transcript, kept (CTC target: all blank)")
    specaugment = config.specaugment if augment else None
    if config.train.cache_features:
        return FeatureDataset(kept, [feats[i] for i in keep], vocab, cmvn, specaugment, seed=config.train.seed)
    return AudioDataset(kept, config.features, vocab, cmvn, specaugment, seed=config.train.seed, speeds=speeds)


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


def read_resume_checkpoint(path: Path, config: RunConfig, vocab: Vocab) -> dict:
    """last.pt, checked to fit this run: same model and feature settings, same vocabulary, training state."""
    try:
        saved = read_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; move it away (or use a new train.out_dir) to start again") from None
    hint = "use a new train.out_dir, or the settings it was trained with"
    run_config = saved.get("run_config") or {}
    for section, current in (("model", to_dict(config.model)), ("features", to_dict(config.features))):
        stored = run_config.get(section) or {}
        changed = [k for k in current if k in stored and stored[k] != current[k]]  # fields added since are fine
        if changed:
            was = ", ".join(f"{section}.{k}={stored[k]!r} (now {current[k]!r})" for k in changed)
            raise CheckpointError(f"{path}: was trained with {was}; {hint}")
    if saved.get("vocab") != list(vocab.tokens):
        raise CheckpointError(f"{path}: was trained with a different vocabulary than {config.data.vocab}; {hint}")
    missing = [key for key in TRAINING_STATE if key not in saved]
    if missing:
        raise CheckpointError(f"{path}: has no training state ({', '.join(missing)}); is it an exported model?")
    return saved


def _remove_stale_temp_files(out_dir: Path, say) -> None:
    """Delete checkpoint temp files left by a process killed while saving (save_checkpoint's .NAME.tmpPID)."""
    for leftover in out_dir.glob(".*.pt.tmp*"):
        pid = leftover.name.rpartition(".tmp")[2]
        if pid.isdigit() and _process_alive(int(pid)):
            continue  # still being written
        leftover.unlink(missing_ok=True)
        say(f"removed {leftover} (a checkpoint save that was interrupted)")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


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


def average_weights(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights in several checkpoints (accumulated in float64)."""
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        for name, tensor in read_checkpoint(path)["model"].items():
            total[name] = total.get(name, 0) + tensor.double()
    return {name: (tensor / len(paths)).float() for name, tensor in total.items()}


def train(config: RunConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train per config; returns the path of the best checkpoint."""
    tc = config.train
    if tc.keep not in ("best", "last"):
        raise ASRError(f"train.keep must be 'best' or 'last', got {tc.keep!r}")
    out_dir = Path(tc.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise ASRError(f"{out_dir}: output directory is not writable ({err.strerror})") from None

    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    ranks = setup_distributed(pick_device(tc.device))  # a single process unless run under torchrun
    device = ranks.device
    torch.manual_seed(tc.seed)

    def say(message: str) -> None:
        if ranks.is_main:
            tqdm.write(message)

    vocab = Vocab.load(config.data.vocab)
    if vocab.kind != config.data.units:
        raise ASRError(
            f"{config.data.vocab}: holds {vocab.kind} units but data.units is {config.data.units!r}; "
            "rebuild it with `asr vocab --config` or fix the config"
        )
    cmvn = Cmvn.load(config.data.cmvn)
    if len(cmvn.mean) != config.features.n_mels:
        raise ASRError(f"{config.data.cmvn}: stats have {len(cmvn.mean)} bins, features.n_mels is {config.features.n_mels}")
    model = AcousticModel(config.model, input_dim=config.features.n_mels, vocab_size=len(vocab))
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"

    def record_if_best(report: ErrorReport) -> bool:
        """Note the dev scores if they beat the best so far (WER, then CER); True when they do."""
        if (report.wer, report.cer) >= (state["best_wer"], state["best_cer"]):
            return False
        state["best_wer"], state["best_cer"] = report.wer, report.cer
        return True

    def epoch_path(epoch: int) -> Path:
        return out_dir / f"epoch{epoch}.pt"

    _remove_stale_temp_files(out_dir, say)
    # a resume that cannot work fails now, not after the features are computed
    saved = read_resume_checkpoint(last_path, config, vocab) if resume and last_path.exists() else None
    if not resume and last_path.exists():
        say(f"{out_dir}: starting a new run there (last.pt, metrics.csv start over; --resume continues instead)")

    train_set = prepare_split(
        config.data.train_manifest, config, vocab, cmvn, model, say, speeds=tc.speed_perturb, progress=progress,
        augment=True,
    )
    dev_set = prepare_split(config.data.dev_manifest, config, vocab, cmvn, model, say, progress=progress)
    sampler = LengthBucketSampler(
        train_set.num_frames, tc.max_frames, tc.max_batch_size, shuffle=True, seed=tc.seed,
        num_replicas=ranks.world_size, rank=ranks.rank,
    )
    steps_per_epoch = len(sampler)
    total_steps = tc.epochs * steps_per_epoch

    model.to(device)
    trained = ranks.wrap(model)  # DistributedDataParallel under torchrun, else the model itself
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, tc.warmup_steps, total_steps, tc.final_lr_ratio)
    )
    ctc_loss = torch.nn.CTCLoss(blank=BLANK_ID, reduction="mean", zero_infinity=True)
    use_amp = tc.amp and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    state = {"epoch": 0, "batches_done": 0, "step": 0, "best_wer": float("inf"), "best_cer": float("inf"), "bad_steps": 0}
    if saved is not None:
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
        + (f" x {ranks.world_size} processes" if ranks.enabled else "")
    )

    def checkpoint(path: Path) -> None:
        if not ranks.is_main:
            return
        state["log_rows"] = log.rows  # metrics.csv rows up to this state: a resume drops any later ones
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

    log = ScalarLog(out_dir / "metrics.csv", enabled=ranks.is_main, keep_rows=state.get("log_rows") if saved else 0)
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
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not (progress and ranks.is_main),
                       leave=False, unit="batch")
            started, utts_seen, audio_seen = time.monotonic(), 0, 0.0
            for batch in bar:
                batch = batch.to(device)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                    log_probs, out_lens = trained(batch.feats, batch.feat_lens)
                loss = ctc_loss(log_probs.float().transpose(0, 1), batch.tokens, out_lens, batch.token_lens)
                optimizer.zero_grad(set_to_none=True)
                finite = ranks.all_true(bool(torch.isfinite(loss)))  # every rank skips a bad step together
                if finite:
                    loss.backward()
                    layer_norms = layer_grad_norms(model)  # before clipping: the raw gradient flow
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
                    mean_loss = ranks.mean(loss)  # over all ranks: the loss of the global batch
                    bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}", utt_s=f"{utts_seen / elapsed:.0f}")
                    log.log(state["step"], epoch, loss=mean_loss, lr=lr, grad_norm=float(grad_norm), **layer_norms)
                if tc.checkpoint_every and state["step"] % tc.checkpoint_every == 0:
                    checkpoint(last_path)
            epoch_time = time.monotonic() - started

            state["epoch"] += 1
            state["batches_done"] = 0
            speed = audio_seen * ranks.world_size / max(epoch_time, 1e-9)  # audio seconds per second, all ranks
            if ranks.is_main:
                report, _ = evaluate(model, dev_set, vocab, device, tc.max_frames)
                improved = record_if_best(report)
                log.log(state["step"], epoch, dev_wer=report.wer, dev_cer=report.cer, epoch_seconds=epoch_time,
                        realtime_factor=speed)
                checkpoint(last_path)
                if improved or tc.keep == "last":
                    checkpoint(best_path)
                if tc.average_last > 1 and state["epoch"] > tc.epochs - tc.average_last:
                    save_checkpoint(epoch_path(state["epoch"]), checkpoint_payload(model, config.features, cmvn, vocab))
                say(
                    f"epoch {epoch + 1}/{tc.epochs}: dev WER {100 * report.wer:.2f}% CER {100 * report.cer:.2f}%"
                    f"{' (best)' if improved else ''}  {epoch_time:.1f}s, {speed:.0f}x real time"
                )
            ranks.barrier()  # the others wait for rank 0's evaluation and checkpoint
        averaged = [epoch_path(e) for e in range(tc.epochs - tc.average_last + 1, tc.epochs + 1)]
        if ranks.is_main and tc.average_last > 1 and all(p.exists() for p in averaged):
            model.load_state_dict(average_weights(averaged))
            report, _ = evaluate(model, dev_set, vocab, device, tc.max_frames)
            log.log(state["step"], tc.epochs, averaged_dev_wer=report.wer, averaged_dev_cer=report.cer)
            save_checkpoint(out_dir / "averaged.pt", checkpoint_payload(model, config.features, cmvn, vocab,
                                                                        run_config=to_dict(config)))
            improved = record_if_best(report)
            if improved or tc.keep == "last":
                checkpoint(best_path)
            say(f"average of the last {tc.average_last} epochs: dev WER {100 * report.wer:.2f}% "
                f"CER {100 * report.cer:.2f}%{' (best: saved as best.pt)' if improved else ''}")
    finally:
        log.close()
        ranks.close()
    if not best_path.exists():
        checkpoint(best_path)
    if tc.keep == "last":
        say(f"done: the final {'average' if tc.average_last > 1 else 'epoch'} -> {best_path}")
    else:
        say(f"done: best dev WER {100 * state['best_wer']:.2f}% -> {best_path}")
    return best_path
