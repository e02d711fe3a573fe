"""Typed params: `params.yaml` read with ruamel.yaml into dataclasses, one section per stage.

Each module owns the dataclass of its own section and registers it in SECTIONS below, so a stage
asks only for what it reads (`load_section("corpus")`) while any unknown top-level key, unknown
field or wrong type anywhere in the file is an error that names the file and the key.
An iteration may override keys of the select, train and mix sections for itself
(`iterations.it2.select.threshold`); `load_section("select", iteration="it2")` reads the result.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from humpback.errors import ConfigError

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")

# section name -> "module:Class". Lazy so that loading one section imports only its module.
SECTIONS: dict[str, str] = {
    "base_model": "humpback.models:BaseModelConfig",
    "seed": "humpback.seed.config:SeedConfig",
    "corpus": "humpback.corpus.config:CorpusConfig",
    "prompts": "humpback.prompts:PromptsConfig",
    "engine": "humpback.engines.config:EngineConfig",
    "train": "humpback.training.config:TrainConfig",
    "mix": "humpback.training.config:MixConfig",
    "augment": "humpback.augment:AugmentConfig",
    "score": "humpback.curation.config:ScoreConfig",
    "select": "humpback.curation.config:SelectConfig",
    "iterations": "humpback.config:IterationsConfig",
    "eval": "humpback.evaluation.config:EvalConfig",
    "judge": "humpback.evaluation.config:JudgeConfig",
}


def param(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
          ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
          one_of: Any = None) -> Any:
    """A dataclass field with its valid range, checked when params are read (so `humpback check-params`
    rejects what a stage would reject later): `top_share: float = param(0.5, ge=0, le=1)`."""
    meta = {"range": {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}}
    if one_of is not None:
        meta["one_of"] = tuple(one_of)
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


_RANGE_TEXT = {"ge": ">= {}", "gt": "> {}", "le": "<= {}", "lt": "< {}"}
_RANGE_OK = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}


def _check_field(f: dataclasses.Field, value: Any, where: str) -> None:
    rng = f.metadata.get("range") or {}
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if rng and number and not all(_RANGE_OK[k](value, b) for k, b in rng.items()):
        want = " and ".join(_RANGE_TEXT[k].format(b) for k, b in rng.items())
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise ConfigError(f"{where}: {shown} is out of range (must be {want})")
    allowed = f.metadata.get("one_of")
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, allowed))}")


# Sections an iteration may override for itself: `iterations.it2.select.threshold: 4.5` changes
# it2's selection only. Scoring is not among them: a score stage must never re-run for a knob of
# the selection or training that follows it.
OVERRIDABLE = ("select", "train", "mix")


@dataclasses.dataclass
class Iteration:
    prev: str  # the model that scores the candidates for this iteration (m0, it1, ...)
    # Partial mappings over the sections of OVERRIDABLE. Their keys are checked against the
    # section's class where the section is read: load_section(name, iteration=...), check-params.
    select: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    mix: dict[str, Any] = dataclasses.field(default_factory=dict)


class IterationsConfig(dict):
    """`iterations: {it1: {prev: m0}, it2: {prev: it1}}`: a mapping, so it gets its own parser."""

    DEFAULT = {"it1": {"prev": "m0"}, "it2": {"prev": "it1"}}  # the paper's two iterations

    @classmethod
    def from_raw(cls, raw: Any, where: str) -> IterationsConfig:
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f"{where}: expected a non-empty mapping of iteration name -> {{prev: ...}}")
        out = cls()
        for name, body in raw.items():
            out[str(name)] = convert(body, Iteration, f"{where}.{name}")
        known = {"m0", *out}
        for name, it in out.items():
            if it.prev not in known or it.prev == name:
                raise ConfigError(f"{where}.{name}.prev: '{it.prev}' is not m0 or another iteration")
        for name in out:  # every chain must lead back to m0: a loop would be a cycle in the DAG
            seen, cur = [name], out[name].prev
            while cur != "m0":
                if cur in seen:
                    raise ConfigError(f"{where}.{name}.prev: the chain {' -> '.join([*seen, cur])} never reaches m0")
                seen.append(cur)
                cur = out[cur].prev
        return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the type annotation `tp`; build dataclasses; name `where` on error."""
    if isinstance(tp, type) and hasattr(tp, "from_raw"):
        return tp.from_raw(value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(map(str, value)) - set(fields))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
            )
        kwargs = {}
        for name, f in fields.items():
            if name in value:
                raw = value[name]
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                if isinstance(raw, dict) and dataclasses.is_dataclass(default):
                    # a partial nested mapping keeps this field's own defaults (augment's 48 new
                    # tokens), not those of the nested class
                    raw = {**dataclasses.asdict(default), **raw}
                kwargs[name] = convert(raw, hints[name], f"{where}.{name}")
                _check_field(f, kwargs[name], f"{where}.{name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}.{name}: required key is missing")
        obj = tp(**kwargs)
        # rules that tie fields together: problems() -> [(key, what is wrong)]
        for key, problem in getattr(obj, "problems", lambda: [])():
            raise ConfigError(f"{where}.{key}: {problem}")
        return obj
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arm in get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return convert(value, arm, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of {_type_name(tp)}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(map(repr, get_args(tp)))
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (arm,) = get_args(tp)[:1] or (Any,)
        return [convert(v, arm, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        return {str(k): convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def _yaml_problem(e: Exception) -> str:
    """ruamel's multi-line message as one line: the problem and where it is."""
    problem, mark = getattr(e, "problem", None), getattr(e, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(e).split())


def read_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Parse the YAML file and check that every top-level key is a known section."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    unknown = sorted(set(map(str, data)) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return data


def section_class(name: str) -> type:
    module, _, cls = SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def default_section(name: str, cls: type | None = None) -> Any:
    """A section with every key at its code default (what a params file without it means)."""
    cls = cls or section_class(name)
    return convert(getattr(cls, "DEFAULT", {}), cls, name)


def _section(data: dict[str, Any], name: str, path: str | Path, cls: type | None = None) -> Any:
    cls = cls or section_class(name)
    raw = data.get(name)
    if raw is None:
        return default_section(name, cls)
    try:
        return convert(raw, cls, name)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def override(obj: T, raw: Any, where: str) -> T:
    """`obj` (a section) with the keys of the partial mapping `raw` replaced, each checked as the
    section's own keys are (unknown key, type, range; problems() on the result), errors at `where`.
    A nested mapping overrides only its own keys: `train: {lora: {r: 8}}` keeps the section's alpha."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    tp = type(obj)
    hints = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
    unknown = sorted(set(map(str, raw)) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    changes = {}
    for name, value in raw.items():
        current = getattr(obj, name)
        if isinstance(value, dict) and dataclasses.is_dataclass(current) and not hasattr(type(current), "from_raw"):
            changes[name] = override(current, value, f"{where}.{name}")
        else:
            changes[name] = convert(value, hints[name], f"{where}.{name}")
            _check_field(fields[name], changes[name], f"{where}.{name}")
    out = dataclasses.replace(obj, **changes)
    for key, problem in getattr(out, "problems", lambda: [])():
        raise ConfigError(f"{where}.{key}: {problem}")
    return out


def _effective(data: dict[str, Any], name: str, iteration: str, path: str | Path, obj: Any) -> Any:
    """Section `name` as `iteration` sees it: the section with iterations.<iteration>.<name> on top."""
    if name not in OVERRIDABLE:
        raise ValueError(f"section {name!r} has no per-iteration overrides (only {', '.join(OVERRIDABLE)})")
    iterations = _section(data, "iterations", path)
    if iteration not in iterations:
        raise ConfigError(f"{path}: iterations.{iteration}: no such iteration (known: {', '.join(iterations)})")
    try:
        return override(obj, getattr(iterations[iteration], name), f"iterations.{iteration}.{name}")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_section(name: str, path: str | Path = DEFAULT_PARAMS, cls: type[T] | None = None, *,
                 iteration: str | None = None) -> T:
    """Read one section; a missing section means all defaults. With `iteration` (select, train, mix
    only): the section as that iteration sees it, `iterations.<iteration>.<name>` over its keys."""
    if name not in SECTIONS:
        raise ConfigError(f"{path}: '{name}' is not a known section")
    data = read_params(path)
    obj = _section(data, name, path, cls)
    return obj if iteration is None else _effective(data, name, iteration, path, obj)


def validate_all(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Load every section present in the file, and every iteration's overrides on top of their
    section (used by `humpback check-params` and the tests)."""
    data = read_params(path)
    sections = {name: load_section(name, path) for name in data}
    iterations = _section(data, "iterations", path)
    for it, body in iterations.items():
        for name in OVERRIDABLE:
            if getattr(body, name):
                _effective(data, name, it, path, _section(data, name, path))
    return sections


def _merge(dst: Any, src: Any) -> Any:
    """Deep-merge mapping `src` into round-trip mapping `dst` (lists and scalars are replaced)."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value
    return dst


def apply_preset(preset: str | Path, params: str | Path = DEFAULT_PARAMS) -> list[str]:
    """Overlay a preset file (a partial params file) onto `params`, keeping the file's comments.

    The result is validated before it is written, so a bad preset never leaves a broken params file.
    Returns the sections the preset touched.
    """
    preset, params = Path(preset), Path(params)
    overlay = read_params(preset)
    rt = YAML()  # round-trip: comments and key order survive
    rt.width = 120
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=4, offset=2)
    doc = rt.load(params.read_text(encoding="utf-8")) if params.is_file() else None
    if doc is None:
        doc = rt.load("{}")
    _merge(doc, overlay)
    from io import StringIO

    buf = StringIO()
    rt.dump(doc, buf)
    from humpback.io import atomic_path

    with atomic_path(params) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        validate_all(tmp)
    return list(overlay)
