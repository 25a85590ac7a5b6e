"""Grid search of the LM weights (n-gram alpha, recurrent LM weight) and word score (beta) for beam
search + LM on a dev set, and the rules of what a model may decode with (`tuning_plan`, `kept_rnnlm`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from asr.decode import DecodeConfig, make_decoder
from asr.errors import ASRError
from asr.lm import check_piece_lm, read_lexicon
from asr.metrics import ErrorReport, error_rates
from asr.text import Vocab


def tuning_plan(vocab: Vocab, model: str, arpa: str | None, lm_path: str | None, lexicon_path: str | None,
                has_rnnlm: bool, word_scores: Sequence[float]) -> tuple[list[str] | None, list[float]]:
    """(lexicon words, word scores to try) for tuning `model`'s LMs, or an ASRError saying what is
    missing or does not fit: a BPE model decodes with a piece LM over an open vocabulary (no
    lexicon, no word score; no recurrent LM); a character model with a word n-gram needs its lexicon;
    a recurrent LM alone needs none (a word LM's words are the lexicon)."""
    if arpa is None and not has_rnnlm:
        raise ASRError("asr tune-lm needs --lm (an ARPA n-gram), --rnnlm (a recurrent LM) or both")
    if vocab.kind == "bpe":
        if has_rnnlm:
            raise ASRError(f"{model}: recurrent LMs decode character models only; this one uses BPE pieces")
        check_piece_lm(arpa, vocab, lm_path)
        return None, [0.0]
    if arpa is None:
        return None, list(word_scores)
    if lexicon_path is None:
        raise ASRError(f"{model}: a character model decodes with a word LM and needs --lexicon (from `asr lm`)")
    return sorted(read_lexicon(lexicon_path)), list(word_scores)


def kept_rnnlm(config: DecodeConfig, rnnlm):
    """The recurrent LM a tuned model keeps: none when the best weight for it is 0 (it did not help
    on dev, so decoding keeps the n-gram's speed)."""
    return None if rnnlm is not None and config.rnnlm_weight == 0 else rnnlm


def decode_all(decode, emissions: Sequence, vocab: Vocab) -> list[str]:
    """Texts for per-utterance log-probs [(T, V)] (arrays or tensors) with a decoder from make_decoder."""
    texts = []
    for log_probs in emissions:
        (hypothesis,) = decode(log_probs[None], np.array([log_probs.shape[0]]))
        texts.append(vocab.decode(hypothesis.tokens))
    return texts


def tune_lm(
    emissions: Sequence,
    references: Sequence[str],
    vocab: Vocab,
    lm_arpa: str | None,
    lexicon: Sequence[str] | None,
    lm_weights: Iterable[float],
    word_scores: Iterable[float],
    base: DecodeConfig = DecodeConfig(decoder="beam"),
    report=None,
    lm_source: str = "the n-gram LM",
    rnnlm=None,
    rnnlm_weights: Iterable[float] = (0.0,),
) -> list[tuple[DecodeConfig, ErrorReport]]:
    """Score every (lm_weight, rnnlm_weight, word_score) point; returns all results, best (lowest
    WER, then CER) first. Without a recurrent LM rnnlm_weights is ignored; without an n-gram
    (lm_arpa None), lm_weights is.

    `report(config, result)` is called after each point, e.g. to print progress; lm_source names
    the LM's file in the error raised when it cannot be loaded.
    """
    word_scores = list(word_scores)
    lm_weights = list(lm_weights) if lm_arpa is not None else [0.0]
    rnnlm_weights = list(rnnlm_weights) if rnnlm is not None else [0.0]
    results = []
    for alpha in lm_weights:
        for gamma in rnnlm_weights:
            for beta in word_scores:
                config = replace(base, decoder="beam", lm_weight=alpha, rnnlm_weight=gamma, word_score=beta)
                decode = make_decoder(vocab, config, lm_arpa, lexicon, lm_source, rnnlm)
                result = error_rates(references, decode_all(decode, emissions, vocab))
                results.append((config, result))
                if report is not None:
                    report(config, result)
    return sorted(results, key=lambda item: (item[1].wer, item[1].cer))
