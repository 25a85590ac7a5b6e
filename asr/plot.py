"""Pictures of a training run and of what a model hears; needs matplotlib (pip install 'asr[plot]').

plot_run(run_dir, out)      metrics.csv -> one PNG: training loss, learning rate, dev WER/CER per
                            epoch, gradient norm of each layer (with the non-finite steps marked)
plot_audio(model, audio, out) one file -> one PNG: the waveform with the recognised words at their
                            times, the log-mel spectrogram as the model sees it (after level
                            normalisation and CMVN), and the CTC posteriorgram (the most likely
                            tokens' posteriors over time)
Both write FIGSIZE at DPI (a PNG of PIXELS) and import matplotlib only when called.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections import defaultdict
from pathlib import Path

from asr.errors import ASRError

FIGSIZE = (12.0, 9.0)  # inches
DPI = 100
PIXELS = (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))  # (width, height) of every PNG written here
MAX_AUDIO_SECONDS = 60.0  # a longer file makes an unreadable picture: cut out the part to look at
SMOOTHING = 0.9  # exponential moving average of per-step curves (what TensorBoard shows by default)


def _pyplot():
    """matplotlib.pyplot with the file-only Agg backend, or a one-line error naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise ASRError("plotting needs matplotlib, which is not installed: pip install 'asr[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: str | os.PathLike) -> dict[str, list[tuple[int, int, float]]]:
    """name -> [(step, epoch, value)] from a metrics.csv (asr.train.ScalarLog), or a gzipped one (.gz)."""
    metrics: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8") as f:
            for number, row in enumerate(csv.DictReader(f), start=2):
                try:
                    metrics[row["name"]].append((int(row["step"]), int(row["epoch"]), float(row["value"])))
                except (KeyError, TypeError, ValueError):
                    raise ASRError(f"{path}:{number}: expected step,epoch,name,value") from None
    except FileNotFoundError:
        raise ASRError(f"{path}: no such file (a training run's folder has metrics.csv)") from None
    if "loss" not in metrics:
        raise ASRError(f"{path}: no training loss logged yet")
    return dict(metrics)


def _smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    out, level = [], None
    for value in values:
        level = value if level is None else weight * level + (1 - weight) * value
        out.append(level)
    return out


def plot_run(run: str | os.PathLike, out: str | os.PathLike) -> None:
    """Loss, learning rate, dev WER/CER and per-layer gradient norms of a run -> PNG.

    run: a training run's folder (its metrics.csv is read) or a metrics.csv file (or .csv.gz).
    """
    run = Path(run)
    metrics = read_metrics(run / "metrics.csv" if run.is_dir() else run)
    run_name = run.resolve().name if run.is_dir() else run.name.split(".")[0]
    plt = _pyplot()
    fig, ((loss_ax, wer_ax), (lr_ax, grad_ax)) = plt.subplots(2, 2, figsize=FIGSIZE, dpi=DPI)
    steps, losses = zip(*[(s, v) for s, _, v in metrics["loss"]])
    loss_ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="per step")
    loss_ax.plot(steps, _smooth(list(losses)), color="tab:blue", label=f"smoothed ({SMOOTHING:g})")
    skipped = [s for s, _, _ in metrics.get("skipped_steps", [])]
    for n, step in enumerate(skipped):
        loss_ax.axvline(step, color="tab:red", alpha=0.5, linewidth=0.8, label="non-finite step" if n == 0 else None)
    loss_ax.set(title="training CTC loss", xlabel="step", ylabel="loss")
    loss_ax.set_yscale("log")
    loss_ax.legend(loc="upper right")

    if "lr" in metrics:
        lr_steps, lrs = zip(*[(s, v) for s, _, v in metrics["lr"]])
        lr_ax.plot(lr_steps, lrs, color="tab:green")
    lr_ax.set(title="learning rate", xlabel="step", ylabel="lr")

    for name, label, color in (("dev_wer", "WER", "tab:purple"), ("dev_cer", "CER", "tab:orange")):
        if name in metrics:
            epochs = [e + 1 for _, e, _ in metrics[name]]
            values = [100 * v for _, _, v in metrics[name]]
            wer_ax.plot(epochs, values, marker=".", color=color, label=f"dev {label}")
            if name == "dev_wer":
                best = min(range(len(values)), key=values.__getitem__)
                wer_ax.annotate(f"best {values[best]:.2f}% (epoch {epochs[best]})", (epochs[best], values[best]),
                                xytext=(0, -40), textcoords="offset points", ha="center", fontsize=9,
                                arrowprops={"arrowstyle": "->", "color": "gray"})
    if "averaged_dev_wer" in metrics:
        (_, epoch, value), = metrics["averaged_dev_wer"][-1:]
        wer_ax.scatter([epoch], [100 * value], color="black", marker="*", zorder=3, label="averaged weights WER")
    wer_ax.set(title="dev error rates (greedy)", xlabel="epoch", ylabel="%")
    wer_ax.set_ylim(bottom=0)
    if wer_ax.get_legend_handles_labels()[0]:
        wer_ax.legend(loc="upper right")

    layers = sorted((n for n in metrics if n.startswith("grad_norm_")), key=_layer_order)
    for name in layers:
        layer_steps, norms = zip(*[(s, v) for s, _, v in metrics[name]])
        grad_ax.plot(layer_steps, _smooth(list(norms)), linewidth=1, label=name[len("grad_norm_"):])
    grad_ax.set(title="gradient norm per layer (before clipping, smoothed)", xlabel="step", ylabel="L2 norm")
    grad_ax.set_yscale("log")
    if layers:
        grad_ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{run_name}: {len(losses)} steps, {1 + max(e for _, e, _ in metrics['loss'])} epochs")
    fig.tight_layout()
    _save(fig, out, plt)


