"""The torch-free runtime: ONNX export round trip, no torch imported,
corrupt or incomplete export folders, and the CLI's choice of path."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import asr.transcribe as transcribe_module
from asr.audio import load_audio
from asr.checkpoint import batch_log_probs, load_model
from asr.cli import BUNDLED_CHECKPOINT, BUNDLED_MODEL
from asr.metrics import error_rates
from asr.onnx_export import export_onnx
from asr.bundle import ExportError, file_sha256, verify_export
from asr.runtime import OnnxStep, load_exported
from asr.transcribe import Transcriber

from .conftest import REPO, run_asr

EXAMPLE = REPO / "examples" / "an4_test_example.wav"  # real AN4 speech (2.4 s), shipped with the repository
LOG_PROB_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The bundled checkpoint exported afresh (the round trip, not the committed folder)."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    export_onnx(BUNDLED_CHECKPOINT, out)
    return out


@pytest.fixture(scope="module")
def an4_files(an4_dir) -> list[Path]:
    """Ten AN4 test utterances: lengths with every remainder modulo the model's frame stacking."""
    files = sorted((an4_dir / "wav" / "an4test_clstk").rglob("*.wav"))[:10]
    assert len(files) == 10
    return files


# --- the exported graph ---------------------------------------------------------------------------


def assert_log_probs_match(exported: Path, feats: list[np.ndarray]) -> None:
    loaded, model = load_model(BUNDLED_CHECKPOINT), load_exported(exported)
    expected, expected_lens = batch_log_probs(loaded.model, feats)
    log_probs, out_lens = model.forward(feats)
    np.testing.assert_array_equal(out_lens, expected_lens.numpy())
    for row, length in enumerate(out_lens):  # padding frames are not compared
        np.testing.assert_allclose(log_probs[row, :length], expected[row, :length].numpy(),
                                   atol=LOG_PROB_TOLERANCE, rtol=0)


def test_exported_graph_gives_the_model_log_probs_on_the_example(exported):
    front_end = load_model(BUNDLED_CHECKPOINT).front_end
    feats = front_end(load_audio(EXAMPLE))
    # one utterance, and a batch of three lengths (each remainder modulo frame stacking 3) with padding
    assert_log_probs_match(exported, [feats])
    assert_log_probs_match(exported, [feats, feats[:-1], feats[:-2]])


@pytest.mark.an4
def test_exported_graph_gives_the_model_log_probs_on_an4_test(exported, an4_files):
    front_end = load_model(BUNDLED_CHECKPOINT).front_end
    feats = [front_end(load_audio(path)) for path in an4_files]
    assert {f.shape[0] % 3 for f in feats} == {0, 1, 2}
    assert_log_probs_match(exported, feats)


def test_export_is_reproducible_and_its_manifest_lists_every_file(exported, tmp_path):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == file_sha256(BUNDLED_CHECKPOINT)
    assert set(manifest["files"]) == {p.name for p in exported.iterdir()} - {"manifest.json"}
    assert {"model.onnx", "config.json", "rnnlm.onnx"} <= set(manifest["files"])  # the word LSTM too, weights included
    assert manifest["exported_with"]["torch"] == torch.__version__.split("+")[0]
    again = tmp_path / "again"
    export_onnx(BUNDLED_CHECKPOINT, again)
    assert (again / "manifest.json").read_bytes() == (exported / "manifest.json").read_bytes()


def test_the_bundled_onnx_folder_is_the_export_of_the_bundled_checkpoint(exported):
    """Regenerate with: asr export --model asr/pretrained/an4_blstm/model.pt --onnx asr/pretrained/an4_blstm/onnx"""
    verify_export(BUNDLED_MODEL)
    shipped = json.loads((BUNDLED_MODEL / "manifest.json").read_text())
    assert shipped["source"]["sha256"] == file_sha256(BUNDLED_CHECKPOINT), "model.pt changed: export it again"
    fresh = json.loads((exported / "manifest.json").read_text())
    assert shipped["files"] == fresh["files"]


def test_int8_export_runs_and_is_smaller(untrained_model, tmp_path):
    export_onnx(untrained_model, tmp_path / "fp32")
    export_onnx(untrained_model, tmp_path / "int8", int8=True)
    fp32, int8 = load_exported(tmp_path / "fp32"), load_exported(tmp_path / "int8")
    assert "int8" in json.loads((tmp_path / "int8" / "config.json").read_text())["weights"]
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < (tmp_path / "fp32" / "model.onnx").stat().st_size
    feats = [np.random.default_rng(0).standard_normal((50, 80)).astype(np.float32)]
    (a, _), (b, _) = fp32.forward(feats), int8.forward(feats)
    assert a.shape == b.shape and np.abs(a - b).max() < 0.5  # quantisation error, not a different model


