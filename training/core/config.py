"""Typed configuration: YAML -> nested frozen dataclasses, validated on load.

Every config in this project is a tree of frozen dataclasses. `load_config` reads a YAML file,
applies `key.sub=value` overrides from the command line, and builds the tree, checking that

* every key exists (a misspelt key is an error that suggests the nearest real key),
* every value has the declared type (`int`, `float`, `bool`, `str`, `Literal[...]`, `Optional[...]`,
  `tuple[...]`, `list[...]`),
* every number lies in the range declared with `field(..., min=..., max=...)`.

Errors are `ConfigError`s whose message names the file and the dotted key, so the command-line
scripts can print them as one line. Cross-field rules live in each dataclass's `validate()`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar, Union, get_args, get_origin

import yaml

from training.core.errors import ConfigError, UserError, short_repr
from training.core.names import check_plain_name

T = TypeVar("T")
MAX_SEED = 2**32 - 1        # numpy's and torch's generators all take seeds up to here

# An optional setting is unset by the YAML null (`null`, `~`, empty) or by the word `off`, which every
# optional key documents ("ema_decay: off"). Nothing else: a class really named `no` or `none` stays a name.
_OFF = "off"
_MAX_CONFIG_BYTES = 1_000_000        # a config is a page of text; anything far larger is not one
# The folder that holds the shipped experiments/: a study YAML in a user's own folder names
# `experiments/gan_own_data.yaml` and must find it wherever the command runs.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class _StrictLoader(yaml.SafeLoader):
    """YAML as configs need it: booleans are only true/false (YAML 1.2, so `off`, `no`, `yes` stay words),
    a key given twice in one mapping is an error, and aliases are refused (they can expand a few bytes
    into gigabytes, and no config needs them)."""

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"YAML aliases (*{event.anchor}) are not supported in configs, at line "
                              f"{event.start_mark.line + 1}")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"key '{key}' is given twice in one section, at line {key_node.start_mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
                                         for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "tTfF":
    _StrictLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")))


def parse_yaml(text: str, source: str) -> Any:
    """YAML text -> data with `_StrictLoader`; every failure is a one-line ConfigError naming `source`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: invalid YAML{where}: {getattr(err, 'problem', None) or err}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config") from None


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

def field(default: Any = dataclasses.MISSING, *, min: float | None = None, max: float | None = None,
          help: str = "", default_factory: Any = dataclasses.MISSING, plain_name: bool = False) -> Any:
    """A dataclass field with an optional numeric range and a help text; `plain_name`: the value becomes a
    folder name, so it must be a plain one (training.core.names)."""
    metadata = {"min": min, "max": max, "help": help, "plain_name": plain_name}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """The `output:` section of a run config: the run's name and where its results go."""

    name: Optional[str] = field(None, plain_name=True, help="default: the config file's stem")
    results_dir: str = "results"


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (tuple, list):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(tp) if a is not Ellipsis)}]"
    return getattr(tp, "__name__", str(tp))


class _WrongKind(ConfigError):
    """A value of the wrong kind, with what was expected, so that a union can name each of its options."""

    def __init__(self, message: str, expected: str):
        super().__init__(message)
        self.expected = expected


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against type `tp` and return it in canonical form, or raise ConfigError."""
    def fail(expected: str | None = None) -> typing.NoReturn:
        expected = expected or _type_name(tp)
        raise _WrongKind(f"{source}: '{key}' must be {expected}, got {short_repr(value)}", expected)

    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if type(None) in options:
            if value is None or value == _OFF:
                return None
            options = tuple(o for o in options if o is not type(None))
        expected = []
        for option in options:
            try:
                return _coerce(value, option, key, source)
            except _WrongKind as err:
                expected.append(err.expected)
        fail(" or ".join(expected) + (" (or off)" if type(None) in get_args(tp) else ""))
    if origin is Literal:
        if value not in get_args(tp):
            fail("one of " + ", ".join(repr(a) for a in get_args(tp)))
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            fail()
        args = get_args(tp)
        if origin is tuple and Ellipsis not in args:
            if len(value) != len(args):
                fail(f"a list of {len(args)} values")
            return tuple(_coerce(v, a, key, source) for v, a in zip(value, args))
        return origin(_coerce(v, args[0], key, source) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
        return value
    if tp is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):   # YAML 1.1 reads 1e-3 as a string
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("a number")
        if not math.isfinite(value):                # .nan passes every range check; .inf means nothing here
            fail("a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail("a string")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail("a section (a mapping of keys)")
        return build(tp, value, source, prefix=key + ".")
    raise TypeError(f"config type {tp!r} of '{key}' is not supported")  # a bug in a schema, not user input


def build(cls: type, raw: dict, source: str, prefix: str = "") -> Any:
    """Build dataclass `cls` from the mapping `raw`, validating keys, types and ranges."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    retired = getattr(cls, "RETIRED", {})           # {key: (the value it had when off, why it was removed)}
    for key in [k for k in raw if k in retired]:
        off, why = retired[key]
        if raw[key] != off:
            raise ConfigError(f"{source}: '{prefix}{key}' was removed from medgan-augment ({why}); "
                              f"this config or checkpoint needs an earlier version")
    raw = {k: v for k, v in raw.items() if k not in retired}
    for key in raw:
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{prefix}{near[0]}'?)" if near else f" (known: {', '.join(fields)})"
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'{hint}")
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if name in raw:
            value = _coerce(raw[name], hints[name], key, source)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise ConfigError(f"{source}: missing required key '{key}'")
        if f.metadata.get("plain_name") and isinstance(value, str):
            try:
                check_plain_name(value, f"'{key}'")
            except UserError as err:
                raise ConfigError(f"{source}: {err}") from None
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        for number in _numbers(value):
            if (lo is not None and number < lo) or (hi is not None and number > hi):
                bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
                raise ConfigError(f"{source}: '{key}' = {short_repr(value)} is out of range {bounds}")
        values[name] = value
    obj = cls(**values)
    if hasattr(obj, "validate"):
        try:
            obj.validate()
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return obj


