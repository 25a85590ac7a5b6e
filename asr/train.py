"""The training loop: CTC loss, AdamW, warm-up + cosine decay, clipping, AMP, resume, dev WER.

Its pieces, each usable on its own (the benchmarks time `optimisation_step`):
    optimisation_step   one batch: forward, CTC loss, backward, gradient norms, clipping, AdamW step
    Trainer.train_epoch one epoch of batches, with periodic checkpoints
    evaluate            greedy dev WER/CER
    Trainer.save        a checkpoint with the whole training state (for --resume)

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
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from asr.atomic import write_text_atomically
from asr.checkpoint import (TRAINING_STATE, CheckpointError, checkpoint_payload, read_checkpoint, run_config_entry,
                            save_checkpoint, stored_run_config)
from asr.config import build, to_dict
from asr.data import Batch, FeatureDataset, LengthBucketSampler, collate
from asr.decode import greedy_decode
from asr.distributed import Distributed, setup_distributed
from asr.errors import ASRError
from asr.frontend import Cmvn
from asr.machine import cpu_has_fast_bf16, pick_device
from asr.metrics import ErrorReport, error_rates
from asr.model import AcousticModel
from asr.runconfig import RunConfig
from asr.tblog import TensorBoardLog, open_tensorboard
from asr.training_data import training_dataset
from asr.text import BLANK_ID, Vocab
from asr.warm_start import warm_start

PLAIN_PROGRESS_EVERY = 50  # steps between plain progress lines when stderr is not a terminal (logs)


class TrainingError(ASRError):
    """Training cannot go on (e.g. too many non-finite losses in a row)."""


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
    (nor a half-written last line kept). Rows also go to `tensorboard` (asr.tblog) when given.
    """

    def __init__(self, path: Path, enabled: bool = True, keep_rows: int | None = None,
                 tensorboard: TensorBoardLog | None = None) -> None:
        self.enabled, self.rows, self.tensorboard = enabled, 0, tensorboard
        if not enabled:
            return
        if path.exists():
            lines = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if line.endswith("\n")]
            self.rows = max(0, len(lines) - 1) if keep_rows is None else min(keep_rows, max(0, len(lines) - 1))
            write_text_atomically(path, "".join(lines[: 1 + self.rows]))
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
        if self.tensorboard is not None:
            self.tensorboard.scalars(step, values)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


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
    run_config = stored_run_config(saved)
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




