"""bench/report.py: result files record the machine and command but no local checkout path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import report  # noqa: E402  (bench/ scripts import it this way)


def test_paths_under_the_repository_become_relative_and_others_stay():
    value = {"model": f"{ROOT}/asr/pretrained/an4_blstm/model.pt", "rows": [f"{ROOT}", "/data/an4", 3.5]}
    assert report.portable(value) == {"model": "asr/pretrained/an4_blstm/model.pt", "rows": [".", "/data/an4", 3.5]}


def test_a_written_result_names_no_checkout_path(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(report, "busy_processes", lambda interval=1.0: [{"program": "python", "cpu_share": 1.0}])
    monkeypatch.setattr(sys, "argv", ["bench/x.py", "--model", f"{ROOT}/asr/pretrained/an4_blstm/onnx"])
    path = report.Report("x").write({"model": str(ROOT / "asr/pretrained/an4_blstm/onnx"), "wer": 9.31})
    text = path.read_text(encoding="utf-8")
    assert str(ROOT) not in text
    payload = json.loads(text)
    assert payload["command"].endswith("x.py --model asr/pretrained/an4_blstm/onnx")
    assert payload["results"] == {"model": "asr/pretrained/an4_blstm/onnx", "wer": 9.31}
    assert payload["machine"]["other_busy_processes"] == [{"program": "python", "cpu_share": 1.0}]
