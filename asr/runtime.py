"""Transcription without torch: an exported model folder, onnxruntime, the numpy front end and
flashlight-text decoding.

An exported model is a folder (written by `asr export --onnx`, asr.onnx_export):

    model.onnx      the acoustic model: feats (B, T, F) float32, feat_lens (B,) int64
                    -> log_probs (B, T', V) float32, out_lens (B,) int64; batch and time are dynamic
    config.json     feature config, CMVN stats, vocabulary, frame stacking, decoding settings
    lm.arpa         the n-gram LM for beam search (when the model has one)
    lexicon.txt     the words the LM may spell, in flashlight's lexicon format (character models)
    rnnlm.onnx      a recurrent LM's network step with its weights (when the model decodes with
                    one; its configuration and vocabulary are in config.json): tokens (N,) int64,
                    states (N, layers, parts, H) float32 -> log_probs (N, V), new_states; the torch
                    LM's step (asr.rnnlm.RNNLM.step) exported, which beam search runs in onnxruntime
    manifest.json   format version, the versions it was exported with, size and SHA-256 of each file

Format version 2; version 1 (LM weights in a separate rnnlm.bin) is refused with a line saying to
export again. `load_exported` checks every file against the manifest before anything runs, so a corrupted or
incomplete folder fails at once with one line naming the file, and gives an ExportedModel: the
asr.backend.Backend whose forward pass is onnxruntime's, which asr.transcribe.Transcriber runs
like a checkpoint (the same front end, batching, long-file streaming, decoding, word times, notes
and per-file errors). Nothing here imports torch (tests/test_runtime.py checks sys.modules).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.backend import Backend
from asr.config import build
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


class ExportError(ASRError):
    """An exported model folder that is incomplete, corrupt or of another format version."""


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(kw_only=True)
class ExportedModel(Backend):
    """An exported model folder ready to transcribe (asr.backend.Backend): the acoustic model's
    graph in an onnxruntime session on the CPU."""

    session: object  # onnxruntime.InferenceSession
    device: str = "cpu (onnxruntime)"

    @property
    def lm_source(self) -> str:
        return os.path.join(self.path, LM_FILE)

    def forward(self, feats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One padded model pass: feats [(T, F)] -> log_probs (B, T', V) float32, out_lens (B,)."""
        lens = np.array([f.shape[0] for f in feats], dtype=np.int64)
        padded = np.zeros((len(feats), int(lens.max()), self.features.n_mels), dtype=np.float32)
        for row, f in enumerate(feats):
            padded[row, : f.shape[0]] = f
        log_probs, out_lens = self.session.run(None, {"feats": padded, "feat_lens": lens})
        return log_probs, out_lens


