"""Any input, any batch: generated malformed and unusual files and names through the command line.

A seeded generator (deterministic: a failure reproduces) writes audio files that are broken in
known ways, unusual but usable, or mutated at random, under names no one should need but some
have (bytes that are not UTF-8, line breaks, tabs, spaces), mixed with copies of the bundled
example; one in-process `asr transcribe` run (the bundled model) takes them all. Whatever a file
holds: no traceback, each input exactly once in the output (a record on stdout, or one
`asr: error:` line on stderr naming it), good files transcribed exactly as the example alone,
exit 1, and output as each file is known (a bound on the time between outputs). The same for
`asr data validate` on malformed Kaldi directories and `asr score` on mismatched files; then each
case of the issue on its own.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import asr.transcribe
from asr.audio import PEAK_LIMIT, AudioError, load_audio, promised_frames
from asr.cli import main
from asr.paths import printable

from .conftest import REPO, write_tone

EXAMPLE = REPO / "examples" / "an4_test_example.wav"
EXAMPLE_BYTES = EXAMPLE.read_bytes()
HEADER = EXAMPLE_BYTES.index(b"data") + 8  # 44: a canonical PCM WAV header
RATE_FIELD, BYTE_RATE_FIELD = slice(24, 28), slice(28, 32)
MAX_GAP_SECONDS = 15.0  # the longest wait for the next output line of a run: no file holds a batch hostage
MAX_RUN_SECONDS = 45.0  # a whole fuzz batch (about 50 files of at most 2.4 s) on two slow, busy cores


# --- running the command line in-process, with a clock on every output line ----------------------


@dataclass
class Line:
    seconds: float  # since the run started
    stream: str  # "out" or "err"
    text: str


class _Stream(io.TextIOBase):
    """A text stream like a terminal's: UTF-8 (strict, so a name that is not valid UTF-8 printed raw
    fails here as it does on a real stdout), each completed line stamped with the time."""

    def __init__(self, name: str, lines: list[Line], started: float) -> None:
        self.name, self.lines, self.started, self.pending = name, lines, started, ""

    def write(self, text: str) -> int:
        text.encode("utf-8")  # raises UnicodeEncodeError for lone surrogates, as sys.stdout would
        self.pending += text
        *done, self.pending = self.pending.split("\n")
        now = time.monotonic() - self.started
        self.lines.extend(Line(now, self.name, line) for line in done)
        return len(text)

    def isatty(self) -> bool:
        return False


@dataclass
class Run:
    status: int
    lines: list[Line]
    seconds: float

    @property
    def out(self) -> list[str]:
        return [line.text for line in self.lines if line.stream == "out"]

    @property
    def err(self) -> list[str]:
        return [line.text for line in self.lines if line.stream == "err"]

    @property
    def said(self) -> list[str]:
        """stderr without notes (`asr: note: ...`: what the model covers, a low sample rate)."""
        return [line for line in self.err if not line.startswith("asr: note: ")]

    def errors_naming(self, path: str) -> list[str]:
        return [line for line in self.err if line.startswith(f"asr: error: {printable(path)}: ")]

    def warnings_naming(self, path: str) -> list[str]:
        return [line for line in self.err if line.startswith(f"asr: warning: {printable(path)}: ")]


def run(*argv: str) -> Run:
    """asr.cli.main(argv) with stdout and stderr captured line by line; an exception fails the test."""
    lines: list[Line] = []
    started = time.monotonic()
    out, err = _Stream("out", lines, started), _Stream("err", lines, started)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    out.write("\n" if out.pending else "")
    err.write("\n" if err.pending else "")
    return Run(status, lines, time.monotonic() - started)


def assert_clean(result: Run) -> None:
    """Every stderr line is a one-line message of the CLI's own kinds (no traceback, no numpy warning)."""
    kinds = ("asr: error: ", "asr: warning: ", "asr: note: ")
    for line in result.err:
        assert line.startswith(kinds) or line.endswith("input(s) failed"), line
    assert not any("Traceback" in line or "RuntimeWarning" in line for line in result.err)


