"""Every bad input gets a clear error and nothing is lost: the bad-input catalogue, through the CLI.

Audio: every case is one file in the same `asr transcribe` run (bad files next to good ones), plus a
run of only the good ones; each case is then checked on its own. A good input is transcribed
(silence included); a bad one gets exactly one `asr: error: PATH: problem` line on stderr, and
the run exits 1. Manifests and transcripts go through `asr decode`, `asr train` and `asr score`,
and the AN4 recipe's prepare step gets a corrupted corpus.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from asr.errors import ASRError

from .conftest import ASR, TONE_SET, make_tone_experiment, run_asr, tiny_config, write_config, write_tone
from .test_recipe import PREPARE, fake_an4

MP3_READABLE = "MP3" in sf.available_formats()  # libsndfile >= 1.1 built with mpg123 and lame


def as_any_user() -> list[str] | None:
    """A command prefix under which file permissions apply to this process's children: none needed
    for a user; for root (as in CI), setpriv (util-linux) dropping the capabilities that let root
    read any file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH). None when root cannot drop them here."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    drop = "-dac_override,-dac_read_search"
    prefix = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", "--"]
    return prefix if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0 else None


AS_ANY_USER = as_any_user()


def write_silence(path: Path) -> None:
    sf.write(path, np.zeros(16_000, dtype=np.float32), 16_000)


def write_zero_samples(path: Path) -> None:
    sf.write(path, np.zeros(0, dtype=np.float32), 16_000, subtype="PCM_16")  # a valid header, no samples


def write_non_finite(path: Path) -> None:
    samples = np.full(16_000, 0.1, dtype=np.float32)
    samples[8000:8100] = np.nan
    sf.write(path, samples, 16_000, subtype="FLOAT")


def cut_wav(path: Path, keep_samples: int | None = None, keep_bytes: int | None = None) -> None:
    """A 1 s 16-bit WAV cut short: after keep_samples samples of data, or after keep_bytes bytes in all."""
    write_tone(path)
    data = path.read_bytes()
    end = keep_bytes if keep_bytes is not None else data.index(b"data") + 8 + 2 * keep_samples
    path.write_bytes(data[:end])


def write_m4a_stub(path: Path) -> None:
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + bytes(200))  # an MP4 header


