"""What asr.transcribe.Transcriber runs: a model's front end, vocabulary, decoding and forward pass.

Two back ends share this base and differ only in `forward` (the acoustic model's pass):
    asr.checkpoint.LoadedModel   a PyTorch checkpoint, on any torch device
    asr.runtime.ExportedModel    an exported model folder, on onnxruntime (no torch imported)
Everything else (features, batching, long files, decoding, word times) is the Transcriber's, the
same for both. No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asr.decode import DecodeConfig, make_decoder
from asr.frontend import Cmvn, FeatureConfig, FrontEnd
from asr.text import Vocab


@dataclass(kw_only=True)
class Backend:
    """A model ready to transcribe: its features (config + CMVN stats), vocabulary, input frames
    per output frame, the decoding it was tuned for and the LMs that decoding uses."""

    path: str  # where it was loaded from
    features: FeatureConfig
    cmvn: Cmvn
    vocab: Vocab
    frame_stack: int
    decoding: DecodeConfig = DecodeConfig()
    lm_arpa: str | None = None  # the n-gram LM, ARPA text
    lexicon: tuple[str, ...] | None = None
    rnnlm: object | None = None  # a recurrent LM: asr.rnnlm.RecurrentLM or asr.runtime.OnnxLM
    device: str = "cpu"  # what forward runs on, in words

    @property
    def front_end(self) -> FrontEnd:
        """The feature pipeline the model was trained with (log-mel, level normalisation, CMVN)."""
        return FrontEnd(self.features, self.cmvn)

    @property
    def frame_seconds(self) -> float:
        """Duration of one output frame (after frame stacking)."""
        return self.features.hop_ms * self.frame_stack / 1000

    @property
    def lm_source(self) -> str:
        """Where the n-gram LM came from (named in decoder errors)."""
        return self.path

    def decoder(self, override: DecodeConfig | None = None):
        """The decoder this model is tuned for (or `override`): (log_probs, out_lens) -> [Hypothesis]."""
        return make_decoder(self.vocab, override or self.decoding, self.lm_arpa, self.lexicon,
                            lm_source=self.lm_source, rnnlm=self.rnnlm)

    def forward(self, feats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One padded model pass: feats [(T, F)] -> log_probs (B, T', V) float32, out_lens (B,)."""
        raise NotImplementedError