@pytest.fixture(scope="module")
def example_text() -> str:
    """The bundled model's transcript of the example alone: what every good copy must get."""
    result = run("transcribe", str(EXAMPLE))
    assert result.status == 0
    (line,) = result.out
    return line.split("\t", 1)[1]


# --- the generator -------------------------------------------------------------------------------

EXAMPLE_SAMPLES, EXAMPLE_RATE = sf.read(EXAMPLE, dtype="float64")


def with_field(data: bytes, where: slice, value: int) -> bytes:
    """WAV bytes with one little-endian header field replaced."""
    return data[: where.start] + value.to_bytes(where.stop - where.start, "little") + data[where.stop:]


def with_rate(rate: int) -> bytes:
    return with_field(with_field(EXAMPLE_BYTES, RATE_FIELD, rate), BYTE_RATE_FIELD, min(2 * rate, 2**32 - 1))


def write_bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def write_samples(samples: np.ndarray, subtype: str, rate: int = EXAMPLE_RATE):
    return lambda path: sf.write(path, samples, rate, subtype=subtype)


def non_finite(value: float) -> np.ndarray:
    samples = EXAMPLE_SAMPLES.copy()
    samples[1000:1010] = value
    return samples


def mutated(rng: random.Random) -> bytes:
    """The example with a random kind of damage: bytes overwritten in the header or the data, cut
    anywhere, junk inserted, or a header field set to a random value."""
    data = bytearray(EXAMPLE_BYTES)
    kind = rng.choice(["header_bytes", "data_bytes", "cut", "insert", "field"])
    if kind == "header_bytes":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(HEADER)] = rng.randrange(256)
    elif kind == "data_bytes":
        for _ in range(rng.randint(1, 200)):
            data[rng.randrange(HEADER, len(data))] = rng.randrange(256)
    elif kind == "cut":
        del data[rng.randrange(1, len(data)):]
    elif kind == "insert":
        at = rng.randrange(len(data))
        data[at:at] = rng.randbytes(rng.randint(1, 64))
    else:
        start = rng.choice([4, 16, 20, 22, 24, 28, 32, 34, 40])
        width = 2 if start in (20, 22, 32, 34) else 4
        data[start:start + width] = rng.randbytes(width)
    return bytes(data)


@dataclass
class Batch:
    good: list[str] = field(default_factory=list)  # transcribed exactly as the example alone
    usable: list[str] = field(default_factory=list)  # transcribed (any text)
    bad: list[str] = field(default_factory=list)  # one error line each
    unknown: list[str] = field(default_factory=list)  # random damage: transcribed or refused, once
    warned: list[str] = field(default_factory=list)  # a warning line names them
    arguments: list[str] = field(default_factory=list)  # the command line's paths

    @property
    def inputs(self) -> list[str]:
        return self.good + self.usable + self.bad + self.unknown


ODD_NAMES = [  # names as bytes: the file system takes any byte but / and NUL
    b"plain.wav", b"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac.wav", b"not utf-8 \xff\xfe.wav", b"new\nline.wav",
    b"tab\there.wav", b"  leading and trailing spaces  .wav", b"UPPER.WAV", b"semi;colon 'quote\".wav",
    b"\x1b[31mescape.wav", b"dots...wav",
]


