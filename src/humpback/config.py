"""Typed params: `params.yaml` read with ruamel.yaml into dataclasses, one section per stage.

Each module owns the dataclass of its own section and registers it in SECTIONS below, so a stage
asks only for what it reads (`load_section("corpus")`) while any unknown top-level key, unknown
field or wrong type anywhere in the file is an error that names the file and the key.
An iteration may override keys of the select, train and mix sections for itself
(`iterations.it2.select.threshold`); `load_section("select", iteration="it2")` reads the result.

Every numeric field has its valid range (`param(default, ge=..., gt=..., le=..., lt=...)`), and a
section's `problems()` holds the rules that tie fields together (min <= max). `validate_all` (what
`humpback check-params` runs) reports every problem of the file, one line each; a stage reading its
section stops at once with one line (the first problem, and how many more there are).

Names and paths that reach a file path or a dvc.yaml command line are checked in every reader,
whichever section it asks for: an iteration name (a key of `iterations`) and its `prev`, every
`eval.models` entry and `judge.model` must be safe names (letters, digits, `_ . -`, 1-64
characters, no `..`), and the paths dvc.yaml passes on its command lines (`eval.prompts`,
`judge.reference`) only characters a shell leaves alone. Paths that are only read (seed and corpus
sources, `base_model.source`, `eval.curation_labels`) may point anywhere, but not hold a control
character. No YAML alias may expand the file past MAX_NODES values (a "billion laughs"), and no
message quotes more than a short excerpt of a value.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
import reprlib
import types
import typing
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
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
    "backward": "humpback.training.config:BackwardConfig",
    "augment": "humpback.augment:AugmentConfig",
    "score": "humpback.curation.config:ScoreConfig",
    "select": "humpback.curation.config:SelectConfig",
    "iterations": "humpback.config:IterationsConfig",
    "eval": "humpback.evaluation.config:EvalConfig",
    "judge": "humpback.evaluation.config:JudgeConfig",
    "export": "humpback.export.config:ExportConfig",
}

SEED_MAX = 2**32 - 1  # numpy's and datasketch's seeds are unsigned 32-bit
MAX_NODES = 100_000  # values a params file may hold once its YAML aliases are expanded


class ParamsError(ConfigError):
    """Every problem found in a params file (or one section of it), one line each in `problems`.

    Its message is one line: the first problem, and how many more there are."""

    def __init__(self, problems: list[str], source: str | Path | None = None):
        self.problems = list(dict.fromkeys(problems))  # the same problem found twice is one
        first, more = self.problems[0], len(self.problems) - 1
        hint = f"`humpback check-params {source}`" if source else "`humpback check-params`"
        super().__init__(first if not more else f"{first} (and {more} more problem{'s' * (more > 1)}: {hint} lists them)")


def problems_of(e: ConfigError) -> list[str]:
    return list(e.problems) if isinstance(e, ParamsError) else [str(e)]


# ---------------------------------------------------------------------------------------------
# messages: never more than a short excerpt of a value

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6
_SHORT.maxlevel = 3
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def excerpt(value: Any, limit: int = 80) -> str:
    """A one-line repr of `value` of at most `limit` characters (an ellipsis marks a cut), however
    large or deeply nested the value is: a message never prints a whole value."""
    try:
        text = _SHORT.repr(value)
    except Exception:  # a repr that fails: the type is enough
        text = f"<{type(value).__name__}>"
    return clip(text, limit)


def clip(text: str, limit: int = 160) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key(key: Any) -> str:
    """A mapping key as a message shows it: plain when it is a plain word, else a short repr."""
    text = str(key)
    return text if _PLAIN_KEY.fullmatch(text) else excerpt(text, 40)


def _keys(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(_key(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# ---------------------------------------------------------------------------------------------
# names and paths that reach a file path or a dvc.yaml command line

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# no dot in an iteration name: dvc.yaml declares `iterations.${key}` as a params key, split on dots
_ITERATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# a path word of a dvc.yaml command: characters no shell gives a meaning to
_COMMAND_PATH = re.compile(r"[A-Za-z0-9_./+-]{1,1024}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# model directories other stages write: an iteration of the same name would overwrite them
RESERVED_ITERATIONS = ("base", "backward", "m0")


def relative_path_problem(path: str) -> str | None:
    """What keeps `path` (a POSIX path from params or data) from staying inside the directory it is
    joined to, or None: it must be relative, without a `..` component, and hold no control
    character or backslash."""
    if not path or _CONTROL.search(path) or "\\" in path:
        return f"{excerpt(path)} is empty or holds a control character or a backslash"
    if path.startswith(("/", "~")) or re.match(r"[A-Za-z]:", path):
        return f"{excerpt(path)} is an absolute path"
    if ".." in PurePosixPath(path).parts:
        return f"{excerpt(path)} climbs out of its directory ('..')"
    return None


def inside(root: str | Path, *parts: str) -> Path:
    """`root / parts...`, checked to stay under `root` (lexically, and once symlinks are resolved):
    an output path built from params or data never leaves the repository. ConfigError otherwise."""
    rel = "/".join(parts)
    problem = relative_path_problem(rel)
    if problem is None:
        path = Path(root, *parts)
        if path.resolve().is_relative_to(Path(root).resolve()):
            return path
        problem = f"{excerpt(rel)} leads outside {root} through a symbolic link"
    raise ConfigError(f"{problem}: an output path must stay inside {root}")


def name_problem(value: str, what: str = "model name", *, iteration: bool = False) -> str | None:
    """What is unsafe about a name that becomes a file name and a word of a dvc.yaml command
    (`models/<name>`, `data/scores/<iteration>.parquet`), or None."""
    pattern, allowed = (_ITERATION, "letters, digits, _ and -") if iteration else (_NAME, "letters, digits, _ . and -")
    if pattern.fullmatch(value) and relative_path_problem(value) is None and ".." not in value:
        return None
    return (f"{excerpt(value)} is not a safe {what}: only {allowed}, 1-64 characters starting with a letter or "
            f"digit{'' if iteration else ', no ..'} (it becomes a file name and a word of a dvc.yaml command)")


def command_path_problem(value: str) -> str | None:
    """What is unsafe about a path dvc.yaml passes on a command line and as a dep (only read:
    outside the repository is fine), or None."""
    if _COMMAND_PATH.fullmatch(value) and not value.startswith("-"):
        return None
    return (f"{excerpt(value)} is not a safe path for a dvc.yaml command: only letters, digits and _ . / + -, "
            "not starting with - (no spaces, quotes, $, ;, backquotes or newlines)")


def read_path_problem(value: str) -> str | None:
    """What is wrong with a path that is only read (it may lie outside the repository), or None."""
    if not value.strip():
        return "empty: name a file or directory"
    if _CONTROL.search(value):
        return f"{excerpt(value)} holds a control character (a newline, a tab, ...): not a file name"
    if len(value) > 4096:
        return f"{excerpt(value)} is longer than 4096 characters: not a file name"
    return None


def env_name_problem(value: str) -> str | None:
    """What is wrong with the name of an environment variable (empty: none is read), or None."""
    if not value or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
        return None
    return f"{excerpt(value)} is not an environment variable name (letters, digits and _, not starting with a digit)"


def _iteration_problems(raw: dict, where: str = "iterations") -> list[str]:
    """The iteration names (keys of `iterations`) and their `prev`, as dvc.yaml interpolates them."""
    out = []
    lower: dict[str, str] = {}
    for name, body in raw.items():
        name = str(name)
        problem = name_problem(name, "iteration name", iteration=True)
        if problem:
            out.append(f"{where}: {problem}")
            continue
        if name in RESERVED_ITERATIONS:
            out.append(f"{where}.{name}: '{name}' names the directory models/{name} of another stage; "
                       "call the iteration something else (it1, it2, ...)")
        if name.lower() in lower:
            out.append(f"{where}.{name}: '{name}' and '{lower[name.lower()]}' differ only in case: their files "
                       "would be one file on a case-insensitive file system")
        lower.setdefault(name.lower(), name)
        prev = body.get("prev") if isinstance(body, dict) else None
        if isinstance(prev, str) and (problem := name_problem(prev, iteration=True)):
            out.append(f"{where}.{name}.prev: {problem}")
    return out


def command_word_problems(data: dict[str, Any]) -> list[str]:
    """Every params value dvc.yaml interpolates into a command line or a path (foreach keys and
    items, `${...}`), checked on the raw file: run by every reader of the file, so each stage refuses
    a file that holds one, whatever section it reads. Values of the wrong type are left to their
    section's own check."""
    out = []
    its = data.get("iterations")
    if isinstance(its, dict):
        out += _iteration_problems(its)
    ev = data.get("eval")
    if isinstance(ev, dict):
        models = ev.get("models")
        for i, m in enumerate(models if isinstance(models, list) else []):
            if isinstance(m, str) and (problem := name_problem(m)):
                out.append(f"eval.models[{i}]: {problem}")
        if isinstance(ev.get("prompts"), str) and (problem := command_path_problem(ev["prompts"])):
            out.append(f"eval.prompts: {problem}")
    judge = data.get("judge")
    if isinstance(judge, dict):
        if isinstance(judge.get("model"), str) and (problem := name_problem(judge["model"])):
            out.append(f"judge.model: {problem}")
        if isinstance(judge.get("reference"), str) and (problem := command_path_problem(judge["reference"])):
            out.append(f"judge.reference: {problem}")
    return out


