"""recipes/custom/run.sh: your own corpus (Kaldi/ESPnet data dir or table) through the AN4 stages."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.manifest import read_manifest
from asr.runconfig import DataConfig

from .conftest import REPO, tiny_config, write_config
from .test_corpus import tone_data_dir, write_lines

RECIPE = REPO / "recipes" / "custom" / "run.sh"
GAP = 0.3  # seconds of silence between utterances joined into one recording


def run_recipe(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(RECIPE), *args], capture_output=True, text=True, env=env, timeout=timeout)


def an4_kaldi_dir(an4: Path, out: Path, speakers: int, per_speaker: int) -> Path:
    """A Kaldi data dir from AN4 training speakers: each speaker's first utterances joined (with GAP s
    of silence) into one long recording, and `segments` cutting them out again."""
    transcripts = {}
    for line in (an4 / "etc" / "an4_train.transcription").read_text().splitlines():
        text, _, utt_id = line.rpartition(" (")
        transcripts[utt_id.rstrip(")")] = text.replace("<s>", "").replace("</s>", "").strip()
    by_speaker: dict[str, list[str]] = {}
    for fileid in (an4 / "etc" / "an4_train.fileids").read_text().split():
        by_speaker.setdefault(fileid.split("/")[1], []).append(fileid)
    (out / "audio").mkdir(parents=True)
    wav_scp, segments, text, utt2spk = [], [], [], []
    for speaker in sorted(by_speaker)[:speakers]:
        pieces, position = [], 0.0
        for fileid in by_speaker[speaker][:per_speaker]:
            samples, rate = sf.read(an4 / "wav" / f"{fileid}.wav", dtype="int16")
            utt_id = f"{speaker}-{Path(fileid).name}"
            segments.append(f"{utt_id} {speaker} {position:.4f} {position + len(samples) / rate:.4f}")
            text.append(f"{utt_id} {transcripts[Path(fileid).name]}")
            utt2spk.append(f"{utt_id} {speaker}")
            pieces += [samples, np.zeros(int(GAP * rate), dtype=np.int16)]
            position += len(samples) / rate + GAP
        sf.write(out / "audio" / f"{speaker}.wav", np.concatenate(pieces), 16_000, subtype="PCM_16")
        wav_scp.append(f"{speaker} {out / 'audio' / f'{speaker}.wav'}")
    data = out / "data"
    data.mkdir()
    for name, lines in (("wav.scp", wav_scp), ("segments", segments), ("text", text), ("utt2spk", utt2spk)):
        write_lines(data / name, sorted(lines))
    return data


def test_stage_1_imports_validates_and_holds_out_dev_speakers(tmp_path):
    data = tone_data_dir(tmp_path)
    write_lines(data / "text", ["a-rec1-1 yes", "a-rec1-2 Go, now!", "b-rec2-1", "c-whole two"])  # line 3 empty
    (tmp_path / "test.csv").write_text(f"path,text\n{tmp_path / 'audio' / 'whole.wav'},zebra\n")
    exp = tmp_path / "exp"
    result = run_recipe("--train", str(data), "--test", str(tmp_path / "test.csv"), "--exp-dir", str(exp),
                        "--dev-fraction", "0.3", "--stop-stage", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Stage 1: import and validate the corpus" in result.stdout
    assert "Stage 1 done in 0 min" in result.stdout
    assert f"asr: error: {data / 'text'}:3: 'b-rec2-1': empty transcript" in result.stdout
    assert (exp / f"{tmp_path.name}_blstm").is_dir()  # named after the data (the folder above data/) and the config
    train, dev = read_manifest(exp / "data" / "train.jsonl"), read_manifest(exp / "data" / "dev.jsonl")
    assert len(train) + len(dev) == 3 and dev
    assert {u.speaker for u in train}.isdisjoint({u.speaker for u in dev})
    assert all(Path(u.audio).parent == exp / "data" / "all_wav" for u in train + dev)
    (test,) = read_manifest(exp / "data" / "test.jsonl")
    assert test.text == "ZEBRA"
    unknown = sorted(set("ZEBRA") - {c for u in train for c in u.text})  # Z at least: in no transcript
    assert "Z" in unknown
    assert f"'whole': characters outside the vocabulary {unknown}" in (exp / "data" / "test.problems.txt").read_text()
    again = run_recipe("--train", str(data), "--exp-dir", str(exp), "--stop-stage", "1")
    assert "already done" in again.stdout


@pytest.mark.slow
@pytest.mark.an4
def test_an4_kaldi_dir_with_segments_runs_end_to_end(tmp_path, an4_dir):
    data = an4_kaldi_dir(an4_dir, tmp_path / "corpus", speakers=6, per_speaker=6)
    test = tmp_path / "test.csv"  # the test set as a table: audio path, transcript
    texts = {}
    for line in (an4_dir / "etc" / "an4_test.transcription").read_text().splitlines():
        text, _, utt_id = line.rpartition(" (")
        texts[utt_id.rstrip(")")] = text
    fileids = (an4_dir / "etc" / "an4_test.fileids").read_text().split()[:8]
    test.write_text("path,text\n" + "".join(f"{an4_dir / 'wav' / f}.wav,{texts[Path(f).name]}\n" for f in fileids))
    base = tiny_config(DataConfig(), tmp_path / "unused", epochs=3, max_frames=20_000, lr=3e-3, threads=1)
    config = write_config(tmp_path / "tiny.yaml", dataclasses.replace(
        base, model=dataclasses.replace(base.model, num_layers=1, hidden_size=48)))
    exp = tmp_path / "exp"
    result = run_recipe("--train", str(data), "--test", str(test), "--config", str(config), "--exp-dir", str(exp),
                        "--dev-fraction", "0.3")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for stage in range(1, 5):
        assert f"Stage {stage} done in" in result.stdout
    train = read_manifest(exp / "data" / "train.jsonl")
    dev = read_manifest(exp / "data" / "dev.jsonl")
    assert len(train) + len(dev) == 36 and {u.speaker for u in dev}.isdisjoint({u.speaker for u in train})
    cut = next(u for u in train + dev)  # the cut file holds exactly the AN4 utterance it came from
    speaker, name = cut.id.split("-", 1)
    original, _ = sf.read(an4_dir / "wav" / "an4_clstk" / speaker / f"{name}.wav", dtype="int16")
    np.testing.assert_array_equal(sf.read(cut.audio, dtype="int16")[0], original)
    run = exp / "corpus_tiny"  # --train .../corpus/data, --config tiny.yaml
    results = (run / "RESULTS.md").read_text()
    assert "| test | beam + LM | 8 |" in results and "| dev | greedy |" in results
    score = json.loads((run / "score_test_greedy.json").read_text())
    assert score["utterances"] == 8 and 0 <= score["wer"]
