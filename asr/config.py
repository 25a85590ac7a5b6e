"""The one codec between plain dicts and the typed, frozen config dataclasses.

    cfg = load_config(RunConfig, "conf/an4_blstm.yaml", ["model.hidden_size=320", "train.epochs=5"])
    features = build(FeatureConfig, payload["feature_config"], "model.pt", "feature_config.")
    data = to_dict(cfg)                     # -> YAML, JSON, a checkpoint; build(RunConfig, data, ...) reads it back

YAML files with dotted `key=value` overrides, checkpoints, exported folders, LM files and the
training state all go through `build`: unknown keys and wrongly typed values are one ConfigError
that names the file and the key; the dataclasses' own checks (`__post_init__`) raise ValueError,
which `build` reports the same way.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, TypeVar

import yaml

from asr.errors import ASRError

T = TypeVar("T")


class ConfigError(ASRError):
    """A config file or override that does not fit the config's dataclasses."""


def load_config(cls: type[T], path: str | os.PathLike | None, overrides: list[str] = ()) -> T:
    """Read YAML at path (or start from defaults when None), apply overrides, build cls."""
    data: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections")
    for override in overrides:
        apply_override(data, override)
    return build(cls, data, source)


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set a dotted key in a nested dict: 'train.lr=0.001' -> data['train']['lr'] = 0.001 (YAML-typed)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected section.key=value")
    *sections, leaf = key.split(".")
    node = data
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {section!r} is not a section")
    node[leaf] = yaml.safe_load(value) if value else ""


def build(cls: type[T], data: dict[str, Any], source: str, prefix: str = "") -> T:
    """Recursively turn a dict into dataclass cls, checking keys and simple types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, source, prefix + name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from None


def _convert(hint: Any, value: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, key + ".")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, source, key)
            except ConfigError:
                pass
        names = " or ".join("None" if t is type(None) else getattr(t, "__name__", str(t)) for t in options)
        raise ConfigError(f"{source}: {key} must be {names}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return tuple(_convert(item, v, source, key) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads '1e-3' (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, str, bool, float) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{source}: {key} must be {hint.__name__}, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain nested dicts and lists (for YAML, JSON and checkpoints)."""
    return dataclasses.asdict(config, dict_factory=lambda items: {k: _plain(v) for k, v in items})


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value
