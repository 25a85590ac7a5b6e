"""The exported model folder's format, for both sides: asr.onnx_export writes it, asr.runtime reads it.

A folder (format "asr-onnx", version 2) holds:

    model.onnx      the acoustic model: feats (B, T, F) float32, feat_lens (B,) int64
                    -> log_probs (B, T', V) float32, out_lens (B,) int64; batch and time are dynamic
    config.json     feature config, CMVN stats, vocabulary (with the BPE model, base64), frame
                    stacking, decoding settings and which LM files decode with it
    lm.arpa         the n-gram LM for beam search (when the model has one)
    lexicon.txt     the words the LM may spell, in flashlight's lexicon format (character models)
    rnnlm.onnx      a recurrent LM's network step with its weights (when the model decodes with
                    one; its configuration and vocabulary are in config.json): tokens (N,) int64,
                    states (N, layers, parts, H) float32 -> log_probs (N, V), new_states
    manifest.json   format version, the versions it was exported with, size and SHA-256 of each file

Version 1 (LM weights in a separate rnnlm.bin) is refused with a line saying to export again.
`verify_export` checks every file against the manifest and `read_config` parses config.json into
typed configs, each failure one ExportError line naming the file. Nothing here imports torch or
onnxruntime.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from asr.atomic import write_text_atomically
from asr.config import build, to_dict
from asr.decode import DecodeConfig
from asr.errors import ASRError
from asr.frontend import Cmvn, FeatureConfig
from asr.rnnlm_config import LMVocab, RNNLMConfig
from asr.text import Vocab

FORMAT = "asr-onnx"
FORMAT_VERSION = 2  # 2: the recurrent LM's weights are in rnnlm.onnx (version 1 had rnnlm.bin)
MANIFEST_FILE = "manifest.json"
MODEL_FILE, CONFIG_FILE, LM_FILE, LEXICON_FILE = "model.onnx", "config.json", "lm.arpa", "lexicon.txt"
RNNLM_FILE = "rnnlm.onnx"
BUNDLE_FILES = (MODEL_FILE, CONFIG_FILE, LM_FILE, LEXICON_FILE, RNNLM_FILE)  # those a folder can hold (LMs and lexicon optional)
REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE)
OLD_FILES = ("rnnlm.bin",)  # format version 1's LM weights: removed from a folder exported again


class ExportError(ASRError):
    """An exported model folder that is incomplete, corrupt or of another format version."""


@dataclass(frozen=True)
class RecurrentLMEntry:
    """config.json's recurrent LM: its step graph's file name, configuration and vocabulary."""

    file: str
    config: RNNLMConfig
    vocab: LMVocab


@dataclass(frozen=True)
class BundleConfig:
    """config.json, typed: what the runtime needs besides the graphs and the LM text."""

    features: FeatureConfig
    cmvn: Cmvn
    vocab: Vocab
    frame_stack: int
    decoding: DecodeConfig
    lm_file: str | None = None
    lexicon_file: str | None = None
    rnnlm: RecurrentLMEntry | None = None
    weights: str = ""  # how the acoustic model's weights are stored (float16, int8, float32)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def clear_folder(out: Path) -> None:
    """Remove every bundle file (and version 1's) from out, so none outlives a new export."""
    for name in (MANIFEST_FILE, *BUNDLE_FILES, *OLD_FILES):
        (out / name).unlink(missing_ok=True)


def write_config(out: Path, config: BundleConfig) -> None:
    """Write config.json (read back by read_config)."""
    section: dict = {"config": to_dict(config.decoding), "lm": config.lm_file, "lexicon": config.lexicon_file}
    if config.rnnlm is not None:
        section["rnnlm"] = {"file": config.rnnlm.file, "config": to_dict(config.rnnlm.config),
                            "symbols": list(config.rnnlm.vocab.symbols)}
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "feature_config": to_dict(config.features),
        "cmvn": config.cmvn.to_dict(),
        "vocab": list(config.vocab.tokens),
        **({"bpe_model": base64.b64encode(config.vocab.model).decode("ascii")} if config.vocab.model is not None else {}),
        "frame_stack": config.frame_stack,
        "decoding": section,
        "weights": config.weights,
    }
    write_text_atomically(out / CONFIG_FILE, json.dumps(data, indent=1) + "\n")


