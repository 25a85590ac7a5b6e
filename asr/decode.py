"""CTC decoding: batched greedy search, beam search with an optional n-gram LM, word timings.

Beam search is flashlight-text's CTC decoder, called directly as torchaudio's ctc_decoder calls it:
a maintained C++ prefix beam search with KenLM scoring of ARPA files.
- Character models: a word LM with a lexicon that restricts the output to known words (lexicon
  decoder). Shallow fusion scores a hypothesis as
      log P_ctc + lm_weight * log P_lm + word_score * (number of words).
- BPE models: a piece LM (an n-gram over sentencepiece pieces, as NeMo does), no lexicon, so the
  vocabulary stays open (lexicon-free decoder): log P_ctc + lm_weight * log P_lm; word_score is
  not used. A lexicon decoder over pieces cannot absorb a word's last piece repeated over several
  frames (flashlight leaves a word at its last token), which a character model avoids with " ".

- A recurrent LM (asr.rnnlm, or asr.numpy_rnnlm without torch) fuses through flashlight's LM
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

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from asr.errors import ASRError
from asr.lm import WORD_BOUNDARY, lexicon_text
from asr.text import BLANK_ID, SPACE, Vocab

DECODERS = ("greedy", "beam")
UNKNOWN_WORD = "<unk>"  # the LM word for anything outside its vocabulary (flashlight, torchaudio)
CONFIDENCE_WINDOW = 2  # output frames either side of a token's frame searched for its posterior peak


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


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # mean over the word's tokens of their peak posterior near their frame, in [0, 1]


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
        if rnnlm is not None:
            self._init_fused(vocab, config, lm_arpa, lexicon, lm_source, rnnlm)
            return
        try:
            from flashlight.lib.text import decoder as flashlight, dictionary
        except ImportError as err:
            raise ASRError(f"beam search needs the flashlight-text package ({err})") from None
        if vocab.kind == "bpe" and lexicon:
            raise ASRError("a lexicon applies to character models; BPE models decode with a piece LM and no lexicon")
        if vocab.kind == "char" and lm_arpa is not None and not lexicon:
            raise ASRError("a word LM needs a lexicon (the words it can spell)")
        self.vocab = vocab
        self.space_id = vocab.separator_id
        self.uses_lexicon = bool(lexicon)
        tokens = [WORD_BOUNDARY if t == SPACE else t for t in vocab.tokens]
        silence = WORD_BOUNDARY if self.space_id is not None else vocab.tokens[BLANK_ID]
        with tempfile.TemporaryDirectory(prefix="asr-decoder-") as tmp:
            lexicon_path = lm_path = lm_dict_path = None
            if lexicon:
                lexicon_path = os.path.join(tmp, "lexicon.txt")
                with open(lexicon_path, "w", encoding="utf-8") as f:
                    f.write(lexicon_text(lexicon))
            if lm_arpa is not None:
                lm_path = os.path.join(tmp, "lm.arpa")
                with open(lm_path, "w", encoding="utf-8") as f:
                    f.write(lm_arpa)
            if lm_arpa is not None and not lexicon:
                # A piece LM's word list must list the tokens in id order: the decoder asks the LM
                # about token id n as LM word n, and the list torchaudio would make (through a C++
                # unordered_map) comes in no particular order.
                lm_dict_path = os.path.join(tmp, "lm_words.txt")
                with open(lm_dict_path, "w", encoding="utf-8") as f:
                    f.write("".join(f"{t}\n" for t in tokens))
            with _native_output_captured() as native_output:  # KenLM prints loading progress bars from C++
                try:
                    self.decoder, self.lm = _flashlight_decoder(
                        flashlight, dictionary, config, tokens, lexicon_path, lm_path, lm_dict_path,
                        blank=vocab.tokens[BLANK_ID], silence=silence,
                    )
                except (RuntimeError, ValueError) as err:  # KenLM's and flashlight's errors
                    what = "LM or lexicon" if lm_arpa is not None else "lexicon"
                    raise ASRError(f"{lm_source}: cannot load the beam-search {what} "
                                   f"({_load_error(err, native_output())})") from None

    def _init_fused(self, vocab: Vocab, config: DecodeConfig, lm_arpa: str | None, lexicon: Sequence[str] | None,
                    lm_source: str, rnnlm) -> None:
        """The decoder with a recurrent LM (asr.rnnlm.RecurrentLM, or its torch-free form
        asr.numpy_rnnlm.NumpyLM): see the module docstring."""
        from flashlight.lib.text import decoder as flashlight, dictionary

        from asr.fusion import FusedLM
        from asr.numpy_rnnlm import NumpyLM

        if vocab.kind != "char":
            raise ASRError("recurrent LMs decode character models only; this model's units are BPE pieces")
        if rnnlm.vocab.units == "char" and lm_arpa is not None:
            raise ASRError("a character LM decodes without a lexicon, so it cannot be combined with a word n-gram")
        numpy_lm = rnnlm if isinstance(rnnlm, NumpyLM) else rnnlm.numpy_lm()
        self.fused = True
        self.vocab = vocab
        self.space_id = vocab.separator_id
        tokens = [WORD_BOUNDARY if t == SPACE else t for t in vocab.tokens]
        silence = WORD_BOUNDARY if self.space_id is not None else vocab.tokens[BLANK_ID]
        fused_config = replace(config, lm_weight=1.0)  # FusedLM weighs its own scores
        build = dict(blank=vocab.tokens[BLANK_ID], silence=silence)
        if numpy_lm.vocab.units == "char":  # lexicon-free over the model's tokens
            self.uses_lexicon = False
            to_lm = [numpy_lm.vocab.id(t) for t in vocab.tokens]
            self.lm = FusedLM(numpy_lm, to_lm, config.rnnlm_weight, word_ends=[self.space_id],
                              word_score=config.word_score)
            self.decoder, _ = _flashlight_decoder(flashlight, dictionary, fused_config, tokens, None, None, None,
                                                  lm=self.lm, **build)
            return
        self.uses_lexicon = True
        spellable = [w for w in numpy_lm.vocab.words if not vocab.unknown_chars(w)]
        extra = sorted(set(lexicon or ()) - set(numpy_lm.vocab.symbols))
        words = [*numpy_lm.vocab.symbols, *extra]  # decoder word ids: the LM's ids, then n-gram-only words
        to_lm = [numpy_lm.vocab.id(w) for w in words]
        with tempfile.TemporaryDirectory(prefix="asr-decoder-") as tmp:
            lexicon_path, dict_path = os.path.join(tmp, "lexicon.txt"), os.path.join(tmp, "words.txt")
            with open(lexicon_path, "w", encoding="utf-8") as f:
                f.write(lexicon_text(sorted(set(spellable) | set(extra))))
            with open(dict_path, "w", encoding="utf-8") as f:
                f.write("".join(f"{w}\n" for w in words))
            ngram = None
            if lm_arpa is not None:
                from flashlight.lib.text.decoder.kenlm import KenLM

                lm_path = os.path.join(tmp, "lm.arpa")
                with open(lm_path, "w", encoding="utf-8") as f:
                    f.write(lm_arpa)
                with _native_output_captured() as native_output:
                    try:
                        ngram = KenLM(lm_path, dictionary.Dictionary(dict_path))
                    except (RuntimeError, ValueError) as err:
                        raise ASRError(f"{lm_source}: cannot load the n-gram LM ({_load_error(err, native_output())})"
                                       ) from None
            self.lm = FusedLM(numpy_lm, to_lm, config.rnnlm_weight, ngram=ngram, ngram_weight=config.lm_weight)
            self.decoder, _ = _flashlight_decoder(flashlight, dictionary, fused_config, tokens, lexicon_path, None,
                                                  dict_path, lm=self.lm, **build)

    def __call__(self, log_probs, out_lens) -> list[Hypothesis]:
        if self.fused:  # the recurrent LM's numpy steps: see _one_blas_thread
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


_NATIVE_OUTPUT_LOCK = threading.Lock()  # one capture at a time: file descriptors 1 and 2 are process-wide
KENLM_LOADING_CHATTER = (  # what KenLM prints while it reads an ARPA file, whether or not it succeeds
    "Loading the LM will be faster if you build a binary file.",
    "Reading ",
    "----5---10---15---20---25---30---35---40---45---50---55---60---65---70---75---80---85---90---95--100",
    "****",
)


@contextlib.contextmanager
def _native_output_captured() -> Iterator[Callable[[], str]]:
    """While the body runs, what C/C++ code writes to file descriptors 1 and 2 goes to a temporary
    file; yields a function returning that text (for an error message). It is discarded afterwards.

    No flashlight or torchaudio option turns KenLM's loading messages off (it writes them to
    std::cerr), hence the redirection. Python's own sys.stdout and sys.stderr keep writing where
    they did for the duration (through duplicates of the original descriptors), so another
    thread's print is not swallowed.
    """
    with _NATIVE_OUTPUT_LOCK, tempfile.TemporaryFile() as captured:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        streams = _python_streams_on(saved)
        try:
            for fd in saved:
                os.dup2(captured.fileno(), fd)
            yield lambda: _read_text(captured)
        finally:
            for fd, original in saved.items():
                os.dup2(original, fd)
            _restore_python_streams(streams)
            for original in saved.values():
                os.close(original)


def _python_streams_on(saved: dict[int, int]) -> dict[str, object]:
    """Point sys.stdout/sys.stderr, where they write to fd 1/2, at the saved duplicates; returns the originals."""
    originals = {}
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None or _fileno(stream) != fd:
            continue  # already elsewhere (a pytest capture, a redirect): the descriptor swap does not touch it
        stream.flush()
        originals[name] = stream
        buffer = io.BufferedWriter(io.FileIO(saved[fd], "w", closefd=False))
        setattr(sys, name, io.TextIOWrapper(buffer, encoding=stream.encoding, errors=stream.errors,
                                            line_buffering=True))
    return originals


def _restore_python_streams(originals: dict[str, object]) -> None:
    for name, stream in originals.items():
        getattr(sys, name).flush()
        setattr(sys, name, stream)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return None


def _read_text(file) -> str:
    file.flush()
    file.seek(0)
    return file.read().decode("utf-8", errors="replace")


def _load_error(err: Exception, native_output: str) -> str:
    """One line: the exception's last line (KenLM's first names its C++ source line), then any native
    output other than KenLM's loading chatter."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    parts = [lines[-1] if lines else type(err).__name__]
    parts += [line.strip() for line in native_output.splitlines()
              if line.strip() and not line.startswith(KENLM_LOADING_CHATTER)]
    return "; ".join(parts)


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
    return BeamSearchDecoder(vocab, config, lm_arpa, lexicon, lm_source, rnnlm)


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