def _layer_order(name: str) -> tuple[int, str]:
    suffix = name[len("grad_norm_layer"):]
    return (int(suffix), "") if name.startswith("grad_norm_layer") and suffix.isdigit() else (10**6, name)


def plot_audio(model: str | os.PathLike, audio: str | os.PathLike, out: str | os.PathLike, top: int = 8) -> None:
    """Waveform + words, normalised log-mel, CTC posteriorgram of `top` tokens for one file -> PNG."""
    plt = _pyplot()  # before the model is loaded: a missing extra fails at once
    import numpy as np

    from asr.audio import load_audio
    from asr.word_timing import word_timings
    from asr.loading import load_backend
    from asr.text import BLANK_ID

    loaded = load_backend(model)  # a checkpoint or an exported folder
    rate = loaded.features.sample_rate
    samples = load_audio(audio, rate)
    duration = len(samples) / rate
    if duration > MAX_AUDIO_SECONDS:
        raise ASRError(f"{audio}: {duration:.0f} s is too long to picture (at most {MAX_AUDIO_SECONDS:g} s); "
                       "cut out the part to look at")
    feats = loaded.front_end(samples)  # (T, F), exactly what the model is fed
    log_probs, out_lens = loaded.forward([feats])
    (hypothesis,) = loaded.decoder()(log_probs, out_lens)
    log_probs = log_probs[0, : int(out_lens[0])]  # (T', V)
    words = word_timings(hypothesis, log_probs, loaded.vocab, loaded.frame_seconds, duration)
    text = loaded.vocab.decode(hypothesis.tokens)

    fig, (wave_ax, mel_ax, post_ax) = plt.subplots(3, 1, figsize=FIGSIZE, dpi=DPI, sharex=True,
                                                   gridspec_kw={"height_ratios": [1, 1.3, 1.3]})
    times = np.arange(len(samples)) / rate
    wave_ax.plot(times, samples, color="tab:gray", linewidth=0.5)
    peak = float(np.abs(samples).max()) or 1.0
    for n, word in enumerate(words):
        wave_ax.axvspan(word.start, word.end, color="tab:blue" if n % 2 == 0 else "tab:cyan", alpha=0.2)
        wave_ax.text((word.start + word.end) / 2, 0.85 * peak, word.word, ha="center", va="top", fontsize=10,
                     fontweight="bold")
    wave_ax.set(title=f"waveform and recognised words ({loaded.decoding.decoder} decoding)", ylabel="amplitude",
                ylim=(-1.05 * peak, 1.05 * peak))

    image = mel_ax.imshow(feats.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                          extent=(0, feats.shape[0] * loaded.features.hop_ms / 1000, 0, feats.shape[1]))
    mel_ax.set(title=f"log-mel spectrogram as the model sees it ({feats.shape[1]} bins, level-normalised, CMVN)",
               ylabel="mel bin")
    fig.colorbar(image, ax=mel_ax, pad=0.01, fraction=0.03)

    probs = np.exp(log_probs)  # (T', V)
    peaks = probs.max(axis=0)
    peaks[BLANK_ID] = -1  # blank gets its own row, first
    recognised = list(dict.fromkeys(hypothesis.tokens))  # every token of the transcript gets a row
    by_peak = [int(i) for i in np.argsort(-peaks, kind="stable") if int(i) not in recognised and int(i) != BLANK_ID]
    shown = [BLANK_ID] + recognised + by_peak[: max(0, top - len(recognised))]
    labels = [_token_label(loaded.vocab.tokens[i]) for i in shown]
    image = post_ax.imshow(probs[:, shown].T, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                           interpolation="nearest", extent=(0, log_probs.shape[0] * loaded.frame_seconds, -0.5,
                                                            len(shown) - 0.5))
    post_ax.set_yticks(range(len(shown)), labels)
    post_ax.set(title=f"CTC posteriorgram: blank, the recognised tokens and the most likely others ({len(shown) - 1})",
                xlabel="seconds", ylabel="token")
    fig.colorbar(image, ax=post_ax, pad=0.01, fraction=0.03)
    for ax in (wave_ax, post_ax):
        ax.set_xlim(0, duration)
    fig.suptitle(f"{Path(audio).name} ({duration:.2f} s) - {Path(model).name}: {text or '(nothing recognised)'}")
    fig.tight_layout()
    _save(fig, out, plt)


def _token_label(token: str) -> str:
    return {" ": "space", "<blank>": "blank"}.get(token, token.replace("\u2581", "_"))


def _save(fig, out: str | os.PathLike, plt) -> None:
    """Write the figure as PNG atomically (a temp file renamed into place) at exactly PIXELS."""
    from asr.atomic import temp_path

    out = Path(out)
    tmp = temp_path(out)
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
