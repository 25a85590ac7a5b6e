"""Bring-your-own-data: Kaldi/ESPnet data directories and tables -> checked manifests (asr.corpus, `asr data`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import read_segment
from asr.corpus import (
    CheckConfig, CorpusError, cut_segments, mix_corpora, read_corpus, shared_speakers, split_by_speaker,
)
from asr.errors import ASRError
from asr.manifest import Utterance, read_manifest
from asr.text import build_vocab

from .conftest import run_asr, write_tone


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def tone_data_dir(root: Path) -> Path:
    """A valid data dir: two long recordings (3 s, 2 s) cut into four utterances, plus one whole file."""
    data = root / "data"
    audio = root / "audio"
    audio.mkdir(parents=True)
    write_tone(audio / "rec1.wav", seconds=3.0, freq=300.0)
    write_tone(audio / "rec2.wav", seconds=2.0, freq=500.0)
    write_tone(audio / "whole.wav", seconds=1.0, freq=700.0)
    data.mkdir()
    write_lines(data / "wav.scp", [f"rec1 {audio / 'rec1.wav'}", f"rec2 {audio / 'rec2.wav'}",
                                   f"whole {audio / 'whole.wav'}"])
    write_lines(data / "segments", ["a-rec1-1 rec1 0.00 1.25", "a-rec1-2 rec1 1.25 2.90", "b-rec2-1 rec2 0.1 -1",
                                    "c-whole whole 0 1.0"])
    write_lines(data / "text", ["a-rec1-1 yes", "a-rec1-2 Go, now!", "b-rec2-1 no", "c-whole two"])
    write_lines(data / "utt2spk", ["a-rec1-1 a", "a-rec1-2 a", "b-rec2-1 b", "c-whole c"])
    return data


def test_segments_are_cut_sample_for_sample(tmp_path):
    data = tone_data_dir(tmp_path)
    corpus = read_corpus(data)
    assert not corpus.problems
    assert [u.id for u in corpus.utterances] == ["a-rec1-1", "a-rec1-2", "b-rec2-1", "c-whole"]
    assert [u.text for u in corpus.utterances] == ["YES", "GO NOW", "NO", "TWO"]
    assert [u.speaker for u in corpus.utterances] == ["a", "a", "b", "c"]
    assert [u.duration for u in corpus.utterances] == pytest.approx([1.25, 1.65, 1.9, 1.0])
    utterances = cut_segments(corpus, tmp_path / "cut")
    by_hand = {}
    for name in ("rec1", "rec2", "whole"):
        by_hand[name], rate = sf.read(tmp_path / "audio" / f"{name}.wav", dtype="int16")
    expected = {"a-rec1-1": by_hand["rec1"][0:20000], "a-rec1-2": by_hand["rec1"][20000:46400],
                "b-rec2-1": by_hand["rec2"][1600:], "c-whole": by_hand["whole"]}
    for utt in utterances:
        assert Path(utt.audio).parent == (tmp_path / "cut").resolve()
        cut, rate = sf.read(utt.audio, dtype="int16")
        assert rate == 16_000 and sf.info(utt.audio).subtype == "PCM_16"
        np.testing.assert_array_equal(cut, expected[utt.id])
        assert utt.duration == pytest.approx(len(expected[utt.id]) / 16_000)


def test_read_segment_rounds_times_to_samples(tmp_path):
    write_tone(tmp_path / "x.wav", seconds=1.0, rate=8000, channels=2)
    whole, _ = sf.read(tmp_path / "x.wav", dtype="float32", always_2d=True)
    samples, rate, subtype = read_segment(tmp_path / "x.wav", 0.10007, 0.5)  # sample 800.56 -> 801
    assert rate == 8000 and subtype == "PCM_16" and samples.shape == (3199, 2)
    np.testing.assert_array_equal(samples, whole[801:4000])


def test_broken_data_dir_reports_every_problem_with_its_line(tmp_path):
    data = tone_data_dir(tmp_path)
    audio = tmp_path / "audio"
    write_tone(audio / "tiny.wav", seconds=0.05)
    write_lines(data / "wav.scp", [
        f"rec1 {audio / 'rec1.wav'}",                        # 1
        f"rec2 {audio / 'rec2.wav'}",                        # 2
        "rec3 sox /corpus/rec3.flac -t wav - |",             # 3 pipe
        f"rec4 {audio / 'missing.wav'}",                     # 4 missing audio
        f"tiny {audio / 'tiny.wav'}",                        # 5
        f"whole {audio / 'whole.wav'}",                      # 6
        f"rec1 {audio / 'rec2.wav'}",                        # 7 duplicate
    ])
    write_lines(data / "segments", [
        "a-rec1-1 rec1 0.00 1.25",      # 1 fine
        "a-rec1-2 rec1 1.25 9.0",       # 2 past the end of rec1 (3 s)
        "a-rec1-3 rec1 2.0 1.5",        # 3 end before start
        "b-rec2-1 rec2 0.1 -1",         # 4 fine, but its text is empty
        "b-rec2-2 rec2 0.1 0.9",        # 5 absurd transcript length
        "c-rec3-1 rec3 0 1",            # 6 recording with a problem
        "d-rec9-1 rec9 0 1",            # 7 recording not in wav.scp
        "e-tiny-1 tiny 0 -1",           # 8 too short
        "f-whole-1 whole 0 1",          # 9 no transcript
        "g-whole-2 whole zero 1",       # 10 not a number
    ])
    write_lines(data / "text", [
        "a-rec1-1 yes",                 # 1
        "a-rec1-2 go",                  # 2
        "a-rec1-3 no",                  # 3
        "b-rec2-1",                     # 4 empty
        "b-rec2-2 " + "seven " * 30,    # 5
        "e-tiny-1 one",                 # 6
        "c-rec3-1 five",                # 7 unsorted (after e-)
        "z-orphan hello",               # 8 no such utterance
        "a-rec1-1 again",               # 9 duplicate
    ])
    write_lines(data / "utt2spk", ["a-rec1-1 a", "b-rec2-2 b"])

    result = run_asr("data", "validate", str(data))
    assert result.returncode == 1
    errors = result.stderr
    expected = [
        (data / "wav.scp", 3, "pipe entry"),
        (data / "wav.scp", 4, "no such file"),
        (data / "wav.scp", 7, "duplicate id 'rec1'"),
        (data / "segments", 2, "past the end"),
        (data / "segments", 3, "not after start"),
        (data / "segments", 6, "'rec3' has a problem"),
        (data / "segments", 7, "'rec9' is not in wav.scp"),
        (data / "segments", 8, "too short"),
        (data / "segments", 9, "no transcript"),
        (data / "segments", 10, "must be seconds"),
        (data / "text", 4, "empty transcript"),
        (data / "text", 5, "do not match"),
        (data / "text", 7, "not sorted"),
        (data / "text", 8, "'z-orphan', which is not in segments"),
        (data / "text", 9, "duplicate id 'a-rec1-1'"),
    ]
    lines = errors.splitlines()
    for path, line, words in expected:
        assert any(f"{path}:{line}: " in l and words in l for l in lines), f"{path.name}:{line} {words}\n{errors}"
    assert any("segments:1: " in l and "no speaker" not in l for l in lines) is False  # line 1 is fine
    assert "no speaker in utt2spk" in errors  # a-rec1-2 has no speaker line (kept, warned)
    assert "1 usable utterances" in result.stdout

    # import keeps going: the one good utterance is written, the problems are reported the same way
    out = tmp_path / "out" / "train.jsonl"
    out.parent.mkdir()
    result = run_asr("data", "import", str(data), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert [(u.id, u.text) for u in read_manifest(out)] == [("a-rec1-1", "YES")]
    assert f"{data / 'wav.scp'}:3: " in result.stderr
    assert run_asr("data", "import", str(data), "--out", str(tmp_path / "x.jsonl"), "--strict").returncode == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_characters_outside_the_vocabulary_are_reported_and_kept(tmp_path):
    data = tone_data_dir(tmp_path)
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"id": "t", "audio": "x.wav", "duration": 1.0, "text": "YES GO NOW"}) + "\n")
    result = run_asr("data", "validate", str(data), "--vocab", str(train))
    assert result.returncode == 0  # warnings alone: nothing is left out
    assert result.stderr.splitlines() == [
        f"asr: warning: {data / 'text'}:4: 'c-whole': characters outside the vocabulary ['T']"]
    assert "4 usable utterances" in result.stdout
    build_vocab(["YES", "GO NOW", "NO"]).save(tmp_path / "vocab.json")
    result = run_asr("data", "validate", str(data), "--vocab", str(tmp_path / "vocab.json"))
    assert "'c-whole': characters outside the vocabulary ['T']" in result.stderr
    assert run_asr("data", "validate", str(data)).returncode == 0


def test_tables_csv_tsv_jsonl(tmp_path):
    (tmp_path / "clips").mkdir()
    write_tone(tmp_path / "clips" / "one.wav", seconds=1.0)
    write_tone(tmp_path / "clips" / "two.flac", seconds=2.0, format="FLAC")
    (tmp_path / "list.csv").write_text(
        "path,transcript,speaker\nclips/one.wav,\"Hello, world\",s1\nclips/two.flac,good bye,s2\n"
        "clips/none.wav,lost,s3\n", encoding="utf-8")
    corpus = read_corpus(tmp_path / "list.csv")
    assert [(u.id, u.text, u.speaker, u.duration) for u in corpus.utterances] == [
        ("one", "HELLO WORLD", "s1", 1.0), ("two", "GOOD BYE", "s2", 2.0)]
    assert [str(p) for p in corpus.problems] == [f"{tmp_path / 'list.csv'}:4: {tmp_path / 'clips' / 'none.wav'}: no such file"]

    (tmp_path / "list.tsv").write_text(f"utt_id\twav\ttext\nu1\t{tmp_path / 'clips' / 'one.wav'}\tSí señor\n",
                                       encoding="utf-8")
    assert [(u.id, u.text) for u in read_corpus(tmp_path / "list.tsv").utterances] == [("u1", "SI SENOR")]
    keep = read_corpus(tmp_path / "list.tsv", CheckConfig(text="keep"))
    assert keep.utterances[0].text == "Sí señor"

    (tmp_path / "nemo.jsonl").write_text(
        json.dumps({"audio_filepath": "clips/two.flac", "text": "bye", "offset": 1.5, "duration": 0.5}) + "\n"
        + json.dumps({"audio_filepath": "clips/one.wav", "text": "hi", "duration": 3.0}) + "\n{oops\n",
        encoding="utf-8")
    corpus = read_corpus(tmp_path / "nemo.jsonl")
    assert [u.id for u in corpus.utterances] == ["two", "one"]
    assert corpus.utterances[0].duration == pytest.approx(0.5) and corpus.segments["two"].start == 1.5
    assert [p.where for p in corpus.problems] == [f"{tmp_path / 'nemo.jsonl'}:2", f"{tmp_path / 'nemo.jsonl'}:3"]
    assert not corpus.problems[0].dropped and "manifest says 3.00 s" in corpus.problems[0].message

    (tmp_path / "bad.csv").write_text("file,label\nx.wav,yes\n")
    with pytest.raises(CorpusError, match="no text column"):
        read_corpus(tmp_path / "bad.csv")
    result = run_asr("data", "validate", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and "no such data directory or table" in result.stderr


def test_split_by_speaker_holds_out_whole_speakers():
    utts = [Utterance(f"s{s}-{n}", "x.wav", 1.0, "A", f"s{s}") for s in range(10) for n in range(s % 3 + 1)]
    train, dev, note = split_by_speaker(utts, 0.2, seed=1)
    assert {u.speaker for u in train}.isdisjoint({u.speaker for u in dev})
    assert len(train) + len(dev) == len(utts) and len(dev) >= 0.2 * len(utts)
    assert "speaker-disjoint" in note
    assert split_by_speaker(utts, 0.2, seed=1)[1] == dev  # deterministic
    one = [Utterance(f"u{n}", "x.wav", 1.0, "A", "") for n in range(10)]
    train, dev, note = split_by_speaker(one, 0.3)
    assert len(dev) == 3 and "by utterance" in note


def corpus_root_layout(root: Path) -> Path:
    """A release laid out as speechocean762 ships it: <root>/WAVE/<spk>/<utt>.wav and data dirs in
    <root>/train whose wav.scp paths are relative to <root>."""
    (root / "WAVE" / "s1").mkdir(parents=True)
    write_tone(root / "WAVE" / "s1" / "u1.wav", seconds=1.0)
    write_tone(root / "WAVE" / "s1" / "u2.wav", seconds=1.2)
    train = root / "train"
    train.mkdir()
    write_lines(train / "wav.scp", ["u1 WAVE/s1/u1.wav", "u2 WAVE/s1/u2.wav", "u3 WAVE/s1/missing.wav"])
    write_lines(train / "text", ["u1 ONE", "u2 TWO", "u3 THREE"])
    write_lines(train / "utt2spk", ["u1 s1", "u2 s1", "u3 s1"])
    return train


def test_wav_scp_paths_relative_to_the_corpus_root_resolve_from_any_folder(tmp_path, monkeypatch):
    train = corpus_root_layout(tmp_path / "release")
    monkeypatch.chdir(tmp_path)  # elsewhere: neither the data dir nor the root
    corpus = read_corpus(train)
    assert [u.id for u in corpus.utterances] == ["u1", "u2"]
    assert all(Path(u.audio).is_absolute() and Path(u.audio).is_file() for u in corpus.utterances)
    [problem] = corpus.problems  # the file that is really missing keeps its own line
    assert problem.where == f"{train / 'wav.scp'}:3" and "WAVE/s1/missing.wav: no such file" in problem.message
    assert "--audio-root" in problem.message


def test_an_audio_root_names_where_relative_paths_are(tmp_path, monkeypatch):
    train = corpus_root_layout(tmp_path / "release")
    moved = tmp_path / "data_copy"
    train.rename(moved)  # the data dir away from its audio: only --audio-root finds it
    monkeypatch.chdir(tmp_path)
    assert not read_corpus(moved).utterances
    corpus = read_corpus(moved, CheckConfig(audio_root=tmp_path / "release"))
    assert [u.id for u in corpus.utterances] == ["u1", "u2"]
    result = run_asr("data", "validate", str(moved), "--audio-root", str(tmp_path / "release"), cwd=tmp_path)
    assert "2 usable utterances" in result.stdout and "missing.wav: no such file" in result.stderr


def test_mixing_corpora_repeats_by_weight_with_unique_ids():
    a = [Utterance(f"a{i}", f"/a{i}.wav", 1.0, "A", "sa") for i in range(10)]
    b = [Utterance(f"b{i}", f"/b{i}.wav", 2.0, "B", "sb") for i in range(200)]
    mixed = mix_corpora([(a, 2), (b, 0.5)], seed=3)
    ids = [u.id for u in mixed]
    assert len(ids) == len(set(ids))
    assert sum(u.id.startswith("a") for u in mixed) == 20 and "a3~2" in ids
    assert 70 < sum(u.id.startswith("b") for u in mixed) < 130  # about half
    assert mixed == mix_corpora([(a, 2), (b, 0.5)], seed=3)  # reproducible
    assert {u.audio for u in mixed if u.id.startswith("a3")} == {"/a3.wav"}
    with pytest.raises(ASRError, match="in two of the corpora"):
        mix_corpora([(a, 1), (a[:1], 1)])
    with pytest.raises(ASRError, match="weight"):
        mix_corpora([(a, float("nan"))])


def test_mix_command_reads_weights_after_a_colon(tmp_path):
    for name, count in (("x", 3), ("y", 2)):
        rows = [json.dumps({"id": f"{name}{i}", "audio": f"/{name}{i}.wav", "duration": 1.0, "text": "HI"})
                for i in range(count)]
        write_lines(tmp_path / f"{name}.jsonl", rows)
    result = run_asr("data", "mix", f"{tmp_path / 'x.jsonl'}:2", str(tmp_path / "y.jsonl"), "--out",
                     str(tmp_path / "mixed.jsonl"))
    assert result.returncode == 0, result.stderr
    assert len(read_manifest(tmp_path / "mixed.jsonl", check_audio=False)) == 8


def test_shared_speakers_finds_a_leak_between_splits():
    train = [Utterance("1", "/1.wav", 1.0, "A", "s1"), Utterance("2", "/2.wav", 1.0, "A", "s2")]
    assert shared_speakers(train, [Utterance("3", "/3.wav", 1.0, "A", "s3")]) == set()
    assert shared_speakers(train, [Utterance("4", "/4.wav", 1.0, "A", "s2")]) == {"s2"}