def make_batch(root: Path, seed: int, mutations: int = 16) -> Batch:
    """Write the fuzz batch under root; see Batch for what each kind of input must give."""
    rng = random.Random(seed)
    batch = Batch()
    counter = iter(range(10_000))

    def add(kind: list[str], make, name: bytes = b"f.wav", folder: Path = root) -> str:
        path = os.fsdecode(os.path.join(os.fsencode(folder), b"%02d_" % next(counter) + name))
        if make is not None:
            make(Path(path))
        kind.append(path)
        if folder == root:
            batch.arguments.append(path)
        return path

    for name in ODD_NAMES:  # the example itself under every odd name
        add(batch.good, write_bytes(EXAMPLE_BYTES), name)
    x = EXAMPLE_SAMPLES
    add(batch.good, write_samples(np.stack([x, x], axis=1), "PCM_16"), b"stereo.wav")
    add(batch.good, write_samples(np.stack([x] * 6, axis=1), "PCM_16"), b"six_channels.wav")
    batch.warned += [
        add(batch.good, write_samples(x * 1e30, "FLOAT"), b"float_times_1e30.wav"),
        add(batch.good, write_samples(x * 1e300, "DOUBLE"), b"double_times_1e300.wav"),
        add(batch.good, write_samples(np.stack([x, -x], axis=1), "PCM_16"), b"antiphase.wav"),
        add(batch.usable, write_bytes(EXAMPLE_BYTES[: rng.randrange(HEADER + 2000, len(EXAMPLE_BYTES) - 2000)]),
            b"truncated in the data.wav"),
    ]
    add(batch.usable, write_samples(x * 50, "FLOAT"), b"float_times_50.wav")  # loud, but under PEAK_LIMIT
    for rate in (8000, 44100):
        add(batch.usable, lambda p, r=rate: write_tone(p, seconds=0.5, rate=r), b"tone_%d.wav" % rate)
    add(batch.usable, write_samples(np.zeros(16000), "PCM_16"), b"silence.wav")

    add(batch.bad, write_bytes(b""), b"empty.wav")
    add(batch.bad, write_bytes(EXAMPLE_BYTES[:HEADER]), b"header only.wav")
    add(batch.bad, write_bytes(EXAMPLE_BYTES[: rng.randrange(1, HEADER - 8)]), b"cut in the header.wav")
    add(batch.bad, write_bytes(rng.randbytes(4096)), b"random bytes.wav")
    add(batch.bad, write_bytes(b"RIFF" + rng.randbytes(2000)), b"riff then noise.wav")
    add(batch.bad, write_bytes(b"just some text\n" * 50), b"text.flac")
    for rate in (1, 3999, 384_001, 2**31 - 1):
        add(batch.bad, write_bytes(with_rate(rate)), b"rate_%d.wav" % rate)
    add(batch.bad, write_bytes(with_field(EXAMPLE_BYTES, slice(22, 24), 0)), b"zero channels.wav")
    add(batch.bad, write_samples(non_finite(math.nan), "FLOAT"), b"nan.wav")
    add(batch.bad, write_samples(non_finite(math.inf), "DOUBLE"), b"inf.wav")
    add(batch.bad, write_samples(x[:100], "PCM_16"), b"too short.wav")
    add(batch.bad, None, b"missing.wav")
    add(batch.bad, lambda p: p.symlink_to(root / "nowhere.wav"), b"dangling link.wav")
    add(batch.bad, lambda p: p.write_bytes(b"\x00" * 300 + EXAMPLE_BYTES), b"leading zeros.wav")
    for _ in range(mutations):
        add(batch.unknown, write_bytes(mutated(rng)), b"mutated.wav")

    folder = root / "a folder"  # a directory argument: its odd names and dangling link come from the search
    folder.mkdir()
    batch.arguments.append(str(folder))
    add(batch.good, write_bytes(EXAMPLE_BYTES), b"inside \xff.wav", folder)
    add(batch.bad, lambda p: p.symlink_to("gone.flac"), b"link.flac", folder)
    (folder / "notes.txt").write_text("not audio, not reported")
    return batch


