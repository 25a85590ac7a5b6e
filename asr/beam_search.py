"""CTC prefix beam search: flashlight-text's decoder, called directly as torchaudio's ctc_decoder
calls it (a maintained C++ beam search with KenLM scoring of ARPA files), over words with a
lexicon (character models), over pieces without one (BPE models), or fused with a recurrent LM
(asr.fusion). The scores each combination uses are in asr.decode's docstring.

No torch here: the torch-free runtime (asr.runtime) decodes with this module too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from asr.decode import UNKNOWN_WORD, DecodeConfig, Hypothesis, as_numpy
from asr.errors import ASRError
from asr.lm import WORD_BOUNDARY, lexicon_text
from asr.native_output import load_error, native_output_captured
from asr.text import BLANK_ID, SPACE, Vocab


class BeamSearchDecoder:
    """CTC prefix beam search (flashlight-text), optionally with an ARPA LM: over words with a
    lexicon (character vocabularies), or over pieces without one (BPE vocabularies).

    lm_arpa and lexicon are the texts themselves (an ARPA file's contents, a list of words), as a
    checkpoint carries them; they are written to a temporary folder only while flashlight loads them.
    """

    fused = False  # True with a recurrent LM (asr.fusion.FusedLM)

    def __init__(
        self, vocab: Vocab, config: DecodeConfig, lm_arpa: str | None = None, lexicon: Sequence[str] | None = None,
        lm_source: str = "the n-gram LM", rnnlm=None,
    ) -> None:
        try:
            from flashlight.lib.text import decoder as flashlight, dictionary
        except ImportError as err:
            raise ASRError(f"beam search needs the flashlight-text package ({err})") from None
        self.vocab = vocab
        self.space_id = vocab.separator_id
        self.tokens = [WORD_BOUNDARY if t == SPACE else t for t in vocab.tokens]  # flashlight's token names
        self.ends = dict(blank=vocab.tokens[BLANK_ID],
                         silence=WORD_BOUNDARY if self.space_id is not None else vocab.tokens[BLANK_ID])
        with tempfile.TemporaryDirectory(prefix="asr-decoder-") as tmp:  # flashlight and KenLM read files
            if rnnlm is not None:
                self._init_fused(flashlight, dictionary, tmp, config, lm_arpa, lexicon, lm_source, rnnlm)
            else:
                self._init_ngram(flashlight, dictionary, tmp, config, lm_arpa, lexicon, lm_source)

    def _init_ngram(self, flashlight, dictionary, tmp: str, config: DecodeConfig, lm_arpa: str | None,
                    lexicon: Sequence[str] | None, lm_source: str) -> None:
        """The decoder with an n-gram LM or none: a word LM with a lexicon (characters), a piece LM
        lexicon-free (BPE)."""
        vocab = self.vocab
        if vocab.kind == "bpe" and lexicon:
            raise ASRError("a lexicon applies to character models; BPE models decode with a piece LM and no lexicon")
        if vocab.kind == "char" and lm_arpa is not None and not lexicon:
            raise ASRError("a word LM needs a lexicon (the words it can spell)")
        self.uses_lexicon = bool(lexicon)
        lexicon_path = _written(tmp, "lexicon.txt", lexicon_text(lexicon)) if lexicon else None
        lm_path = _written(tmp, "lm.arpa", lm_arpa) if lm_arpa is not None else None
        lm_dict_path = None
        if lm_arpa is not None and not lexicon:
            # A piece LM's word list must list the tokens in id order: the decoder asks the LM
            # about token id n as LM word n, and the list torchaudio would make (through a C++
            # unordered_map) comes in no particular order.
            lm_dict_path = _written(tmp, "lm_words.txt", "".join(f"{t}\n" for t in self.tokens))
        with native_output_captured() as native_output:  # KenLM prints loading progress bars from C++
            try:
                self.decoder, self.lm = _flashlight_decoder(flashlight, dictionary, config, self.tokens, lexicon_path,
                                                            lm_path, lm_dict_path, **self.ends)
            except (RuntimeError, ValueError) as err:  # KenLM's and flashlight's errors
                what = "LM or lexicon" if lm_arpa is not None else "lexicon"
                raise ASRError(f"{lm_source}: cannot load the beam-search {what} "
                               f"({load_error(err, native_output())})") from None

    def _init_fused(self, flashlight, dictionary, tmp: str, config: DecodeConfig, lm_arpa: str | None,
                    lexicon: Sequence[str] | None, lm_source: str, rnnlm) -> None:
        """The decoder with a recurrent LM (asr.rnnlm.RecurrentLM, or the runtime's asr.runtime.OnnxLM:
        its vocab, and make_step() for asr.fusion.FusedLM): see asr.decode's docstring."""
        from asr.fusion import FusedLM

        vocab = self.vocab
        if vocab.kind != "char":
            raise ASRError("recurrent LMs decode character models only; this model's units are BPE pieces")
        if rnnlm.vocab.units == "char" and lm_arpa is not None:
            raise ASRError("a character LM decodes without a lexicon, so it cannot be combined with a word n-gram")
        lm_vocab = rnnlm.vocab
        self.fused = True
        fused_config = replace(config, lm_weight=1.0)  # FusedLM weighs its own scores
        if lm_vocab.units == "char":  # lexicon-free over the model's tokens
            self.uses_lexicon = False
            to_lm = [lm_vocab.id(t) for t in vocab.tokens]
            self.lm = FusedLM(rnnlm.make_step(), to_lm, config.rnnlm_weight, word_ends=[self.space_id],
                              word_score=config.word_score)
            self.decoder, _ = _flashlight_decoder(flashlight, dictionary, fused_config, self.tokens, None, None, None,
                                                  lm=self.lm, **self.ends)
            return
        self.uses_lexicon = True
        spellable = [w for w in lm_vocab.words if not vocab.unknown_chars(w)]
        extra = sorted(set(lexicon or ()) - set(lm_vocab.symbols))
        words = [*lm_vocab.symbols, *extra]  # decoder word ids: the LM's ids, then n-gram-only words
        to_lm = [lm_vocab.id(w) for w in words]
        lexicon_path = _written(tmp, "lexicon.txt", lexicon_text(sorted(set(spellable) | set(extra))))
        dict_path = _written(tmp, "words.txt", "".join(f"{w}\n" for w in words))
        ngram = None
        if lm_arpa is not None:
            from flashlight.lib.text.decoder.kenlm import KenLM

            lm_path = _written(tmp, "lm.arpa", lm_arpa)
            with native_output_captured() as native_output:
                try:
                    ngram = KenLM(lm_path, dictionary.Dictionary(dict_path))
                except (RuntimeError, ValueError) as err:
                    raise ASRError(f"{lm_source}: cannot load the n-gram LM ({load_error(err, native_output())})"
                                   ) from None
        self.lm = FusedLM(rnnlm.make_step(), to_lm, config.rnnlm_weight, ngram=ngram, ngram_weight=config.lm_weight)
        self.decoder, _ = _flashlight_decoder(flashlight, dictionary, fused_config, self.tokens, lexicon_path, None,
                                              dict_path, lm=self.lm, **self.ends)

    def __call__(self, log_probs, out_lens) -> list[Hypothesis]:
        if self.fused:  # the recurrent LM's small steps: see _one_blas_thread
            with _one_blas_thread():
                return self._decode(log_probs, out_lens)
        return self._decode(log_probs, out_lens)

    def _decode(self, log_probs, out_lens) -> list[Hypothesis]:
        emissions = as_numpy(log_probs).astype(np.float32)
        lens = as_numpy(out_lens).astype(np.int64).reshape(-1)
        if self.uses_lexicon:
            emissions, lens = self._end_with_word_boundary(emissions, lens)
        hypotheses = []
        for row, length, frames in zip(emissions, lens.tolist(), as_numpy(out_lens).reshape(-1).tolist()):
            row = np.ascontiguousarray(row)
            results = self.decoder.decode(row.ctypes.data, length, row.shape[1])
            kept = []
            if results:
                for token, frame in _emitted(results[0].tokens, BLANK_ID):
                    if token == self.space_id and (not kept or kept[-1][0] == self.space_id):
                        continue  # flashlight starts (and ends) with a word boundary; drop those and doubles
                    kept.append((token, min(frame, frames - 1)))
            while kept and kept[-1][0] == self.space_id:
                kept.pop()
            hypotheses.append(Hypothesis([t for t, _ in kept], [f for _, f in kept]))
        return hypotheses

    def _end_with_word_boundary(self, emissions: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append one frame that is certainly a word boundary after each utterance.

        The lexicon decoder completes a word only at a boundary token, and the model emits none
        after the last word; without this the last word could never be finished.
        emissions (B, T, V) -> (B, T + 1, V); lens -> lens + 1.
        """
        batch, frames, vocab_size = emissions.shape
        boundary = np.full((vocab_size,), -1e4, dtype=np.float32)
        boundary[self.space_id] = 0.0
        padded = np.concatenate([emissions, np.full((batch, 1, vocab_size), -1e4, dtype=np.float32)], axis=1)
        padded[np.arange(batch), lens] = boundary
        return padded, lens + 1


def _written(folder: str, name: str, text: str) -> str:
    """Write text to folder/name (UTF-8); returns the path."""
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _flashlight_decoder(flashlight, dictionary, config: DecodeConfig, tokens: list[str], lexicon_path: str | None,
                        lm_path: str | None, lm_dict_path: str | None, blank: str, silence: str, lm=None):
    """flashlight-text's lexicon (or lexicon-free) CTC decoder and its LM, built as torchaudio's
    ctc_decoder builds them (torchaudio/models/decoder/_ctc_decoder.py, unk_word "<unk>",
    sil_score 0, unk_score -inf, no log-add): returns (decoder, lm); keep the LM alive with it.
    The LM is KenLM over lm_path, or `lm` (a flashlight LM object, e.g. asr.fusion.FusedLM), or none."""
    tokens_dict = dictionary.Dictionary(tokens)
    options = dict(
        beam_size=config.beam_size, beam_size_token=config.beam_size_token or tokens_dict.index_size(),
        beam_threshold=config.beam_threshold, lm_weight=config.lm_weight, sil_score=0.0, log_add=False,
        criterion_type=flashlight.CriterionType.CTC,
    )
    lexicon = dictionary.load_words(lexicon_path) if lexicon_path else None
    word_dict = None
    if lm_dict_path is not None:
        word_dict = dictionary.Dictionary(lm_dict_path)
    elif lexicon:
        word_dict = dictionary.create_word_dict(lexicon)
    elif lm_path is not None:
        entries = {tokens_dict.get_entry(i): [[tokens_dict.get_entry(i)]] for i in range(tokens_dict.index_size())}
        entries[UNKNOWN_WORD] = [[UNKNOWN_WORD]]
        word_dict = dictionary.create_word_dict(entries)
    if lm is None and lm_path is not None:
        from flashlight.lib.text.decoder.kenlm import KenLM

        lm = KenLM(lm_path, word_dict)
    elif lm is None:
        lm = flashlight.ZeroLM()
    blank_id, silence_id = tokens_dict.get_index(blank), tokens_dict.get_index(silence)
    if not lexicon:
        return flashlight.LexiconFreeDecoder(flashlight.LexiconFreeDecoderOptions(**options), lm, silence_id,
                                             blank_id, []), lm
    trie = flashlight.Trie(tokens_dict.index_size(), silence_id)
    start = lm.start(False)
    for word, spellings in lexicon.items():
        word_id = word_dict.get_index(word)
        _, score = lm.score(start, word_id)
        for spelling in spellings:
            trie.insert([tokens_dict.get_index(token) for token in spelling], word_id, score)
    trie.smear(flashlight.SmearingMode.MAX)
    options = flashlight.LexiconDecoderOptions(word_score=config.word_score, unk_score=float("-inf"), **options)
    decoder = flashlight.LexiconDecoder(options, trie, lm, silence_id, blank_id, word_dict.get_index(UNKNOWN_WORD),
                                        [], False)
    return decoder, lm


def _one_blas_thread():
    """A context in which every loaded BLAS uses one thread (threadpoolctl). A recurrent LM's network
    step multiplies matrices of tens of rows: a second BLAS thread only adds synchronisation, and
    is worse again when the cores are busy (bench/rnnlm_fusion.py). The libraries are looked up on
    each call (well under 1 ms):
    one loaded later (scipy's own OpenBLAS, say) is limited too."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _emitted(raw_tokens, blank_id: int) -> list[tuple[int, int]]:
    """(token, frame) of each emission in a flashlight result's frame-by-frame token sequence:
    repeats collapsed, blanks dropped, the frame where the token starts (torchaudio's
    _get_tokens and _get_timesteps)."""
    raw = list(raw_tokens)
    return [(token, i) for i, token in enumerate(raw)
            if token != blank_id and (i == 0 or token != raw[i - 1])]
