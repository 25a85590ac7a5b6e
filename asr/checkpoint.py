"""Checkpoints: one file holds weights, every config, the vocabulary and the CMVN stats.

Files are written atomically (temp file in the same folder, fsync, rename), so a crash leaves
either the old checkpoint or the new one, never half of one. Loading uses
`torch.load(weights_only=True)`: a checkpoint holds tensors and plain data only and cannot run code.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.atomic import atomic_write
from asr.audio import AUDIO_EXTENSIONS
from asr.backend import Backend
from asr.config import ConfigError, build, to_dict
from asr.decode import DecodeConfig
from asr.errors import ASRError
from asr.frontend import Cmvn, FeatureConfig
from asr.model import AcousticModel, ModelConfig
from asr.rnnlm import RecurrentLM
from asr.text import Vocab

FORMAT_VERSION = 1


class CheckpointError(ASRError):
    """A checkpoint that is missing, corrupt, or from an incompatible version."""


@dataclass(kw_only=True)
class LoadedModel(Backend):
    """A checkpoint ready to transcribe (asr.backend.Backend): the PyTorch model (eval mode) on
    `device`, with everything its decoding needs."""

    model: AcousticModel

    def to(self, device: str | torch.device) -> LoadedModel:
        """The model moved to `device` (forward then runs there); returns self."""
        self.device = str(torch.device(device))
        self.model.to(self.device)
        return self

    def forward(self, feats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One padded model pass: feats [(T, F)] -> numpy log_probs (B, T', V) float32, out_lens (B,)."""
        log_probs, out_lens = batch_log_probs(self.model, feats, self.device)
        return log_probs.numpy(), out_lens.numpy()


