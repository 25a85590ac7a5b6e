"""Plain RNN vs LSTM vs GRU, each with and without layer norm, at the same parameter budget and
the same wall-clock training budget: dev/test greedy WER, training speed, per-layer gradient norms.

    python bench/cells.py [--quick] [--seconds 150] [--threads 2] [--cells rnn,lstm,gru]
                          [--out-dir exp/bench/cells]  (--quick: exp/bench/cells_quick)

Hidden sizes are chosen so that each model's parameter count is as close as possible to the
default model's (conf/an4_blstm.yaml: 3 x 256 bidirectional LSTM with layer norm). Every run is
`asr train` in a child process with model.*, train.epochs and train.out_dir overridden (and
train.checkpoint_every=0, train.average_last=0: no mid-epoch checkpoints, no weight averaging):
  1. a probe run of one epoch measures the epoch's wall time (steps + dev WER + checkpoints);
  2. the real run gets epochs = round(budget / epoch time), so its learning-rate schedule
     completes within the budget; it is stopped (SIGINT) if it overruns by 25 %, keeping best.pt.
Feature computation at start-up is not part of the budget. Then `asr decode --decoder greedy` +
`asr score` on dev and test. Gradient norms come from the grad_norm_layerN / grad_norm_output rows
that `asr train` writes to metrics.csv; the plot goes to bench/results/cells_grad_norms.png.
--quick: 100 training utterances, no speed perturbation, one epoch, no probe (a smoke run).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path

from measure import asr_command, child_env, run_child
from report import RESULTS_DIR, Report

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "conf" / "an4_blstm.yaml"
OVERRUN = 1.25  # a real run is stopped at this multiple of the budget
QUICK_UTTERANCES = 100
SMOOTH_STEPS = 25  # steps in the plot's moving median


def matched_hidden_size(cell: str, layer_norm: bool, base, input_dim: int, vocab_size: int, target: int) -> tuple[int, int]:
    """The hidden size whose model has the parameter count closest to `target`: (hidden, params)."""
    import dataclasses

    from asr.model import AcousticModel

    def params(hidden: int) -> int:
        config = dataclasses.replace(base, cell=cell, layer_norm=layer_norm, hidden_size=hidden)
        return AcousticModel(config, input_dim, vocab_size).num_parameters()

    low, high = 8, 4096  # parameters grow with the hidden size: bisect for the crossing
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if params(middle) < target else (low, middle)
    hidden = min((low, high), key=lambda h: abs(params(h) - target))
    return hidden, params(hidden)


class Watch:
    """Polled while `asr train` runs: notes when the first step is logged; says stop past the deadline."""

    def __init__(self, metrics: Path, budget: float | None) -> None:
        self.metrics, self.budget = metrics, budget
        self.first_step: float | None = None

    def __call__(self) -> bool:
        if self.first_step is None:
            try:
                with open(self.metrics, encoding="utf-8") as f:
                    if len(f.readlines()) > 1:
                        self.first_step = time.perf_counter()
            except OSError:
                pass
            return False
        return self.budget is not None and time.perf_counter() - self.first_step > self.budget


def train(name: str, overrides: list[str], out_dir: Path, env: dict, budget: float | None) -> tuple[object, float]:
    """`asr train` with overrides into a fresh out_dir; returns the child run and the seconds from
    its first logged step to its exit (training proper: steps, dev WER, checkpoints)."""
    if out_dir.exists():
        for path in out_dir.iterdir():
            path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    watch = Watch(out_dir / "metrics.csv", budget)
    command = [*asr_command(), "train", "--config", str(CONFIG), "--no-progress", f"train.out_dir={out_dir}", *overrides]
    run = run_child(command, env=env, stop=watch, poll_seconds=0.1)
    ended = time.perf_counter()
    (out_dir / "train.log").write_text(run.stdout + run.stderr, encoding="utf-8")
    if watch.first_step is None:
        raise RuntimeError(f"{name}: training never logged a step; see {out_dir / 'train.log'}")
    return run, ended - watch.first_step


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.csv -> name -> [(step, value)]."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            series[row["name"]].append((int(row["step"]), float(row["value"])))
    return series


def greedy_wer(model: Path, manifest: str, out_dir: Path, split: str, env: dict) -> float:
    hyp, score = out_dir / f"hyp_{split}.jsonl", out_dir / f"score_{split}.json"
    run_child([*asr_command(), "decode", "--model", str(model), "--decoder", "greedy", "--manifest", manifest,
               "--out", str(hyp)], env=env)
    run_child([*asr_command(), "score", "--ref", manifest, "--hyp", str(hyp), "--json", str(score)], env=env)
    return json.loads(score.read_text())["wer"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 utterances, 1 epoch, no probe")
    parser.add_argument("--seconds", type=float, default=150.0, help="training wall-clock budget per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cells", default="rnn,lstm,gru")
    parser.add_argument("--out-dir", help="checkpoints and logs of the runs (default: exp/bench/cells[_quick])")
    args = parser.parse_args()
    rep = Report("cells", quick=args.quick)

    from asr.config import load_config
    from asr.manifest import read_manifest, write_manifest
    from asr.model import AcousticModel
    from asr.text import Vocab
    from asr.runconfig import RunConfig

    config = load_config(RunConfig, CONFIG)
    for path in (config.data.train_manifest, config.data.dev_manifest, config.data.vocab, config.data.cmvn,
                 "exp/an4/data/test.jsonl"):
        if not Path(path).exists():
            rep.skip(f"{path} not found: prepare AN4 first (bash recipes/an4/run.sh --stop-stage 2)")
    manifests = {"dev": config.data.dev_manifest, "test": "exp/an4/data/test.jsonl"}
    out_root = Path(args.out_dir or ("exp/bench/cells_quick" if args.quick else "exp/bench/cells"))
    out_root.mkdir(parents=True, exist_ok=True)
    env = child_env(args.threads)
    # no mid-epoch last.pt, no end-of-run weight averaging: the budget is for training steps
    common = ["train.checkpoint_every=0", "train.average_last=0"]
    if args.quick:
        subset = out_root / "train_quick.jsonl"
        write_manifest(subset, read_manifest(config.data.train_manifest)[:QUICK_UTTERANCES])
        common = [f"data.train_manifest={subset}", "train.speed_perturb=[1.0]", *common]

    vocab_size = len(Vocab.load(config.data.vocab))
    input_dim = config.features.n_mels
    target = AcousticModel(config.model, input_dim, vocab_size).num_parameters()
    print(f"default model ({config.model.cell} {config.model.num_layers}x{config.model.hidden_size}, "
          f"layer_norm={config.model.layer_norm}): {target:,} parameters")
    runs = []
    for cell in args.cells.split(","):
        for layer_norm in (False, True):
            hidden, params = matched_hidden_size(cell, layer_norm, config.model, input_dim, vocab_size, target)
            name = f"{cell}{'_ln' if layer_norm else ''}"
            print(f"  {name}: hidden {hidden}, {params:,} parameters ({100 * (params / target - 1):+.1f}%)", flush=True)
            runs.append({"run": name, "cell": cell, "layer_norm": layer_norm, "hidden_size": hidden,
                         "parameters": params, "params_vs_default": round(params / target - 1, 4)})

    for run in runs:
        model = [f"model.cell={run['cell']}", f"model.hidden_size={run['hidden_size']}",
                 f"model.layer_norm={str(run['layer_norm']).lower()}"]
        out_dir = out_root / run["run"]
        if args.quick:
            epochs = 1
        else:
            _, probe_seconds = train(run["run"], [*model, *common, "train.epochs=1"], out_root / "probe", env, None)
            run["probe_epoch_s"] = round(probe_seconds, 1)
            epochs = max(1, round(args.seconds / run["probe_epoch_s"]))
        print(f"{run['run']}: {epochs} epoch(s)", flush=True)
        budget = None if args.quick else args.seconds * OVERRUN
        child, train_seconds = train(run["run"], [*model, *common, f"train.epochs={epochs}"], out_dir, env, budget)
        series = read_metrics(out_dir / "metrics.csv")
        steps_per_epoch = re.search(r"(\d+) steps/epoch", child.stdout)
        epoch_seconds = [v for _, v in series["epoch_seconds"]]
        run.update({
            "epochs_planned": epochs,
            "epochs_done": len(epoch_seconds),
            "stopped_at_overrun": child.stopped,
            "steps": max(s for s, _ in series["loss"]),
            "steps_per_epoch": int(steps_per_epoch.group(1)) if steps_per_epoch else None,
            "train_wall_s": round(train_seconds, 1),  # first step to exit: steps, dev WER, checkpoints
            "startup_s": round(child.seconds - train_seconds, 1),  # features etc., not budgeted
            "audio_s_per_s": round(statistics.mean(v for _, v in series["realtime_factor"]), 1),
            "steps_per_s": round(max(s for s, _ in series["loss"]) / sum(epoch_seconds), 2),
            "best_dev_wer_in_training": round(min(v for _, v in series["dev_wer"]), 4),
            "final_loss": round(series["loss"][-1][1], 3),
            "peak_rss_mb": round(child.max_rss_mb, 1),
        })
        for split, manifest in manifests.items():
            run[f"{split}_wer"] = round(greedy_wer(out_dir / "best.pt", manifest, out_dir, split, env), 4)
        run["grad_norms"] = grad_norm_summary(series)
        print(f"  {run['run']}: dev WER {run['dev_wer']:.3f}, test WER {run['test_wer']:.3f}, "
              f"{run['audio_s_per_s']} audio s/s, {run['train_wall_s']} s", flush=True)
        run["_series"] = {k: v for k, v in series.items() if k.startswith("grad_norm_")}

    plot = plot_grad_norms(runs, RESULTS_DIR / f"{rep.stem}_grad_norms.png")
    for run in runs:
        run.pop("_series")
    rep.write(
        {"config": str(CONFIG.relative_to(ROOT)), "budget_seconds": args.seconds, "threads": args.threads,
         "default_parameters": target, "quick": args.quick, "plot": plot, "runs": runs},
        tables=[("Cells at the same parameter and time budget (greedy WER)", runs,
                 ["run", "hidden_size", "parameters", "epochs_done", "train_wall_s", "audio_s_per_s", "steps_per_s",
                  "dev_wer", "test_wer", "final_loss"]),
                ("Median gradient norm per layer (first / last quarter of steps)",
                 [{"run": r["run"], **{k: f"{v['first_quarter']:.3g} / {v['last_quarter']:.3g}"
                                       for k, v in r["grad_norms"].items()}} for r in runs],
                 ["run", *sorted({k for r in runs for k in r["grad_norms"]})])],
    )


def grad_norm_summary(series: dict) -> dict:
    """Median of each grad_norm_* series over the first and the last quarter of the steps."""
    summary = {}
    for name, points in sorted(series.items()):
        if not name.startswith("grad_norm_") or not points:
            continue
        quarter = max(1, len(points) // 4)
        summary[name.removeprefix("grad_norm_")] = {
            "first_quarter": statistics.median(v for _, v in points[:quarter]),
            "last_quarter": statistics.median(v for _, v in points[-quarter:]),
        }
    return summary


def plot_grad_norms(runs: list[dict], path: Path) -> str | None:
    """Per-layer gradient norm vs step, one panel per run; returns the path, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        print("cells: matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return None
    cells = list(dict.fromkeys(r["cell"] for r in runs))
    fig, axes = plt.subplots(2, len(cells), figsize=(5 * len(cells), 7.5), sharex=True, sharey=True, squeeze=False)
    for run in runs:
        ax = axes[int(run["layer_norm"]), cells.index(run["cell"])]
        for color, (name, points) in enumerate(sorted(run["_series"].items())):
            steps, values = np.array(points).T
            ax.plot(steps, values, color=f"C{color}", linewidth=0.5, alpha=0.25)
            window = min(SMOOTH_STEPS, len(values))  # a moving median shows the trend through step noise
            trend = np.array([np.median(values[max(0, i - window + 1): i + 1]) for i in range(len(values))])
            ax.plot(steps, trend, color=f"C{color}", linewidth=1.2, label=name.removeprefix("grad_norm_"))
        ax.set_yscale("log")
        ax.set_title(f"{run['cell'].upper()}{' + layer norm' if run['layer_norm'] else ''}: h={run['hidden_size']}, "
                     f"{run['parameters'] / 1e6:.2f} M\ndev WER {100 * run['dev_wer']:.1f}%", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("gradient L2 norm (before clipping)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Per-layer gradient norm vs step (faint: each step; solid: moving median of {SMOOTH_STEPS})",
                 fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


if __name__ == "__main__":
    main()