def with_device(config: T, device: str | None) -> T:
    """A run config with `train.device` replaced by a script's `--device` flag, when given."""
    if device is None:
        return config
    return dataclasses.replace(config, train=dataclasses.replace(config.train, device=device))


def check_seeds(seeds: tuple[int, ...]) -> None:
    """A `train.seeds` list: at least one seed, none repeated ([0, 0, 0] would be one run reported as three)."""
    if not seeds:
        raise ConfigError("'train.seeds' needs at least one seed")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"'train.seeds' has repeated seeds ({', '.join(map(str, repeated))} in {list(seeds)}): "
                          "each seed is one independent run")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return []


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """Parse `a.b=value` strings; values are read as YAML (`2`, `0.5`, `[0.5, 0.9]`, `off`)."""
    parsed = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override '{item}' must look like section.key=value")
        try:
            value = parse_yaml(text, f"override '{key}'") if text != "" else ""
        except ConfigError:
            value = text
        parsed.append((key.split("."), value))
    return parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of `raw` with the overrides applied (validation happens in `build`)."""
    merged = copy.deepcopy(raw)
    for path, value in parse_overrides(overrides):
        node = merged
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{'.'.join(path)}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return merged


def find_config(path: str | Path) -> Path:
    """`path` itself when it exists; a relative path that does not is looked up in the project's folder,
    so that the shipped configs (`experiments/...`) are found from any working directory."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = PROJECT_ROOT / path
    if not path.is_absolute() and shipped.is_file():
        return shipped
    where = "" if path.is_absolute() else f" (looked in {Path.cwd()} and in {PROJECT_ROOT})"
    raise ConfigError(f"config file not found: {path}{where}")


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with one-line errors for a missing file or bad syntax."""
    path = find_config(path)
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is too large to be a config")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file (byte {err.start} is not UTF-8)") from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(f"{path}: the config is empty; start from a file in experiments/")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return raw


def load_config(cls: type, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Load the YAML file at `path` into dataclass `cls`, applying `key.sub=value` overrides."""
    raw = apply_overrides(read_yaml(path), list(overrides))
    source = str(path) + (" (with overrides)" if overrides else "")
    return with_default_name(build(cls, raw, source), Path(path))


def with_default_name(config: Any, path: Path) -> Any:
    """Name a run after its config file when `output.name` is unset (experiments/dcgan_hinge.yaml -> dcgan_hinge)."""
    output = getattr(config, "output", None)
    if output is None or getattr(output, "name", "set") is not None:
        return config
    try:
        name = check_plain_name(path.stem, f"the config file's name (the default run name, from {path})")
    except UserError as err:
        raise ConfigError(f"{err}; or set output.name") from None
    return dataclasses.replace(config, output=dataclasses.replace(output, name=name))


def to_dict(config: Any) -> dict:
    """The config as plain YAML-ready data (tuples become lists)."""
    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def from_dict(cls: type, raw: dict, source: str = "checkpoint") -> Any:
    """Rebuild a config saved with `to_dict` (e.g. from a checkpoint)."""
    return build(cls, raw, source)
