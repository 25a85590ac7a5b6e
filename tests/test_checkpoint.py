"""asr.checkpoint: atomic save, safe (weights-only) load, version and consistency checks."""

import os
import re
import shlex

import pytest
import torch

from asr.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_payload,
    decoding_section,
    export_payload,
    load_model,
    model_from_payload,
    read_checkpoint,
    run_config_entry,
    save_checkpoint,
    stored_run_config,
)
from asr.decode import DecodeConfig
from asr.errors import ASRError
from asr.frontend import Cmvn, FeatureConfig
from asr.model import AcousticModel, ModelConfig
from asr.text import Vocab

N_MELS = 12


def tiny_setup(seed: int = 0):
    torch.manual_seed(seed)
    features = FeatureConfig(n_mels=N_MELS, f_max=7600.0)
    vocab = Vocab.from_texts(["HELLO WORLD"])
    cmvn = Cmvn(mean=tuple(0.1 * i for i in range(N_MELS)), std=tuple(1.0 + i for i in range(N_MELS)))
    config = ModelConfig(cell="gru", bidirectional=True, num_layers=2, hidden_size=8, dropout=0.1, frame_stack=2)
    model = AcousticModel(config, input_dim=N_MELS, vocab_size=len(vocab))
    return model, features, cmvn, vocab


def saved_checkpoint(tmp_path, name="model.pt", **extra):
    model, features, cmvn, vocab = tiny_setup()
    path = tmp_path / name
    save_checkpoint(path, checkpoint_payload(model, features, cmvn, vocab, **extra))
    return path, (model, features, cmvn, vocab)


def test_round_trip_same_outputs_and_pipeline(tmp_path):
    path, (model, features, cmvn, vocab) = saved_checkpoint(tmp_path)
    loaded = load_model(path)
    assert not loaded.model.training  # eval mode
    assert loaded.features == features
    assert loaded.cmvn == cmvn
    assert loaded.vocab == vocab
    assert loaded.path == str(path)
    assert loaded.model.config == model.config
    feats = torch.randn(2, 9, N_MELS, generator=torch.Generator().manual_seed(1))  # (B, T, F)
    lens = torch.tensor([9, 5])
    model.eval()
    with torch.no_grad():
        expected, expected_lens = model(feats, lens)
        got, got_lens = loaded.model(feats, lens)
    assert torch.equal(got, expected)
    assert torch.equal(got_lens, expected_lens)


def test_a_run_config_is_stored_once_and_read_back_whole():
    from asr.config import build, to_dict
    from asr.runconfig import RunConfig

    model, features, cmvn, vocab = tiny_setup()
    run = RunConfig(features=features, model=model.config)
    payload = checkpoint_payload(model, features, cmvn, vocab, run_config=run_config_entry(to_dict(run)))
    assert "model" not in payload["run_config"] and "features" not in payload["run_config"]
    assert build(RunConfig, stored_run_config(payload), "<payload>") == run
    older = dict(payload, run_config=to_dict(run))  # written before: model and features held twice
    assert stored_run_config(older) == to_dict(run)


def test_save_leaves_no_temp_files_and_creates_folders(tmp_path):
    path, _ = saved_checkpoint(tmp_path / "a" / "b")
    assert sorted(os.listdir(tmp_path / "a" / "b")) == ["model.pt"]
    assert path.is_file()


def test_save_overwrites_existing_checkpoint(tmp_path):
    path, _ = saved_checkpoint(tmp_path, step=1)
    model, features, cmvn, vocab = tiny_setup(seed=5)
    save_checkpoint(path, checkpoint_payload(model, features, cmvn, vocab, step=2))
    assert read_checkpoint(path)["step"] == 2
    assert os.listdir(tmp_path) == ["model.pt"]


def test_read_checkpoint_keeps_extra_state(tmp_path):
    path, _ = saved_checkpoint(tmp_path, train_state={"epoch": 3, "best_wer": 0.25}, note="hi")
    payload = read_checkpoint(path)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["train_state"] == {"epoch": 3, "best_wer": 0.25}
    assert payload["note"] == "hi"


# --- bad files ---------------------------------------------------------------------------------


def assert_checkpoint_error(path, problem: str, fn=read_checkpoint) -> CheckpointError:
    """fn(path) raises CheckpointError whose message is `PATH: problem...`."""
    with pytest.raises(CheckpointError) as info:
        fn(path)
    assert str(info.value).startswith(f"{path}: {problem}"), str(info.value)
    return info.value