# --- the fuzz runs -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_a_fuzzed_batch_is_transcribed_whole_with_one_line_per_bad_file(seed, tmp_path, example_text):
    batch = make_batch(tmp_path, seed)
    result = run("transcribe", "--format", "jsonl", *batch.arguments)

    assert result.status == 1
    assert_clean(result)
    records = [json.loads(line) for line in result.out]
    transcribed = [r["audio"] for r in records]
    assert len(transcribed) == len(set(transcribed))
    errored = {path for path in batch.inputs if result.errors_naming(path)}
    for path in batch.inputs:  # each input once: a record, or one error line
        assert (path in transcribed) + len(result.errors_naming(path)) == 1, (printable(path), result.err)
    assert set(transcribed) | errored == set(batch.inputs)
    texts = {r["audio"]: r["text"] for r in records}
    for path in batch.good:
        assert texts.get(path) == example_text, (printable(path), result.errors_naming(path))
    assert set(batch.usable) <= set(transcribed)
    assert set(batch.bad) <= errored
    for path in batch.warned:
        (warning,) = result.warnings_naming(path)
    assert result.err[-1] == f"asr: {len(errored)} of {len(batch.inputs)} input(s) failed"
    gaps = np.diff([0.0] + [line.seconds for line in result.lines])
    assert gaps.max() < MAX_GAP_SECONDS and result.seconds < MAX_RUN_SECONDS, (gaps.max(), result.seconds)


