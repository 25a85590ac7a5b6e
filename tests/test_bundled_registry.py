"""asr.bundled: bundled models by name, the default, `asr models`, and the note a limited model prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from asr import bundled
from asr.cli import main
from asr.errors import ASRError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "an4_test_example.wav"


def test_names_resolve_to_exported_folders_and_paths_stay_paths():
    assert bundled.resolve_model("an4") == str(bundled.BUNDLED["an4"].exported)
    assert bundled.resolve_model("exp/run/best.pt") == "exp/run/best.pt"
    assert bundled.resolve_model(None) == str(bundled.default_model().exported)
    assert bundled.bundled_by_path(bundled.BUNDLED["an4"].checkpoint).name == "an4"
    assert bundled.bundled_by_path(EXAMPLE) is None


def test_a_missing_bundled_model_is_named(monkeypatch, tmp_path):
    absent = bundled.BundledModel("english", tmp_path / "nothing", "general English", limited=False)
    monkeypatch.setitem(bundled.BUNDLED, "english", absent)
    assert bundled.default_model().name == "an4"  # the default falls back to what is installed
    with pytest.raises(ASRError, match="'english' is not installed"):
        bundled.resolve_model("english")


def test_models_lists_every_bundled_model_with_what_it_covers(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for model in bundled.BUNDLED.values():
        assert out.count(f"{model.name}") >= 1
    assert "spelled letters" in out and "AN4 test WER 9.31 %" in out


def test_the_an4_model_says_once_what_it_can_recognise(capsys):
    assert main(["transcribe", "--model", "an4", str(EXAMPLE), str(EXAMPLE)]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("spelled letters, digits") == 1
    assert captured.out.count("J T E G FOUR") == 2


def test_the_note_offers_the_english_model_only_when_it_is_installed(capsys, monkeypatch, tmp_path):
    english = bundled.BUNDLED["english"]
    installed = bundled.BundledModel("english", tmp_path, english.covers, limited=False)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "manifest.json").write_text("{}")
    for model, offered in ((bundled.BundledModel("english", tmp_path / "nothing", english.covers, False), False),
                           (installed, True)):
        monkeypatch.setitem(bundled.BUNDLED, "english", model)
        assert main(["transcribe", "--model", "an4", str(EXAMPLE)]) == 0
        assert ("--model english" in capsys.readouterr().err) is offered