def write_manifest(out: Path, source: dict, exported_with: dict) -> dict:
    """Write manifest.json (last: it vouches for every other bundle file present in out); returns it."""
    files = [name for name in BUNDLE_FILES if (out / name).is_file()]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": source,
        "exported_with": exported_with,
        "files": {name: {"bytes": (out / name).stat().st_size, "sha256": file_sha256(out / name)} for name in files},
    }
    write_text_atomically(out / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
    return manifest


def verify_export(folder: str | os.PathLike) -> dict:
    """The manifest of an exported model folder, after checking that every file it lists is there
    with its recorded size and SHA-256. Raises ExportError naming the file otherwise."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ExportError(f"{manifest_path}: missing: {folder} is not a complete exported model "
                          "(make one with `asr export --model MODEL.pt --onnx DIR`)")
    manifest = read_json(manifest_path)
    version = manifest.get("format_version")
    if manifest.get("format") == FORMAT and isinstance(version, int) and version < FORMAT_VERSION:
        raise ExportError(f"{folder}: an exported model of format version {version}, older than this toolkit "
                          f"reads ({FORMAT_VERSION}); re-export it: `asr export --model MODEL.pt --onnx {folder}`")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{manifest_path}: format {manifest.get('format')!r} version "
                          f"{manifest.get('format_version')!r}; this toolkit reads {FORMAT!r} version {FORMAT_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or any(name not in files for name in REQUIRED_FILES):
        raise ExportError(f"{manifest_path}: does not list {' and '.join(REQUIRED_FILES)}")
    for name, entry in files.items():
        path = folder / name
        if name not in BUNDLE_FILES or not isinstance(entry, dict):
            raise ExportError(f"{manifest_path}: unexpected entry {name!r}")
        if not path.is_file():
            raise ExportError(f"{path}: missing (listed in {MANIFEST_FILE})")
        if path.stat().st_size != entry.get("bytes") or file_sha256(path) != entry.get("sha256"):
            raise ExportError(f"{path}: does not match its checksum in {MANIFEST_FILE} (corrupt or changed; "
                              "export the model again)")
    return manifest


def read_config(folder: Path, manifest: dict) -> BundleConfig:
    """config.json of a verified folder, typed; every file it names must be in the manifest."""
    config_path = folder / CONFIG_FILE
    data = read_json(config_path)
    try:
        features = build(FeatureConfig, data["feature_config"], str(config_path), "feature_config.")
        encoded = data.get("bpe_model")
        vocab = Vocab(tuple(data["vocab"]), base64.b64decode(encoded, validate=True) if encoded is not None else None)
        cmvn = Cmvn.from_dict(data["cmvn"])
        frame_stack = int(data["frame_stack"])
        section = data.get("decoding") or {}
        decoding = build(DecodeConfig, section.get("config") or {}, str(config_path), "decoding.config.")
        rnnlm_section = section.get("rnnlm")
        rnnlm = None
        if rnnlm_section:
            lm_config = build(RNNLMConfig, rnnlm_section["config"], str(config_path), "decoding.rnnlm.config.")
            rnnlm = RecurrentLMEntry(rnnlm_section["file"], lm_config,
                                     LMVocab(lm_config.units, tuple(rnnlm_section["symbols"])))
        config = BundleConfig(features=features, cmvn=cmvn, vocab=vocab, frame_stack=frame_stack, decoding=decoding,
                              lm_file=section.get("lm"), lexicon_file=section.get("lexicon"), rnnlm=rnnlm,
                              weights=str(data.get("weights", "")))
    except (KeyError, TypeError, ValueError, ASRError) as err:
        raise ExportError(f"{config_path}: bad or incomplete configuration ({type(err).__name__}: {err})") from None
    for name in (config.lm_file, config.lexicon_file, rnnlm.file if rnnlm else None):
        if name is not None and name not in manifest["files"]:
            raise ExportError(f"{config_path}: names {name}, which {MANIFEST_FILE} does not list")
    return config


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ExportError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return data
