"""The models shipped inside the package, by name: where each one's files are and what it can recognise.

    resolve_model("english")  -> asr/pretrained/english_blstm/onnx   (the default of `asr transcribe`)
    resolve_model("an4")      -> asr/pretrained/an4_blstm/onnx
    resolve_model("my.pt")    -> my.pt                                (any other value is a path)

Each folder holds the exported model (`onnx/`, run without torch), the PyTorch checkpoint it was
exported from (`model.pt`, for fine-tuning, plots and export), its model card and licence notices,
and `info.json` with the figures `asr models` prints (each copied from the result file it names).
No torch here (nor anything that imports it): the CLI resolves names before loading anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from asr.errors import ASRError

PRETRAINED = Path(__file__).parent / "pretrained"


@dataclass(frozen=True)
class BundledModel:
    name: str
    folder: Path
    covers: str  # one line: what it recognises (printed once per `asr transcribe` run)
    limited: bool  # a limited-vocabulary model: `asr transcribe` says so on stderr

    @property
    def exported(self) -> Path:
        return self.folder / "onnx"

    @property
    def checkpoint(self) -> Path:
        return self.folder / "model.pt"

    @property
    def available(self) -> bool:
        return (self.exported / "manifest.json").is_file()

    def info(self) -> dict:
        """info.json: vocabulary size, test WERs and the result files they come from ({} when absent)."""
        try:
            return json.loads((self.folder / "info.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def size_mb(self) -> float:
        """Megabytes of the exported folder (what `asr transcribe` loads)."""
        return sum(p.stat().st_size for p in self.exported.glob("*") if p.is_file()) / 1e6


BUNDLED = {
    "english": BundledModel(
        "english", PRETRAINED / "english_blstm",
        "general English, open vocabulary (256 BPE pieces; an LM of pieces from a 20k-word US-English "
        "3-gram), from 3.3 h of read speech (AN4 + speechocean762) and 2.2 h of synthetic speech: still rough "
        "on voices it has not heard",
        limited=False),
    "an4": BundledModel(
        "an4", PRETRAINED / "an4_blstm",
        "AN4 model: spelled letters, digits and ~100 command words (census answers), nothing else", limited=True),
}
DEFAULT = "english"


def default_model() -> BundledModel:
    """The default of `asr transcribe`: the general-English model, or the AN4 one where it is not installed."""
    model = BUNDLED[DEFAULT]
    return model if model.available else BUNDLED["an4"]


def bundled_by_path(path: str | Path) -> BundledModel | None:
    """The bundled model a path belongs to (its folder, onnx/ or model.pt), else None."""
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    for model in BUNDLED.values():
        if resolved in (model.folder.resolve(), model.exported.resolve(), model.checkpoint.resolve()):
            return model
    return None


def resolve_model(name_or_path: str | None) -> str:
    """A bundled model's name -> its exported folder; None -> the default's; a path stays a path."""
    if name_or_path is None:
        return str(default_model().exported)
    if name_or_path in BUNDLED:
        model = BUNDLED[name_or_path]
        if not model.available:
            raise ASRError(f"bundled model {name_or_path!r} is not installed ({model.exported} is missing)")
        return str(model.exported)
    return name_or_path

