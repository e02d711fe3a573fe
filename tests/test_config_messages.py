"""The params loader's exact messages and boundaries: each line a user reads names the key and says
what is wrong in the same words every time, and every limit sits where its message says."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from humpback import config as C
from humpback.config import ParamsError, apply_preset, convert, load_section, override, param, seed_param
from humpback.errors import ConfigError


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kwargs)
    return str(e.value)


def _problems(fn, *args, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kwargs)
    return C.problems_of(e.value)


# ---------------------------------------------------------------------------------------------
# fields


def test_param_and_seed_param_carry_their_default_and_range():
    f = param(3, ge=0, lt=9, one_of=[3, 4])
    assert f.default == 3 and f.metadata["range"] == {"ge": 0, "lt": 9} and f.metadata["one_of"] == (3, 4)
    assert param(default_factory=list).default_factory is list and "one_of" not in param(1).metadata
    assert param(1).metadata["range"] == {} and param(1, gt=0, le=2).metadata["range"] == {"gt": 0, "le": 2}
    s = seed_param()
    assert s.default == 0 and s.metadata["range"] == {"ge": 0, "le": 2**32 - 1}
    assert seed_param(7).default == 7


@dataclass
class Ranged:
    n: int = param(1, ge=1, le=10)
    share: float = param(0.5, gt=0, lt=1)
    pick: str = param("a", one_of=("a", "b"))
    lo: int = 1
    hi: int = 5

    def problems(self):
        return C.at_most("lo", "hi", self)


@pytest.mark.parametrize("raw, message", [
    ({"n": 0}, "r.n: 0 is out of range (must be >= 1 and <= 10)"),
    ({"n": 11}, "r.n: 11 is out of range (must be >= 1 and <= 10)"),
    ({"share": 0.0}, "r.share: 0 is out of range (must be > 0 and < 1)"),
    ({"share": 1}, "r.share: 1 is out of range (must be > 0 and < 1)"),
    ({"share": 0.25e-7}, None),
    ({"pick": "c"}, "r.pick: 'c' is not one of a, b"),
    ({"lo": 6}, "r.hi: 5 is less than lo (6)"),
    ({"n": 10, "share": 0.999, "lo": 5}, None),
])
def test_ranges_and_rules_at_their_bounds(raw, message):
    if message is None:
        assert convert(raw, Ranged, "r") == Ranged(**raw)
    else:
        assert _problems(convert, raw, Ranged, "r") == [message]


def test_at_most_with_zero_as_no_limit():
    @dataclass
    class Lim:
        lo: int = 3
        hi: int = 0

    assert C.at_most("lo", "hi", Lim(), zero_is_off=True) == []
    assert C.at_most("lo", "hi", Lim(3, 2), zero_is_off=True) == [("hi", "2 is less than lo (3); 0 = no limit")]
    assert C.at_most("lo", "hi", Lim(3, 0)) == [("hi", "0 is less than lo (3)")]
    assert C.at_most("lo", "hi", Lim(3, 3)) == [] and C.at_most("lo", "hi", Lim(None, 0)) == []


# ---------------------------------------------------------------------------------------------
# convert and override


@dataclass
class Inner:
    r: int = param(16, ge=1)
    alpha: int = 32


@dataclass
class Outer:
    threshold: float = param(4.0, ge=1, le=5)
    top: int = 3
    inner: Inner = field(default_factory=Inner)
    lo: int = 1
    hi: int = 5
    extra: dict[str, int] = field(default_factory=dict)

    def problems(self):
        return C.at_most("lo", "hi", self)


def test_convert_names_the_type_of_a_union_no_arm_matches():
    assert _message(convert, [1], int | str, "x") == "x: [1] matches none of int | str"
    assert convert("a", int | str, "x") == "a" and convert(None, int | str | None, "x") is None
    assert C._type_name(int) == "int" and C._type_name(int | str) == "int | str"
    import typing

    assert C._type_name(list[typing.Any] | int) == "list[Any] | int"


def test_an_override_reports_every_problem_and_keeps_nested_defaults():
    base = Outer()
    assert override(base, {"inner": {"r": 8}}, "w") == Outer(inner=Inner(r=8, alpha=32))
    assert override(base, {}, "w") == base and override(base, {"top": 4}, "w").top == 4
    assert override(base, {"extra": {"a": 1}}, "w").extra == {"a": 1}  # a mapping value, not a nested section
    got = _problems(override, base, {"nope": 1, "threshold": "high", "top": 2.5, "inner": {"r": 0}}, "w")
    assert got == ["w: unknown key(s) nope; known: extra, hi, inner, lo, threshold, top",
                   "w.threshold: expected a number, got 'high'",
                   "w.top: expected an integer, got 2.5",
                   "w.inner.r: 0 is out of range (must be >= 1)"]
    assert _problems(override, base, {"threshold": 6}, "w") == ["w.threshold: 6 is out of range (must be >= 1 and <= 5)"]
    assert _problems(override, base, {"lo": 9}, "w") == ["w.hi: 5 is less than lo (9)"]
    assert _message(override, base, 3, "w") == "w: expected a mapping, got int"


def test_params_error_is_one_line_with_a_count_of_the_rest():
    assert str(ParamsError(["a"])) == "a"
    assert str(ParamsError(["a", "b"], "p.yaml")) == "a (and 1 more problem: `humpback check-params p.yaml` lists them)"
    assert str(ParamsError(["a", "b", "c", "b"])) == "a (and 2 more problems: `humpback check-params` lists them)"
    assert C.problems_of(ParamsError(["a", "a", "b"])) == ["a", "b"] and C.problems_of(ConfigError("x")) == ["x"]


# ---------------------------------------------------------------------------------------------
# keys, excerpts, paths


def test_keys_are_listed_up_to_ten_and_odd_keys_quoted():
    assert C._keys([f"k{i}" for i in range(10)]) == ", ".join(f"k{i}" for i in range(10))
    assert C._keys([f"k{i}" for i in range(11)]) == ", ".join(f"k{i}" for i in range(10)) + " and 1 more"
    assert C._key("plain.key-1") == "plain.key-1"
    odd = "a key with spaces " + "x" * 60
    assert C._key(odd) == C.excerpt(odd, 40) and len(C._key(odd)) == 40
    assert C._number(0.25) == "0.25" and C._number(3) == "3" and C._number("x" * 100) == C.excerpt("x" * 100, 40)


def test_clip_and_excerpt_at_their_limits():
    assert C.clip("a\n b\tc") == "a b c"
    assert C.clip("x" * 160) == "x" * 160 and C.clip("x" * 161) == "x" * 159 + "…"
    assert C.clip("abcdef", 4) == "abc…"
    assert C.excerpt("y" * 10) == repr("y" * 10) and len(C.excerpt("y" * 500)) == 60
    assert C.excerpt("y" * 500, 20) == repr("y" * 500)[:19] + "…"
    assert C.excerpt(list(range(1000))) == "[0, 1, 2, 3, 4, 5, ...]" and len(C.excerpt(list(range(10**4)), 12)) == 12

    assert len(C.excerpt({"a" * 50: "b" * 50})) == 80 and C.excerpt({"a" * 50: "b" * 50}).endswith("…")
    assert C.excerpt(10**5000) == "<int>"  # a repr that fails (Python's digit limit): its type


def test_read_path_limits():
    assert C.read_path_problem("a" * 4096) is None
    assert C.read_path_problem("a" * 4097) == f"{C.excerpt('a' * 4097)} is longer than 4096 characters: not a file name"
    assert C.read_path_problem(" ") == "empty: name a file or directory"
    assert C.read_path_problem("a\tb") == "'a\\tb' holds a control character (a newline, a tab, ...): not a file name"


def test_names_paths_and_env_names():
    assert C.name_problem("a" * 64) is None and C.name_problem("a" * 65) is not None
    assert C.name_problem("it.1") is None and C.name_problem("it.1", iteration=True) is not None
    assert C.name_problem("a..b") == ("'a..b' is not a safe model name: only letters, digits, _ . and -, 1-64 "
                                      "characters starting with a letter or digit, no .. (it becomes a file name "
                                      "and a word of a dvc.yaml command)")
    assert C.name_problem("-x", "iteration name", iteration=True) == (
        "'-x' is not a safe iteration name: only letters, digits, _ and -, 1-64 characters starting with a letter "
        "or digit (it becomes a file name and a word of a dvc.yaml command)")
    assert C.command_path_problem("data/eval/prompts+1.jsonl") is None
    assert C.command_path_problem("-rf") is not None and C.command_path_problem("a b") is not None
    assert C.command_path_problem("a" * 1024) is None and C.command_path_problem("a" * 1025) is not None
    assert C.env_name_problem("") is None and C.env_name_problem("_A1") is None
    assert C.env_name_problem("1A") == "'1A' is not an environment variable name (letters, digits and _, not starting with a digit)"
    assert C.env_name_problem("A" * 128) is None and C.env_name_problem("A" * 129) is not None


@pytest.mark.parametrize("path, problem", [
    ("a/b.txt", None),
    ("", "'' is empty or holds a control character or a backslash"),
    ("a\\b", "'a\\\\b' is empty or holds a control character or a backslash"),
    ("a\x7fb", "'a\\x7fb' is empty or holds a control character or a backslash"),
    ("/etc/x", "'/etc/x' is an absolute path"),
    ("~/x", "'~/x' is an absolute path"),
    ("C:x", "'C:x' is an absolute path"),
    ("c:/x", "'c:/x' is an absolute path"),
    ("a/../../b", "'a/../../b' climbs out of its directory ('..')"),
    ("a..b/c", None),
])
def test_relative_path_problems(path, problem):
    assert C.relative_path_problem(path) == problem


def test_inside_joins_parts_and_refuses_a_climb_or_a_link(tmp_path):
    assert C.inside(tmp_path, "a", "b.txt") == tmp_path / "a" / "b.txt"
    assert _message(C.inside, tmp_path, "a", "..", "..") == (
        f"'a/../..' climbs out of its directory ('..'): an output path must stay inside {tmp_path}")
    with pytest.raises(ConfigError, match="climbs out"):
        C.inside(tmp_path, "a", "..")
    (tmp_path / "out").symlink_to(tmp_path.parent)
    assert _message(C.inside, tmp_path, "out", "x") == (
        f"'out/x' leads outside {tmp_path} through a symbolic link: an output path must stay inside {tmp_path}")


# ---------------------------------------------------------------------------------------------
# the file


@pytest.mark.parametrize("text, message", [
    ("a: [1, 2\n", "not valid YAML: expected ',' or ']', but got '<stream end>' (line 2, column 1)"),
    ("a: 1\n  b: 2\n", "not valid YAML: mapping values are not allowed here (line 2, column 4)"),
    ("seed:\n  lang: &a [*a]\n", "not valid YAML for params: an alias refers to its own anchor (line 2)"),
    ("- 1\n", "top level must be a mapping of sections"),
])
def test_a_yaml_problem_says_where(tmp_path, text, message):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    assert _message(C.read_params, p) == f"{p}: {message}"


def test_a_yaml_problem_without_a_mark_is_its_message_clipped():
    class Plain(Exception):
        pass

    assert C._yaml_problem(Plain("bad\nthing " + "z" * 300)) == C.clip("bad thing " + "z" * 300, 200)
    e = Plain("x")
    e.problem, e.problem_mark = "broken", None
    assert C._yaml_problem(e) == "x"

    @dataclass
    class Mark:
        line: int
        column: int

    e.problem_mark = Mark(4, 7)
    assert C._yaml_problem(e) == "broken (line 5, column 8)"
    e.problem = None
    assert C._yaml_problem(e) == "x"


def test_an_empty_file_means_every_default_and_bad_bytes_are_named(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("")
    assert C.read_params(p) == {} and load_section("select", p) == C.default_section("select")
    p.write_bytes(b"seed: {lang: \xff}\n")
    assert _message(C.read_params, p).startswith(f"{p}: not valid YAML: ")


def test_an_iteration_section_that_cannot_be_overridden_or_found(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("iterations:\n  it1: {prev: m0}\n  it2: {prev: it1}\n")
    with pytest.raises(ValueError, match=r"section 'score' has no per-iteration overrides \(only select, train, mix\)"):
        load_section("score", p, iteration="it1")
    assert _message(load_section, "select", p, iteration="it9") == (
        f"{p}: iterations.it9: no such iteration (known: it1, it2)")
    assert _message(load_section, "nothing", p) == f"{p}: 'nothing' is not a known section"
    p.write_text("iterations:\n  it1: {prev: m0, select: {threshold: 9}}\n")
    assert _message(load_section, "select", p, iteration="it1") == (
        f"{p}: iterations.it1.select.threshold: 9 is out of range (must be >= 0 and <= 5)")


def test_apply_preset_writes_the_file_in_the_projects_layout(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("# top comment\nselect:\n  threshold: 4.5  # why\nengine:\n  openai:\n    model: 'served'\n")
    preset = tmp_path / "p.yaml"
    preset.write_text('select: {threshold: 3.5}\neval: {models: [base, m0]}\nprompts: {seed_tag: "Réponds é"}\n')
    assert apply_preset(preset, params) == ["select", "eval", "prompts"]
    assert params.read_text(encoding="utf-8") == (
        "# top comment\nselect:\n  threshold: 3.5  # why\nengine:\n  openai:\n    model: 'served'\n"
        "eval:\n  models:\n    - base\n    - m0\nprompts:\n  seed_tag: Réponds é\n")
    long = tmp_path / "long.yaml"
    long.write_text("prompts: {seed_tag: " + " ".join(["a"] * 80) + "}\n")
    apply_preset(long, params)
    assert [len(line) for line in params.read_text().splitlines()[-3:]] == [8, 120, 55]  # folded at 120 columns
    fresh = tmp_path / "new.yaml"
    apply_preset(preset, fresh)
    assert C.read_params(fresh)["select"] == {"threshold": 3.5}


def test_a_section_read_into_a_class_of_the_callers(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("select: {threshold: 2, top: 7}\n")
    assert load_section("select", p, Outer) == Outer(threshold=2.0, top=7)
    p.write_text("select: {top: x}\n")
    assert _message(load_section, "select", p, Outer) == f"{p}: select.top: expected an integer, got 'x'"


def test_default_sections_are_the_classes_defaults():
    for name in C.SECTIONS:
        cls = C.section_class(name)
        got = C.default_section(name)
        if dataclasses.is_dataclass(cls):
            assert isinstance(got, cls)
    assert C.default_section("iterations") == {"it1": C.Iteration("m0"), "it2": C.Iteration("it1")}


def test_the_shipped_params_file_reads_without_problems():
    root = Path(__file__).resolve().parents[1]
    assert set(C.validate_all(root / "params.yaml")) <= set(C.SECTIONS)


# ---------------------------------------------------------------------------------------------
# iterations


NAME_RULE = ("only letters, digits, _ and -, 1-64 characters starting with a letter or digit (it becomes a file "
             "name and a word of a dvc.yaml command)")


def _iterations(raw, where="its"):
    return C.IterationsConfig.from_raw(raw, where)


@pytest.mark.parametrize("raw, problems", [
    ([1], ["its: expected a non-empty mapping of iteration name -> {prev: ...}"]),
    ({}, ["its: expected a non-empty mapping of iteration name -> {prev: ...}"]),
    ({"it.1": {"prev": "m0", "select": 5}, "a b": {"prev": "m0"}},
     [f"its: 'it.1' is not a safe iteration name: {NAME_RULE}", f"its: 'a b' is not a safe iteration name: {NAME_RULE}"]),
    ({"m0": {"prev": "m0"}},
     ["its.m0: 'm0' names the directory models/m0 of another stage; call the iteration something else (it1, it2, ...)",
      "its.m0.prev: 'm0' is not m0 or another iteration"]),
    ({"It1": {"prev": "m0"}, "it1": {"prev": "It1"}},
     ["its.it1: 'it1' and 'It1' differ only in case: their files would be one file on a case-insensitive file system"]),
    ({"it1": {"prev": "m.0"}, "it2": {"prev": "it9"}},
     [f"its.it1.prev: 'm.0' is not a safe model name: {NAME_RULE}", "its.it2.prev: 'it9' is not m0 or another iteration"]),
    ({"it1": 5, "it2": {"prev": "m0", "select": [1]}},
     ["its.it1: expected a mapping, got int", "its.it2.select: expected a mapping, got list"]),
    ({"it1": {"prev": "it2"}, "it2": {"prev": "it1"}, "it3": {"prev": "it1"}},
     ["its.it1.prev: the chain it1 -> it2 -> it1 never reaches m0",
      "its.it2.prev: the chain it2 -> it1 -> it2 never reaches m0",
      "its.it3.prev: the chain it3 -> it1 -> it2 -> it1 never reaches m0"]),
    ({"it1": {"prev": "it1"}}, ["its.it1.prev: 'it1' is not m0 or another iteration"]),
])
def test_every_problem_of_the_iterations_in_order(raw, problems):
    assert _problems(_iterations, raw) == problems


def test_iterations_that_chain_back_to_m0():
    got = _iterations({"a": {"prev": "m0"}, "b": {"prev": "a", "select": {"threshold": 4}}, "c": {"prev": "a"}})
    assert list(got) == ["a", "b", "c"] and got["b"] == C.Iteration("a", select={"threshold": 4})
    assert C._iteration_problems({"x y": {}}) == [f"iterations: 'x y' is not a safe iteration name: {NAME_RULE}"]


def test_validate_all_checks_overrides_against_the_files_own_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("select: {curate: true, max_examples: 10}\n"
                 "iterations:\n  it1: {prev: m0, select: {sample: 20}}\n  it.2: {prev: it1, select: {sample: x}}\n"
                 "  it3: 7\n")
    assert C.problems_of(pytest.raises(ConfigError, C.validate_all, p).value) == [
        f"{p}: iterations: 'it.2' is not a safe iteration name: {NAME_RULE}",
        f"{p}: iterations.it3: expected a mapping, got int",
        f"{p}: iterations.it1.select.sample: 20 is more than max_examples (10): the sample is drawn from at most "
        "max_examples kept pairs"]
    p.write_text("iterations:\n  it1: {prev: m0, select: {sample: 20}}\n")  # the section's defaults: no limit
    assert "iterations" in C.validate_all(p)


def test_an_optional_ranged_field_accepts_none_and_a_missing_section_the_callers_class(tmp_path):
    @dataclass
    class Opt:
        x: int | None = param(None, ge=0)

    assert convert({"x": None}, Opt, "o") == Opt() and _problems(convert, {"x": -1}, Opt, "o") == [
        "o.x: -1 is out of range (must be >= 0)"]
    p = tmp_path / "params.yaml"
    p.write_text("seed: {}\n")
    assert load_section("select", p, Outer) == Outer()
    assert C.env_name_problem("my_key_2") is None


def test_command_words_of_every_section_dvc_yaml_interpolates():
    data = {"iterations": {"it 1": {"prev": "m0"}}, "eval": {"models": ["base", "a;b", 3], "prompts": "p q.jsonl"},
            "judge": {"model": "$x", "reference": "-r"}}
    got = C.command_word_problems(data)
    assert [g.split(":")[0] for g in got] == ["iterations", "eval.models[1]", "eval.prompts", "judge.model",
                                             "judge.reference"]
    assert got[1] == f"eval.models[1]: {C.name_problem('a;b')}" and got[2] == f"eval.prompts: {C.command_path_problem('p q.jsonl')}"
    assert C.command_word_problems({"eval": {"models": "base"}, "judge": 3, "iterations": [1]}) == []
    assert C.command_word_problems({"eval": {"models": ["ok", "also-ok"], "prompts": "data/p.jsonl"}}) == []


def test_an_unknown_section_lists_the_known_ones(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("bogus: 1\nseed: {}\n")
    assert _message(C.read_params, p) == f"{p}: unknown section(s) bogus; known: {', '.join(C.SECTIONS)}"
    p.write_text("iterations:\n  it1: {prev: it9}\n")
    assert _message(load_section, "select", p, iteration="it1") == (
        f"{p}: iterations.it1.prev: 'it9' is not m0 or another iteration")


def test_the_alias_limit_is_exact(tmp_path, monkeypatch):
    from ruamel.yaml import YAML

    p = tmp_path / "params.yaml"
    p.write_text("seed: &s {lang: [en, de]}\nprompts: {seed_tag: x}\n")
    node = YAML(typ="safe").compose(p.read_text())
    assert C._expanded_size(node, 100) == 11 and C._expanded_size(node, 5) == 6  # capped just above the limit
    monkeypatch.setattr(C, "MAX_NODES", 11)
    assert C.read_params(p)["seed"] == {"lang": ["en", "de"]}
    monkeypatch.setattr(C, "MAX_NODES", 10)
    assert _message(C.read_params, p) == (
        f"{p}: YAML aliases expand it to more than 10 values (an alias bomb?); write the values out instead of "
        "repeating anchors")
    p.write_text("a: &s [1, 2]\nb: [*s, *s]\n")
    assert C._expanded_size(YAML(typ="safe").compose(p.read_text()), 100) == 1 + (1 + 3) + (1 + 1 + 3 + 3)


# ---------------------------------------------------------------------------------------------
# what convert says of each kind of value


def test_a_required_key_that_is_missing_stops_before_the_rules():
    @dataclass
    class Req:
        path: str
        n: int = param(1, ge=1)

        def problems(self):
            return [("n", "checked once every required key is there")]

    assert _problems(convert, {"n": 0}, Req, "s") == ["s.path: required key is missing",
                                                      "s.n: 0 is out of range (must be >= 1)"]
    assert _problems(convert, {"path": "p"}, Req, "s") == ["s.n: checked once every required key is there"]


def test_the_rules_see_a_field_that_failed_at_its_default():
    @dataclass
    class Built:
        n: int = param(2, ge=1)

        def problems(self):  # a rule that names neither n nor its key: it runs, on the default
            return [("size", f"built from {self.n}")]

    assert _problems(convert, {"n": 0}, Built, "b") == ["b.n: 0 is out of range (must be >= 1)", "b.size: built from 2"]


def test_list_and_tuple_values():
    assert convert([1, 2], list[int], "l") == [1, 2] and convert([1, 2, 3], tuple[int, ...], "t") == [1, 2, 3]
    assert _message(convert, "abc", list[int], "l") == "l: expected a list, got str"
    assert _problems(convert, [1, "a", 2.5], list[int], "l") == ["l[1]: expected an integer, got 'a'",
                                                                 "l[2]: expected an integer, got 2.5"]


def test_mapping_values_are_each_checked_and_named_by_key():
    assert convert({"a": 1, 2: 3}, dict[str, int], "d") == {"a": 1, "2": 3}
    assert _problems(convert, {"a": "x", "b": 1, "c d": 2.5}, dict[str, int], "d") == [
        "d.a: expected an integer, got 'x'", "d.'c d': expected an integer, got 2.5"]
    assert _message(convert, [1], dict[str, int], "d") == "d: expected a mapping, got list"


def test_numbers_beyond_a_float_and_not_finite():
    assert _message(convert, 10**400, float, "f") == f"f: {C.excerpt(10**400, 40)} is too large for a number"
    assert C.excerpt(10**400, 40) == "1000000000000000000000000000...00000000…"
    assert _message(convert, float("inf"), float, "f") == "f: expected a finite number, got inf"
    assert _message(convert, float("nan"), float, "f") == "f: expected a finite number, got nan"
    assert convert(3, float, "f") == 3.0 and type(convert(3, float, "f")) is float


def test_an_optional_field_says_what_its_type_wants():
    @dataclass
    class Opt:
        x: int | None = None

    assert _problems(convert, {"x": "a"}, Opt, "o") == ["o.x: expected an integer, got 'a'"]


def test_a_type_the_loader_does_not_know_is_a_programming_error():
    with pytest.raises(TypeError, match=r"^unsupported config type set\[int\] at w$"):
        convert([1], set[int], "w")


def test_a_class_default_that_breaks_its_own_rules_is_named_by_its_section():
    @dataclass
    class BadDefault:
        DEFAULT = {"n": "many"}
        n: int = 1

    assert _problems(C.default_section, "mysec", BadDefault) == ["mysec.n: expected an integer, got 'many'"]


def test_a_command_path_problem_in_full():
    assert C.command_path_problem("a;b") == (
        "'a;b' is not a safe path for a dvc.yaml command: only letters, digits and _ . / + -, not starting with - "
        "(no spaces, quotes, $, ;, backquotes or newlines)")


@pytest.mark.parametrize("text, message", [
    ("a: 2020-13-01\n", "not valid YAML: month must be in 1..12"),  # a timestamp the safe loader builds
    ("a: 2021-02-30\n", "not valid YAML: day is out of range for month"),
    ("seed: " + "[" * 1_000 + "]" * 1_000 + "\n", "not valid YAML: nested too deeply"),
])
def test_values_the_yaml_loader_cannot_build(tmp_path, text, message):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    assert _message(C.read_params, p) == f"{p}: {message}"


def test_a_long_value_error_of_the_loader_is_clipped(tmp_path, monkeypatch):
    def refuse(self, node):
        raise ValueError("why " * 100)

    monkeypatch.setattr(C._BoundedConstructor, "construct_document", refuse)
    p = tmp_path / "params.yaml"
    p.write_text("a: 1\n")
    assert _message(C.read_params, p) == f"{p}: not valid YAML: {C.clip('why ' * 100, 120)}"
    assert len(C.clip("why " * 100, 120)) == 120