# --- same transcripts, same behaviour -------------------------------------------------------------


def test_runtime_transcribes_as_the_pytorch_path_short_and_streamed(exported, tmp_path, monkeypatch):
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(load_audio(EXAMPLE), 3), 16_000)
    torch_path = Transcriber(load_model(BUNDLED_CHECKPOINT))
    onnx_path = Transcriber(load_exported(exported))
    inputs = [(str(EXAMPLE), None), (str(tmp_path / "missing.wav"), None)]
    for greedy in (False, True):
        decoding = dataclasses.replace(torch_path.backend.decoding, decoder="greedy") if greedy else None
        expected = list(Transcriber(torch_path.backend, decoding=decoding).transcribe(inputs))
        assert list(Transcriber(onnx_path.backend, decoding=decoding).transcribe(inputs)) == expected
        assert expected[1].error  # the missing file, reported in its place
        # the bundled model hears J T E G FOUR both ways (see test_bundled_model)
        assert error_rates([EXAMPLE.with_suffix(".txt").read_text().strip()], [expected[0].text]).words.errors <= 1
        if not greedy:
            heard_once = expected[0].text  # the long file is the example three times
    monkeypatch.setattr(transcribe_module, "LONG_AUDIO_SECONDS", 5.0)  # the 7.2 s file is streamed in windows
    monkeypatch.setattr(transcribe_module, "WINDOW_SECONDS", 2.0)
    (streamed,) = onnx_path.transcribe([(str(long), None)])
    (expected,) = torch_path.transcribe([(str(long), None)])
    assert streamed.text == expected.text
    assert len(streamed.text.split()) == 3 * len(heard_once.split()) and streamed.text.count("FOUR") == 3
    assert [w.word for w in streamed.words] == [w.word for w in expected.words]


NO_TORCH = """
import sys
from asr.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:  # --help
    code = exit.code
TRAINING = ("asr.train", "asr.augment", "asr.training_data", "asr.rnnlm_train", "asr.specaugment")  # never to transcribe
print("imported:", sorted(m for m in ("torch", "torchaudio", "librosa", *TRAINING) if m in sys.modules))
sys.exit(code)
"""


def run_cli_reporting_imports(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, *argv], capture_output=True, encoding="utf-8", timeout=300)


def test_transcribe_with_the_bundled_model_never_imports_torch():
    expected = EXAMPLE.with_suffix(".txt").read_text().strip()
    for flags in ([], ["--decoder", "greedy"], ["--format", "jsonl"]):
        result = run_cli_reporting_imports("transcribe", *flags, str(EXAMPLE))
        assert result.returncode == 0, result.stderr
        *output, imported = result.stdout.splitlines()
        assert imported == "imported: []"
        heard = json.loads(output[0])["text"] if "jsonl" in flags else output[0].split("\t")[1]
        # the bundled model hears J T E G FOUR, greedy and beam + LM (see test_bundled_model)
        assert error_rates([expected], [heard]).words.errors <= 1


def test_cli_runs_a_checkpoint_with_pytorch_and_a_folder_with_onnxruntime(exported, tmp_path):
    with_torch = run_cli_reporting_imports("transcribe", "--model", str(BUNDLED_CHECKPOINT), str(EXAMPLE))
    without = run_cli_reporting_imports("transcribe", "--model", str(exported), str(EXAMPLE))
    assert with_torch.returncode == without.returncode == 0
    assert with_torch.stdout.splitlines()[-1] == "imported: ['torch']"  # not torchaudio: the front end is numpy
    assert without.stdout.splitlines()[-1] == "imported: []"
    assert with_torch.stdout.splitlines()[0] == without.stdout.splitlines()[0]
    graph = run_cli_reporting_imports("transcribe", "--model", str(exported / "model.onnx"), str(EXAMPLE))
    assert graph.returncode == 0 and graph.stdout == without.stdout  # the graph file means its folder
    cuda = run_asr("transcribe", "--model", str(exported), "--device", "cuda", str(EXAMPLE))
    assert cuda.returncode == 1 and cuda.stderr.splitlines() == [
        f"asr: error: {exported}: an exported model runs on the CPU (onnxruntime); device 'cuda' needs the PyTorch "
        "checkpoint"]


