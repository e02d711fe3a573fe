"""scripts/mutation_report.py: the tally per module, survivors matched to the equivalents list, stale
entries found; and the shipped list names only modules under mutation, each entry with its reason."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutation_report", ROOT / "scripts" / "mutation_report.py")
report = importlib.util.module_from_spec(spec)
sys.modules["mutation_report"] = report  # its dataclass looks its module up there
spec.loader.exec_module(report)


def test_names_of_functions_and_methods():
    assert report.function_of("humpback.curation.parse.x_parse_score__mutmut_6") == "parse_score"
    assert report.function_of("humpback.curation.parse.x__value__mutmut_12") == "_value"
    assert report.function_of("humpback.corpus.dedup.xǁNearDedupǁ__init____mutmut_1") == "NearDedup.__init__"


def test_tally_counts_matches_equivalents_and_finds_stale_ones():
    M = report.Mutant
    mutants = [M("a1", "m.py", "f", "killed", ""), M("a2", "m.py", "f", "killed", ""),
               M("a3", "m.py", "f", "survived", "x = 2"), M("a4", "m.py", "g", "survived", "y = 3"),
               M("b1", "n.py", "h", "timeout", ""), M("b2", "n.py", "h", "no_tests", "z = 1")]
    eq = [{"module": "m.py", "function": "f", "change": "x = 2", "reason": "same"},
          {"module": "m.py", "function": "g", "change": "y = 4", "reason": "gone"}]
    out = report.tally(mutants, eq)
    m, n = out["modules"]["m.py"], out["modules"]["n.py"]
    assert (m["mutants"], m["killed"], m["survived"], m["equivalent"]) == (4, 2, 2, 1)
    assert m["killed_pct"] == 50.0 and m["score_pct"] == round(100 * 2 / 3, 1)
    assert (n["killed_pct"], n["no_tests"]) == (50.0, 1)  # a timeout is caught; no covering test is not
    assert [s["mutant"] for s in out["survivors"]] == ["a3", "a4", "b2"]
    assert out["survivors"][0]["equivalent"] == "same" and out["survivors"][1]["equivalent"] is None
    assert out["stale_equivalents"] == [{"module": "m.py", "function": "g", "change": "y = 4"}]
    problems = report.problems(out)
    assert any("m.py: 50.0% of 4 mutants killed" in p for p in problems)
    assert any("g: survived and not listed" in p for p in problems) and any("stale entry" in p for p in problems)


def test_the_shipped_equivalents_name_mutated_modules_with_reasons():
    mutated = {p.removeprefix("src/") for p in
               tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]}
    entries = report.load_equivalents(report.EQUIVALENTS)
    assert entries and all(e["module"] in mutated and len(e["reason"]) > 20 for e in entries)
    assert len({(e["module"], e["function"], e["change"]) for e in entries}) == len(entries)


def _run(killed: int, survived: str | None, module: str = "m.py") -> list:
    M = report.Mutant
    out = [M(f"k{i}", module, "f", "killed", "") for i in range(killed)]
    return out + ([M("s1", module, "f", "survived", survived)] if survived else [])


def test_a_narrowed_run_keeps_an_unchanged_modules_figures():
    eq = [{"module": "m.py", "function": "f", "change": "x = 2", "reason": "same"}]
    previous = report.tally(_run(9, "x = 2"), eq, {"m.py": "abc"})
    assert previous["modules"]["m.py"]["source_sha256"] == "abc"
    unchecked = [report.Mutant(f"n{i}", "m.py", "f", "not_checked", "") for i in range(10)]
    carried = report.tally(report.carry_over(unchecked, previous, {"m.py": "abc"}), eq, {"m.py": "abc"})
    assert carried["modules"] == previous["modules"] and carried["survivors"] == previous["survivors"]
    assert carried["stale_equivalents"] == []  # the carried survivor still uses its entry
    # the source changed since: the module is not checked, and under target
    changed = report.tally(report.carry_over(unchecked, previous, {"m.py": "def"}), eq, {"m.py": "def"})
    assert changed["modules"]["m.py"]["not_checked"] == 10 and changed["modules"]["m.py"]["killed_pct"] == 0
    # a module checked in this run takes this run's figures, whatever the previous report says
    rerun = _run(5, "x = 2") + _run(4, "y = 1")[-1:]
    fresh = report.tally(report.carry_over(rerun, previous, {"m.py": "abc"}), eq, {"m.py": "abc"})
    assert (fresh["modules"]["m.py"]["mutants"], fresh["modules"]["m.py"]["survived"]) == (7, 2)
    # a previous module row that was itself partly unchecked is not carried
    partial = report.tally(_run(3, None) + unchecked[:2], eq, {"m.py": "abc"})
    assert report.carry_over(unchecked, partial, {"m.py": "abc"}) == unchecked


def test_the_source_digest_is_of_the_file_bytes(tmp_path):
    (tmp_path / "m.py").write_bytes(b"x = 1\n")
    before = report.source_digest("m.py", tmp_path)
    (tmp_path / "m.py").write_bytes(b"x = 2\n")
    assert report.source_digest("m.py", tmp_path) != before and len(before) == 64