def verify_export(folder: str | os.PathLike) -> dict:
    """The manifest of an exported model folder, after checking that every file it lists is there
    with its recorded size and SHA-256. Raises ExportError naming the file otherwise."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ExportError(f"{manifest_path}: missing: {folder} is not a complete exported model "
                          "(make one with `asr export --model MODEL.pt --onnx DIR`)")
    manifest = _read_json(manifest_path)
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


def load_exported(folder: str | os.PathLike, threads: int | None = None) -> ExportedModel:
    """Check and load an exported model folder. threads: onnxruntime's intra-op threads
    (default: OMP_NUM_THREADS when set, else onnxruntime's choice, one per physical core)."""
    folder = Path(folder)
    manifest = verify_export(folder)
    config_path = folder / CONFIG_FILE
    config = _read_json(config_path)
    try:
        features = build(FeatureConfig, config["feature_config"], str(config_path), "feature_config.")
        vocab = Vocab(tuple(config["vocab"]), _bpe_model(config.get("bpe_model")))
        cmvn = Cmvn.from_dict(config["cmvn"])
        frame_stack = int(config["frame_stack"])
        section = config.get("decoding") or {}
        decoding = build(DecodeConfig, section.get("config") or {}, str(config_path), "decoding.config.")
        lm_name, lexicon_name = section.get("lm"), section.get("lexicon")
        rnnlm_section = section.get("rnnlm")
        rnnlm_name = rnnlm_section["file"] if rnnlm_section else None
    except (KeyError, TypeError, ValueError, ASRError) as err:
        raise ExportError(f"{config_path}: bad or incomplete configuration ({type(err).__name__}: {err})") from None
    for name in (lm_name, lexicon_name, rnnlm_name):
        if name is not None and name not in manifest["files"]:
            raise ExportError(f"{config_path}: names {name}, which {MANIFEST_FILE} does not list")
    lm_arpa = (folder / lm_name).read_text(encoding="utf-8") if lm_name else None
    lexicon = None
    if lexicon_name:
        from asr.lm import read_lexicon

        lexicon = tuple(read_lexicon(folder / lexicon_name))
    rnnlm = _rnnlm(folder, config_path, rnnlm_section) if rnnlm_section else None
    return ExportedModel(
        path=str(folder), session=_session(folder / MODEL_FILE, threads), features=features, cmvn=cmvn,
        vocab=vocab, frame_stack=frame_stack, decoding=decoding, lm_arpa=lm_arpa, lexicon=lexicon, rnnlm=rnnlm,
    )


def _rnnlm(folder: Path, config_path: Path, section: dict) -> OnnxLM:
    """The recurrent LM of config.json's decoding section, its step graph section["file"] in an
    onnxruntime session."""
    try:
        config = build(RNNLMConfig, section["config"], str(config_path), "decoding.rnnlm.config.")
        vocab = LMVocab(config.units, tuple(section["symbols"]))
    except (KeyError, TypeError, ValueError, ASRError) as err:
        raise ExportError(f"{config_path}: bad recurrent LM section ({type(err).__name__}: {err})") from None
    # One thread: the step's products are small, and a second pool of spinning onnxruntime
    # threads beside the acoustic model's made whole runs slower, not faster.
    return OnnxLM(config, vocab, _session(folder / section["file"], 1))


@dataclass(frozen=True)
class OnnxLM:
    """A recurrent LM whose network step runs in onnxruntime (the folder's rnnlm.onnx)."""

    config: RNNLMConfig
    vocab: LMVocab
    session: object  # onnxruntime.InferenceSession of the step graph

    def make_step(self) -> OnnxStep:
        parts = 2 if self.config.cell == "lstm" else 1
        return OnnxStep(self.session, self.config.num_layers, parts, self.config.hidden_size)


class OnnxStep:
    """The step beam search calls (asr.fusion), over rnnlm.onnx (asr.rnnlm.RNNLM.step, exported):
    __call__(tokens (N,) int, states (N, layers, parts, H) float32) -> (log-probs (N, V), new states)."""

    def __init__(self, session, layers: int, parts: int, hidden: int) -> None:
        self.session, self.shape = session, (layers, parts, hidden)

    def initial_states(self, count: int) -> np.ndarray:
        return np.zeros((count, *self.shape), dtype=np.float32)

    def __call__(self, tokens: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_probs, new_states = self.session.run(None, {"tokens": np.asarray(tokens, dtype=np.int64),
                                                        "states": np.ascontiguousarray(states, dtype=np.float32)})
        return log_probs, new_states


def _session(path: Path, threads: int | None):
    try:
        import onnxruntime
    except ImportError as err:
        raise ASRError(f"{path}: running an exported model needs onnxruntime ({err})") from None
    options = onnxruntime.SessionOptions()
    threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads > 0:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no warnings about unused initializers on stderr
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for unreadable graphs
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"{path}: onnxruntime cannot load it ({first_line})") from None


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ExportError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return data


def _bpe_model(encoded: str | None) -> bytes | None:
    if encoded is None:
        return None
    import base64

    return base64.b64decode(encoded, validate=True)