def test_the_readers_take_any_bytes_without_raising_anything_but_an_audio_error(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "x.wav"
    for _ in range(150):
        data = mutated(rng) if rng.random() < 0.8 else rng.randbytes(rng.randrange(0, 3000))
        path.write_bytes(data)
        frames = promised_frames(path)  # never raises
        assert frames is None or frames >= 0
        try:
            samples = load_audio(path, warnings=[])
        except AudioError as err:
            assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
            continue
        assert samples.dtype == np.float32 and np.isfinite(samples).all()
        assert np.abs(samples).max(initial=0) <= PEAK_LIMIT


def write_data_dir(folder: Path, audio: Path, rng: random.Random) -> tuple[set[str], list[tuple[str, int]]]:
    """A Kaldi data directory with some good utterances and damaged lines at random. Returns (the
    good utterance ids, (file name, line) of every damaged line)."""
    folder.mkdir()
    wav, text, spk = [], [], []
    good, damaged = set(), []
    long_name = "x" * 300 + ".wav"
    for n in range(12):
        utt = f"utt{n:02d}"
        kind = rng.choice(["good", "good", "good", "text_not_utf8", "pipe", "dup_wav", "dup_text", "long_abs",
                           "long_rel", "missing", "junk", "no_path", "empty_text"])
        wav_line, text_line = f"{utt} {audio}".encode(), f"{utt} YES".encode()
        if kind == "text_not_utf8":
            text_line = f"{utt} YES ".encode() + bytes([0xFF, 0xC3]) + b" NO"
        elif kind == "pipe":
            wav_line = f"{utt} sox {audio} -t wav - |".encode()
        elif kind == "long_abs":
            wav_line = f"{utt} {audio.parent / long_name}".encode()
        elif kind == "long_rel":
            wav_line = f"{utt} sub/{long_name}".encode()
        elif kind == "missing":
            wav_line = f"{utt} {audio.parent / 'missing.wav'}".encode()
        elif kind == "junk":
            wav_line = f"{utt} ".encode() + bytes(rng.randrange(128, 256) for _ in range(20))
        elif kind == "no_path":
            wav_line = utt.encode()
        elif kind == "empty_text":
            text_line = utt.encode()
        wav.append(wav_line)
        text.append(text_line)
        spk.append(f"{utt} spk{n % 3}".encode())
        if kind == "good":
            good.add(utt)
        elif kind in ("text_not_utf8", "empty_text"):
            damaged.append(("text", len(text)))
        elif kind in ("dup_wav", "dup_text"):
            good.add(utt)  # the first line stands; the repeat is the problem
            lines, repeat, name = (wav, wav_line, "wav.scp") if kind == "dup_wav" else (text, text_line, "text")
            lines.append(repeat)
            damaged.append((name, len(lines)))
        else:
            damaged.append(("wav.scp", len(wav)))
    for name, lines in (("wav.scp", wav), ("text", text), ("utt2spk", spk)):
        (folder / name).write_bytes(b"\n".join(lines) + b"\n")
    return good, damaged


def test_validate_reports_every_damaged_line_of_fuzzed_data_dirs(tmp_path):
    audio = tmp_path / "audio.wav"
    audio.write_bytes(EXAMPLE_BYTES)
    for seed in range(8):
        folder = tmp_path / f"data{seed}"
        good, damaged = write_data_dir(folder, audio, random.Random(seed))
        result = run("data", "validate", str(folder))
        assert_clean(result)
        assert result.status == (1 if damaged or not good else 0), (seed, result.err)
        assert result.out[-1].startswith(f"{folder}: {len(good)} usable utterances"), (seed, result.out, result.err)
        for name, number in damaged:
            where = f"{folder / name}:{number}: "
            assert any(where in line for line in result.err), (seed, where, result.err)


def test_score_on_fuzzed_mismatched_files_gives_a_number_or_one_error(tmp_path):
    rng = random.Random(3)
    words = ["YES", "NO", "GO", "A B", "ENTER SIX"]
    outcomes = []
    for attempt in range(40):
        files = []
        for side in ("ref", "hyp"):
            ids = rng.sample([f"u{i}" for i in range(8)], rng.randint(0, 8))
            jsonl, empty = rng.random() < 0.5, rng.choice([0.0, 0.3, 1.0])  # share of empty transcripts

            def words_or_nothing() -> str:
                return "" if rng.random() < empty else rng.choice(words)

            lines = [json.dumps({"id": i, "text": words_or_nothing()}).encode() if jsonl
                     else f"{i} {words_or_nothing()}".encode() for i in ids]
            damage = rng.choice(["none", "none", "not_utf8", "duplicate", "bad_json", "wrong_type"])
            if damage == "not_utf8" and lines:
                lines[0] += b" \xff\xfe"
            elif damage == "duplicate" and lines:
                lines.append(lines[0])
            elif damage == "bad_json":
                lines.append(b'{"id": "zz", "text": ')
            elif damage == "wrong_type":
                lines.append(b'{"id": 5, "text": ["YES"]}')
            path = tmp_path / f"{attempt}.{side}"
            path.write_bytes(b"\n".join(lines) + b"\n")
            files.append(path)
        scores = tmp_path / f"{attempt}.json"
        result = run("score", "--ref", str(files[0]), "--hyp", str(files[1]), "--json", str(scores))
        assert_clean(result)
        if result.status == 0:
            wer = float(result.out[0].split()[1].rstrip("%"))
            assert math.isfinite(wer)
            json.loads(scores.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in --json"))
        else:
            assert result.status == 1 and any(line.startswith("asr: error: ") for line in result.err)
            outcomes.append(next(line for line in result.err if line.startswith("asr: error: ")))
    assert len(outcomes) < 40 and any("reference transcript" in line and "is empty" in line for line in outcomes)


# --- each case of the issue on its own -----------------------------------------------------------


def test_a_name_that_is_not_utf8_is_transcribed_and_printed_escaped(tmp_path, example_text):
    good = tmp_path / "good.wav"
    good.write_bytes(EXAMPLE_BYTES)
    bad = os.fsdecode(os.fsencode(tmp_path) + b"/bad\xff.wav")
    Path(bad).write_bytes(EXAMPLE_BYTES)
    for argv in ([str(good), bad], [str(tmp_path)]):
        result = run("transcribe", *argv)
        assert result.status == 0, result.err
        assert sorted(result.out) == sorted([f"{good}\t{example_text}", f"{tmp_path}/bad\\xff.wav\t{example_text}"])


def test_jsonl_keeps_a_name_that_is_not_utf8_exactly(tmp_path, example_text):
    bad = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.wav")  # Latin-1, as old archives hold
    Path(bad).write_bytes(EXAMPLE_BYTES)
    result = run("transcribe", "--format", "jsonl", bad)
    (record,) = map(json.loads, result.out)
    assert os.fsencode(record["audio"]) == os.fsencode(bad) and record["text"] == example_text


@pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy's overflow warnings included
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_huge_and_antiphase_samples_give_the_clean_transcript_with_a_warning(tmp_path, monkeypatch, streamed):
    if streamed:  # the example (2.4 s) goes through the long-file path: streamed blocks, windowed model
        monkeypatch.setattr(asr.transcribe, "LONG_AUDIO_SECONDS", 1.0)
    x = EXAMPLE_SAMPLES
    clean, huge, double, anti = (tmp_path / n for n in ("clean.wav", "huge.wav", "double.wav", "anti.wav"))
    sf.write(clean, x, EXAMPLE_RATE, subtype="PCM_16")
    sf.write(huge, x * 1e30, EXAMPLE_RATE, subtype="FLOAT")
    sf.write(double, x * 1e300, EXAMPLE_RATE, subtype="DOUBLE")
    sf.write(anti, np.stack([x, -x], axis=1), EXAMPLE_RATE, subtype="PCM_16")
    result = run("transcribe", *map(str, (clean, huge, double, anti)))
    assert result.status == 0 and len(result.out) == 4
    assert_clean(result)
    texts = dict(line.split("\t") for line in result.out)
    assert texts[str(huge)] == texts[str(double)] == texts[str(anti)] == texts[str(clean)] != ""
    (warning,) = result.warnings_naming(str(huge))
    assert "dB above full scale" in warning and "scaled down to peak 1" in warning
    (warning,) = result.warnings_naming(str(anti))
    assert "channels cancel when averaged" in warning and "channel 1 alone" in warning
    assert result.warnings_naming(str(clean)) == []


def test_a_truncated_wav_is_transcribed_with_a_warning_naming_it(tmp_path):
    cut = tmp_path / "cut.wav"
    cut.write_bytes(EXAMPLE_BYTES[: HEADER + 2 * 16000])  # the header promises 2.4 s, 1 s is there
    result = run("transcribe", str(cut))
    assert result.status == 0 and len(result.out) == 1
    (warning,) = result.warnings_naming(str(cut))
    assert "truncated: its header promises 2.40 s, the file holds 1.00 s" in warning


def test_an_absurd_sample_rate_is_refused_at_once_and_the_batch_goes_on(tmp_path, example_text):
    one_hertz = tmp_path / "one_hertz.wav"  # 128 KB "lasting" 64,000 s
    one_hertz.write_bytes(with_field(with_field(EXAMPLE_BYTES[:HEADER] + bytes(128_000), RATE_FIELD, 1),
                                     BYTE_RATE_FIELD, 2))
    good = tmp_path / "good.wav"
    good.write_bytes(EXAMPLE_BYTES)
    result = run("transcribe", str(one_hertz), str(good))
    assert result.status == 1 and result.seconds < 20
    (error,) = result.errors_naming(str(one_hertz))
    assert "sample rate 1 Hz in its header is not an audio rate (4000-384000 Hz)" in error
    assert result.out == [f"{good}\t{example_text}"]


def test_each_result_is_printed_as_soon_as_it_is_known(tmp_path, monkeypatch, example_text):
    """A long file first in the batch holds back neither a bad file's error nor a short file's text."""
    monkeypatch.setattr(asr.transcribe, "LONG_AUDIO_SECONDS", 2.0)  # the example (2.4 s) is long, streamed
    long, short, bad = tmp_path / "long.wav", tmp_path / "short.wav", tmp_path / "bad.wav"
    long.write_bytes(EXAMPLE_BYTES)
    sf.write(short, EXAMPLE_SAMPLES[: int(1.5 * EXAMPLE_RATE)], EXAMPLE_RATE)
    bad.write_text("not audio")
    result = run("transcribe", str(long), str(bad), str(short))
    assert result.status == 1
    order = [line.text.split("\t")[0].split(": ")[-1 if line.stream == "out" else 2] for line in result.lines
             if line.stream == "out" or line.text.startswith("asr: error: ")]
    assert order == [str(bad), str(short), str(long)]
    assert result.out[-1] == f"{long}\t{example_text}"


def test_a_binary_file_as_lm_is_one_line_naming_it(untrained_model, tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(EXAMPLE_BYTES)
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": str(audio), "duration": 2.4, "text": "YES"}) + "\n")
    binary = tmp_path / "lm.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    result = run("tune-lm", "--model", str(untrained_model), "--manifest", str(manifest), "--lm", str(binary),
                 "--out", str(tmp_path / "out.pt"))
    assert result.status == 1
    assert result.said == [f"asr: error: {binary}: not an ARPA language model (ARPA is text; this file is not UTF-8 "
                          "text at byte 128); make one with `asr lm`"]


@pytest.mark.parametrize("table", ["csv", "jsonl"])
def test_a_table_naming_a_path_that_is_not_utf8_validates_and_imports(tmp_path, table):
    audio = os.fsencode(tmp_path) + b"/r\xe9cit.wav"
    Path(os.fsdecode(audio)).write_bytes(EXAMPLE_BYTES)
    source = tmp_path / f"corpus.{table}"
    if table == "csv":
        source.write_bytes(b"audio,text\n" + audio + b",yes\n")
    else:  # JSON holds the bytes as surrogate escapes; a lone "\ud800" names no file at all
        source.write_text(json.dumps({"audio": os.fsdecode(audio), "text": "yes"}) + "\n"
                          + '{"audio": "bad\\ud800.wav", "text": "no"}\n')
    result = run("data", "validate", str(source))
    assert_clean(result)
    assert result.out[-1].startswith(f"{source}: 1 usable utterances")
    if table == "jsonl":
        (error,) = result.said
        assert error.startswith(f"asr: error: {source}:2: ") and "not a possible file name" in error
    out = tmp_path / "train.jsonl"
    assert run("data", "import", str(source), "--out", str(out)).status == 0
    (record,) = map(json.loads, out.read_text(encoding="utf-8").splitlines())
    assert os.fsencode(record["audio"]) == audio


def test_a_csv_transcript_that_is_not_utf8_is_a_problem_of_its_line(tmp_path):
    (tmp_path / "a.wav").write_bytes(EXAMPLE_BYTES)
    source = tmp_path / "corpus.csv"
    source.write_bytes(b"audio,text\na.wav,yes\na.wav,caf\xe9\n")
    result = run("data", "validate", str(source))
    assert result.status == 1
    assert result.said == [f"asr: error: {source}:3: not valid UTF-8 (column 'text')"]


BAD_VALUES = [
    ("transcribe", "--lm-weight", "nan"), ("transcribe", "--lm-weight", "inf"), ("decode", "--rnnlm-weight", "nan"),
    ("transcribe", "--word-score", "nan"), ("transcribe", "--word-score", "-inf"),
    ("data validate", "--min-duration", "nan"), ("data validate", "--min-duration", "-1"),
    ("data import", "--max-duration", "-5"), ("data validate", "--max-duration", "inf"),
]


@pytest.mark.parametrize("command,option,value", BAD_VALUES, ids=[" ".join(v) for v in BAD_VALUES])
def test_a_non_finite_or_negative_setting_is_a_usage_error(command, option, value, capsys):
    rest = {"transcribe": ["x.wav"], "decode": ["--model", "m.pt", "--manifest", "m", "--out", "o"],
            "data validate": ["dir"], "data import": ["dir", "--out", "o.jsonl"]}[command]
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), f"{option}={value}", *rest])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert f"argument {option}: expected a" in last and repr(value) in last


