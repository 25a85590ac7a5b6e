"""asr.config: YAML -> typed frozen dataclasses, dotted overrides, errors naming file and key."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from asr.config import ConfigError, load_config, to_dict
from asr.errors import ASRError
from asr.runconfig import RunConfig

REPO = Path(__file__).parents[1]
AN4_CONFIG = REPO / "conf" / "an4_blstm.yaml"


def test_an4_config_loads_with_the_file_values_and_types():
    config = load_config(RunConfig, AN4_CONFIG)
    assert isinstance(config, RunConfig)
    raw = yaml.safe_load(AN4_CONFIG.read_text())
    for section, values in raw.items():
        loaded = getattr(config, section)
        for key, value in values.items():
            got = getattr(loaded, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, f"{section}.{key}"
    assert isinstance(config.train.lr, float) and isinstance(config.features.f_min, float)
    assert isinstance(config.train.speed_perturb, tuple)


def test_an4_config_sets_every_field():
    # the file says it is complete on its own: every section and key of RunConfig is present
    raw = yaml.safe_load(AN4_CONFIG.read_text())
    sections = {f.name: f for f in dataclasses.fields(RunConfig)}
    assert set(raw) == set(sections)
    defaults = RunConfig()
    for name in sections:
        keys = {f.name for f in dataclasses.fields(getattr(defaults, name))}
        assert set(raw[name]) == keys, name


def test_loaded_config_is_frozen():
    config = load_config(RunConfig, AN4_CONFIG)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.epochs = 1  # type: ignore[misc]


def test_no_file_gives_defaults():
    assert load_config(RunConfig, None) == RunConfig()


def test_overrides_set_typed_values():
    config = load_config(
        RunConfig,
        AN4_CONFIG,
        [
            "model.hidden_size=320",
            "train.lr=0.0005",
            "model.bidirectional=false",
            "features.f_max=null",
            "model.cell=gru",
            "train.device=cuda:1",
            "data.vocab=",
        ],
    )
    assert config.model.hidden_size == 320 and isinstance(config.model.hidden_size, int)
    assert config.train.lr == 0.0005 and isinstance(config.train.lr, float)
    assert config.model.bidirectional is False
    assert config.features.f_max is None
    assert config.model.cell == "gru"
    assert config.train.device == "cuda:1"
    assert config.data.vocab == ""
    assert config.train.epochs == 80  # untouched keys keep the file's values


def test_int_given_for_float_becomes_float():
    config = load_config(RunConfig, AN4_CONFIG, ["features.f_max=8000", "train.grad_clip=1"])
    assert config.features.f_max == 8000.0 and isinstance(config.features.f_max, float)
    assert config.train.grad_clip == 1.0 and isinstance(config.train.grad_clip, float)


def test_later_override_wins():
    config = load_config(RunConfig, None, ["train.epochs=5", "train.epochs=7"])
    assert config.train.epochs == 7


def test_override_exponent_float_without_dot():
    assert load_config(RunConfig, None, ["train.lr=1e-3"]).train.lr == pytest.approx(1e-3)


def test_config_error_is_asr_error():
    assert issubclass(ConfigError, ASRError)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model.hidden=5", "model.hidden"),
        ("modle.hidden_size=5", "modle"),  # unknown section
        ("train.epochs.inner=1", "train.epochs.inner"),  # a value used as a section
    ],
)
def test_unknown_key_names_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(RunConfig, AN4_CONFIG, [override])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "extra.yaml"
    path.write_text("model:\n  cell: gru\n  hiden_size: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, path)
    assert str(path) in str(info.value)
    assert "model.hiden_size" in str(info.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epochs=five", "train.epochs"),
        ("train.epochs=2.5", "train.epochs"),
        ("train.epochs=true", "train.epochs"),  # a bool is not an int
        ("model.bidirectional=1", "model.bidirectional"),
        ("train.lr=fast", "train.lr"),
        ("features.f_max=high", "features.f_max"),
        ("model.cell=3", "model.cell"),
        ("model=5", "model"),  # a section must be a mapping
    ],
)
def test_wrong_type_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(RunConfig, AN4_CONFIG, [override])


def test_invalid_value_rejected_by_dataclass_is_config_error():
    with pytest.raises(ConfigError, match="cell"):
        load_config(RunConfig, None, ["model.cell=transformer"])
    with pytest.raises(ConfigError, match="dropout"):
        load_config(RunConfig, None, ["model.dropout=1.5"])


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  cell: [lstm\n  hidden_size: 3\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(RunConfig, path)


def test_yaml_not_a_mapping_names_the_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- model\n- train\n")
    with pytest.raises(ConfigError, match="list.yaml"):
        load_config(RunConfig, path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="absent.yaml"):
        load_config(RunConfig, tmp_path / "absent.yaml")


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(RunConfig, path) == RunConfig()


@pytest.mark.parametrize("override", ["train.epochs", "=5", ""])
def test_override_without_key_value_is_error(override):
    with pytest.raises(ConfigError, match=rf"^override {re.escape(repr(override))}: expected section\.key=value$"):
        load_config(RunConfig, None, [override])


def test_resolved_config_dumped_as_yaml_loads_back_equal(tmp_path):
    config = load_config(RunConfig, AN4_CONFIG, ["model.cell=gru", "train.weight_decay=0.00001", "features.f_max=7600"])
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    assert load_config(RunConfig, path) == config
