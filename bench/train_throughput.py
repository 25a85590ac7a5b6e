"""Training throughput of the default model (conf/an4_blstm.yaml) on AN4: audio seconds trained
per wall second and peak memory, for several ways of batching and running the model.

    python bench/train_throughput.py [--quick] [--threads 2] [--steps N] [--variants bucketed,packed,...]
                                     [--model-config conf/librispeech_blstm.yaml] [--workers N] [--repeats R]

Each variant runs in a fresh child process (so its peak RSS is its own) on the same cached
dataset: `warmup` steps on epoch 0's batches, then `steps` timed steps on epoch 1's batches
(default: the whole epoch); with --repeats R, every variant runs R times, the variants taking turns
(so a slow spell of a shared machine hits all of them), and each row is the run of median
throughput, with every run's figure beside it. A step is asr.train.optimisation_step, as training runs it: fetch + collate the batch
(DataLoader, SpecAugment on), forward, CTC loss, backward, per-layer grad norms, clipping, AdamW.

CPU variants: bucketed (the default LengthBucketSampler, max_frames from the config), random
(unsorted batches of the bucketed mean size), packed (a bench-only nn.LSTM(bidirectional=True)
stack fed with pack_padded_sequence, same sizes), compiled (torch.compile of the default model),
ceiling (a bare nn.LSTM stack of the same shapes: forward, backward and AdamW on random tensors of
each batch's shape, no layer norm, CTC or clipping), and the data pipeline alone (batches/s with and
without SpecAugment); bucketed_bf16 and ceiling_bf16 run them under bf16 autocast on the CPU
(train.cpu_amp: fast only on CPUs with AMX). With CUDA: fp32, bf16 autocast and fp16 autocast + GradScaler; cuDNN on vs off;
bucketed vs random batches; the pipeline in the step vs batches preloaded on the GPU; the ceiling in
fp32 and bf16, so each row's `of_ceiling` says how close training gets to the bare recurrent stack.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from measure import child_env, run_child
from report import Report

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "conf" / "an4_blstm.yaml"
CPU_VARIANTS = ("bucketed", "bucketed_bf16", "random", "packed", "compiled", "ceiling", "ceiling_bf16", "data", "data_nospecaug")
CUDA_VARIANTS = ("cuda_fp32", "cuda_bf16", "cuda_fp16", "cuda_fp32_nocudnn", "cuda_bf16_nocudnn", "cuda_bf16_random",
                 "cuda_fp32_preloaded", "cuda_bf16_preloaded", "cuda_ceiling_fp32", "cuda_ceiling_bf16")
# cuda_fp16: float16 autocast with a GradScaler; _preloaded: every batch collated onto the GPU before
# timing (the model alone); ceiling: a bare nn.LSTM stack of the same shapes on random tensors
RESULT_PREFIX = "RESULT "
# Audio in one epoch (speed perturbation picks one speed per utterance, so it does not lengthen it):
# a --model-config run turns each row's throughput into hours per epoch of these. Measured on AN4's
# short batches: LibriSpeech's longer utterances fill a GPU better, so this errs on the slow side.
LIBRISPEECH_AUDIO_SECONDS = {"train-clean-100": 362_000, "960h": 3_460_000}


def load_run_config(model_config: str | None = None):
    """The AN4 config; with model_config, its model section and batch limits from that config
    (e.g. conf/librispeech_blstm.yaml), to time a bigger model on the same AN4 batches."""
    import dataclasses

    from asr.config import load_config
    from asr.runconfig import RunConfig

    config = load_config(RunConfig, CONFIG)
    if model_config is None:
        return config
    other = load_config(RunConfig, ROOT / model_config)
    train = dataclasses.replace(config.train, max_frames=other.train.max_frames,
                                max_batch_size=other.train.max_batch_size)
    return dataclasses.replace(config, model=other.model, train=train)


class PackedModel(nn.Module):
    """Bench-only twin of AcousticModel using nn.LSTM(bidirectional=True) on packed sequences.

    Same sizes and parameter count: frame stacking -> N bidirectional layers (+ layer norm,
    dropout) -> linear -> log-softmax. feats (B, T, F) -> log_probs (B, T', V), out_lens (B,).
    """

    def __init__(self, config, input_dim: int, vocab_size: int) -> None:
        from asr.model import CELLS

        super().__init__()
        self.config = config
        layer_out = config.hidden_size * (2 if config.bidirectional else 1)
        sizes = [input_dim * config.frame_stack] + [layer_out] * (config.num_layers - 1)
        self.layers = nn.ModuleList(
            CELLS[config.cell](size, config.hidden_size, batch_first=True, bidirectional=config.bidirectional)
            for size in sizes
        )
        self.norms = nn.ModuleList(nn.LayerNorm(layer_out) if config.layer_norm else nn.Identity() for _ in sizes)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(layer_out, vocab_size)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from asr.model import stack_frames

        x, lens = stack_frames(feats, feat_lens, self.config.frame_stack)
        for rnn, norm in zip(self.layers, self.norms):
            packed = nn.utils.rnn.pack_padded_sequence(x, lens.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = rnn(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            x = self.dropout(norm(x))
        return self.output(x).log_softmax(dim=-1), lens


# ---------------------------------------------------------------- parent: features once, one child per variant


def cache_dataset(config, path: Path, quick: bool) -> dict:
    """Build the training dataset as asr/train.py does (features of every speed variant computed
    once, CMVN, SpecAugment on) and pickle it for the children."""
    from asr.frontend import Cmvn
    from asr.model import AcousticModel
    from asr.text import Vocab
    from asr.training_data import training_dataset

    vocab = Vocab.load(config.data.vocab)
    model = AcousticModel(config.model, input_dim=config.features.n_mels, vocab_size=len(vocab))
    speeds = (1.0,) if quick else config.train.speed_perturb
    started = time.perf_counter()
    dataset = training_dataset(config.data.train_manifest, config, vocab, Cmvn.load(config.data.cmvn),
                               model.output_lengths, print, speeds=speeds, progress=False, training=True)
    seconds = time.perf_counter() - started
    if getattr(dataset, "augmenter", None) is not None:
        dataset.augmenter.prepare()  # the simulated rooms travel in the pickle: made once, not in every child
    torch.save(dataset, path)
    return {"utterances": len(dataset), "speeds": list(speeds), "feature_seconds": round(seconds, 2),
            "audio_seconds": round(sum(u.duration for u in dataset.utterances), 1)}


def run_variant(variant: str, cache: Path, args) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--cache", str(cache), "--threads", str(args.threads),
               "--warmup", str(args.warmup), "--steps", str(args.steps)]
    if args.model_config:
        command += ["--model-config", args.model_config]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    timeout = args.compile_timeout if variant == "compiled" else None
    print(f"  {variant} ...", flush=True)
    done = run_child(command, env=child_env(args.threads), timeout=timeout, check=False)
    if done.stopped:
        return {"variant": variant, "error": f"did not finish within {timeout} s (--compile-timeout)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"variant": variant, "error": f"exit {done.returncode}: {tail[:300]}"}
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 warm-up and 3 timed steps, 1x speed only")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default 0: one whole epoch)")
    parser.add_argument("--variants", default=",".join(CPU_VARIANTS + CUDA_VARIANTS),
                        help="comma-separated subset (CUDA ones are skipped without CUDA)")
    parser.add_argument("--model-config", help="time this config's model and batch limits on AN4 "
                        "(e.g. conf/librispeech_blstm.yaml); writes results/train_throughput_<name>.json")
    parser.add_argument("--workers", type=int, help="DataLoader workers for the timed steps (default: the config's "
                        "train.num_workers; a GPU needs several)")
    parser.add_argument("--name", help="results/NAME.json (default: train_throughput[_<model config>])")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant, taking turns; the median "
                        "run is kept (default 1; a shared cloud machine's speed drifts by 10-30 %% between runs)")
    parser.add_argument("--compile-timeout", type=float, default=600, help="give up on torch.compile after this (s)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        torch.set_num_threads(args.threads)
        print(RESULT_PREFIX + json.dumps(child_main(args)), flush=True)
        return
    if args.quick:
        args.warmup, args.steps = 1, 3

    torch.set_num_threads(args.threads)
    name = args.name or "train_throughput" + (f"_{Path(args.model_config).stem}" if args.model_config else "")
    rep = Report(name, quick=args.quick)
    config = load_run_config(args.model_config)
    for path in (config.data.train_manifest, config.data.vocab, config.data.cmvn):
        if not (ROOT / path).exists():
            rep.skip(f"{path} not found: prepare AN4 first (bash recipes/an4/run.sh --stop-stage 2)")
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(CPU_VARIANTS + CUDA_VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    if not torch.cuda.is_available():
        variants = [v for v in variants if Variant.parse(v).device != "cuda"]
    repeats = max(1, args.repeats)

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        cache = Path(tmp) / "features.pt"
        print("computing features ...", flush=True)
        data = cache_dataset(config, cache, args.quick)
        runs = [[run_variant(v, cache, args) for v in variants] for _ in range(repeats)]
    rows = [median_run([turn[i] for turn in runs]) for i in range(len(variants))]

    base = next((r for r in rows if r.get("variant") == "bucketed" and "audio_s_per_s" in r), None)
    for row in rows:
        if base and "audio_s_per_s" in row and not row["variant"].startswith("data"):
            row["speed_vs_bucketed"] = round(row["audio_s_per_s"] / base["audio_s_per_s"], 3)
        add_ceiling_fraction(row, rows)
        if args.model_config and "audio_s_per_s" in row and not row["variant"].startswith("data"):
            row["epoch_hours"] = {corpus: round(seconds / row["audio_s_per_s"] / 3600, 2)
                                  for corpus, seconds in LIBRISPEECH_AUDIO_SECONDS.items()}
    train_cols = ["variant", "device", "audio_s_per_s", "audio_s_per_s_runs", "steps_per_s", "speed_vs_bucketed", "of_ceiling", "workers",
                  "mean_batch", "padding", "fetch_share", "warmup_s", "peak_rss_mb", "cuda_peak_mb", "error"]
    data_cols = ["variant", "batches_per_s", "audio_s_per_s", "batches", "peak_rss_mb"]
    train_rows = [r for r in rows if not r["variant"].startswith("data")]
    data_rows = [r for r in rows if r["variant"].startswith("data")]
    rep.write(
        {"config": str(CONFIG.relative_to(ROOT)), "model_config": args.model_config, "model": dataclasses.asdict(config.model),
         "max_frames": config.train.max_frames, "max_batch_size": config.train.max_batch_size, "data": data,
         "warmup_steps": args.warmup, "timed_steps": args.steps or "one epoch", "repeats": repeats,
         "variants": rows},
        tables=[("Training throughput (audio s per wall s)", train_rows, train_cols),
                ("Data pipeline alone", data_rows, data_cols)],
    )


# ---------------------------------------------------------------- child: one variant


@dataclasses.dataclass(frozen=True)
class Variant:
    """What a variant's name asks for: cuda_bf16_nocudnn -> device cuda, bf16 autocast, cuDNN off."""

    name: str
    device: str  # cpu | cuda
    precision: str  # fp32 | bf16 | fp16 (float16 autocast + GradScaler)
    cudnn: bool
    batches: str  # bucketed | random
    source: str  # pipeline (DataLoader each step) | preloaded (batches on the device first) | ceiling
    model: str  # default | packed | compiled

    @classmethod
    def parse(cls, name: str) -> Variant:
        parts = set(name.split("_"))
        return cls(
            name=name,
            device="cuda" if "cuda" in parts else "cpu",
            precision=next((p for p in ("bf16", "fp16") if p in parts), "fp32"),
            cudnn="nocudnn" not in parts,
            batches="random" if "random" in parts else "bucketed",
            source="ceiling" if "ceiling" in parts else "preloaded" if "preloaded" in parts else "pipeline",
            model=next((m for m in ("packed", "compiled") if m in parts), "default"),
        )

    @property
    def label(self) -> str:
        extras = [self.precision] if self.precision != "fp32" else []
        extras += [] if self.cudnn else ["no-cudnn"]
        extras += [self.source] if self.source != "pipeline" else []
        return " ".join([self.device] + extras)


def child_main(args) -> dict:
    from asr.data import LengthBucketSampler
    from asr.model import AcousticModel
    from asr.text import Vocab

    variant = Variant.parse(args.child)
    config = load_run_config(args.model_config)
    if args.workers is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, num_workers=args.workers))
    tc = config.train
    vocab = Vocab.load(config.data.vocab)
    dataset = torch.load(args.cache, weights_only=False)  # our own pickle, written by the parent
    if args.child == "data_nospecaug":
        dataset.specaugment = None
    if getattr(dataset, "augmenter", None) is not None:
        dataset.augmenter.prepare()  # every simulated room made first, as asr/train.py does: not timed
    sampler = LengthBucketSampler(dataset.num_frames, tc.max_frames, tc.max_batch_size, shuffle=True, seed=tc.seed)
    if args.child.startswith("data"):
        return data_pipeline(args.child, dataset, sampler, config.features.hop_ms / 1000)

    def epoch_batches(epoch: int) -> list[list[int]]:
        sampler.set_epoch(epoch)
        bucketed = sampler.batches()
        if variant.batches != "random":
            return bucketed
        size = round(sum(map(len, bucketed)) / len(bucketed))  # the bucketed mean batch size
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(tc.seed * 7 + epoch)).tolist()
        return [order[i:i + size] for i in range(0, len(order), size)]

    torch.manual_seed(tc.seed)
    device = torch.device(variant.device)
    if device.type == "cuda":
        torch.backends.cudnn.enabled = variant.cudnn
        torch.backends.cudnn.benchmark = variant.cudnn  # as asr/train.py
    if variant.source == "ceiling":
        model = CeilingModel(config.model, input_dim=config.features.n_mels).to(device)
    else:
        model_cls = PackedModel if variant.model == "packed" else AcousticModel
        model = model_cls(config.model, input_dim=config.features.n_mels, vocab_size=len(vocab)).to(device)
    params = sum(p.numel() for p in model.parameters())
    forward = torch.compile(model) if variant.model == "compiled" else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    stepper = Stepper(model, forward, optimizer, variant, tc.grad_clip)

    def steps(epoch: int, count: int | None) -> dict:
        return run_steps(stepper, dataset, epoch_batches(epoch)[:count], epoch, device, config)

    warmup = steps(0, args.warmup)
    timed = steps(1, args.steps or None)
    result = {
        "variant": args.child,
        "device": variant.label,
        "parameters": params,
        "workers": tc.num_workers,
        "steps": timed["steps"],
        "audio_seconds": round(timed["audio"], 1),
        "seconds": round(timed["seconds"], 2),
        "audio_s_per_s": round(timed["audio"] / timed["seconds"], 1),
        "steps_per_s": round(timed["steps"] / timed["seconds"], 2),
        "mean_batch": round(timed["utts"] / timed["steps"], 1),
        "padding": round(timed["padded"] / timed["frames"] - 1, 3),  # padded frames / real frames - 1
        "fetch_share": round(timed["fetch"] / timed["seconds"], 3),  # time spent getting + collating batches
        "warmup_s": round(warmup["seconds"], 1),
        "final_loss": round(timed["last_loss"], 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
    }
    if variant.model == "compiled":
        result["dynamo"] = dynamo_counts()
    return result


class CeilingModel(nn.Module):
    """The bare recurrent stack of the default model's shapes: one nn.LSTM (cuDNN's fused multi-layer
    kernel on a GPU) over stacked frames, no layer norm, dropout, output layer or CTC.
    feats (B, T, F) -> outputs (B, T / stack, 2H); the loss is their mean square."""

    def __init__(self, config, input_dim: int) -> None:
        from asr.model import CELLS

        super().__init__()
        self.config = config
        self.rnn = CELLS[config.cell](input_dim * config.frame_stack, config.hidden_size, num_layers=config.num_layers,
                                      batch_first=True, bidirectional=config.bidirectional)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from asr.model import stack_frames

        x, lens = stack_frames(feats, feat_lens, self.config.frame_stack)
        return self.rnn(x)[0], lens


class Stepper:
    """One timed update for a variant: asr.train.optimisation_step (with a GradScaler for fp16), or,
    for the ceiling, forward + mean-square loss + backward + AdamW on the bare stack."""

    def __init__(self, model, forward, optimizer, variant: Variant, grad_clip: float) -> None:
        self.model, self.forward, self.optimizer, self.variant, self.grad_clip = model, forward, optimizer, variant, grad_clip
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(variant.precision)
        self.scaler = torch.amp.GradScaler(variant.device) if variant.precision == "fp16" else None

    def __call__(self, batch) -> torch.Tensor:
        from asr.train import optimisation_step

        use_amp = self.amp_dtype is not None
        if self.variant.source != "ceiling":
            return optimisation_step(self.model, batch, self.optimizer, self.grad_clip, use_amp, forward=self.forward,
                                     amp_dtype=self.amp_dtype or torch.bfloat16, scaler=self.scaler).loss
        with torch.autocast(device_type=self.variant.device, dtype=self.amp_dtype or torch.bfloat16, enabled=use_amp):
            outputs, _ = self.forward(batch.feats, batch.feat_lens)
        loss = outputs.float().square().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def run_steps(stepper: Stepper, dataset, batches, epoch, device, config) -> dict:
    """Training steps over `batches`; returns totals (time, audio, frames). With the pipeline, each
    step's time includes getting its batch from the DataLoader and copying it to the device; a
    preloaded (or ceiling) variant collates every batch onto the device first, untimed."""
    from asr.data import collate

    tc = config.train
    hop_s = config.features.hop_ms / 1000
    dataset.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=tc.num_workers,
                                         pin_memory=device.type == "cuda",  # as asr/train.py
                                         generator=torch.Generator().manual_seed(tc.seed))
    stepper.model.train()
    totals = {"steps": 0, "seconds": 0.0, "fetch": 0.0, "audio": 0.0, "frames": 0, "padded": 0, "utts": 0,
              "last_loss": float("nan")}
    if stepper.variant.source == "pipeline":
        iterator = iter(loader)
    else:
        iterator = iter([b.to(device) for b in loader])
        if stepper.variant.source == "ceiling":
            iterator = iter([dataclasses.replace(b, feats=torch.randn_like(b.feats)) for b in iterator])  # random data
    if device.type == "cuda":
        torch.cuda.synchronize()
    for _ in range(len(batches)):
        started = time.perf_counter()
        batch = next(iterator).to(device)
        fetched = time.perf_counter()
        loss = stepper(batch)
        totals["last_loss"] = loss.item()  # waits for the GPU
        totals["seconds"] += time.perf_counter() - started
        totals["fetch"] += fetched - started
        totals["steps"] += 1
        totals["utts"] += len(batch.ids)
        totals["frames"] += int(batch.feat_lens.sum())
        totals["padded"] += batch.feats.shape[0] * batch.feats.shape[1]
        totals["audio"] += float(batch.feat_lens.sum()) * hop_s
    return totals