def test_a_minimum_duration_above_the_maximum_is_refused(tmp_path):
    result = run("data", "validate", str(tmp_path), "--min-duration", "10", "--max-duration", "5")
    assert result.status == 1 and result.said == [
        "asr: error: --min-duration 10 is above --max-duration 5: every utterance would be left out"]


def test_score_with_only_empty_references_is_an_error_and_writes_no_infinity(tmp_path):
    ref, hyp, scores = tmp_path / "ref.jsonl", tmp_path / "hyp.txt", tmp_path / "scores.json"
    ref.write_text(json.dumps({"id": "a", "text": ""}) + "\n" + json.dumps({"id": "b", "text": " "}) + "\n")
    hyp.write_text("a GO\nb NO\n")
    result = run("score", "--ref", str(ref), "--hyp", str(hyp), "--json", str(scores))
    assert result.status == 1 and result.out == []
    (error,) = result.said
    assert error.startswith(f"asr: error: {ref}: every reference transcript (2) is empty: WER and CER are undefined")
    assert not scores.exists()


def test_line_breaks_tabs_and_spaces_in_names_keep_text_and_ctm_one_record_a_line(tmp_path, example_text):
    names = ["new\nline.wav", "tab\there.wav", "two words.wav"]
    for name in names:
        (tmp_path / name).write_bytes(EXAMPLE_BYTES)
    result = run("transcribe", str(tmp_path))
    assert sorted(result.out) == sorted(f"{tmp_path}/{e}\t{example_text}"
                                        for e in ("new\\nline.wav", "tab\\there.wav", "two words.wav"))
    ctm = run("transcribe", "--format", "ctm", str(tmp_path))
    assert ctm.status == 0
    words = len(example_text.split())
    assert len(ctm.out) == 3 * words
    assert all(len(line.split(" ")) == 6 for line in ctm.out)
    assert {line.split(" ")[0] for line in ctm.out} == {"new\\nline", "tab\\there", "two\\x20words"}