def batch_log_probs(
    model: AcousticModel, feats: Sequence, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One padded forward pass: feats [(T, F)] (arrays or tensors) -> log_probs (B, T', V) float32 on
    the CPU, out_lens (B,)."""
    with torch.no_grad():
        padded = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(f) for f in feats], batch_first=True).to(device)
        lens = torch.tensor([f.shape[0] for f in feats], device=device)
        log_probs, out_lens = model(padded, lens)
    return log_probs.float().cpu(), out_lens.cpu()


def checkpoint_payload(
    model: AcousticModel, features: FeatureConfig, cmvn: Cmvn, vocab: Vocab, **extra: Any
) -> dict[str, Any]:
    """The dict saved to disk: the model-defining part plus any training state in `extra`."""
    return {
        "format_version": FORMAT_VERSION,
        "model_config": to_dict(model.config),
        "feature_config": to_dict(features),
        "cmvn": cmvn.to_dict(),
        "vocab": list(vocab.tokens),
        **({"bpe_model": vocab.model} if vocab.model is not None else {}),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def decoding_section(config: DecodeConfig, lm_arpa: str | None = None, lexicon=None,
                     rnnlm: RecurrentLM | None = None) -> dict[str, Any]:
    """The checkpoint entry that makes a model decode with beam search + LM(s) by default. The
    ARPA text is stored gzip-compressed (`lm_arpa_gzip`: the bundled 14.4 MB piece 6-gram takes 4.4 MB);
    checkpoints written before hold it as plain text (`lm_arpa`), and both read."""
    section = {"config": to_dict(config), "lexicon": list(lexicon) if lexicon else None,
               "lm_arpa_gzip": None if lm_arpa is None else _gzip_arpa(lm_arpa)}
    if rnnlm is not None:
        section["rnnlm"] = rnnlm.to_dict()
    return section


STORED_AT_THE_TOP = {"model": "model_config", "features": "feature_config"}  # run config section -> payload key


def run_config_entry(run_config: dict[str, Any]) -> dict[str, Any]:
    """A run's config (asr.config.to_dict of a RunConfig) as a checkpoint stores it: every section
    but model and features, which the payload holds once, at the top."""
    return {k: v for k, v in run_config.items() if k not in STORED_AT_THE_TOP}


def stored_run_config(payload: dict[str, Any]) -> dict[str, Any]:
    """The whole run config a checkpoint was trained with ({} sections where it has none);
    checkpoints written before run_config_entry held model and features twice: either reads."""
    config = dict(payload.get("run_config") or {})
    for section, key in STORED_AT_THE_TOP.items():
        config.setdefault(section, payload.get(key) or {})
    return config


TRAINING_STATE = ("optimizer", "scheduler", "train_state", "rng")


def export_payload(payload: dict[str, Any], fp16: bool = False) -> dict[str, Any]:
    """A copy without training state (optimizer, scheduler, RNG), weights optionally in fp16."""
    exported = {k: v for k, v in payload.items() if k not in TRAINING_STATE}
    decoding = payload.get("decoding")
    if isinstance(decoding, dict) and isinstance(decoding.get("lm_arpa"), str):  # an older checkpoint's plain text
        exported["decoding"] = {**{k: v for k, v in decoding.items() if k != "lm_arpa"},
                                "lm_arpa_gzip": _gzip_arpa(decoding["lm_arpa"])}
    if fp16:
        exported["model"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["model"].items()}
    return exported


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically write payload to path (temp file + fsync + rename)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, binary=True) as f:
        torch.save(payload, f)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict safely (weights_only) and check its version."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or hostile files
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        what = ""  # a .pt file is a damaged checkpoint; another file may not be meant as a model at all
        if Path(path).suffix.lower() != ".pt":
            what = ("; a model is a .pt checkpoint from `asr train` or `asr export`, or a folder from "
                    "`asr export --onnx`")
        if Path(path).suffix.lower() in AUDIO_EXTENSIONS:
            what += " (this is an audio file: give the model after --model and the audio files after the options)"
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line}){what}") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a checkpoint written by this toolkit")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload['format_version']}, this toolkit reads version {FORMAT_VERSION}"
        )
    return payload


def _decoding(
    section: Any, path: str | os.PathLike
) -> tuple[DecodeConfig, str | None, tuple[str, ...] | None, RecurrentLM | None]:
    """The decoding a checkpoint carries: (config, LM as ARPA text, lexicon words, recurrent LM);
    greedy when it has none.

    Raises CheckpointError `PATH: bad decoding section: ...` naming what is wrong.
    """
    if not section:
        return DecodeConfig(), None, None, None
    try:
        if not isinstance(section, dict):
            raise ValueError(f"expected a mapping, got {type(section).__name__}")
        config = build(DecodeConfig, section.get("config", {}), f"{path}: bad decoding section", "config.")
        lm_arpa, lexicon = section.get("lm_arpa"), section.get("lexicon")
        if lm_arpa is not None and not isinstance(lm_arpa, str):
            raise ValueError(f"lm_arpa must be the ARPA text, got {type(lm_arpa).__name__}")
        if section.get("lm_arpa_gzip") is not None:
            lm_arpa = _gunzip_arpa(section["lm_arpa_gzip"])
        if lexicon and not (isinstance(lexicon, (list, tuple)) and all(isinstance(w, str) for w in lexicon)):
            raise ValueError("lexicon must be a list of words")
    except ConfigError as err:
        raise CheckpointError(str(err)) from None
    except ValueError as err:
        raise CheckpointError(f"{path}: bad decoding section: {err}") from None
    rnnlm = None
    if section.get("rnnlm") is not None:
        try:
            rnnlm = RecurrentLM.from_dict(section["rnnlm"], f"{path}: decoding section")
        except ASRError as err:
            raise CheckpointError(str(err)) from None
    return config, lm_arpa, tuple(lexicon) if lexicon else None, rnnlm


def _gzip_arpa(text: str) -> bytes:
    """ARPA text as a decoding section stores it (mtime 0: the same LM gives the same bytes)."""
    return gzip.compress(text.encode("utf-8"), mtime=0)


def _gunzip_arpa(stored: Any) -> str:
    """The ARPA text of a decoding section's lm_arpa_gzip; ValueError when it is not gzip'd UTF-8 text."""
    if not isinstance(stored, bytes):
        raise ValueError(f"lm_arpa_gzip must be gzip-compressed ARPA text, got {type(stored).__name__}")
    try:
        return gzip.decompress(stored).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"lm_arpa_gzip is not gzip-compressed UTF-8 text ({err})") from None


def model_from_payload(payload: dict[str, Any], path: str | os.PathLike = "<checkpoint>") -> LoadedModel:
    """Rebuild the model (eval mode, CPU) and its feature pipeline from a checkpoint dict."""
    decode_config, lm_arpa, lexicon, rnnlm = _decoding(payload.get("decoding"), path)
    try:
        features = build(FeatureConfig, payload["feature_config"], str(path), "feature_config.")
        model_config = build(ModelConfig, payload["model_config"], str(path), "model_config.")
        vocab = Vocab(tokens=tuple(payload["vocab"]), model=payload.get("bpe_model"))
        cmvn = Cmvn.from_dict(payload["cmvn"])
        model = AcousticModel(model_config, input_dim=features.n_mels, vocab_size=len(vocab))
        model.load_state_dict({k: v.float() for k, v in payload["model"].items()})
    except KeyError as err:
        raise CheckpointError(f"{path}: checkpoint lacks {err}") from None
    except (CheckpointError, ConfigError) as err:
        raise CheckpointError(str(err)) from None  # already names the file
    except ASRError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except (RuntimeError, ValueError, TypeError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the stored configuration ({first_line})") from None
    model.eval()
    return LoadedModel(
        model=model, features=features, cmvn=cmvn, vocab=vocab, path=str(path), frame_stack=model_config.frame_stack,
        decoding=decode_config, lm_arpa=lm_arpa, lexicon=lexicon, rnnlm=rnnlm,
    )


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint file and rebuild everything needed to transcribe, on `device`."""
    return model_from_payload(read_checkpoint(path), path).to(device)