def median_run(runs: list[dict]) -> dict:
    """The run of median audio_s_per_s among one variant's runs (training and data-pipeline rows both
    have it; the lower middle of an even count), with every run's figure listed when there are
    several; a failed run counts only if all failed."""
    done = sorted((r for r in runs if "audio_s_per_s" in r), key=lambda r: r["audio_s_per_s"])
    if not done:
        return runs[0]
    row = dict(done[(len(done) - 1) // 2])
    if len(runs) > 1:
        row["audio_s_per_s_runs"] = [r.get("audio_s_per_s") for r in runs]
    return row


def add_ceiling_fraction(row: dict, rows: list[dict]) -> None:
    """row["of_ceiling"]: its throughput over the bare-stack ceiling's on the same device and precision."""
    variant = Variant.parse(row["variant"])
    if variant.source == "ceiling" or "audio_s_per_s" not in row:
        return
    for other in rows:
        ceiling = Variant.parse(other["variant"])
        if (ceiling.source == "ceiling" and "audio_s_per_s" in other and ceiling.device == variant.device
                and ceiling.precision == variant.precision):
            row["of_ceiling"] = round(row["audio_s_per_s"] / other["audio_s_per_s"], 3)


def dynamo_counts() -> dict:
    """Graphs compiled and graph breaks seen by torch.compile (private counters: best effort)."""
    try:
        from torch._dynamo.utils import counters

        return {"unique_graphs": int(counters["stats"]["unique_graphs"]),
                "graph_breaks": int(sum(counters["graph_break"].values()))}
    except Exception:
        return {}


def data_pipeline(variant: str, dataset, sampler, hop_s: float) -> dict:
    """Batches/s of DataLoader(dataset, bucketed batches, collate) alone, over whole epochs (>= 3 s)."""
    from asr.data import collate

    batches = audio = 0
    epoch = 0
    started = time.perf_counter()
    while time.perf_counter() - started < 3.0 or epoch == 0:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler.batches(), collate_fn=collate)
        for batch in loader:
            batches += 1
            audio += float(batch.feat_lens.sum()) * hop_s
        epoch += 1
    seconds = time.perf_counter() - started
    return {
        "variant": variant,
        "device": "cpu",
        "epochs": epoch,
        "batches": batches,
        "seconds": round(seconds, 2),
        "batches_per_s": round(batches / seconds, 1),
        "audio_s_per_s": round(audio / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    main()
