"""The params loader: typed sections, and errors that name the file and the key."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from humpback.config import SECTIONS, apply_preset, convert, load_section, read_params, validate_all
from humpback.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    k: int = 1


@dataclass
class Section:
    name: str = "x"
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    items: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    maybe: int | None = None


def test_convert_builds_nested_dataclasses_and_coerces_int_to_float():
    s = convert({"rate": 1, "items": ["p"], "inner": {"k": 3}, "maybe": 4}, Section, "sec")
    assert s == Section(rate=1.0, items=["p"], inner=Inner(k=3), maybe=4)
    assert isinstance(s.rate, float)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"rat": 1}, "sec: unknown key(s) rat"),
        ({"rate": "fast"}, "sec.rate: expected a number"),
        ({"mode": "c"}, "sec.mode: 'c' is not one of 'a', 'b'"),
        ({"flag": "yes"}, "sec.flag: expected true or false"),
        ({"items": "p"}, "sec.items: expected a list"),
        ({"items": [1]}, "sec.items[0]: expected a string"),
        ({"inner": {"k": 1.5}}, "sec.inner.k: expected an integer"),
        ({"inner": {"j": 1}}, "sec.inner: unknown key(s) j"),
        ({"maybe": "x"}, "sec.maybe:"),
        ({"rate": True}, "sec.rate: expected a number"),
    ],
)
def test_convert_errors_name_the_key(raw, fragment):
    with pytest.raises(ConfigError) as e:
        convert(raw, Section, "sec")
    assert fragment in str(e.value)


def test_unknown_section_names_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("bogus: {a: 1}\n")
    with pytest.raises(ConfigError, match=r"params.yaml: unknown section\(s\) bogus"):
        read_params(p)


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_params(p)
    with pytest.raises(ConfigError, match="not found"):
        read_params(tmp_path / "nope.yaml")


def test_iterations_must_chain(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("iterations:\n  it1: {prev: m0}\n  it2: {prev: it1}\n  it3: {prev: it2}\n")
    its = load_section("iterations", p)
    assert [(k, v.prev) for k, v in its.items()] == [("it1", "m0"), ("it2", "it1"), ("it3", "it2")]
    p.write_text("iterations:\n  it1: {prev: m9}\n")
    with pytest.raises(ConfigError, match=r"iterations.it1.prev: 'm9'"):
        load_section("iterations", p)


def test_section_error_names_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("base_model:\n  source: tiny\n  dtyp: float32\n")
    with pytest.raises(ConfigError) as e:
        load_section("base_model", p)
    assert str(p) in str(e.value) and "base_model: unknown key(s) dtyp" in str(e.value)


def test_missing_section_means_defaults(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("{}\n")
    assert load_section("base_model", p).source == "embedded"


def test_preset_overlays_keys_and_keeps_comments(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("base_model:\n  source: embedded  # the default\n  dtype: bfloat16\n")
    preset = tmp_path / "preset.yaml"
    preset.write_text("base_model:\n  source: tiny\n")
    assert apply_preset(preset, params) == ["base_model"]
    text = params.read_text()
    assert "source: tiny" in text and "# the default" in text and "dtype: bfloat16" in text


def test_bad_preset_leaves_params_untouched(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("base_model:\n  source: embedded\n")
    preset = tmp_path / "preset.yaml"
    preset.write_text("base_model:\n  sorce: tiny\n")
    with pytest.raises(ConfigError, match="unknown key"):
        apply_preset(preset, params)
    assert params.read_text() == "base_model:\n  source: embedded\n"


def test_shipped_params_and_presets_validate(tmp_path):
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    validate_all(root / "params.yaml")
    for preset in sorted((root / "configs").glob("*.yaml")):
        p = tmp_path / "params.yaml"
        shutil.copy(root / "params.yaml", p)
        apply_preset(preset, p)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_rejected(value):
    from ruamel.yaml import YAML

    raw = YAML(typ="safe").load(f"rate: {value}")
    with pytest.raises(ConfigError, match="sec.rate: expected a finite number"):
        convert(raw, Section, "sec")


def test_code_defaults_are_the_shipped_params():
    """Every key of params.yaml holds its code default: a section left out of a preset or a test's
    params means exactly what the shipped file says."""
    import dataclasses

    from humpback.config import default_section, read_params

    def diff(a, b, where):
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            return [d for f in dataclasses.fields(a) for d in diff(getattr(a, f.name), getattr(b, f.name),
                                                                  f"{where}.{f.name}")]
        return [] if a == b else [f"{where}: params.yaml {a!r} != code {b!r}"]

    path = ROOT / "params.yaml"
    data = read_params(path)
    assert set(data) == set(SECTIONS)  # the shipped file names every section
    problems = [d for name in data for d in diff(load_section(name, path), default_section(name), name)]
    assert problems == []


def test_a_partial_nested_section_keeps_the_fields_own_defaults():
    from humpback.augment import AugmentConfig

    cfg = convert({"sampling": {"temperature": 0.3}}, AugmentConfig, "augment")
    assert (cfg.sampling.temperature, cfg.sampling.max_new_tokens) == (0.3, 48)  # not the class default 256
    assert convert({}, AugmentConfig, "augment").sampling.max_new_tokens == 48


@pytest.mark.parametrize("section,raw,message", [
    ("judge", {"labels": ["1", "1"]}, "judge.labels: expected two distinct non-blank labels"),
    ("engine", {"vllm": {"max_lora_rank": 48}}, "engine.vllm.max_lora_rank: 48 is not one of 1, 8, 16"),
    ("engine", {"openai": {"max_retries": -1}}, "engine.openai.max_retries: -1 is out of range (must be >= 0)"),
    ("eval", {"sampling": {"top_p": 0}}, "eval.sampling.top_p: 0 is out of range (must be > 0 and <= 1)"),
    ("train", {"lora": {"dropout": 1.0}}, "train.lora.dropout: 1 is out of range (must be >= 0 and < 1)"),
    ("augment", {"chunk_size": 0}, "augment.chunk_size: 0 is out of range (must be >= 1)"),
])
def test_ranges_and_rules_are_checked_when_params_are_read(tmp_path, section, raw, message):
    from ruamel.yaml import YAML

    path = tmp_path / "params.yaml"
    with open(path, "w") as f:
        YAML().dump({section: raw}, f)
    with pytest.raises(ConfigError) as e:
        validate_all(path)
    assert message in str(e.value)


# ---------------------------------------------------------------------------------------------
# per-iteration overrides: iterations.<it>.{select,train,mix}


def _params(tmp_path, text: str) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_an_iteration_overrides_its_own_sections_only(tmp_path):
    p = _params(tmp_path, "select:\n  threshold: 3.0\n  top_share: 0.25\n"
                          "train:\n  lora: {r: 4, alpha: 16}\n  max_steps: 7\n"
                          "iterations:\n  it1: {prev: m0}\n"
                          "  it2: {prev: it1, select: {threshold: 4.5}, train: {lora: {r: 8}}, mix: {seed: false}}\n")
    it1, it2 = (load_section("select", p, iteration=it) for it in ("it1", "it2"))
    assert (it1.threshold, it1.top_share) == (3.0, 0.25)
    assert (it2.threshold, it2.top_share) == (4.5, 0.25)  # the override, then the section's own keys
    assert load_section("select", p) == it1  # no iteration: the section as written
    t1, t2 = (load_section("train", p, iteration=it) for it in ("it1", "it2"))
    assert (t1.lora.r, t1.lora.alpha, t1.max_steps) == (4, 16, 7)
    assert (t2.lora.r, t2.lora.alpha, t2.max_steps) == (8, 16, 7)  # a nested override keeps the section's alpha
    assert load_section("mix", p, iteration="it1").seed is True  # no mix section: code defaults
    assert load_section("mix", p, iteration="it2").seed is False
    validate_all(p)


def _both_name(p: Path, message: str, section: str | None = None, **where) -> None:
    """`humpback check-params` (validate_all) names the problem, and so does the stage reading `section`."""
    with pytest.raises(ConfigError) as e:
        validate_all(p)
    assert message in str(e.value) and str(p) in str(e.value)
    if section:
        with pytest.raises(ConfigError) as e:
            load_section(section, p, **where)
        assert message in str(e.value)


@pytest.mark.parametrize("override, message", [
    ("select: {thresold: 4.5}", "params.yaml: iterations.it2.select: unknown key(s) thresold; known: "),
    ("select: {threshold: high}", "params.yaml: iterations.it2.select.threshold: expected a number, got 'high'"),
    ("select: {threshold: 6}", "params.yaml: iterations.it2.select.threshold: 6 is out of range (must be >= 0 and <= 5)"),
    ("select: {sample: -1}", "params.yaml: iterations.it2.select.sample: -1 is out of range (must be >= 0)"),
    ("train: {lora: {dropout: 1.0}}", "params.yaml: iterations.it2.train.lora.dropout: 1 is out of range"),
    ("train: {lora: {rank: 8}}", "params.yaml: iterations.it2.train.lora: unknown key(s) rank"),
    ("mix: {seed: maybe}", "params.yaml: iterations.it2.mix.seed: expected true or false, got 'maybe'"),
    ("mix: {sed: false}", "params.yaml: iterations.it2.mix: unknown key(s) sed; known: scaling_steps, seed"),
    ("select: 4.5", "iterations.it2.select: expected a mapping, got float"),
    ("score: {mode: generate}", "iterations.it2: unknown key(s) score; known: mix, prev, select, train"),
])
def test_a_bad_override_is_an_error_naming_its_full_path(tmp_path, override, message):
    p = _params(tmp_path, f"iterations:\n  it1: {{prev: m0}}\n  it2: {{prev: it1, {override}}}\n")
    section = override.split(":")[0]
    read = section in ("select", "train", "mix") and "{" in override  # a stage reads it
    _both_name(p, message, section if read else None, iteration="it2")
    if read:
        load_section(section, p, iteration="it1")  # it1 has no override: fine


def test_check_params_command_rejects_a_bad_override(tmp_path, capsys):
    from humpback.cli import main

    p = _params(tmp_path, "iterations:\n  it1: {prev: m0}\n  it2: {prev: it1, select: {thresold: 4.5}}\n")
    with pytest.raises(SystemExit) as e:
        main(["check-params", str(p)])
    assert e.value.code == 2
    assert f"error: {p}: iterations.it2.select: unknown key(s) thresold" in capsys.readouterr().err


def test_an_unknown_iteration_is_an_error(tmp_path):
    p = _params(tmp_path, "iterations:\n  it1: {prev: m0}\n")
    with pytest.raises(ConfigError, match=r"iterations.it9: no such iteration \(known: it1\)"):
        load_section("select", p, iteration="it9")
    with pytest.raises(ValueError, match="no per-iteration overrides"):
        load_section("score", p, iteration="it1")


# ---------------------------------------------------------------------------------------------
# every problem, not only the first; short messages


def test_convert_collects_every_problem_of_a_section():
    from humpback.config import ParamsError

    with pytest.raises(ParamsError) as e:
        convert({"rat": 1, "rate": "fast", "mode": "c", "items": [1, "ok", 2], "inner": {"k": 1.5}}, Section, "sec")
    assert e.value.problems == [
        "sec: unknown key(s) rat; known: flag, inner, items, maybe, mode, name, rate",
        "sec.rate: expected a number, got 'fast'",
        "sec.mode: 'c' is not one of 'a', 'b'",
        "sec.items[0]: expected a string, got 1",
        "sec.items[2]: expected a string, got 2",
        "sec.inner.k: expected an integer, got 1.5",
    ]
    # one line all the same: the first problem and the count of the rest
    assert str(e.value) == "sec: unknown key(s) rat; known: flag, inner, items, maybe, mode, name, rate " \
                           "(and 5 more problems: `humpback check-params` lists them)"


def test_a_stage_gets_one_line_and_check_params_every_line(tmp_path, capsys):
    from humpback.cli import main

    p = _params(tmp_path, "select:\n  threshold: 9\n  top_share: -1\n  max_examples: -2\n")
    with pytest.raises(ConfigError) as e:
        load_section("select", p)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{p}: select.threshold: 9 is out of range")
    assert str(e.value).endswith(f"(and 2 more problems: `humpback check-params {p}` lists them)")
    with pytest.raises(SystemExit) as e:
        main(["check-params", str(p)])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {p}: select.threshold: 9 is out of range (must be >= 0 and <= 5)",
        f"error: {p}: select.max_examples: -2 is out of range (must be >= 0)",
        f"error: {p}: select.top_share: -1 is out of range (must be >= 0 and <= 1)",
    ]


def test_a_rule_between_fields_is_checked_even_when_another_field_is_wrong(tmp_path):
    from humpback.config import ParamsError

    p = _params(tmp_path, "corpus:\n  min_chars: 500\n  max_chars: 100\n  shingle_size: 0\n")
    with pytest.raises(ParamsError) as e:
        validate_all(p)
    assert [x.split(": ", 1)[1] for x in e.value.problems] == [
        "corpus.shingle_size: 0 is out of range (must be >= 1 and <= 8)",
        "corpus.max_chars: 100 is less than min_chars (500)",
    ]
    # a rule that involves the wrong field is not reported from its stand-in default
    p = _params(tmp_path, "corpus:\n  min_chars: -1\n  max_chars: 100\n")
    with pytest.raises(ParamsError) as e:
        validate_all(p)
    assert len(e.value.problems) == 1 and "corpus.min_chars: -1 is out of range" in e.value.problems[0]


@pytest.mark.parametrize("value, shown", [
    ("x" * 500, "'" + "x" * 27 + "..." + "x" * 28 + "'"),
    ([[[[[1]]]]] * 100, "[[[[...]]], [[[...]]], [[[...]]], [[[...]]], [[[...]]], [[[...]]], ...]"),
    ("a\nb", "'a\\nb'"),
])
def test_excerpt_is_short_and_one_line(value, shown):
    from humpback.config import excerpt

    assert excerpt(value) == shown and len(shown) <= 80


@pytest.mark.parametrize("engine, message", [
    ("{backend: vllm, device: cpu}", "engine.device: cpu, but the vllm backend runs vLLM, which needs CUDA GPUs; "
                                     "use backend transformers on a CPU"),
    ("{backend: ray, device: cpu, ray: {replica: vllm}}", "engine.device: cpu, but engine.ray.replica is vllm, which "
                                                        "needs CUDA GPUs; set it to transformers (or auto) for "
                                                        "replicas on CPUs"),
    ("{backend: ray, vllm: {data_parallel_size: 4}}", "engine.vllm.data_parallel_size: 4 with backend ray, which "
                                                      "starts engine.ray.num_replicas replicas instead; set that"),
    ("{backend: openai}", "engine.openai.base_url: empty, but backend openai sends every request to it"),
    ("{backend: vllm, vllm: {max_lora_rank: 48}}", "engine.vllm.max_lora_rank: 48 is not one of 1, 8, 16, 32, 64, "
                                                   "128, 256, 320, 512"),
])
def test_check_params_refuses_settings_the_backend_cannot_run(tmp_path, capsys, engine, message):
    from humpback.cli import main

    p = _params(tmp_path, f"engine: {engine}\n")
    with pytest.raises(SystemExit) as e:
        main(["check-params", str(p)])
    assert e.value.code == 2 and capsys.readouterr().err.splitlines() == [f"error: {p}: {message}"]


@pytest.mark.parametrize("engine", ["{backend: vllm, vllm: {data_parallel_size: 8}}", "{backend: ray, device: auto}",
                                    "{backend: ray, device: cpu}",
                                    "{backend: ray, device: cpu, ray: {replica: transformers, num_cpus: 4}}",
                                    "{backend: openai, openai: {base_url: 'http://h:8000/v1'}}",
                                    "{backend: transformers, device: cpu}"])
def test_check_params_accepts_what_the_backend_can_run(tmp_path, engine):
    assert "engine" in validate_all(_params(tmp_path, f"engine: {engine}\n"))


def test_the_backward_model_reads_train_with_its_own_keys_on_top(tmp_path):
    p = _params(tmp_path, "train:\n  epochs: 1\n  learning_rate: 1.0e-4\n  lora: {r: 4, alpha: 16}\n"
                          "backward:\n  train: {epochs: 3, lora: {r: 8}}\n")
    bw, m0 = load_section("train", p, backward=True), load_section("train", p)
    assert (bw.epochs, bw.learning_rate, bw.lora.r, bw.lora.alpha) == (3, 1e-4, 8, 16)
    assert (m0.epochs, m0.lora.r) == (1, 4)  # every other model: the section as written
    assert load_section("train", p, iteration="it1").epochs == 1
    validate_all(p)
    # no backward section: the code default (2 epochs); an empty one: the train section as written
    assert load_section("train", _params(tmp_path, "train: {epochs: 1}\n"), backward=True).epochs == 2
    assert load_section("train", _params(tmp_path, "train: {epochs: 1}\nbackward: {train: {}}\n"),
                        backward=True).epochs == 1


@pytest.mark.parametrize("body, message", [
    ("train: {epoch: 3}", "params.yaml: backward.train: unknown key(s) epoch; known: "),
    ("train: {epochs: 0}", "params.yaml: backward.train.epochs: 0 is out of range"),
    ("train: {lora: {dropout: 1.0}}", "params.yaml: backward.train.lora.dropout: 1 is out of range"),
    ("train: 3", "params.yaml: backward.train: expected a mapping"),
    ("epochs: 3", "params.yaml: backward: unknown key(s) epochs; known: train"),
])
def test_a_bad_backward_key_is_an_error_naming_its_full_path(tmp_path, body, message):
    p = _params(tmp_path, f"backward: {{{body}}}\n")
    _both_name(p, message, "train", backward=True)
    load_section("train", p)  # m0 and the forward models do not read it


def test_check_params_lists_a_bad_backward_key_beside_the_other_problems(tmp_path):
    p = _params(tmp_path, "select: {threshold: 9}\nbackward: {train: {epoch: 3}}\n")
    with pytest.raises(ConfigError) as e:
        validate_all(p)
    listed = " | ".join(e.value.problems)
    assert "select.threshold: 9 is out of range" in listed and "backward.train: unknown key(s) epoch" in listed


def test_only_train_has_backward_model_keys(tmp_path):
    with pytest.raises(ValueError, match=r"^section 'select' has no backward-model overrides \(only train\)$"):
        load_section("select", _params(tmp_path, "backward: {train: {epochs: 3}}\n"), backward=True)


def test_the_paper_preset_trains_the_backward_model_as_every_other(tmp_path):
    # params.yaml's backward.train (2 epochs) would survive a preset that leaves the key out
    params = tmp_path / "params.yaml"
    params.write_text((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    apply_preset(Path(__file__).resolve().parents[1] / "configs/paper.yaml", params)
    assert load_section("train", params, backward=True) == load_section("train", params)
    assert load_section("train", params).epochs == 3
