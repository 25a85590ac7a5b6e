"""Training throughput of the default model (conf/an4_blstm.yaml) on AN4: audio seconds trained
per wall second and peak memory, for several ways of batching and running the model.

    python bench/train_throughput.py [--quick] [--threads 2] [--steps N] [--variants bucketed,packed,...]
                                     [--model-config conf/librispeech_blstm.yaml]

Each variant runs in a fresh child process (so its peak RSS is its own) on the same cached
dataset: `warmup` steps on epoch 0's batches, then `steps` timed steps on epoch 1's batches
(default: the whole epoch). A step is asr.train.optimisation_step, as training runs it: fetch + collate the batch
(DataLoader, SpecAugment on), forward, CTC loss, backward, per-layer grad norms, clipping, AdamW.

CPU variants: bucketed (the default LengthBucketSampler, max_frames from the config), random
(unsorted batches of the bucketed mean size), packed (a bench-only nn.LSTM(bidirectional=True)
stack fed with pack_padded_sequence, same sizes), compiled (torch.compile of the default model),
and the data pipeline alone (batches/s with and without SpecAugment). With CUDA: fp32 vs bf16
autocast, cuDNN on vs off.
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
CPU_VARIANTS = ("bucketed", "random", "packed", "compiled", "data", "data_nospecaug")
CUDA_VARIANTS = ("cuda_fp32", "cuda_bf16", "cuda_fp32_nocudnn", "cuda_bf16_nocudnn")
RESULT_PREFIX = "RESULT "


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
    from asr.features import Cmvn
    from asr.model import AcousticModel
    from asr.text import Vocab
    from asr.train import prepare_split

    vocab = Vocab.load(config.data.vocab)
    model = AcousticModel(config.model, input_dim=config.features.n_mels, vocab_size=len(vocab))
    speeds = (1.0,) if quick else config.train.speed_perturb
    started = time.perf_counter()
    dataset = prepare_split(config.data.train_manifest, config, vocab, Cmvn.load(config.data.cmvn), model, print,
                            speeds=speeds, progress=False, training=True)
    seconds = time.perf_counter() - started
    torch.save(dataset, path)
    return {"utterances": len(dataset), "speeds": list(speeds), "feature_seconds": round(seconds, 2),
            "audio_seconds": round(sum(u.duration for u in dataset.utterances), 1)}


def run_variant(variant: str, cache: Path, args) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--cache", str(cache), "--threads", str(args.threads),
               "--warmup", str(args.warmup), "--steps", str(args.steps)]
    if args.model_config:
        command += ["--model-config", args.model_config]
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
    name = "train_throughput" + (f"_{Path(args.model_config).stem}" if args.model_config else "")
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
        variants = [v for v in variants if not v.startswith("cuda")]

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        cache = Path(tmp) / "features.pt"
        print("computing features ...", flush=True)
        data = cache_dataset(config, cache, args.quick)
        rows = [run_variant(v, cache, args) for v in variants]

    base = next((r for r in rows if r.get("variant") == "bucketed" and "audio_s_per_s" in r), None)
    for row in rows:
        if base and "audio_s_per_s" in row and not row["variant"].startswith("data"):
            row["speed_vs_bucketed"] = round(row["audio_s_per_s"] / base["audio_s_per_s"], 3)
    train_cols = ["variant", "device", "audio_s_per_s", "steps_per_s", "speed_vs_bucketed", "mean_batch", "padding",
                  "fetch_share", "warmup_s", "peak_rss_mb", "cuda_peak_mb", "error"]
    data_cols = ["variant", "batches_per_s", "audio_s_per_s", "batches", "peak_rss_mb"]
    train_rows = [r for r in rows if not r["variant"].startswith("data")]
    data_rows = [r for r in rows if r["variant"].startswith("data")]
    rep.write(
        {"config": str(CONFIG.relative_to(ROOT)), "model_config": args.model_config, "model": dataclasses.asdict(config.model),
         "max_frames": config.train.max_frames, "max_batch_size": config.train.max_batch_size, "data": data,
         "warmup_steps": args.warmup, "timed_steps": args.steps or "one epoch", "variants": rows},
        tables=[("Training throughput (audio s per wall s)", train_rows, train_cols),
                ("Data pipeline alone", data_rows, data_cols)],
    )


# ---------------------------------------------------------------- child: one variant


def child_main(args) -> dict:
    from asr.data import LengthBucketSampler
    from asr.model import AcousticModel
    from asr.text import Vocab

    config = load_run_config(args.model_config)
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
        if args.child != "random":
            return bucketed
        size = round(sum(map(len, bucketed)) / len(bucketed))  # the bucketed mean batch size
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(tc.seed * 7 + epoch)).tolist()
        return [order[i:i + size] for i in range(0, len(order), size)]

    torch.manual_seed(tc.seed)
    device = torch.device("cuda" if args.child.startswith("cuda") else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.enabled = "nocudnn" not in args.child
        torch.backends.cudnn.benchmark = torch.backends.cudnn.enabled  # as asr/train.py
    model_cls = PackedModel if args.child == "packed" else AcousticModel
    model = model_cls(config.model, input_dim=config.features.n_mels, vocab_size=len(vocab)).to(device)
    params = sum(p.numel() for p in model.parameters())
    forward = torch.compile(model) if args.child == "compiled" else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    use_amp = "bf16" in args.child

    def steps(epoch: int, count: int | None) -> dict:
        return run_steps(model, forward, optimizer, dataset, epoch_batches(epoch)[:count], epoch, device, use_amp, config)

    warmup = steps(0, args.warmup)
    timed = steps(1, args.steps or None)
    result = {
        "variant": args.child,
        "device": str(device) + (" bf16" if use_amp else "") + (" no-cudnn" if "nocudnn" in args.child else ""),
        "parameters": params,
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
    if args.child == "compiled":
        result["dynamo"] = dynamo_counts()
    return result


def run_steps(model, forward, optimizer, dataset, batches, epoch, device, use_amp, config) -> dict:
    """Training steps over `batches` with asr.train.optimisation_step; returns totals (time, audio, frames)."""
    from asr.data import collate
    from asr.train import optimisation_step

    tc = config.train
    hop_s = config.features.hop_ms / 1000
    dataset.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=tc.num_workers,
                                         generator=torch.Generator().manual_seed(tc.seed))
    model.train()
    totals = {"steps": 0, "seconds": 0.0, "fetch": 0.0, "audio": 0.0, "frames": 0, "padded": 0, "utts": 0,
              "last_loss": float("nan")}
    iterator = iter(loader)
    for _ in range(len(batches)):
        started = time.perf_counter()
        batch = next(iterator).to(device)
        fetched = time.perf_counter()
        result = optimisation_step(model, batch, optimizer, tc.grad_clip, use_amp, forward=forward)
        totals["last_loss"] = result.loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        totals["seconds"] += time.perf_counter() - started
        totals["fetch"] += fetched - started
        totals["steps"] += 1
        totals["utts"] += len(batch.ids)
        totals["frames"] += int(batch.feat_lens.sum())
        totals["padded"] += batch.feats.shape[0] * batch.feats.shape[1]
        totals["audio"] += float(batch.feat_lens.sum()) * hop_s
    return totals


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