def write_empty_dir(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("no audio in here")


@dataclass(frozen=True)
class Case:
    name: str
    file: str  # relative to the catalogue folder
    make: Callable[[Path], object] | None  # None: the path does not exist
    seconds: float | None = None  # inputs that work: the duration transcribed
    problem: str = ""  # inputs that fail: words of the one-line error

    @property
    def good(self) -> bool:
        return self.seconds is not None


CASES = [
    # inputs that must be transcribed
    Case("silence", "silence.wav", write_silence, 1.0),
    *(Case(f"rate_{rate}", f"rate_{rate}.wav", lambda p, r=rate: write_tone(p, rate=r), 1.0)
      for rate in (8000, 22050, 44100, 48000)),
    Case("stereo", "stereo.wav", lambda p: write_tone(p, channels=2), 1.0),
    Case("six_channels", "six_channels.wav", lambda p: write_tone(p, channels=6), 1.0),
    Case("pcm_8bit", "pcm_8bit.wav", lambda p: write_tone(p, subtype="PCM_U8"), 1.0),
    Case("pcm_24bit", "pcm_24bit.wav", lambda p: write_tone(p, subtype="PCM_24"), 1.0),
    Case("float_32bit", "float_32bit.wav", lambda p: write_tone(p, subtype="FLOAT"), 1.0),
    Case("flac", "a.flac", lambda p: write_tone(p, format="FLAC"), 1.0),
    Case("ogg_vorbis", "a.ogg", lambda p: write_tone(p, subtype=None, format="OGG"), 1.0),
    Case("nist_sphere", "a.sph", lambda p: write_tone(p, format="NIST"), 1.0),
    # a header that promises 1 s of a file holding 0.5 s: what is there is decoded
    Case("header_claims_more_data", "claims_more.wav", lambda p: cut_wav(p, keep_samples=8000), 0.5),
    Case("spaces_and_non_ascii_path", "dir with spaces/naïve café 日本語 ü.wav", write_tone, 1.0),
    # inputs that must fail, each with its own one-line message
    Case("missing_path", "missing.wav", None, problem="no such file"),
    Case("directory_without_audio", "no_audio_here", write_empty_dir, problem="contains no audio files"),
    Case("empty_file", "empty.wav", lambda p: p.write_bytes(b""), problem="empty file (0 bytes)"),
    Case("truncated_header", "truncated_header.wav", lambda p: cut_wav(p, keep_bytes=20),
         problem="not readable as audio"),
    Case("text_renamed_wav", "notes.wav", lambda p: p.write_text("just some text\n" * 20),
         problem="not readable as audio (Format not recognised"),
    Case("zero_samples", "zero_samples.wav", write_zero_samples, problem="contains no audio samples"),
    Case("too_short", "too_short.wav", lambda p: write_tone(p, seconds=0.005), problem="too short to transcribe"),
    Case("non_finite_samples", "nan.wav", write_non_finite, problem="non-finite samples"),
    Case("unsupported_format", "a.m4a", write_m4a_stub, problem="not readable as audio (Format not recognised"),
    Case("mp3", "a.mp3", lambda p: write_tone(p, subtype=None, format="MP3"), 1.0) if MP3_READABLE else
    Case("mp3", "a.mp3", lambda p: p.write_bytes(b"\xff\xfb\x90\x00" + bytes(400)), problem="not readable as audio"),
]
if AS_ANY_USER is not None:  # else (root, no setpriv) only test_unreadable_file_is_reported covers it, simulated
    CASES.append(Case("no_read_permission", "locked.wav", lambda p: (write_tone(p), p.chmod(0)),
                      problem="permission denied"))
GOOD = [c for c in CASES if c.good]
BAD = [c for c in CASES if not c.good]


@dataclass
class Catalogue:
    paths: dict[str, str]
    mixed: subprocess.CompletedProcess  # every case in one run, --format jsonl
    good_only: subprocess.CompletedProcess  # only the good ones, --format text

    def records(self, case: Case) -> list[dict]:
        return [r for r in map(json.loads, self.mixed.stdout.splitlines()) if r["audio"] == self.paths[case.name]]

    def error_lines(self, case: Case) -> list[str]:
        return [line for line in errors(self.mixed.stderr) if self.paths[case.name] in line]


def errors(stderr: str) -> list[str]:
    """stderr without the notes (`asr: note: ...`, e.g. a sample rate below the model's) and the
    warnings (`asr: warning: ...`, e.g. a truncated file)."""
    return [line for line in stderr.splitlines() if not line.startswith(("asr: note: ", "asr: warning: "))]


LOW_RATE = [c for c in CASES if c.good and c.name == "rate_8000"]  # the inputs that get a note
TRUNCATED = [c for c in CASES if c.name == "header_claims_more_data"]  # the inputs that get a warning


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, untrained_model) -> Catalogue:
    root = tmp_path_factory.mktemp("catalogue")
    paths = {}
    for case in CASES:
        path = root / case.file
        path.parent.mkdir(parents=True, exist_ok=True)
        if case.make is not None:
            case.make(path)
        paths[case.name] = str(path)
    model = ["--model", str(untrained_model)]
    mixed = subprocess.run([*(AS_ANY_USER or []), ASR, "transcribe", *model, "--format", "jsonl", *paths.values()],
                           capture_output=True, encoding="utf-8", timeout=300)
    good_only = run_asr("transcribe", *model, *(paths[c.name] for c in GOOD))
    return Catalogue(paths, mixed, good_only)


