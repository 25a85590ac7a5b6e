"""Words with start and end times and confidences, from a decoded hypothesis and the log-probs it
was decoded from (what `asr transcribe --format jsonl/srt/vtt/ctm` prints)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr.decode import Hypothesis, as_numpy
from asr.text import Vocab

CONFIDENCE_WINDOW = 2  # output frames either side of a token's frame searched for its posterior peak


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # mean over the word's tokens of their peak posterior near their frame, in [0, 1]


def word_timings(
    hypothesis: Hypothesis, log_probs, vocab: Vocab, frame_seconds: float, duration: float | None = None
) -> list[WordTiming]:
    """Words of a hypothesis with start/end times and confidences.

    Words end at a separator token (characters) or where a piece starts a new word (BPE). A word
    starts at its first token's frame and ends one frame after its last token's frame
    (clipped to duration). log_probs (T, V) are that utterance's, for the confidences: a token's
    posterior is its peak within CONFIDENCE_WINDOW frames of its frame, since beam search reports
    where a token entered the hypothesis, which can sit a frame or two off its CTC spike.
    """
    log_probs = as_numpy(log_probs)
    separator_id = vocab.separator_id
    words: list[WordTiming] = []
    current: list[tuple[int, int]] = []

    def flush() -> None:
        if not current:
            return
        text = vocab.decode([t for t, _ in current])
        start, end = current[0][1] * frame_seconds, (current[-1][1] + 1) * frame_seconds
        if duration is not None:
            start, end = min(start, duration), min(end, duration)
        last = log_probs.shape[0] - 1
        posteriors = [
            float(np.exp(log_probs[max(0, f - CONFIDENCE_WINDOW): min(last, f + CONFIDENCE_WINDOW) + 1, t].max()))
            for t, f in current
        ]
        words.append(WordTiming(text, round(start, 3), round(end, 3), round(sum(posteriors) / len(posteriors), 4)))
        current.clear()

    for token, frame in zip(hypothesis.tokens, hypothesis.frames):
        if token == separator_id:
            flush()
            continue
        if vocab.starts_word(token):
            flush()
        current.append((token, frame))
    flush()
    return words