# ---------------------------------------------------------------------------------------------
# fields with ranges


def param(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
          ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
          one_of: Any = None) -> Any:
    """A dataclass field with its valid range, checked when params are read (so `humpback check-params`
    rejects what a stage would reject later): `top_share: float = param(0.5, ge=0, le=1)`."""
    meta = {"range": {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}}
    if one_of is not None:
        meta["one_of"] = tuple(one_of)
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def seed_param(default: int = 0) -> Any:
    """A random seed: 0 to SEED_MAX."""
    return param(default, ge=0, le=SEED_MAX)


_RANGE_TEXT = {"ge": ">= {}", "gt": "> {}", "le": "<= {}", "lt": "< {}"}
_RANGE_OK = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else excerpt(value, 40)


def _check_field(f: dataclasses.Field, value: Any, where: str) -> None:
    rng = f.metadata.get("range") or {}
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if rng and number and not all(_RANGE_OK[k](value, b) for k, b in rng.items()):
        want = " and ".join(_RANGE_TEXT[k].format(b) for k, b in rng.items())
        raise ConfigError(f"{where}: {_number(value)} is out of range (must be {want})")
    allowed = f.metadata.get("one_of")
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{where}: {excerpt(value)} is not one of {', '.join(map(str, allowed))}")


def at_most(small: str, large: str, obj: Any, *, zero_is_off: bool = False) -> list[tuple[str, str]]:
    """The cross-field rule `small <= large` as a problems() entry (on `large`); with `zero_is_off`,
    a `large` of 0 means no limit."""
    lo, hi = getattr(obj, small), getattr(obj, large)
    if lo is None or hi is None or (zero_is_off and hi == 0) or lo <= hi:
        return []
    return [(large, f"{_number(hi)} is less than {small} ({_number(lo)})"
                    + ("; 0 = no limit" if zero_is_off else ""))]


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
        problems = _iteration_problems(raw, where)
        out = cls()
        for name, body in raw.items():
            if name_problem(str(name), iteration=True):
                continue  # reported above; its body would be reported under an unsafe name
            try:
                out[str(name)] = convert(body, Iteration, f"{where}.{name}")
            except ConfigError as e:
                problems += problems_of(e)
        known = {"m0", *(str(n) for n in raw)}
        for name, it in out.items():
            if name_problem(it.prev, iteration=True):
                continue  # reported above
            if it.prev not in known or it.prev == name:
                problems.append(f"{where}.{name}.prev: '{it.prev}' is not m0 or another iteration")
        if problems:
            raise ParamsError(problems)
        for name in out:  # every chain must lead back to m0: a loop would be a cycle in the DAG
            seen, cur = [name], out[name].prev
            while cur != "m0":
                if cur in seen:
                    problems.append(f"{where}.{name}.prev: the chain {' -> '.join([*seen, cur])} never reaches m0")
                    break
                seen.append(cur)
                cur = out[cur].prev
        if problems:
            raise ParamsError(problems)
        return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _fail(problems: list[str]) -> None:
    if problems:
        raise ParamsError(problems)