def test_a_run_with_bad_inputs_exits_1_with_one_line_per_bad_input_and_no_traceback(catalogue):
    result = catalogue.mixed
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = errors(result.stderr)
    assert lines[-1] == f"asr: {len(BAD)} of {len(CASES)} input(s) failed"
    assert len(lines[:-1]) == len(BAD) and all(line.startswith("asr: error: ") for line in lines[:-1]), lines
    notes = [line for line in result.stderr.splitlines() if line.startswith("asr: note: ")]
    assert [n.split(": ")[2] for n in notes] == [catalogue.paths[c.name] for c in LOW_RATE]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("asr: warning: ")]
    assert [w.split(": ")[2] for w in warnings] == [catalogue.paths[c.name] for c in TRUNCATED]
    assert "header promises 1.00 s, the file holds 0.50 s" in warnings[0]
    assert len(result.stdout.splitlines()) == len(GOOD)


def test_a_run_of_only_good_inputs_exits_0_with_one_line_each(catalogue):
    result = catalogue.good_only
    assert result.returncode == 0, result.stderr
    assert errors(result.stderr) == []
    # printed as each is ready (a batch at a time, in input order within it), not in input order
    assert sorted(line.split("\t")[0] for line in result.stdout.splitlines()) == sorted(
        catalogue.paths[c.name] for c in GOOD)


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_good_input_is_transcribed(catalogue, case):
    (record,) = catalogue.records(case)
    assert isinstance(record["text"], str)  # random weights: any text, or none, is fine
    assert record["duration"] == pytest.approx(case.seconds, abs=0.08)  # MP3 adds encoder delay
    assert catalogue.error_lines(case) == []


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_bad_input_is_one_line_naming_the_file_and_the_problem(catalogue, case):
    path = catalogue.paths[case.name]
    (line,) = catalogue.error_lines(case)
    assert line.startswith(f"asr: error: {path}: ")
    assert case.problem in line
    assert catalogue.records(case) == []


def test_unreadable_file_is_reported_and_the_others_transcribed(untrained_model, tmp_path, capsys, monkeypatch):
    locked, good = tmp_path / "locked.wav", tmp_path / "good.wav"
    write_tone(locked)
    write_tone(good)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads anything: simulate what everyone else gets
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(os.fsdecode(p)) != locked and real_access(p, mode, **kw))
    assert main(["transcribe", "--model", str(untrained_model), str(locked), str(good)]) == 1
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(good)]
    assert err.splitlines() == [f"asr: error: {locked}: permission denied", "asr: 1 of 2 input(s) failed"]


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ASRError, match="no such checkpoint file"):
        main(["--debug", "transcribe", "--model", str(tmp_path / "nope.pt"), str(tmp_path / "a.wav")])


def test_garbage_named_mp3_does_not_claim_the_file_is_missing(tmp_path):
    from asr.audio import AudioError, load_audio

    path = tmp_path / "notes.mp3"
    path.write_text("not an mp3 at all\n" * 30)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(info.value).startswith(f"{path}: not readable as audio")
    assert "does not exist" not in str(info.value)