def test_a_dangling_link_in_an_input_folder_is_reported(tmp_path, example_text):
    (tmp_path / "good.wav").write_bytes(EXAMPLE_BYTES)
    (tmp_path / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    (tmp_path / "gone.txt").symlink_to(tmp_path / "deleted.txt")  # not audio: not reported
    result = run("transcribe", str(tmp_path))
    assert result.status == 1
    assert result.out == [f"{tmp_path}/good.wav\t{example_text}"]
    assert result.said == [f"asr: error: {tmp_path}/gone.wav: a symbolic link to {tmp_path}/deleted.wav, which "
                          "does not exist", "asr: 1 of 2 input(s) failed"]


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_file_name_too_long_in_wav_scp_is_a_problem_of_its_line(tmp_path, relative):
    audio = tmp_path / "a.wav"
    audio.write_bytes(EXAMPLE_BYTES)
    long_name = "x" * 300 + ".wav"
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"a {audio}\nb {long_name if relative else tmp_path / long_name}\n")
    (data / "text").write_text("a YES\nb NO\n")
    result = run("data", "validate", str(data))
    assert result.status == 1
    (error,) = result.said
    assert error.startswith(f"asr: error: {data / 'wav.scp'}:2: ")
    assert ("no such file" if relative else "File name too long") in error
    assert result.out == [f"{data}: 1 usable utterances (0.00 h, 0 speakers), 1 problem(s), 1 utterance(s) left out"]


def test_validate_exits_0_when_there_are_only_warnings(tmp_path):
    (tmp_path / "a.wav").write_bytes(EXAMPLE_BYTES)
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"b {tmp_path / 'a.wav'}\na {tmp_path / 'a.wav'}\n")  # not sorted
    (data / "text").write_text("b NO\na YES\n")
    result = run("data", "validate", str(data))
    assert result.status == 0
    assert [line.split(": ")[1] for line in result.err] == ["warning", "warning"]
    problem = run("data", "validate", str(data), "--max-duration", "1")  # both utterances left out
    assert problem.status == 1


def test_an_audio_file_given_as_model_names_it_and_says_what_a_model_is(tmp_path):
    wav = tmp_path / "some.wav"
    wav.write_bytes(EXAMPLE_BYTES)
    result = run("transcribe", "--model", str(wav), str(wav))
    assert result.status == 1
    (error,) = result.said
    assert error.startswith(f"asr: error: {wav}: not a readable checkpoint (")
    assert "a model is a .pt checkpoint from `asr train` or `asr export`, or a folder from `asr export --onnx`" in error
    assert "this is an audio file" in error