def _mapping_for(value: Any, tp: Any, where: str) -> tuple[dict, dict, list[str]]:
    """The type hints and init fields of dataclass `tp`, and the unknown-key problem of mapping
    `value` (raises when `value` is no mapping): the start of reading a section or an override."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    hints = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
    unknown = sorted(set(map(str, value)) - set(fields))
    problems = [f"{where}: unknown key(s) {_keys(unknown)}; known: {', '.join(sorted(fields))}"] if unknown else []
    return hints, fields, problems


def _convert_dataclass(value: Any, tp: Any, where: str) -> Any:
    hints, fields, problems = _mapping_for(value, tp, where)
    kwargs, failed, missing = {}, set(), False
    for name, f in fields.items():
        if name in value:
            raw = value[name]
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if isinstance(raw, dict) and dataclasses.is_dataclass(default):
                # a partial nested mapping keeps this field's own defaults (augment's 48 new
                # tokens), not those of the nested class
                raw = {**dataclasses.asdict(default), **raw}
            try:
                kwargs[name] = convert(raw, hints[name], f"{where}.{name}")
                _check_field(f, kwargs[name], f"{where}.{name}")
            except ConfigError as e:
                problems += problems_of(e)
                kwargs.pop(name, None)
                failed.add(name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{where}.{name}: required key is missing")
            missing = True
    if missing:
        _fail(problems)
    # rules that tie fields together: problems() -> [(key, what is wrong)]. With a field already
    # wrong (and at its default here), only the rules that neither name it nor mention it count.
    obj = tp(**kwargs)
    for key, problem in getattr(obj, "problems", lambda: [])():
        if not failed or not any(re.match(rf"{n}\b", key) or re.search(rf"\b{n}\b", problem) for n in failed):
            problems.append(f"{where}.{key}: {problem}")
    _fail(problems)
    return obj


def convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the type annotation `tp`; build dataclasses; name `where` on error.

    Every problem is collected (a ParamsError holds them all), not only the first."""
    if isinstance(tp, type) and hasattr(tp, "from_raw"):
        return tp.from_raw(value, where)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(value, tp, where)
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        arms = [arm for arm in args if arm is not type(None)]
        if len(arms) == 1:  # Optional[X]: X's own message says more than "matches none"
            return convert(value, arms[0], where)
        for arm in arms:
            try:
                return convert(value, arm, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {excerpt(value)} matches none of {_type_name(tp)}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(map(repr, get_args(tp)))
            raise ConfigError(f"{where}: {excerpt(value)} is not one of {choices}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (arm,) = get_args(tp)[:1] or (Any,)
        out, problems = [], []
        for i, v in enumerate(value):
            try:
                out.append(convert(v, arm, f"{where}[{i}]"))
            except ConfigError as e:
                problems += problems_of(e)
        _fail(problems)
        return out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        out, problems = {}, []
        for k, v in value.items():
            try:
                out[str(k)] = convert(v, vt, f"{where}.{_key(k)}")
            except ConfigError as e:
                problems += problems_of(e)
        _fail(problems)
        return out
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {excerpt(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            raise ConfigError(f"{where}: {excerpt(value, 40)} is too large for a number") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {excerpt(value)}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {excerpt(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {excerpt(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {excerpt(value)}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")


# ---------------------------------------------------------------------------------------------
# reading the file


def _yaml_problem(e: Exception) -> str:
    """ruamel's multi-line message as one line: the problem and where it is."""
    problem, mark = getattr(e, "problem", None), getattr(e, "problem_mark", None)
    if problem and mark is not None:
        return f"{clip(problem)} (line {mark.line + 1}, column {mark.column + 1})"
    return clip(str(e), 200)


class _Recursive(Exception):
    def __init__(self, node: Any):
        self.node = node


def _expanded_size(root: Any, limit: int) -> int:
    """How many values the composed YAML document holds once every alias is expanded (each alias
    counts its whole target again), capped just above `limit`; linear in the document's own size.
    _Recursive for an alias inside its own anchor."""
    memo: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in open_:
            raise _Recursive(node)
        open_.add(key)
        total = 1
        if isinstance(node.value, list):
            for child in node.value:
                for n in (child if isinstance(child, tuple) else (child,)):
                    total = min(total + size(n), limit + 1)
        open_.discard(key)
        memo[key] = total
        return total

    return size(root)


class _TooLarge(Exception):
    pass


class _BoundedConstructor(SafeConstructor):
    """The safe constructor, refusing a document that its aliases expand past MAX_NODES values
    before it builds a single one of them."""

    def construct_document(self, node: Any) -> Any:
        if _expanded_size(node, MAX_NODES) > MAX_NODES:
            raise _TooLarge
        return super().construct_document(node)


def _load_yaml(path: Path) -> dict[str, Any]:
    """The params file as plain data; anything that keeps it from being read is one ConfigError."""
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        text = path.read_text(encoding="utf-8")
        yaml = YAML(typ="safe")
        yaml.Constructor = _BoundedConstructor  # one pass: the composed document is sized, then built
        data = yaml.load(text)
    except _TooLarge:
        raise ConfigError(f"{path}: YAML aliases expand it to more than {MAX_NODES:,} values (an alias bomb?); "
                          "write the values out instead of repeating anchors") from None
    except (YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    except _Recursive as e:
        line = e.node.start_mark.line + 1  # every composed node has its start mark
        raise ConfigError(f"{path}: not valid YAML for params: an alias refers to its own anchor (line {line})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    except ValueError as e:  # an integer of thousands of digits (Python's int conversion limit)
        what = "an integer of more than 4300 digits" if "digits" in str(e) else clip(str(e), 120)
        raise ConfigError(f"{path}: not valid YAML: {what}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def _file_problems(data: dict[str, Any]) -> list[str]:
    """What is wrong with the file as a whole: unknown sections, unsafe names and command paths."""
    out = []
    unknown = sorted(set(map(str, data)) - set(SECTIONS))
    if unknown:
        out.append(f"unknown section(s) {_keys(unknown)}; known: {', '.join(SECTIONS)}")
    return out + command_word_problems(data)


def _prefixed(problems: list[str], path: str | Path) -> ParamsError:
    return ParamsError([f"{path}: {p}" for p in problems], source=path)


def read_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Parse the YAML file; check that every top-level key is a known section and that every name
    and path dvc.yaml puts on a command line is safe (see command_word_problems)."""
    path = Path(path)
    data = _load_yaml(path)
    problems = _file_problems(data)
    if problems:
        raise _prefixed(problems, path)
    return data


def section_class(name: str) -> type:
    module, _, cls = SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def default_section(name: str, cls: type | None = None) -> Any:
    """A section with every key at its code default (what a params file without it means)."""
    cls = cls or section_class(name)
    return convert(getattr(cls, "DEFAULT", {}), cls, name)


def _convert_section(data: dict[str, Any], name: str, cls: type | None = None) -> Any:
    cls = cls or section_class(name)
    raw = data.get(name)
    return default_section(name, cls) if raw is None else convert(raw, cls, name)


def _section(data: dict[str, Any], name: str, path: str | Path, cls: type | None = None) -> Any:
    try:
        return _convert_section(data, name, cls)
    except ConfigError as e:
        raise _prefixed(problems_of(e), path) from None


def override(obj: T, raw: Any, where: str) -> T:
    """`obj` (a section) with the keys of the partial mapping `raw` replaced, each checked as the
    section's own keys are (unknown key, type, range; problems() on the result), errors at `where`.
    A nested mapping overrides only its own keys: `train: {lora: {r: 8}}` keeps the section's alpha."""
    tp = type(obj)
    hints, fields, problems = _mapping_for(raw, tp, where)
    changes = {}
    for name, value in raw.items():
        if name not in fields:
            continue
        current = getattr(obj, name)
        try:
            if isinstance(value, dict) and dataclasses.is_dataclass(current):
                changes[name] = override(current, value, f"{where}.{name}")
            else:
                changes[name] = convert(value, hints[name], f"{where}.{name}")
                _check_field(fields[name], changes[name], f"{where}.{name}")
        except ConfigError as e:
            problems += problems_of(e)
    _fail(problems)
    out = dataclasses.replace(obj, **changes)
    _fail([f"{where}.{key}: {problem}" for key, problem in getattr(out, "problems", lambda: [])()])
    return out


def _effective(data: dict[str, Any], name: str, iteration: str, path: str | Path, obj: Any) -> Any:
    """Section `name` as `iteration` sees it: the section with iterations.<iteration>.<name> on top."""
    if name not in OVERRIDABLE:
        raise ValueError(f"section {name!r} has no per-iteration overrides (only {', '.join(OVERRIDABLE)})")
    iterations = _section(data, "iterations", path)
    if iteration not in iterations:
        known = ", ".join(iterations)
        raise ConfigError(f"{path}: iterations.{_key(iteration)}: no such iteration (known: {known})")
    try:
        return override(obj, getattr(iterations[iteration], name), f"iterations.{iteration}.{name}")
    except ConfigError as e:
        raise _prefixed(problems_of(e), path) from None


def _for_backward(data: dict[str, Any], name: str, path: str | Path, obj: Any) -> Any:
    """The train section as the backward model sees it: backward.train over its keys."""
    if name != "train":
        raise ValueError(f"section {name!r} has no backward-model overrides (only train)")
    try:
        return override(obj, _section(data, "backward", path).train, "backward.train")
    except ConfigError as e:
        raise _prefixed(problems_of(e), path) from None


def load_section(name: str, path: str | Path = DEFAULT_PARAMS, cls: type[T] | None = None, *,
                 iteration: str | None = None, backward: bool = False) -> T:
    """Read one section; a missing section means all defaults. With `iteration` (select, train, mix
    only): the section as that iteration sees it, `iterations.<iteration>.<name>` over its keys.
    With `backward` (train only): the backward model's, `backward.train` over its keys.

    Every reader checks the whole file's names and command paths first (read_params), so a stage
    refuses a file dvc.yaml would have turned into an unsafe command, whatever section it reads."""
    if name not in SECTIONS:
        raise ConfigError(f"{path}: '{name}' is not a known section")
    data = read_params(path)
    obj = _section(data, name, path, cls)
    if backward:
        return _for_backward(data, name, path, obj)
    return obj if iteration is None else _effective(data, name, iteration, path, obj)


def validate_all(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Load every section present in the file, and every iteration's overrides on top of their
    section (used by `humpback check-params`, the params stage and the tests). Every problem of the
    file is collected: a ParamsError lists them all, one line each."""
    path = Path(path)
    data = _load_yaml(path)
    problems = _file_problems(data)
    sections = {}
    for name in data:
        if name in SECTIONS:
            try:
                sections[name] = _convert_section(data, name)
            except ConfigError as e:
                problems += problems_of(e)
    if "backward" in sections:  # its keys over the train section, as the train_backward stage reads them
        try:
            override(sections.get("train") or default_section("train"), sections["backward"].train, "backward.train")
        except ConfigError as e:
            problems += problems_of(e)
    its = data.get("iterations")
    for it, body in (its.items() if isinstance(its, dict) else ()):
        if not isinstance(body, dict) or name_problem(str(it), iteration=True):
            continue  # reported with the iterations section
        for name in OVERRIDABLE:
            if isinstance(body.get(name), dict) and body[name]:
                base = sections.get(name) or default_section(name)
                try:
                    override(base, body[name], f"iterations.{it}.{name}")
                except ConfigError as e:
                    problems += problems_of(e)
    if problems:
        raise _prefixed(problems, path)
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
