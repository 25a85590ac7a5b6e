"""CTC decoding: batched greedy search, beam search with an optional n-gram LM, word timings.

Beam search is flashlight-text's CTC decoder (through torchaudio.models.decoder.ctc_decoder): a
maintained C++ prefix beam search with KenLM scoring of ARPA files.
- Character models: a word LM with a lexicon that restricts the output to known words (lexicon
  decoder). Shallow fusion scores a hypothesis as
      log P_ctc + lm_weight * log P_lm + word_score * (number of words).
- BPE models: a piece LM (an n-gram over sentencepiece pieces, as NeMo does), no lexicon, so the
  vocabulary stays open (lexicon-free decoder): log P_ctc + lm_weight * log P_lm; word_score is
  not used. A lexicon decoder over pieces cannot absorb a word's last piece repeated over several
  frames (flashlight leaves a word at its last token), which a character model avoids with " ".

- A recurrent LM (asr.rnnlm) fuses through torchaudio's custom-LM interface (asr.fusion): a word
  LM with the lexicon decoder (its words are the lexicon), optionally log-linear with the word
  n-gram, log P_ctc + rnnlm_weight * ln P_rnn + lm_weight * log10 P_ngram + word_score * words;
  a character LM lexicon-free, log P_ctc + rnnlm_weight * ln P_rnn + word_score * words.

Shapes: log_probs (B, T, V), out_lens (B,). A Hypothesis lists emitted token ids and, for each,
the output frame it was emitted at.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from asr.errors import ASRError
from asr.lm import WORD_BOUNDARY, lexicon_text
from asr.text import BLANK_ID, SPACE, Vocab

DECODERS = ("greedy", "beam")
CONFIDENCE_WINDOW = 2  # output frames either side of a token's frame searched for its posterior peak


@dataclass(frozen=True)
class DecodeConfig:
    decoder: str = "greedy"  # greedy | beam (beam uses the model's LM and lexicon when it has them)
    beam_size: int = 50  # hypotheses kept per frame
    beam_size_token: int | None = None  # tokens tried per frame (None: all)
    beam_threshold: float = 25.0  # drop hypotheses scoring this much below the best
    lm_weight: float = 0.0  # alpha: weight of the n-gram LM log-probability (log10, as KenLM gives it)
    rnnlm_weight: float = 0.0  # weight of the recurrent LM's log-probability (natural log), when there is one
    word_score: float = 0.0  # beta: bonus added per word

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.beam_size < 1:
            raise ValueError("beam_size must be >= 1")


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


def greedy_search(log_probs: torch.Tensor, out_lens: torch.Tensor, blank_id: int = BLANK_ID) -> list[Hypothesis]:
    """Best path per frame, repeats collapsed, blanks dropped, frames past out_lens ignored."""
    best = log_probs.argmax(dim=-1)  # (B, T)
    previous = torch.nn.functional.pad(best[:, :-1], (1, 0), value=blank_id)  # (B, T), shifted right
    steps = torch.arange(best.shape[1], device=best.device).unsqueeze(0)
    keep = (best != previous) & (best != blank_id) & (steps < out_lens.to(best.device).unsqueeze(1))
    best, keep, steps = best.cpu(), keep.cpu(), steps.cpu()[0]
    return [Hypothesis(row[mask].tolist(), steps[mask].tolist()) for row, mask in zip(best, keep)]


def greedy_decode(log_probs: torch.Tensor, out_lens: torch.Tensor, blank_id: int = BLANK_ID) -> list[list[int]]:
    """Token ids of greedy_search: B lists."""
    return [h.tokens for h in greedy_search(log_probs, out_lens, blank_id)]


class BeamSearchDecoder:
    """CTC prefix beam search (flashlight-text), optionally with an ARPA LM: over words with a
    lexicon (character vocabularies), or over pieces without one (BPE vocabularies).

    lm_arpa and lexicon are the texts themselves (an ARPA file's contents, a list of words), as a
    checkpoint carries them; they are written to a temporary folder only while flashlight loads them.
    """

    def __init__(
        self, vocab: Vocab, config: DecodeConfig, lm_arpa: str | None = None, lexicon: Sequence[str] | None = None,
        lm_source: str = "the n-gram LM", rnnlm=None,
    ) -> None:
        if rnnlm is not None:
            self._init_fused(vocab, config, lm_arpa, lexicon, lm_source, rnnlm)
            return
        try:
            from torchaudio.models.decoder import ctc_decoder
        except ImportError as err:  # flashlight-text missing
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
                # about token id n as LM word n, and torchaudio's own list (made through a C++
                # unordered_map) comes in no particular order.
                lm_dict_path = os.path.join(tmp, "lm_words.txt")
                with open(lm_dict_path, "w", encoding="utf-8") as f:
                    f.write("".join(f"{t}\n" for t in tokens))
            with _native_output_captured() as native_output:  # KenLM prints loading progress bars from C++
                try:
                    self.decoder = ctc_decoder(
                        lexicon=lexicon_path,
                        tokens=tokens,
                        lm=lm_path,
                        lm_dict=lm_dict_path,
                        nbest=1,
                        beam_size=config.beam_size,
                        beam_size_token=config.beam_size_token,
                        beam_threshold=config.beam_threshold,
                        lm_weight=config.lm_weight,
                        word_score=config.word_score,
                        blank_token=vocab.tokens[BLANK_ID],
                        sil_token=silence,
                    )
                except (RuntimeError, ValueError) as err:  # KenLM's and flashlight's errors
                    what = "LM or lexicon" if lm_arpa is not None else "lexicon"
                    raise ASRError(f"{lm_source}: cannot load the beam-search {what} "
                                   f"({_load_error(err, native_output())})") from None

    def _init_fused(self, vocab: Vocab, config: DecodeConfig, lm_arpa: str | None, lexicon: Sequence[str] | None,
                    lm_source: str, rnnlm) -> None:
        """The decoder with a recurrent LM (asr.rnnlm.RecurrentLM): see the module docstring."""
        from torchaudio.models.decoder import ctc_decoder
        from flashlight.lib.text.dictionary import Dictionary

        from asr.fusion import FusedLM
        from asr.rnnlm import UNK

        if vocab.kind != "char":
            raise ASRError("recurrent LMs decode character models only; this model's units are BPE pieces")
        if rnnlm.vocab.units == "char" and lm_arpa is not None:
            raise ASRError("a character LM decodes without a lexicon, so it cannot be combined with a word n-gram")
        self.vocab = vocab
        self.space_id = vocab.separator_id
        tokens = [WORD_BOUNDARY if t == SPACE else t for t in vocab.tokens]
        silence = WORD_BOUNDARY if self.space_id is not None else vocab.tokens[BLANK_ID]
        common = dict(tokens=tokens, nbest=1, beam_size=config.beam_size, beam_size_token=config.beam_size_token,
                      beam_threshold=config.beam_threshold, lm_weight=1.0, blank_token=vocab.tokens[BLANK_ID],
                      sil_token=silence)
        if rnnlm.vocab.units == "char":  # lexicon-free over the model's tokens
            self.uses_lexicon = False
            to_lm = [rnnlm.vocab.id(t) for t in vocab.tokens]
            self.lm = FusedLM(rnnlm, to_lm, config.rnnlm_weight, word_ends=[self.space_id],
                              word_score=config.word_score)
            self.decoder = ctc_decoder(lexicon=None, lm=self.lm, **common)
            return
        self.uses_lexicon = True
        spellable = [w for w in rnnlm.vocab.words if not vocab.unknown_chars(w)]
        extra = sorted(set(lexicon or ()) - set(rnnlm.vocab.symbols))
        words = [*rnnlm.vocab.symbols, *extra]  # decoder word ids: the LM's ids, then n-gram-only words
        to_lm = [rnnlm.vocab.id(w) for w in words]
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
                        ngram = KenLM(lm_path, Dictionary(dict_path))
                    except (RuntimeError, ValueError) as err:
                        raise ASRError(f"{lm_source}: cannot load the n-gram LM ({_load_error(err, native_output())})"
                                       ) from None
            self.lm = FusedLM(rnnlm, to_lm, config.rnnlm_weight, ngram=ngram, ngram_weight=config.lm_weight)
            self.decoder = ctc_decoder(lexicon=lexicon_path, lm=self.lm, lm_dict=dict_path, word_score=config.word_score,
                                       unk_word=UNK, **common)

    def __call__(self, log_probs: torch.Tensor, out_lens: torch.Tensor) -> list[Hypothesis]:
        emissions = log_probs.detach().float().cpu()
        lens = out_lens.detach().cpu().to(torch.int32)
        if self.uses_lexicon:
            emissions, lens = self._end_with_word_boundary(emissions, lens)
        results = self.decoder(emissions.contiguous(), lens)
        hypotheses = []
        for nbest, length in zip(results, out_lens.tolist()):
            kept = []
            if nbest:
                best = nbest[0]
                for token, frame in zip(best.tokens.tolist(), best.timesteps.tolist()):
                    if token == BLANK_ID or (token == self.space_id and (not kept or kept[-1][0] == self.space_id)):
                        continue  # flashlight starts (and ends) with a word boundary; drop those and doubles
                    kept.append((token, min(frame, length - 1)))
            while kept and kept[-1][0] == self.space_id:
                kept.pop()
            hypotheses.append(Hypothesis([t for t, _ in kept], [f for _, f in kept]))
        return hypotheses

    def _end_with_word_boundary(self, emissions: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append one frame that is certainly a word boundary after each utterance.

        The lexicon decoder completes a word only at a boundary token, and the model emits none
        after the last word; without this the last word could never be finished.
        emissions (B, T, V) -> (B, T + 1, V); lens -> lens + 1.
        """
        batch, frames, vocab_size = emissions.shape
        boundary = torch.full((vocab_size,), -1e4)
        boundary[self.space_id] = 0.0
        padded = torch.cat([emissions, emissions.new_full((batch, 1, vocab_size), -1e4)], dim=1)
        padded[torch.arange(batch), lens.long()] = boundary
        return padded, lens + 1


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
    hypothesis: Hypothesis, log_probs: torch.Tensor, vocab: Vocab, frame_seconds: float, duration: float | None = None
) -> list[WordTiming]:
    """Words of a hypothesis with start/end times and confidences.

    Words end at a separator token (characters) or where a piece starts a new word (BPE). A word
    starts at its first token's frame and ends one frame after its last token's frame
    (clipped to duration). log_probs (T, V) are that utterance's, for the confidences: a token's
    posterior is its peak within CONFIDENCE_WINDOW frames of its frame, since beam search reports
    where a token entered the hypothesis, which can sit a frame or two off its CTC spike.
    """
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
            float(log_probs[max(0, f - CONFIDENCE_WINDOW): min(last, f + CONFIDENCE_WINDOW) + 1, t].max().exp())
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