def test_output_to_a_missing_folder_is_one_line_error(untrained_model, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    write_tone(tmp_path / "a.wav")
    manifest.write_text(json.dumps({"id": "a", "audio": "a.wav", "duration": 1.0, "text": "A"}) + "\n")
    out = tmp_path / "no" / "such" / "folder" / "hyp.jsonl"
    assert main(["decode", "--model", str(untrained_model), "--manifest", str(manifest), "--out", str(out)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"asr: error: {out}: No such file or directory (its folder does not exist)"]


# --- asr decode: bad entries are reported, the good ones all decoded ------------------------------


def test_decode_writes_every_good_hypothesis_reports_each_bad_entry_and_exits_1(untrained_model, tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    write_tone(audio / "wav.wav")
    write_tone(audio / "flac.flac", format="FLAC")
    write_tone(audio / "rate_8k.wav", rate=8000)
    write_tone(audio / "stereo.wav", channels=2)
    write_tone(audio / "wrong_duration.wav")
    write_zero_samples(audio / "zero_samples.wav")
    (audio / "text.wav").write_text("just text\n" * 20)
    entries = [  # id, audio (relative to the manifest), duration in the manifest
        ("wav", "audio/wav.wav", 1.0), ("missing", "audio/missing.wav", 1.0), ("flac", "audio/flac.flac", 1.0),
        ("text_as_wav", "audio/text.wav", 1.0), ("rate_8k", "audio/rate_8k.wav", 1.0),
        ("zero_samples", "audio/zero_samples.wav", 1.0), ("stereo", "audio/stereo.wav", 1.0),
        ("wrong_duration", "audio/wrong_duration.wav", 10.0),
    ]
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(
        json.dumps({"id": i, "audio": a, "duration": d, "text": "A B"}) + "\n" for i, a, d in entries
    ))
    hyp = tmp_path / "hyp.jsonl"
    result = run_asr("decode", "--model", str(untrained_model), "--manifest", str(manifest), "--out", str(hyp))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    bad = {"missing": "no such file", "text_as_wav": "not readable as audio", "zero_samples": "no audio samples"}
    decoded = [json.loads(line)["id"] for line in hyp.read_text().splitlines()]
    assert decoded == [i for i, _, _ in entries if i not in bad]
    for utt_id, problem in bad.items():
        (line,) = [line for line in result.stderr.splitlines() if f" {utt_id}: " in line]
        assert line.startswith(f"asr: error: {utt_id}: {tmp_path / 'audio'}") and problem in line
    warnings = [line for line in result.stderr.splitlines() if line.startswith("asr: warning:")]
    assert warnings == [f"asr: warning: {manifest}: wrong_duration: manifest says 10.00 s, the audio has 1.00 s"]
    assert "decoded 5/8 utterances" in result.stderr

    # and scoring still works: the failed ones count as deletions and are named
    assert main(["score", "--ref", str(manifest), "--hyp", str(hyp)]) == 0
    err = capsys.readouterr().err
    assert all(f"no hypothesis for {utt_id}" in err for utt_id in bad)


# --- malformed manifests and transcripts: decode, train and score ---------------------------------

GOOD_LINE = {"id": "u1", "audio": "a.wav", "duration": 1.0, "text": "YES"}
MANIFEST_PROBLEMS = {  # name: (line 2 of the manifest, words of the error, commands that read it)
    "malformed_json": (b'{"id": "u2", "audio": "a.wav", "duration": 1.0,', "malformed JSON", ("decode", "train")),
    "missing_field": (json.dumps({"id": "u2", "audio": "a.wav", "duration": 1.0}).encode(), "missing field(s) text",
                      ("decode", "train")),
    "duplicate_id": (json.dumps(GOOD_LINE).encode(), "duplicate id 'u1'", ("decode", "train", "score")),
    "negative_duration": (json.dumps({**GOOD_LINE, "id": "u2", "duration": -1.5}).encode(),
                          "duration must be a positive number", ("decode", "train")),
    "non_utf8": (b'{"id": "u2", "audio": "a.wav", "duration": 1.0, "text": "CAF\xc9"}', "not valid UTF-8",
                 ("decode", "train", "score")),
    "missing_audio": (json.dumps({**GOOD_LINE, "id": "u2", "audio": "nope.wav"}).encode(), "audio file not found",
                      ("train",)),  # decode reports it per utterance (above)
    "score_without_text": (json.dumps({"id": "u2"}).encode(), "expected a JSON object with string fields",
                           ("score",)),
    "score_malformed_json": (b'{"id": "u2", "text": ', "expected a JSON object", ("score",)),
}
MANIFEST_CASES = [(name, command) for name, (_, _, commands) in MANIFEST_PROBLEMS.items() for command in commands]


@pytest.fixture(scope="module")
def tone_experiment(tmp_path_factory):
    """Tone audio, manifest, vocab and CMVN, and a tiny 1-epoch config for `asr train`."""
    tmp = tmp_path_factory.mktemp("tones")
    data = make_tone_experiment(tmp)
    config = tiny_config(data, tmp / "unused", epochs=1, max_frames=400)
    return tmp, write_config(tmp / "tiny.yaml", config)


@pytest.mark.parametrize(("problem", "command"), MANIFEST_CASES, ids=[f"{c}-{p}" for p, c in MANIFEST_CASES])
def test_bad_manifest_line_is_an_error_naming_file_and_line(problem, command, tmp_path, capsys, untrained_model,
                                                            tone_experiment):
    line, words, _ = MANIFEST_PROBLEMS[problem]
    write_tone(tmp_path / "a.wav")
    manifest = tmp_path / "bad.jsonl"
    third = json.dumps({**GOOD_LINE, "id": "u3"}).encode()
    manifest.write_bytes(json.dumps(GOOD_LINE).encode() + b"\n" + line + b"\n" + third + b"\n")
    out = tmp_path / "out"
    if command == "decode":
        argv = ["decode", "--model", str(untrained_model), "--manifest", str(manifest), "--out", str(out)]
    elif command == "train":
        argv = ["train", "--config", str(tone_experiment[1]), "--no-progress",
                f"data.train_manifest={manifest}", f"train.out_dir={out}"]
    else:
        hyp = tmp_path / "hyp.txt"
        hyp.write_text("u1 YES\n")
        argv = ["score", "--ref", str(manifest), "--hyp", str(hyp)]
    assert main(argv) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"asr: error: {manifest}:2: ") and words in error
    assert not (out / "last.pt").exists() and not out.is_file()


def test_score_with_an_empty_reference_counts_hypothesis_words_as_insertions(tmp_path, capsys):
    ref, hyp = tmp_path / "ref.jsonl", tmp_path / "hyp.txt"
    ref.write_text(json.dumps({"id": "a", "text": ""}) + "\n" + json.dumps({"id": "b", "text": "YES NO"}) + "\n")
    hyp.write_text("a GO\nb YES NO\n")
    assert main(["score", "--ref", str(ref), "--hyp", str(hyp)]) == 0
    assert "WER 50.00%" in capsys.readouterr().out  # 1 insertion / 2 reference words


# --- asr train: bad utterances are reported and skipped, never a crash mid-epoch -----------------

TRAINING_PROBLEMS = {  # id: (manifest fields, what the training log must say about it)
    "oov": ({"text": "yes!"}, "skipped oov ({manifest}): characters not in the vocabulary ['!', 'e', 's', 'y']"),
    "too_long": ({"text": " ".join(["A M Y"] * 20)},  # 0.5 s: 51 frames, 26 stacked
                 "skipped too_long ({manifest}): transcript needs 119 CTC frames, audio gives 26"),
    "unreadable": ({"audio": "notes.wav"}, "skipped unreadable: {dir}/notes.wav: not readable as audio"),
    "too_short": ({"audio": "short.wav"}, "skipped too_short: {dir}/short.wav: too short to transcribe"),
    "wrong_duration": ({"duration": 10.0},
                       "warning: wrong_duration ({manifest}): manifest says 10.00 s, the audio has 0.50 s"),
    "empty_text": ({"text": ""}, "{manifest}: 1 utterance(s) with an empty transcript, kept"),
}


@pytest.fixture(scope="module")
def training_run(tone_experiment):
    """One `asr train` over the tone manifest plus one bad utterance of each kind."""
    tmp, config = tone_experiment
    bad = tmp / "bad"
    bad.mkdir()
    (bad / "notes.wav").write_text("just text\n" * 20)
    write_tone(bad / "short.wav", seconds=0.005)
    write_tone(bad / "tone.wav", seconds=0.5)
    lines = (tmp / "train.jsonl").read_text().splitlines()
    for utt_id, (fields, _) in TRAINING_PROBLEMS.items():
        record = {"id": utt_id, "audio": "tone.wav", "duration": 0.5, "text": "YES", **fields}
        lines.append(json.dumps({**record, "audio": str(bad / record["audio"])}))
    manifest = tmp / "with_bad.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp / "run_with_bad"
    argv = ["train", "--config", str(config), "--no-progress",
            f"data.train_manifest={manifest}", f"train.out_dir={out}"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(argv)
    return status, stdout.getvalue() + stderr.getvalue(), manifest, bad, out


def test_training_with_bad_utterances_completes(training_run):
    status, log, manifest, _, out = training_run
    assert status == 0, log
    assert f"{manifest}: 4 utterance(s) skipped, {len(TONE_SET) + 2} kept" in log
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()


@pytest.mark.parametrize("utt_id", list(TRAINING_PROBLEMS))
def test_training_reports_each_bad_utterance(training_run, utt_id):
    _, log, manifest, bad, _ = training_run
    expected = TRAINING_PROBLEMS[utt_id][1].format(manifest=manifest, dir=bad)
    assert len([line for line in log.splitlines() if line.startswith(expected)]) == 1, log


# --- the recipe's prepare step on a corrupted corpus -----------------------------------------------


def run_prepare(corpus: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PREPARE), "--data-dir", str(corpus), "--out-dir", str(out),
                           "--dev-speakers", "1"], capture_output=True, encoding="utf-8")