def ctc_loss(log_probs: torch.Tensor, out_lens: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean CTC loss of a batch: log_probs (B, T', V) against batch.tokens (B, U); impossible
    alignments count as zero (zero_infinity) instead of poisoning the batch."""
    return torch.nn.functional.ctc_loss(
        log_probs.float().transpose(0, 1), batch.tokens, out_lens, batch.token_lens,
        blank=BLANK_ID, reduction="mean", zero_infinity=True,
    )


def consistency_loss(log_probs: torch.Tensor, out_lens: torch.Tensor, batch: Batch) -> torch.Tensor:
    """CR-CTC's consistency term (Yao et al., 2024) for a batch of two views (batch.views == 2):
    each view's frame posteriors are pulled toward the other view's, held fixed (KL(sg(q) || p)),
    summed over frames and both directions and divided by the batch's target tokens, the scale
    of ctc_loss. log_probs (2B, T', V), out_lens (2B,); both views of an utterance have equal lengths.
    """
    log_probs = log_probs.float()
    first, second = log_probs.chunk(2)
    targets = torch.cat([second, first]).detach()
    kl = torch.nn.functional.kl_div(log_probs, targets, reduction="none", log_target=True).sum(-1)  # (2B, T')
    valid = torch.arange(kl.shape[1], device=kl.device)[None, :] < out_lens[:, None]
    return (kl * valid).sum() / batch.token_lens.sum().clamp(min=1)


@dataclass(frozen=True)
class StepResult:
    loss: torch.Tensor  # the batch's mean CTC loss (this rank's), without the consistency term
    finite: bool  # False: the loss or gradient was not finite on some rank and no update was made
    grad_norm: float = float("nan")  # global gradient norm before clipping
    layer_norms: dict[str, float] = field(default_factory=dict)  # per layer, before clipping
    consistency: float | None = None  # the consistency term (before its weight) when the batch has two views


def optimisation_step(
    model: torch.nn.Module,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    grad_clip: float,
    use_amp: bool = False,
    forward: torch.nn.Module | None = None,
    all_true: Callable[[bool], bool] = bool,
    amp_dtype: torch.dtype = torch.bfloat16,
    scaler: torch.amp.GradScaler | None = None,
    consistency_weight: float = 0.0,
) -> StepResult:
    """One update on a batch already on the model's device: forward (autocast to amp_dtype when
    use_amp), CTC loss, backward, per-layer gradient norms, clipping to grad_clip, optimizer step.

    `forward` runs the batch (default: the model; a DDP wrapper or compiled model in practice);
    `model` owns the parameters and has `layers` and `output` (see layer_grad_norms). A loss or
    gradient that is not finite on any rank (`all_true` reduces the flag over ranks) makes no update.
    With a `scaler` (float16 autocast needs one) the loss is scaled before backward and the
    gradients unscaled before their norms are taken; an overflow skips the update and lowers the scale.
    A batch of two views (batch.views == 2) adds consistency_weight x consistency_loss to the CTC loss.
    """
    device_type = batch.feats.device.type
    with torch.autocast(device_type=device_type, dtype=amp_dtype, enabled=use_amp):
        log_probs, out_lens = (forward or model)(batch.feats, batch.feat_lens)
    loss = ctc_loss(log_probs, out_lens, batch)
    total, consistency = loss, None
    if batch.views == 2 and consistency_weight > 0:
        consistency = consistency_loss(log_probs, out_lens, batch)
        total = loss + consistency_weight * consistency
    optimizer.zero_grad(set_to_none=True)
    if not all_true(bool(torch.isfinite(total))):  # every rank skips a bad step together
        return StepResult(loss, finite=False)
    if scaler is None:
        total.backward()
    else:
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)  # true gradients for the norms and the clipping
    layer_norms = layer_grad_norms(model)  # before clipping: the raw gradient flow
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if not bool(torch.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.update()  # the overflow seen by unscale_ halves the scale
        return StepResult(loss, finite=False)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return StepResult(loss, finite=True, grad_norm=float(grad_norm), layer_norms=layer_norms,
                      consistency=None if consistency is None else float(consistency.detach()))


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint and restored by --resume."""

    epoch: int = 0  # epochs finished
    batches_done: int = 0  # batches of the current epoch finished
    step: int = 0  # batches finished in all
    best_wer: float = float("inf")
    best_cer: float = float("inf")
    bad_steps: int = 0  # non-finite steps in a row
    skipped_steps: int = 0  # non-finite steps in all
    log_rows: int = 0  # metrics.csv rows written up to this state


class Trainer:
    """Owns one training run: data, model, optimiser, scheduler, state, log and checkpoints."""

    def __init__(self, config: RunConfig, resume: bool = False, progress: bool = True) -> None:
        self.config = config
        self.set_up_machine(progress)
        self.load_units_and_stats()
        self.model = AcousticModel(config.model, input_dim=config.features.n_mels, vocab_size=len(self.vocab))
        saved = self.checkpoint_to_resume(resume)  # a resume that cannot work fails now, before the features
        self.load_data()
        self.set_up_optimiser()
        self.choose_precision()
        self.restore(saved, resume)
        self.open_logs(saved is not None)

    def set_up_machine(self, progress: bool) -> None:
        """The output folder, threads, device and process group (torchrun), seed."""
        tc = self.config.train
        self.out_dir = Path(tc.out_dir)
        _check_writable(self.out_dir)
        if tc.threads > 0:
            torch.set_num_threads(tc.threads)
        self.ranks: Distributed = setup_distributed(pick_device(tc.device))  # one process unless under torchrun
        self.device = self.ranks.device
        self.progress = progress and self.ranks.is_main
        torch.manual_seed(tc.seed)
        self.last_path, self.best_path = self.out_dir / "last.pt", self.out_dir / "best.pt"
        _remove_stale_temp_files(self.out_dir, self.say)

    def load_units_and_stats(self) -> None:
        """The vocabulary and CMVN stats, checked against the config."""
        data, features = self.config.data, self.config.features
        self.vocab = Vocab.load(data.vocab)
        if self.vocab.kind != data.units:
            raise ASRError(f"{data.vocab}: holds {self.vocab.kind} units but data.units is {data.units!r}; "
                           "rebuild it with `asr vocab --config` or fix the config")
        self.cmvn = Cmvn.load(data.cmvn)
        if len(self.cmvn.mean) != features.n_mels:
            raise ASRError(f"{data.cmvn}: stats have {len(self.cmvn.mean)} bins, features.n_mels is {features.n_mels}")

    def checkpoint_to_resume(self, resume: bool) -> dict | None:
        """last.pt when resuming (checked to fit this run), else None; warm-starts a new run (train.init_from)."""
        tc = self.config.train
        saved = None
        if resume and self.last_path.exists():
            saved = read_resume_checkpoint(self.last_path, self.config, self.vocab)
        if not resume and self.last_path.exists():
            self.say(f"{self.out_dir}: starting a new run there (last.pt, metrics.csv start over; --resume continues instead)")
        if tc.init_from and saved is None:
            self.say(warm_start(self.model, self.vocab, tc.init_from).summary(tc.init_from))
        return saved

    def load_data(self) -> None:
        """The training and dev sets, and the length-bucketing sampler over the training set."""
        config, tc = self.config, self.config.train
        self.train_set = training_dataset(config.data.train_manifest, config, self.vocab, self.cmvn,
                                          self.model.output_lengths, self.say, speeds=tc.speed_perturb,
                                          progress=self.progress, training=True)
        self.dev_set = training_dataset(config.data.dev_manifest, config, self.vocab, self.cmvn,
                                        self.model.output_lengths, self.say, progress=self.progress)
        self.sampler = LengthBucketSampler(
            self.train_set.epoch_num_frames(0), tc.max_frames, tc.max_batch_size, shuffle=True, seed=tc.seed,
            num_replicas=self.ranks.world_size, rank=self.ranks.rank,
        )
        self.steps_per_epoch = len(self.sampler)

    def set_up_optimiser(self) -> None:
        """The model on its device (wrapped for DDP), AdamW and the warm-up + cosine schedule."""
        tc = self.config.train
        total_steps = tc.epochs * self.steps_per_epoch
        if tc.warmup_steps > total_steps // 2:  # a small corpus with the defaults: the rate would barely peak
            share = "longer than" if tc.warmup_steps >= total_steps else "over half of"
            self.say(f"warning: train.warmup_steps={tc.warmup_steps} is {share} the whole run ({tc.epochs} epochs x "
                     f"{self.steps_per_epoch} steps = {total_steps}): the learning rate spends the run rising; lower "
                     "train.warmup_steps (a tenth of the run is usual) or train longer")
        self.model.to(self.device)
        self.forward = self.ranks.wrap(self.model)  # DistributedDataParallel under torchrun, else the model itself
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, tc.warmup_steps, total_steps, tc.final_lr_ratio)
        )

    def choose_precision(self) -> None:
        """bf16 autocast where asked and fast (train.amp on CUDA, train.cpu_amp on a CPU with AMX/AVX512-BF16)."""
        tc = self.config.train
        on_cuda = self.device.type == "cuda"  # pick_device gives cuda or cpu
        self.use_amp = tc.amp if on_cuda else tc.cpu_amp
        if self.use_amp and not on_cuda and not cpu_has_fast_bf16():
            # emulated bf16 is slower than fp32, and oneDNN cannot build a bf16 LSTM at all on some such CPUs
            self.use_amp = False
            self.say("train.cpu_amp: this CPU has no AMX or AVX512-BF16 instructions: training in fp32 instead "
                     "(bf16 would be emulated and slower)")
        if on_cuda:
            torch.backends.cudnn.benchmark = True

    def restore(self, saved: dict | None, resume: bool) -> None:
        """The training state: from last.pt (weights, optimiser, schedule, counters, RNG) or new."""
        self.state = TrainState()
        if saved is not None:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            self.state = build(TrainState, saved["train_state"], str(self.last_path), "train_state.")
            _restore_rng(saved["rng"])
            self.say(f"resumed from {self.last_path}: epoch {self.state.epoch}, step {self.state.step}")
        elif resume:
            init = self.config.train.init_from
            self.say(f"no checkpoint at {self.last_path}; starting a new run" + ("" if init else " from scratch"))

    def open_logs(self, resumed: bool) -> None:
        """metrics.csv (cut back to the resumed state's rows) and the TensorBoard events."""
        self.tensorboard = open_tensorboard(self.out_dir, self.config.train.tensorboard and self.ranks.is_main,
                                            purge_step=self.state.step if resumed else None)
        self.log = ScalarLog(self.out_dir / "metrics.csv", enabled=self.ranks.is_main,
                             keep_rows=self.state.log_rows if resumed else 0, tensorboard=self.tensorboard)

    def say(self, message: str) -> None:
        if self.ranks.is_main:
            tqdm.write(message)

    def run(self) -> Path:
        """Train the remaining epochs (then average the last ones if asked); returns best.pt's path."""
        config, tc = self.config, self.config.train
        with open(self.out_dir / "config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(to_dict(config), f, sort_keys=False)
        self.say(
            f"model: {config.model.cell} {config.model.num_layers}x{config.model.hidden_size} "
            f"{'bi' if config.model.bidirectional else 'uni'}, {self.model.num_parameters() / 1e6:.2f} M parameters; "
            f"{len(self.train_set)} train / {len(self.dev_set)} dev utterances; {self.steps_per_epoch} steps/epoch "
            f"on {self.device}" + (f" x {self.ranks.world_size} processes" if self.ranks.enabled else "")
        )
        self.started, self.first_epoch = time.monotonic(), self.state.epoch
        try:
            while self.state.epoch < tc.epochs:
                epoch_seconds, speed = self.train_epoch()
                self.end_epoch(epoch_seconds, speed)
            if self.ranks.is_main and tc.average_last > 1:
                self.average_last_epochs()
        finally:
            self.log.close()
            self.ranks.close()
        if not self.best_path.exists():
            self.save(self.best_path)
        if tc.keep == "last":
            self.say(f"done: the final {'average' if tc.average_last > 1 else 'epoch'} -> {self.best_path}")
        else:
            self.say(f"done: best dev WER {100 * self.state.best_wer:.2f}% -> {self.best_path}")
        return self.best_path

    def train_epoch(self) -> tuple[float, float]:
        """The rest of the current epoch (all of it, unless resumed mid-epoch), checkpointing every
        train.checkpoint_every steps. Returns (seconds, audio seconds per second over all ranks)."""
        tc, state = self.config.train, self.state
        epoch = state.epoch
        self.sampler.set_epoch(epoch, self.train_set.epoch_num_frames(epoch))  # this epoch's speed variants
        self.train_set.set_epoch(epoch)
        batches = self.sampler.batches()[state.batches_done:]
        if tc.num_workers > 0 and getattr(self.train_set, "augmenter", None) is not None:
            self.train_set.augmenter.prepare()  # the workers fork with every room already made
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_sampler=batches, collate_fn=collate, num_workers=tc.num_workers,
            pin_memory=self.device.type == "cuda",  # page-locked batches: the copy to the GPU overlaps
            generator=torch.Generator().manual_seed(tc.seed),  # keeps the global RNG untouched
        )
        self.model.train()
        on_terminal = sys.stderr.isatty()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not (self.progress and on_terminal),
                   leave=False, unit="batch")
        started, utts_seen, audio_seen = time.monotonic(), 0, 0.0
        for batch in bar:
            result = optimisation_step(self.model, batch.to(self.device), self.optimizer, tc.grad_clip,
                                       self.use_amp, self.forward, self.ranks.all_true,
                                       consistency_weight=tc.consistency_weight)
            if result.finite:
                self.scheduler.step()  # the schedule counts updates made
                state.bad_steps = 0
            else:
                self.skip_step(batch, epoch)
            state.step += 1
            state.batches_done += 1
            utts_seen += len(batch.ids) // batch.views
            audio_seen += float(batch.feat_lens.sum()) / batch.views * self.config.features.hop_ms / 1000
            if result.finite:
                elapsed = time.monotonic() - started
                lr = self.scheduler.get_last_lr()[0]
                mean_loss = self.ranks.mean(result.loss)  # over all ranks: the loss of the global batch
                bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}", utt_s=f"{utts_seen / elapsed:.0f}")
                extra = {} if result.consistency is None else {"consistency": result.consistency}
                self.log.log(state.step, epoch, loss=mean_loss, lr=lr, grad_norm=result.grad_norm, **extra,
                             **result.layer_norms)
                if self.progress and not on_terminal and state.batches_done % PLAIN_PROGRESS_EVERY == 0:
                    self.say(f"epoch {epoch + 1}/{tc.epochs} batch {state.batches_done}/{self.steps_per_epoch}: "
                             f"loss {mean_loss:.3f} lr {lr:.2e}")
            if tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
                self.save(self.last_path)
        epoch_seconds = time.monotonic() - started
        return epoch_seconds, audio_seen * self.ranks.world_size / max(epoch_seconds, 1e-9)

    def skip_step(self, batch: Batch, epoch: int) -> None:
        """Count a non-finite step; too many in a row stop training."""
        state = self.state
        state.bad_steps += 1
        state.skipped_steps += 1
        self.say(f"step {state.step}: non-finite loss or gradient, batch skipped ({batch.ids[0]}, ...)")
        self.log.log(state.step, epoch, skipped_steps=state.skipped_steps)
        if state.bad_steps >= self.config.train.max_bad_steps:
            raise TrainingError(f"{state.bad_steps} non-finite steps in a row: lower train.lr or check the data")

    def end_epoch(self, epoch_seconds: float, speed: float) -> None:
        """Close the epoch: dev WER, last.pt, best.pt when better, the weights for averaging (rank 0)."""
        tc, state = self.config.train, self.state
        epoch = state.epoch
        state.epoch += 1
        state.batches_done = 0
        if self.ranks.is_main:
            report, hyps = evaluate(self.model, self.dev_set, self.vocab, self.device, tc.max_frames)
            improved = self.record_if_best(report)
            self.log.log(state.step, epoch, dev_wer=report.wer, dev_cer=report.cer, epoch_seconds=epoch_seconds,
                         realtime_factor=speed)
            if self.tensorboard is not None:
                utts = self.dev_set.utterances
                self.tensorboard.transcripts(state.step, [u.id for u in utts], {u.id: u.text for u in utts}, hyps)
                self.tensorboard.flush()
            self.save(self.last_path)
            if improved or tc.keep == "last":
                self.save(self.best_path)
            if tc.average_last > 1 and state.epoch > tc.epochs - tc.average_last:
                save_checkpoint(self.epoch_path(state.epoch), self.model_payload())
            self.say(
                f"epoch {epoch + 1}/{tc.epochs}: dev WER {100 * report.wer:.2f}% CER {100 * report.cer:.2f}%"
                f"{' (best)' if improved else ''}  {epoch_seconds:.1f}s, {speed:.0f}x real time{self.eta()}"
            )
        self.ranks.barrier()  # the others wait for rank 0's evaluation and checkpoint

    def eta(self) -> str:
        """', about N min left' from the mean time of the epochs this process ran (empty when done)."""
        tc, done = self.config.train, self.state.epoch
        ran = done - self.first_epoch
        if ran <= 0 or done >= tc.epochs:
            return ""
        left = (time.monotonic() - self.started) / ran * (tc.epochs - done)
        return f", about {left / 60:.0f} min left" if left >= 90 else f", about {left:.0f} s left"

    def average_last_epochs(self) -> None:
        """Average the last train.average_last epochs' weights; keep the average as best.pt when it
        is better on dev (or with train.keep: last)."""
        tc = self.config.train
        paths = [self.epoch_path(e) for e in range(tc.epochs - tc.average_last + 1, tc.epochs + 1)]
        if not all(p.exists() for p in paths):
            return
        self.model.load_state_dict(average_weights(paths))
        report, _ = evaluate(self.model, self.dev_set, self.vocab, self.device, tc.max_frames)
        self.log.log(self.state.step, tc.epochs, averaged_dev_wer=report.wer, averaged_dev_cer=report.cer)
        save_checkpoint(self.out_dir / "averaged.pt", self.model_payload(run_config=run_config_entry(to_dict(self.config))))
        improved = self.record_if_best(report)
        if improved or tc.keep == "last":
            self.save(self.best_path)
        self.say(f"average of the last {tc.average_last} epochs: dev WER {100 * report.wer:.2f}% "
                 f"CER {100 * report.cer:.2f}%{' (best: saved as best.pt)' if improved else ''}")

    def record_if_best(self, report: ErrorReport) -> bool:
        """Note the dev scores if they beat the best so far (WER, then CER); True when they do."""
        if (report.wer, report.cer) >= (self.state.best_wer, self.state.best_cer):
            return False
        self.state.best_wer, self.state.best_cer = report.wer, report.cer
        return True

    def epoch_path(self, epoch: int) -> Path:
        return self.out_dir / f"epoch{epoch}.pt"

    def model_payload(self, **extra) -> dict:
        return checkpoint_payload(self.model, self.config.features, self.cmvn, self.vocab, **extra)

    def save(self, path: Path) -> None:
        """A checkpoint with the whole training state (rank 0 only)."""
        if not self.ranks.is_main:
            return
        self.state.log_rows = self.log.rows  # metrics.csv rows up to this state: a resume drops any later ones
        save_checkpoint(path, self.model_payload(
            run_config=run_config_entry(to_dict(self.config)),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            train_state=to_dict(self.state),
            rng=_rng_state(),
        ))


def train(config: RunConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train per config; returns the path of the best checkpoint."""
    return Trainer(config, resume=resume, progress=progress).run()


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # a probe of its own per process: ranks of a distributed run check the same folder at once
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write_test"):
            pass
    except OSError as err:
        raise ASRError(f"{out_dir}: output directory is not writable ({err.strerror})") from None