def test_checkpoint_error_is_asr_error():
    assert issubclass(CheckpointError, ASRError)


def test_missing_file(tmp_path):
    assert_checkpoint_error(tmp_path / "nothing.pt", "no such checkpoint file")
    assert_checkpoint_error(tmp_path / "nothing.pt", "no such checkpoint file", fn=load_model)


def test_directory_is_not_a_checkpoint(tmp_path):
    assert_checkpoint_error(tmp_path, "no such checkpoint file")


@pytest.mark.parametrize("content", [b"", b"definitely not a checkpoint\n" * 20, bytes(range(256)) * 4])
def test_garbage_file(tmp_path, content):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    assert_checkpoint_error(path, "not a readable checkpoint (")


def test_truncated_checkpoint(tmp_path):
    path, _ = saved_checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_checkpoint_error(path, "not a readable checkpoint (")


def test_version_mismatch(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    payload = checkpoint_payload(model, features, cmvn, vocab)
    payload["format_version"] = FORMAT_VERSION + 1
    path = tmp_path / "future.pt"
    torch.save(payload, path)
    assert_checkpoint_error(
        path, f"checkpoint format version {FORMAT_VERSION + 1}, this toolkit reads version {FORMAT_VERSION}")


@pytest.mark.parametrize("obj", [{"model": {}}, [1, 2, 3], torch.zeros(3)])
def test_not_a_toolkit_checkpoint(tmp_path, obj):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    assert_checkpoint_error(path, "not a checkpoint written by this toolkit")


class _RunsCode:
    """Unpickling this runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_code_executing_pickle_is_refused(tmp_path, zipfile):
    # both formats run the command under torch.load(weights_only=False)
    marker = tmp_path / "MARKER"
    payload = {"format_version": FORMAT_VERSION, "model": _RunsCode(f"touch {shlex.quote(str(marker))}")}
    path = tmp_path / "evil.pt"
    torch.save(payload, path, _use_new_zipfile_serialization=zipfile)
    assert not marker.exists()
    assert_checkpoint_error(path, "not a readable checkpoint (")
    assert_checkpoint_error(path, "not a readable checkpoint (", fn=load_model)
    assert not marker.exists()


# --- payloads that do not fit their configuration ----------------------------------------------


def test_weights_not_matching_config(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    payload = checkpoint_payload(model, features, cmvn, vocab)
    payload["model_config"]["hidden_size"] = 16  # the weights are for 8
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, payload)
    assert_checkpoint_error(path, "weights do not match the stored configuration (", fn=load_model)


def test_weights_not_matching_feature_dim(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    payload = checkpoint_payload(model, features, cmvn, vocab)
    payload["feature_config"]["n_mels"] = N_MELS + 1  # input layer weights are for N_MELS
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, payload)
    assert_checkpoint_error(path, "weights do not match the stored configuration (", fn=load_model)


def test_weights_not_matching_vocab_size(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    payload = checkpoint_payload(model, features, cmvn, vocab)
    payload["vocab"].append("Z")  # output layer is one row short
    path = tmp_path / "x.pt"
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: weights do not match the stored "
                                              r"configuration \(Error\(s\) in loading state_dict"):
        model_from_payload(payload, path)


def test_missing_section(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    payload = checkpoint_payload(model, features, cmvn, vocab)
    del payload["cmvn"]
    path = tmp_path / "incomplete.pt"
    save_checkpoint(path, payload)
    assert_checkpoint_error(path, "checkpoint lacks 'cmvn'", fn=load_model)


def test_unknown_config_field(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    payload = checkpoint_payload(model, features, cmvn, vocab)
    payload["model_config"]["attention_heads"] = 4
    path = tmp_path / "x.pt"
    with pytest.raises(CheckpointError) as info:
        model_from_payload(payload, path)
    assert str(info.value) == f"{path}: unknown key(s) model_config.attention_heads"


def test_invalid_stored_vocab_is_checkpoint_error_naming_file(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    payload = checkpoint_payload(model, features, cmvn, vocab)
    payload["vocab"] = payload["vocab"][1:] + ["<blank>"]  # blank no longer at id 0, same size
    path = tmp_path / "badvocab.pt"
    save_checkpoint(path, payload)
    assert_checkpoint_error(path, "vocabulary must start with '<blank>' at id 0", fn=load_model)


# --- the decoding section (what `asr tune-lm` adds) ------------------------------------------------


@pytest.mark.parametrize(
    ("decoding", "problem"),
    [
        ({"config": {"decoder": "beem"}}, "decoder must be one of ('greedy', 'beam'), got 'beem'"),
        ({"config": {"decoder": "beam", "beam_size": 0}}, "beam_size must be >= 1"),
        ({"config": {"decoder": "beam", "beam_threshold": 0.0}}, "beam_threshold must be > 0, got 0.0"),
        ({"config": {"beam_size": "50"}}, "config.beam_size must be int, got '50'"),
        ({"config": {"lm_weight": "high"}}, "config.lm_weight must be float, got 'high'"),
        ({"config": {"beam_size_token": 2.5}}, "config.beam_size_token must be int or None, got 2.5"),
        ({"config": {"beam_size": True}}, "config.beam_size must be int, got True"),
        ({"config": {"beam_width": 50}}, "unknown key(s) config.beam_width"),
        ({"config": ["beam"]}, "config must be a mapping, got list"),
        ({"config": {}, "lm_arpa": 3}, "lm_arpa must be the ARPA text, got int"),
        ({"config": {}, "lexicon": "CAT"}, "lexicon must be a list of words"),
        ({"config": {}, "lm_arpa_gzip": "ARPA"}, "lm_arpa_gzip must be gzip-compressed ARPA text, got str"),
        ("beam", "expected a mapping, got str"),
    ],
)
def test_a_bad_decoding_section_is_reported_as_such(tmp_path, decoding, problem):
    model, features, cmvn, vocab = tiny_setup()
    path = tmp_path / "tuned.pt"
    save_checkpoint(path, checkpoint_payload(model, features, cmvn, vocab, decoding=decoding))
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(info.value) == f"{path}: bad decoding section: {problem}"


def test_a_good_decoding_section_is_loaded(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    config = DecodeConfig(decoder="beam", beam_size=7, lm_weight=1, word_score=2.5)  # an int weight is a float
    path = tmp_path / "tuned.pt"
    save_checkpoint(path, checkpoint_payload(model, features, cmvn, vocab,
                                             decoding=decoding_section(config, "ARPA", ["HELLO", "WORLD"])))
    loaded = load_model(path)
    assert (loaded.decoding, loaded.lm_arpa, loaded.lexicon) == (config, "ARPA", ("HELLO", "WORLD"))


def test_the_lm_is_stored_compressed_and_a_plain_text_lm_of_an_older_checkpoint_still_loads(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    config = DecodeConfig(decoder="beam", lm_weight=1.0)
    arpa = "\\data\\\nngram 1=2\n\n\\1-grams:\n" + "-1.0 HELLO\n" * 2000 + "\\end\\\n"
    section = decoding_section(config, arpa)
    assert "lm_arpa" not in section and len(section["lm_arpa_gzip"]) < len(arpa) / 10
    older = {"config": section["config"], "lm_arpa": arpa, "lexicon": None}  # as checkpoints before held it
    for name, decoding in (("new.pt", section), ("older.pt", older)):
        save_checkpoint(tmp_path / name, checkpoint_payload(model, features, cmvn, vocab, decoding=decoding))
        assert load_model(tmp_path / name).lm_arpa == arpa
    exported = export_payload(read_checkpoint(tmp_path / "older.pt"))  # asr export rewrites it compressed
    assert "lm_arpa" not in exported["decoding"] and model_from_payload(exported).lm_arpa == arpa


def test_a_damaged_compressed_lm_is_reported_as_such(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    section = decoding_section(DecodeConfig(decoder="beam"), "ARPA")
    section["lm_arpa_gzip"] = section["lm_arpa_gzip"][:-8]
    path = tmp_path / "tuned.pt"
    save_checkpoint(path, checkpoint_payload(model, features, cmvn, vocab, decoding=section))
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: bad decoding section: lm_arpa_gzip is not "
                                              "gzip-compressed UTF-8 text"):
        load_model(path)


def test_a_checkpoint_whose_lm_does_not_load_is_named_in_the_error(tmp_path):
    model, features, cmvn, vocab = tiny_setup()
    path = tmp_path / "tuned.pt"
    decoding = decoding_section(DecodeConfig(decoder="beam", lm_weight=1.0), "garbage\n", ["HELLO", "WORLD"])
    save_checkpoint(path, checkpoint_payload(model, features, cmvn, vocab, decoding=decoding))
    loaded = load_model(path)
    with pytest.raises(ASRError, match=rf"^{re.escape(str(path))}: cannot load the beam-search LM or lexicon \("):
        loaded.decoder()