def test_prepare_reports_every_bad_file_at_once_and_writes_nothing(tmp_path):
    corpus = fake_an4(tmp_path / "an4")
    wav = corpus / "wav" / "an4_clstk"
    (wav / "spk1" / "an0-spk1-b.wav").write_bytes(b"")
    (wav / "spk1" / "an1-spk1-b.wav").write_text("text, not audio\n" * 20)
    write_zero_samples(wav / "spk2" / "an0-spk2-b.wav")
    (wav / "spk2" / "an1-spk2-b.wav").write_bytes((wav / "spk2" / "an1-spk2-b.wav").read_bytes()[:20])
    (wav / "spk3" / "an0-spk3-b.wav").unlink()
    transcription = corpus / "etc" / "an4_test.transcription"
    transcription.write_bytes(transcription.read_bytes() + b"CAF\xc9 (an7-spk9-b)\nGO (an0-spk9-b)\n")
    result = run_prepare(corpus, tmp_path / "data")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    expected = [
        f"{wav / 'spk1' / 'an0-spk1-b.wav'}: empty file (0 bytes)",
        f"{wav / 'spk1' / 'an1-spk1-b.wav'}: not readable as audio (Format not recognised.)",
        f"{wav / 'spk2' / 'an0-spk2-b.wav'}: contains no audio samples (zero length)",
        f"{wav / 'spk2' / 'an1-spk2-b.wav'}: not readable as audio",
        f"{wav / 'spk3' / 'an0-spk3-b'}.{{wav,flac,sph}}: audio file not found",
        f"{transcription}:3: not valid UTF-8",
        f"{transcription}:4: second transcription for an0-spk9-b",
    ]
    lines = result.stderr.splitlines()
    assert len(lines) == len(expected) + 1
    assert lines[-1] == f"prepare.py: {len(expected)} problem(s), no manifests written"
    for line, start in zip(lines, expected):
        assert line.startswith(f"prepare.py: error: {start}"), line
    assert not (tmp_path / "data").exists()


def test_prepare_keeps_a_file_whose_header_promises_more_than_it_holds(tmp_path):
    corpus = fake_an4(tmp_path / "an4")
    cut = corpus / "wav" / "an4test_clstk" / "spk9" / "an1-spk9-b.wav"  # 0.8 s
    data = cut.read_bytes()
    cut.write_bytes(data[: data.index(b"data") + 8 + 2 * 4000])  # 0.25 s of 16-bit samples left
    result = run_prepare(corpus, tmp_path / "data")
    assert result.returncode == 0, result.stderr
    test = [json.loads(line) for line in (tmp_path / "data" / "test.jsonl").read_text().splitlines()]
    assert [u["duration"] for u in test if u["id"] == "an1-spk9-b"] == [0.25]
