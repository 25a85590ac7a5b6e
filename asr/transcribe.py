"""Audio files -> text (and word timings) with a trained model, in length-sorted batches.

A file that cannot be read yields a Transcript with `error` set; the others are still transcribed.
Output formats: text, jsonl, srt, vtt, ctm (see format_transcript).

One pipeline for both back ends (asr.backend.Backend): `Transcriber` runs a PyTorch checkpoint
(asr.checkpoint.LoadedModel) or an exported model folder (asr.runtime.ExportedModel) the same
way; only the model pass (`backend.forward`) differs. Features come from asr.frontend, log-probs
between the model and the decoder are numpy arrays, and nothing here imports torch.
Most callers get one from asr.load(model).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from asr.audio import audio_info, load_audio, stream_audio
from asr.backend import Backend
from asr.decode import DecodeConfig, Hypothesis, as_numpy
from asr.word_timing import WordTiming, word_timings
from asr.errors import ASRError
from asr.manifest import transcript_id
from asr.paths import printable
from asr.text import BLANK_ID

Forward = Callable[[Sequence], tuple[np.ndarray, np.ndarray]]  # feats [(T, F)] -> log_probs (B, T', V), out_lens (B,)

LONG_AUDIO_SECONDS = 60.0  # longer files are streamed and run through the model in windows
WINDOW_SECONDS = 20.0  # the part of each window whose output is kept
CONTEXT_SECONDS = 2.0  # extra audio either side of a window, so the bidirectional layers see past its edges
PAUSE_SECONDS = 0.3  # long files are decoded in segments cut at pauses at least this long ...
SEGMENT_SECONDS = 30.0  # ... each segment as many pauses long as fit in this (one longer stretch of speech stays
# whole): beam search memory stays bounded, and a file this short decodes exactly as a whole-file pass
READ_AHEAD = 4  # transcribe() reads this many batches of files, sorts them by length, then batches them:
# padding 1.23x the audio on AN4 test instead of 1.79x for batches in input order


@dataclass(frozen=True)
class Transcript:
    audio: str  # the path as given (or as found under a given directory)
    text: str = ""
    duration: float = 0.0  # seconds
    words: tuple[WordTiming, ...] = ()
    error: str | None = None  # one line naming the file and the problem
    note: str | None = None  # one line worth telling the user (not an error), e.g. a low sample rate
    warnings: tuple[str, ...] = ()  # lines naming the file and what the reader corrected (asr.audio):
    # a truncated file, samples far above full scale, channels that cancel in the downmix


class Transcriber:
    """Runs a model (a Backend) over audio files, `batch_size` files at a time.

        transcriber = Transcriber(load_model("model.pt").to("cuda"))   # or asr.load("model.pt", device="cuda")
        transcriber.transcribe_file("talk.wav").text
    decoding: how to decode (default: the model's own, i.e. what it was tuned for).
    """

    def __init__(self, backend: Backend, batch_size: int = 16, decoding: DecodeConfig | None = None) -> None:
        self.backend = backend
        self.batch_size = batch_size
        self.decoding = decoding or backend.decoding
        self.decode = backend.decoder(self.decoding)
        self.front_end = backend.front_end
        self.forward: Forward = backend.forward

    def transcribe_file(self, path: str | Path) -> Transcript:
        """One file's Transcript; a file that cannot be read raises its ASRError."""
        (transcript,) = self.transcribe([(str(path), None)])
        if transcript.error is not None:
            raise ASRError(transcript.error)
        return transcript

    def transcribe_long(self, path: str) -> Transcript:
        """A long file: streamed features, windowed inference with context, then decoding one
        segment at a time, cut at pauses, each at most SEGMENT_SECONDS where the pauses allow it
        (see split_at_pauses). The reader's warnings (asr.audio) are the Transcript's.

        Memory stays bounded by the window and segment sizes (plus the log-probs, ~13 MB per hour).
        """
        config = self.backend.features
        num_samples = 0

        def counted(blocks):
            nonlocal num_samples
            for samples in blocks:
                num_samples += len(samples)
                yield samples

        frame = config.hop_ms / 1000
        warnings: list[str] = []
        blocks = counted(stream_audio(path, config.sample_rate, warnings=warnings))
        log_probs = windowed_log_probs(
            self.forward, self.backend.frame_stack, self.front_end.stream(blocks),
            round(WINDOW_SECONDS / frame), round(CONTEXT_SECONDS / frame),
        )
        duration = num_samples / config.sample_rate
        vocab = self.backend.vocab
        separator_id = vocab.separator_id  # None for BPE: each segment's first piece starts a word
        tokens: list[int] = []
        frames: list[int] = []
        frame_seconds = self.backend.frame_seconds
        for start, end in split_at_pauses(log_probs, round(PAUSE_SECONDS / frame_seconds),
                                          round(SEGMENT_SECONDS / frame_seconds)):
            (segment,) = self.decode(log_probs[None, start:end], np.array([end - start]))
            if segment.tokens:
                if tokens and separator_id is not None:
                    tokens.append(separator_id)  # segments are separate words
                    frames.append(start)
                tokens += segment.tokens
                frames += [start + f for f in segment.frames]
        hypothesis = Hypothesis(tokens, frames)
        words = word_timings(hypothesis, log_probs, vocab, self.backend.frame_seconds, duration)
        return Transcript(path, vocab.decode(hypothesis.tokens), duration, tuple(words), warnings=tuple(warnings))

    def features(self, path: str, warnings: list[str] | None = None) -> tuple:
        """Normalised log-mel feats (T, F) of one file (the front end's array type) and its duration in
        seconds; what the reader corrected is added to `warnings` (see asr.audio.load_audio)."""
        rate = self.backend.features.sample_rate
        samples = load_audio(path, rate, warnings)
        return self.front_end(samples), len(samples) / rate

    def log_probs(self, paths: Sequence[str]) -> list[np.ndarray]:
        """Model log-probs (T', V) for each file, batched by length (errors raise)."""
        feats = [self.features(p)[0] for p in paths]
        order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
        out: list[np.ndarray | None] = [None] * len(feats)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            log_probs, out_lens = self.forward([feats[i] for i in chunk])
            for row, i in enumerate(chunk):
                out[i] = log_probs[row, : out_lens[row]]
        return out  # type: ignore[return-value]

    def decode_features(
        self, feats: Sequence, durations: Sequence[float] | None = None
    ) -> list[tuple[str, list[WordTiming]]]:
        """(text, word timings) for normalised feats [(T, F)], decoded as one padded batch."""
        log_probs, out_lens = self.forward(feats)
        results = []
        for i, hypothesis in enumerate(self.decode(log_probs, out_lens)):
            duration = durations[i] if durations is not None else None
            words = word_timings(hypothesis, log_probs[i], self.backend.vocab, self.backend.frame_seconds, duration)
            results.append((self.backend.vocab.decode(hypothesis.tokens), words))
        return results

    def rate_note(self, path: str, rate: int) -> str | None:
        """A note when a file's sample rate is below the model's: its upper band is empty."""
        model_rate = self.backend.features.sample_rate
        if rate >= model_rate:
            return None
        return (f"{path}: sample rate {rate} Hz is below the model's {model_rate} Hz (nothing above {rate // 2} Hz, "
                "e.g. telephone audio); it is upsampled and transcribed")

    def transcribe(self, inputs: Iterable[tuple[str, str | None]], in_order: bool = True) -> Iterator[Transcript]:
        """(path, error-or-None) pairs (of asr.paths.expand_inputs' AudioInputs) -> Transcripts.

        Files are read READ_AHEAD batches at a time and batched by length within that group (a
        padded batch costs its longest file times its size); files longer than LONG_AUDIO_SECONDS
        are streamed after the group's others. in_order: Transcripts in input order, a group at a
        time. Otherwise each comes as soon as it is known (what `asr transcribe` prints): a file
        that cannot be read at once, the others a batch at a time (in input order within it), each
        long file when it is done; so no file holds back the output of the others.
        """
        group: list[tuple[str, str | None]] = []
        for item in inputs:
            group.append(item)
            if len(group) == self.batch_size * READ_AHEAD:
                yield from self._transcribe_group(group, in_order)
                group = []
        if group:
            yield from self._transcribe_group(group, in_order)

    def _transcribe_group(self, group: list[tuple[str, str | None]], in_order: bool) -> Iterator[Transcript]:
        results: list[Transcript | None] = [None] * len(group)

        def done(index: int, transcript: Transcript) -> Iterator[Transcript]:
            results[index] = transcript
            if not in_order:
                yield transcript

        ready: list[tuple[int, object, float, str | None, tuple[str, ...]]] = []
        long_files: list[tuple[int, str, str | None]] = []
        for index, (path, error) in enumerate(group):
            if error is not None:
                yield from done(index, Transcript(audio=path, error=error))
                continue
            try:
                num_samples, rate = audio_info(path)
                note = self.rate_note(path, rate)
                if num_samples / rate > LONG_AUDIO_SECONDS:
                    long_files.append((index, path, note))
                    continue
                warnings: list[str] = []
                feats, duration = self.features(path, warnings)
            except ASRError as err:
                yield from done(index, Transcript(audio=path, error=str(err)))
                continue
            ready.append((index, feats, duration, note, tuple(warnings)))
        ready.sort(key=lambda item: item[1].shape[0])
        for start in range(0, len(ready), self.batch_size):
            batch = ready[start:start + self.batch_size]
            decoded = self.decode_features([f for _, f, _, _, _ in batch], [d for _, _, d, _, _ in batch])
            finished = sorted(zip(batch, decoded), key=lambda pair: pair[0][0])
            for (index, _, duration, note, warnings), (text, words) in finished:
                yield from done(index, Transcript(group[index][0], text, duration, tuple(words), note=note,
                                                  warnings=warnings))
        for index, path, note in long_files:
            try:
                transcript = replace(self.transcribe_long(path), note=note)
            except ASRError as err:
                transcript = Transcript(audio=path, error=str(err))
            yield from done(index, transcript)
        if in_order:
            yield from results  # type: ignore[misc]


def windowed_log_probs(
    forward: Forward,
    frame_stack: int,
    feat_blocks: Iterable,
    window_frames: int,
    context_frames: int,
    windows_per_batch: int = 4,
) -> np.ndarray:
    """Run a model (its Forward; it stacks frame_stack input frames into one output frame) over a
    stream of feature blocks [(t, F)] in overlapping windows.

    Each window keeps the output of its `window_frames` core and sees `context_frames` of input
    either side (fewer at the ends); both are rounded up to whole stacked frames. Windows run in
    padded batches. Returns log_probs (T', V), T' = ceil(T / frame_stack), matching
    a whole-file pass wherever the context is long enough for the recurrent state to settle.
    """
    stack = frame_stack
    core_size = -(-window_frames // stack) * stack
    context = -(-context_frames // stack) * stack
    buffer, buffer_start, next_core = None, 0, 0
    pending: list[tuple[np.ndarray, int, int]] = []  # (window feats, left context, core length)
    outputs: list[np.ndarray] = []

    def run_pending() -> None:
        log_probs, _ = forward([w for w, _, _ in pending])
        for row, (_, left, core) in enumerate(pending):
            start = left // stack
            outputs.append(log_probs[row, start : start + -(-core // stack)])
        pending.clear()

    def cut_windows(final: bool) -> None:
        nonlocal buffer, buffer_start, next_core
        available = buffer_start + (buffer.shape[0] if buffer is not None else 0)
        while next_core < available and (final or available >= next_core + core_size + context):
            low = max(0, next_core - context)
            high = min(available, next_core + core_size + context)
            core = min(next_core + core_size, available) - next_core
            pending.append((buffer[low - buffer_start : high - buffer_start], next_core - low, core))
            next_core += core_size
            drop = max(0, next_core - context - buffer_start)
            buffer, buffer_start = buffer[drop:], buffer_start + drop
            if len(pending) == windows_per_batch:
                run_pending()

    for block in feat_blocks:
        if block.shape[0] == 0:
            continue
        block = as_numpy(block)
        buffer = block if buffer is None else np.concatenate([buffer, block])
        cut_windows(final=False)
    if buffer is None:
        raise ASRError("no audio frames to transcribe")
    cut_windows(final=True)
    if pending:
        run_pending()
    return np.concatenate(outputs)


def split_at_pauses(log_probs, min_pause_frames: int, max_segment_frames: int | None = None) -> list[tuple[int, int]]:
    """Cut log_probs (T, V) into segments at pauses: runs of at least min_pause_frames frames whose
    best token is the blank, cut in their middle. Returns [(start, end)) covering all T frames.
    max_segment_frames: consecutive pause-delimited pieces are joined while the segment stays within
    it (a single longer piece stays whole); None cuts at every pause.

    Decoding segment by segment keeps beam search memory bounded on hours of audio; greedy results
    are unchanged (cuts are inside blanks). The LM starts each segment afresh, so segments only as
    short as memory needs: cutting a short file at each pause changed its beam + LM words.
    """
    blank = (as_numpy(log_probs).argmax(axis=-1) == BLANK_ID).tolist()
    cuts, run_start = [], None
    for t, is_blank in enumerate(blank + [False]):
        if is_blank and run_start is None:
            run_start = t
        elif not is_blank and run_start is not None:
            if t - run_start >= min_pause_frames and run_start > 0 and t < len(blank):
                cuts.append((run_start + t) // 2)
            run_start = None
    if max_segment_frames is not None:
        cuts = _joined_within(cuts, len(blank), max_segment_frames)
    bounds = [0, *cuts, len(blank)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _joined_within(cuts: list[int], total: int, max_frames: int) -> list[int]:
    """The cuts (ascending frames in [0, total)) kept so that the pieces between them are joined
    greedily, left to right, into segments of at most max_frames where the pieces allow it."""
    kept, start = [], 0
    for cut, after in zip(cuts, [*cuts[1:], total]):
        if after - start > max_frames:  # the piece after this cut would overfill the segment
            kept.append(cut)
            start = cut
    return kept


FORMATS = ("text", "jsonl", "srt", "vtt", "ctm")
CUE_MAX_WORDS = 10  # subtitle cues break after this many words ...
CUE_MAX_GAP = 0.6  # ... or at a pause longer than this (seconds)


def format_transcript(transcript: Transcript, fmt: str) -> str:
    """One transcript as text in `fmt` (no trailing newline for line formats, full document for srt/vtt).

    A record stays one line whatever the file is called: text and CTM print the name escaped
    (asr.paths.printable; CTM's spaces too, as they separate its fields), JSONL keeps it exact in
    JSON escapes."""
    if fmt == "text":
        return f"{printable(transcript.audio)}\t{transcript.text}"
    if fmt == "jsonl":
        record = {
            "id": transcript_id(transcript.audio),  # what `asr score` matches a manifest's ids with
            "audio": transcript.audio,
            "text": transcript.text,
            "words": [{"word": w.word, "start": w.start, "end": w.end, "confidence": w.confidence} for w in transcript.words],
            "duration": round(transcript.duration, 3),
        }
        line = json.dumps(record, ensure_ascii=False)
        if not line.isprintable():  # a name that is not valid UTF-8: JSON's \udcNN escapes keep its bytes
            line = json.dumps(record)
        return line
    if fmt == "ctm":  # NIST CTM: <file> <channel> <start> <duration> <word> <confidence>
        name = printable(Path(transcript.audio).stem, spaces=True)  # one field: spaces would split it
        return "\n".join(
            f"{name} 1 {w.start:.2f} {w.end - w.start:.2f} {w.word} {w.confidence:.2f}" for w in transcript.words
        )
    if fmt in ("srt", "vtt"):
        cues = []
        for number, words in enumerate(subtitle_cues(transcript.words), start=1):
            span = f"{_timestamp(words[0].start, fmt)} --> {_timestamp(words[-1].end, fmt)}"
            text = " ".join(w.word for w in words)
            cues.append(f"{number}\n{span}\n{text}\n" if fmt == "srt" else f"{span}\n{text}\n")
        header = "WEBVTT\n\n" if fmt == "vtt" else ""
        return header + "\n".join(cues)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def format_output_file(transcript: Transcript, fmt: str) -> str:
    """The contents of one input's own output file (--output-dir), ending in a newline: `fmt` as in
    format_transcript, except that a text file holds the transcript alone (its name gives the audio)."""
    text = transcript.text if fmt == "text" else format_transcript(transcript, fmt)
    return text if text.endswith("\n") else text + "\n"


def subtitle_cues(words: Sequence[WordTiming]) -> list[list[WordTiming]]:
    """Group words into cues at pauses longer than CUE_MAX_GAP or every CUE_MAX_WORDS words."""
    cues: list[list[WordTiming]] = []
    for word in words:
        if cues and len(cues[-1]) < CUE_MAX_WORDS and word.start - cues[-1][-1].end <= CUE_MAX_GAP:
            cues[-1].append(word)
        else:
            cues.append([word])
    return cues


def _timestamp(seconds: float, fmt: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    separator = "," if fmt == "srt" else "."
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"
