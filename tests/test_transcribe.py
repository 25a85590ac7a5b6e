"""asr.transcribe.Transcriber: files batched by length within a read-ahead group, results in input order."""

from __future__ import annotations

from pathlib import Path

from asr.checkpoint import load_model
from asr.decode import DecodeConfig
from asr.transcribe import READ_AHEAD, Transcriber
from tests.conftest import write_tone

LENGTHS = [3.0, 0.5, 2.5, 0.6, 2.0, 0.7, 1.5, 0.8]  # long and short files interleaved


def test_files_are_batched_by_length_and_come_back_in_input_order(untrained_model, tmp_path):
    paths = []
    for i, seconds in enumerate(LENGTHS):
        paths.append(tmp_path / f"f{i}.wav")
        write_tone(paths[-1], seconds=seconds, freq=300 + 50 * i)
    batch_size = 2
    assert len(LENGTHS) <= batch_size * READ_AHEAD  # one read-ahead group
    greedy = DecodeConfig(decoder="greedy")
    transcriber = Transcriber(load_model(untrained_model), batch_size=batch_size, decoding=greedy)
    batches = []
    forward = transcriber.forward

    def recording(feats):
        batches.append([f.shape[0] for f in feats])
        return forward(feats)

    transcriber.forward = recording
    results = list(transcriber.transcribe((str(p), None) for p in paths))

    assert [Path(r.audio).name for r in results] == [p.name for p in paths]
    assert [round(r.duration, 2) for r in results] == LENGTHS
    # the two longest together, then the next two...: never a 3 s file padding a 0.5 s one
    frames = sorted(n for batch in batches for n in batch)
    assert batches == [frames[i:i + batch_size] for i in range(0, len(frames), batch_size)]
    alone = Transcriber(load_model(untrained_model), batch_size=1, decoding=greedy)
    assert [r.text for r in results] == [r.text for r in alone.transcribe((str(p), None) for p in paths)]