WITHOUT_TRAINING_STACK = """
import sys
for name in ("torch", "torchaudio", "librosa", "pyroomacoustics"):  # as after `pip install asr` (no train extra)
    sys.modules[name] = None
from asr.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli_without_training_stack(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TRAINING_STACK, *argv], capture_output=True,
                          encoding="utf-8", timeout=300)


def test_the_runtime_install_transcribes_and_names_the_extra_for_training(tmp_path):
    expected = EXAMPLE.with_suffix(".txt").read_text().strip()
    heard = run_cli_without_training_stack("transcribe", str(EXAMPLE))
    assert heard.returncode == 0, heard.stderr
    assert error_rates([expected], [heard.stdout.split("\t")[1].strip()]).words.errors <= 1
    for argv in (["train", "--config", "conf/an4_blstm.yaml"],
                 ["export", "--model", str(BUNDLED_CHECKPOINT), "--onnx", str(tmp_path / "onnx")]):
        refused = run_cli_without_training_stack(*argv)
        assert refused.returncode == 1 and refused.stderr.splitlines() == [
            f"asr: error: asr {argv[0]} needs torch, which this install lacks (it transcribes with exported "
            "models only): pip install 'asr[train]'"]
    checkpoint = run_cli_without_training_stack("transcribe", "--model", str(BUNDLED_CHECKPOINT), str(EXAMPLE))
    assert checkpoint.returncode == 1 and "pip install 'asr[train]'" in checkpoint.stderr
    assert not (tmp_path / "onnx").exists()


def test_help_imports_no_torch():
    for argv in (["--help"], ["transcribe", "--help"], ["export", "--help"]):
        result = run_cli_reporting_imports(*argv)
        assert result.returncode == 0 and "usage: asr" in result.stdout
        assert result.stdout.splitlines()[-1] == "imported: []"


# --- corrupt or incomplete folders ----------------------------------------------------------------


def damaged_copy(exported: Path, tmp_path: Path, damage) -> Path:
    folder = tmp_path / "damaged"
    shutil.copytree(exported, folder)
    damage(folder)
    return folder


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, named, problem", [
    (lambda f: flip_a_byte(f / "model.onnx"), "model.onnx", "does not match its checksum in manifest.json"),
    (lambda f: flip_a_byte(f / "rnnlm.onnx"), "rnnlm.onnx", "does not match its checksum"),
    (lambda f: (f / "rnnlm.onnx").unlink(), "rnnlm.onnx", "missing (listed in manifest.json)"),
    (lambda f: (f / "manifest.json").unlink(), "manifest.json", "missing"),
    (lambda f: (f / "manifest.json").write_text("{"), "manifest.json", "not readable JSON"),
])
def test_a_damaged_export_is_one_error_line_naming_the_file(exported, tmp_path, damage, named, problem):
    folder = damaged_copy(exported, tmp_path, damage)
    with pytest.raises(ExportError, match=f"^{re.escape(f'{folder / named}: {problem}')}"):
        load_exported(folder)
    result = run_asr("transcribe", "--model", str(folder), str(EXAMPLE))
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"asr: error: {folder / named}: {problem}")


def test_a_config_that_matches_its_checksum_but_not_the_format_is_named(exported, tmp_path):
    def rewrite_config(folder: Path) -> None:
        (folder / "config.json").write_text('{"vocab": []}')
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["files"]["config.json"] = {"bytes": (folder / "config.json").stat().st_size,
                                            "sha256": file_sha256(folder / "config.json")}
        (folder / "manifest.json").write_text(json.dumps(manifest))

    folder = damaged_copy(exported, tmp_path, rewrite_config)
    with pytest.raises(ExportError, match=f"^{folder / 'config.json'}: bad or incomplete configuration"):
        load_exported(folder)


def test_a_folder_of_the_older_format_is_one_line_saying_to_export_it_again(exported, tmp_path):
    def make_it_version_1(folder: Path) -> None:  # version 1 kept the LM's weights in rnnlm.bin
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["format_version"] = 1
        (folder / "manifest.json").write_text(json.dumps(manifest))

    folder = damaged_copy(exported, tmp_path, make_it_version_1)
    result = run_asr("transcribe", "--model", str(folder), str(EXAMPLE))
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"asr: error: {folder}: an exported model of format version 1") and "asr export" in line
    assert f"--onnx {folder}" in line


def test_decode_runs_an_exported_folder_without_torch(tmp_path):
    from asr.manifest import Utterance, write_manifest

    text = EXAMPLE.with_suffix(".txt").read_text().strip()
    write_manifest(tmp_path / "m.jsonl", [Utterance("ex", str(EXAMPLE), 2.4, text)])
    result = run_cli_reporting_imports("decode", "--model", str(BUNDLED_MODEL), "--decoder", "greedy",
                                       "--manifest", str(tmp_path / "m.jsonl"),
                                       "--out", str(tmp_path / "hyp.jsonl"), "--stats", str(tmp_path / "stats.json"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "imported: []"
    hypothesis = json.loads((tmp_path / "hyp.jsonl").read_text())
    assert hypothesis["id"] == "ex" and error_rates([text], [hypothesis["text"]]).words.errors <= 1
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["utterances"] == 1 and stats["threads"] >= 1 and "onnxruntime" in stats["device"]


def test_export_command_writes_a_folder_transcribe_runs(untrained_model, tmp_path, capsys):
    from asr.cli import main

    assert main(["export", "--model", str(untrained_model), "--onnx", str(tmp_path / "onnx")]) == 0
    assert f"-> {tmp_path / 'onnx'}/ (model.onnx, config.json;" in capsys.readouterr().err  # no LM: no lm.arpa
    verify_export(tmp_path / "onnx")
    assert main(["transcribe", "--model", str(tmp_path / "onnx"), str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.startswith(f"{EXAMPLE}\t")
    assert main(["export", "--model", str(untrained_model), "--onnx", str(tmp_path / "x"), "--fp16"]) == 1
    assert main(["export", "--model", str(untrained_model), "--out", str(tmp_path / "x.pt"), "--int8"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "asr: error: --fp16 applies to --out; an ONNX export stores weights as the checkpoint holds them "
        "(float16 when they are float16), or int8 with --int8",
        "asr: error: --int8 applies to --onnx"]


@pytest.mark.parametrize("units", ["word", "char"])
def test_a_model_with_a_recurrent_lm_exports_and_decodes_the_same_without_torch(units, tmp_path):
    from asr.checkpoint import decoding_section, read_checkpoint, save_checkpoint
    from asr.decode import DecodeConfig
    from asr.rnnlm import RNNLMConfig
    from asr.rnnlm_train import RNNLMTrainConfig, train_rnnlm

    text = ["J P E G FOUR", "ENTER SIX TWO FOUR", "YES", "NO", "RUBOUT"] * 10  # AN4-like sentences
    lm, _ = train_rnnlm(text, text[:5], RNNLMConfig(units=units, num_layers=1, hidden_size=32, dropout=0.0),
                        RNNLMTrainConfig(max_epochs=5, batch_size=2, bptt=10, lr=1e-2), tmp_path / "lm.pt")
    payload = read_checkpoint(BUNDLED_CHECKPOINT)
    decoding = DecodeConfig(decoder="beam", beam_size=10, beam_size_token=8, rnnlm_weight=0.5, word_score=1.0)
    payload["decoding"] = decoding_section(decoding, rnnlm=lm)  # the recurrent LM alone
    save_checkpoint(tmp_path / "model.pt", payload)
    export_onnx(tmp_path / "model.pt", tmp_path / "onnx")

    exported = load_exported(tmp_path / "onnx")
    assert "rnnlm.onnx" in verify_export(tmp_path / "onnx")["files"]
    assert exported.rnnlm.vocab == lm.vocab and exported.rnnlm.config == lm.config
    assert isinstance(exported.rnnlm.make_step(), OnnxStep)  # beam search steps the LM in onnxruntime
    rng = np.random.default_rng(0)
    tokens, states = rng.integers(0, len(lm.vocab), 7), rng.standard_normal((7, 1, 2, 32)).astype(np.float32)
    for got, want in zip(exported.rnnlm.make_step()(tokens, states), lm.make_step()(tokens, states)):
        assert np.abs(got - want).max() < 1e-5  # the torch path's step, exported
    (expected,) = Transcriber(load_model(tmp_path / "model.pt")).transcribe([(str(EXAMPLE), None)])
    result = run_cli_reporting_imports("transcribe", "--model", str(tmp_path / "onnx"), str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    heard, imported = result.stdout.splitlines()
    assert imported == "imported: []"
    assert heard.split("\t")[1] == expected.text
    assert error_rates([EXAMPLE.with_suffix(".txt").read_text().strip()], [expected.text]).words.errors <= 1
