"""Optional TensorBoard event files of a training run, next to metrics.csv (rank 0 only).

Written when the `tensorboard` package is installed (pip install 'asr[tensorboard]') and
train.tensorboard is on; without the package training is unchanged. View with
`tensorboard --logdir <out_dir>/tensorboard`. Tags:
    train/loss, train/lr, train/grad_norm      every step (grad norm before clipping)
    grad_norm/layerN, grad_norm/output         every step: each recurrent layer's and the output layer's
    train/skipped_steps                        at each non-finite step: how many so far
    dev/wer, dev/cer                           each epoch (%), plus dev/averaged_wer, dev/averaged_cer
    train/epoch_seconds, train/realtime_factor each epoch
    dev/transcripts                            each epoch: a few dev utterances, reference and hypothesis (text)

The writer is torch.utils.tensorboard.SummaryWriter: torch already ships it, it needs only the
tensorboard package that viewing the logs needs anyway (no second event-writer dependency).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

TAGS = {  # metrics.csv name -> TensorBoard tag
    "loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm", "skipped_steps": "train/skipped_steps",
    "dev_wer": "dev/wer", "dev_cer": "dev/cer", "averaged_dev_wer": "dev/averaged_wer",
    "averaged_dev_cer": "dev/averaged_cer", "epoch_seconds": "train/epoch_seconds",
    "realtime_factor": "train/realtime_factor",
}
PERCENT = {"dev_wer", "dev_cer", "averaged_dev_wer", "averaged_dev_cer"}  # fractions in metrics.csv, % here
TRANSCRIPTS = 5  # dev utterances shown as text each epoch


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401  (the package torch.utils.tensorboard needs)
    except ImportError:
        return False
    return True


def tag(name: str) -> str:
    """The TensorBoard tag of a metrics.csv name (grad_norm_layer2 -> grad_norm/layer2)."""
    if name.startswith("grad_norm_"):
        return "grad_norm/" + name[len("grad_norm_"):]
    return TAGS.get(name, f"train/{name}")


class TensorBoardLog:
    """Scalars and text to <log_dir>/events.out.tfevents.*; purge_step (a resumed run's step) makes
    TensorBoard drop what an earlier process logged after that step, so repeated steps are not shown twice."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(tag(name), 100 * value if name in PERCENT else value, step)

    def transcripts(self, step: int, ids: Sequence[str], refs: Mapping[str, str], hyps: Mapping[str, str]) -> None:
        """A markdown table of the first TRANSCRIPTS dev utterances: id, reference, hypothesis."""
        rows = ["| id | reference | hypothesis |", "|---|---|---|"]
        rows += [f"| {i} | {refs[i]} | {hyps.get(i, '')} |" for i in list(ids)[:TRANSCRIPTS]]
        self.writer.add_text("dev/transcripts", "\n".join(rows), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tensorboard(out_dir: str | Path, enabled: bool, purge_step: int | None = None) -> TensorBoardLog | None:
    """A TensorBoardLog in <out_dir>/tensorboard, or None when disabled or tensorboard is not installed."""
    if not enabled or not tensorboard_available():
        return None
    return TensorBoardLog(Path(out_dir) / "tensorboard", purge_step)
