"""CTC decoding: the decoding settings (DecodeConfig), batched greedy search, and `make_decoder`,
which gives greedy search or beam search (asr.beam_search) for a config. Its neighbours by job:
asr.beam_search (flashlight-text's beam search, with n-gram and recurrent LMs), asr.word_timing
(word times and confidences), asr.native_output (quieting KenLM while it loads).

What beam search scores:
- Character models: a word LM with a lexicon that restricts the output to known words (lexicon
  decoder). Shallow fusion scores a hypothesis as
      log P_ctc + lm_weight * log P_lm + word_score * (number of words).
- BPE models: a piece LM (an n-gram over sentencepiece pieces, as NeMo does), no lexicon, so the
  vocabulary stays open (lexicon-free decoder): log P_ctc + lm_weight * log P_lm; word_score is
  not used. A lexicon decoder over pieces cannot absorb a word's last piece repeated over several
  frames (flashlight leaves a word at its last token), which a character model avoids with " ".

- A recurrent LM (asr.rnnlm; its exported step in the torch-free runtime) fuses through flashlight's LM
  interface, as torchaudio's custom LMs do (asr.fusion): a word
  LM with the lexicon decoder (its words are the lexicon), optionally log-linear with the word
  n-gram, log P_ctc + rnnlm_weight * ln P_rnn + lm_weight * log10 P_ngram + word_score * words;
  a character LM lexicon-free, log P_ctc + rnnlm_weight * ln P_rnn + word_score * words.

Shapes: log_probs (B, T, V), out_lens (B,): numpy arrays or torch tensors (read through numpy).
A Hypothesis lists emitted token ids and, for each, the output frame it was emitted at.

No torch here: the torch-free runtime (asr.runtime) decodes with this module too, recurrent LMs
included (asr.fusion subclasses flashlight's own LM class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asr.text import BLANK_ID, Vocab

DECODERS = ("greedy", "beam")
UNKNOWN_WORD = "<unk>"  # the LM word for anything outside its vocabulary (flashlight, torchaudio)


@dataclass(frozen=True)
class DecodeConfig:
    decoder: str = "greedy"  # greedy | beam (beam uses the model's LM and lexicon when it has them)
    beam_size: int = 50  # hypotheses kept per frame
    beam_size_token: int | None = None  # tokens tried per frame (None: all)
    # Drop hypotheses scoring this much below the best: 10 searches faster than 25 for the same WER
    # (bench/results/beam_threshold.json).
    beam_threshold: float = 10.0
    lm_weight: float = 0.0  # alpha: weight of the n-gram LM log-probability (log10, as KenLM gives it)
    rnnlm_weight: float = 0.0  # weight of the recurrent LM's log-probability (natural log), when there is one
    word_score: float = 0.0  # beta: bonus added per word

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.beam_size < 1:
            raise ValueError("beam_size must be >= 1")
        if not self.beam_threshold > 0:
            raise ValueError(f"beam_threshold must be > 0, got {self.beam_threshold}")


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]  # emitted token ids (no blanks, repeats collapsed)
    frames: list[int]  # output frame of each token


def as_numpy(array) -> np.ndarray:
    """A numpy array of a numpy array or a torch tensor (on any device, tracking gradients or not)."""
    if hasattr(array, "detach"):  # a torch tensor; torch itself is not imported here
        array = array.detach().cpu()
    return np.asarray(array)


def greedy_search(log_probs, out_lens, blank_id: int = BLANK_ID) -> list[Hypothesis]:
    """Best path per frame, repeats collapsed, blanks dropped, frames past out_lens ignored."""
    best = as_numpy(log_probs).argmax(axis=-1)  # (B, T)
    previous = np.pad(best[:, :-1], ((0, 0), (1, 0)), constant_values=blank_id)  # (B, T), shifted right
    steps = np.arange(best.shape[1])
    keep = (best != previous) & (best != blank_id) & (steps[None, :] < as_numpy(out_lens).reshape(-1, 1))
    return [Hypothesis(row[mask].tolist(), steps[mask].tolist()) for row, mask in zip(best, keep)]


def greedy_decode(log_probs, out_lens, blank_id: int = BLANK_ID) -> list[list[int]]:
    """Token ids of greedy_search: B lists."""
    return [h.tokens for h in greedy_search(log_probs, out_lens, blank_id)]


def make_decoder(
    vocab: Vocab, config: DecodeConfig, lm_arpa: str | None = None, lexicon: Sequence[str] | None = None,
    lm_source: str = "the n-gram LM", rnnlm=None,
):
    """A callable (log_probs (B, T, V), out_lens (B,)) -> [Hypothesis] for config.decoder.

    lm_source names where lm_arpa came from (a file) in the error raised when it cannot be loaded;
    rnnlm is a recurrent LM (asr.rnnlm.RecurrentLM) to fuse, alone or with the n-gram.
    """
    if config.decoder == "greedy":
        return greedy_search
    from asr.beam_search import BeamSearchDecoder

    return BeamSearchDecoder(vocab, config, lm_arpa, lexicon, lm_source, rnnlm)


