"""Transcription without torch: an exported model folder (asr.bundle owns its format),
onnxruntime, the numpy front end and flashlight-text decoding.

`load_exported` checks every file against the manifest before anything runs, so a corrupted or
incomplete folder fails at once with one line naming the file, and gives an ExportedModel: the
asr.backend.Backend whose forward pass is onnxruntime's, which asr.transcribe.Transcriber runs
like a checkpoint (the same front end, batching, long-file streaming, decoding, word times, notes
and per-file errors). A recurrent LM's step (asr.rnnlm.RNNLM.step, exported as rnnlm.onnx) runs in
onnxruntime too. Nothing here imports torch (tests/test_runtime.py checks sys.modules).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.backend import Backend
from asr.bundle import LM_FILE, MODEL_FILE, ExportError, RecurrentLMEntry, read_config, verify_export
from asr.errors import ASRError
from asr.rnnlm_config import LMVocab, RNNLMConfig


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


def load_exported(folder: str | os.PathLike, threads: int | None = None) -> ExportedModel:
    """Check and load an exported model folder. threads: onnxruntime's intra-op threads
    (default: OMP_NUM_THREADS when set, else onnxruntime's choice, one per physical core)."""
    folder = Path(folder)
    manifest = verify_export(folder)
    config = read_config(folder, manifest)
    lm_arpa = (folder / config.lm_file).read_text(encoding="utf-8") if config.lm_file else None
    lexicon = None
    if config.lexicon_file:
        from asr.lm import read_lexicon

        lexicon = tuple(read_lexicon(folder / config.lexicon_file))
    rnnlm = _rnnlm(folder, config.rnnlm) if config.rnnlm else None
    return ExportedModel(
        path=str(folder), session=_session(folder / MODEL_FILE, threads), features=config.features,
        cmvn=config.cmvn, vocab=config.vocab, frame_stack=config.frame_stack, decoding=config.decoding,
        lm_arpa=lm_arpa, lexicon=lexicon, rnnlm=rnnlm,
    )


def _rnnlm(folder: Path, entry: RecurrentLMEntry) -> OnnxLM:
    """The recurrent LM of config.json's decoding section, its step graph in an onnxruntime session."""
    # One thread: the step's products are small, and a second pool of spinning onnxruntime
    # threads beside the acoustic model's made whole runs slower, not faster.
    return OnnxLM(entry.config, entry.vocab, _session(folder / entry.file, 1))


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
