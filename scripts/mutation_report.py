"""Tally the last `mutmut run` per module into metrics/mutation.json (`make mutation` runs both).

Each mutant is one small change to a core module (pyproject.toml's [tool.mutmut] only_mutate), run
against the fast tests that reach the changed function. A survivor is either a gap in the tests or
an equivalent change; scripts/mutation_equivalents.yaml lists the equivalent ones, each by its module,
function and the mutated line with the reason no test can tell it apart. An entry that no longer
matches a survivor is reported as stale, so the list cannot outlive the code it describes.

    python scripts/mutation_report.py            # write metrics/mutation.json, exit 1 under target
    python scripts/mutation_report.py --print    # also print every unexplained survivor's diff

A run narrowed to some modules (`make mutation MUTANTS='humpback.chunks.*'`) leaves the others not
checked; each of those keeps its figures from the previous metrics/mutation.json when its source is
byte-identical to the one they were measured on (the row's source_sha256), and stays not checked
otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENTS = ROOT / "scripts" / "mutation_equivalents.yaml"
OUT = ROOT / "metrics" / "mutation.json"
TARGET = 90.0
# mutmut's own status names, shortened to keys ("caught by type check" -> type_check)
_RENAME = {"no tests": "no_tests", "not checked": "not_checked", "caught by type check": "type_check",
           "check was interrupted by user": "interrupted"}
# what counts as caught: the tests (or the type checker) noticed the change
CAUGHT = ("killed", "timeout", "type_check", "segfault")
# mutmut's keys: <module>.x_<function>__mutmut_<n>, or <module>.xǁ<Class>ǁ<method>__mutmut_<n>
_NAME = re.compile(r"^(?P<module>.+?)\.x(?:ǁ(?P<cls>[^ǁ]+)ǁ|_)(?P<func>.+)__mutmut_(?P<n>\d+)$")


@dataclass(frozen=True)
class Mutant:
    name: str  # mutmut's key, e.g. humpback.curation.parse.x_parse_score__mutmut_6
    module: str  # the file, relative to src/
    function: str  # Class.method or function
    status: str
    change: str  # the mutated line(s), stripped, as the diff's + lines show them


def function_of(name: str) -> str:
    m = _NAME.match(name)
    if not m:
        return name
    return f"{m['cls']}.{m['func']}" if m["cls"] else m["func"]


def read_mutants(mutants: Path) -> list[Mutant]:
    """Every mutant of the last run, with its status and its + lines."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # the pinned dev dependency
    from mutmut.stats import status_by_exit_code

    out = []
    for meta in sorted((mutants / "src").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        source = meta.with_suffix("")  # the mutated copy of the module
        module = str(source.relative_to(mutants / "src"))
        for name, code in sorted(data["exit_code_by_key"].items()):
            status = _RENAME.get(status_by_exit_code[code], status_by_exit_code[code])
            change = ""
            if status != "killed":
                diff = get_diff_for_mutant(name, path=Path("src") / module)
                change = "\n".join(line[1:].strip() for line in diff.splitlines()
                                   if line.startswith("+") and not line.startswith("+++"))
            out.append(Mutant(name, module, function_of(name), status, change))
    return out


def source_digest(module: str, src: Path = ROOT / "src") -> str:
    return hashlib.sha256((src / module).read_bytes()).hexdigest()


def carry_over(mutants: list[Mutant], previous: dict, digests: dict[str, str]) -> list[Mutant]:
    """This run's mutants, where a module none of which were checked takes the previous report's
    outcome instead (its survivors as they were, the rest as their counts), if its source has not
    changed since; the survivors are matched to the equivalents list again by `tally`."""
    by_module: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_module.setdefault(m.module, []).append(m)
    out = []
    for module, ms in by_module.items():
        row = previous.get("modules", {}).get(module)
        if (row is None or any(m.status != "not_checked" for m in ms) or row.get("not_checked")
                or row.get("source_sha256") != digests.get(module)):
            out += ms
            continue
        kept = [Mutant(s["mutant"], module, s["function"], s["status"], s["change"])
                for s in previous.get("survivors", []) if s["module"] == module]
        for status in CAUGHT:
            kept += [Mutant(f"{module}:{status}:{i}", module, "", status, "") for i in range(row.get(status, 0))]
        if len(kept) != row["mutants"]:  # a report that does not add up is not carried
            out += ms
            continue
        out += kept
    return out


def load_equivalents(path: Path) -> list[dict]:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(path.read_text()) if path.is_file() else None
    entries = data or []
    for i, e in enumerate(entries):
        missing = {"module", "function", "change", "reason"} - set(e)
        if missing:
            raise SystemExit(f"{path}: entry {i + 1}: missing {', '.join(sorted(missing))}")
    return entries


def tally(mutants: list[Mutant], equivalents: list[dict], digests: dict[str, str] | None = None) -> dict:
    """Per module: counts by status, survivors explained as equivalent, and the kill rate, where
    killed_pct counts every mutant and score_pct leaves the equivalent ones out."""
    used = [0] * len(equivalents)
    modules: dict[str, Counter] = {}
    survivors = []
    for m in mutants:
        c = modules.setdefault(m.module, Counter())
        c["mutants"] += 1
        c[m.status] += 1
        if m.status in (*CAUGHT, "not_checked"):
            continue  # caught, or not run yet (counted per module; a module with any is under target)
        reason = None
        for i, e in enumerate(equivalents):
            if (e["module"], e["function"], e["change"].strip()) == (m.module, m.function, m.change):
                reason, used[i] = e["reason"], used[i] + 1
                break
        if reason is not None and m.status == "survived":
            c["equivalent"] += 1
        survivors.append({"mutant": m.name, "module": m.module, "function": m.function, "status": m.status,
                          "change": m.change, "equivalent": reason})
    table = {}
    for module, c in sorted(modules.items()):
        caught = sum(c[status] for status in CAUGHT)
        table[module] = {
            "mutants": c["mutants"], "killed": c["killed"], "timeout": c["timeout"], "survived": c["survived"],
            "type_check": c["type_check"], "segfault": c["segfault"], "no_tests": c["no_tests"],
            "not_checked": c["not_checked"], "equivalent": c["equivalent"],
            "killed_pct": round(100 * caught / c["mutants"], 1),
            "score_pct": round(100 * caught / max(1, c["mutants"] - c["equivalent"]), 1),
        }
        if digests and module in digests:
            table[module]["source_sha256"] = digests[module]
    stale = [e for e, n in zip(equivalents, used, strict=True) if n == 0]
    return {"target_pct": TARGET, "modules": table, "survivors": survivors,
            "stale_equivalents": [{k: e[k] for k in ("module", "function", "change")} for e in stale]}


def problems(report: dict) -> list[str]:
    out = [f"{module}: {row['killed_pct']}% of {row['mutants']} mutants killed, under {TARGET}%"
           for module, row in report["modules"].items() if row["killed_pct"] < TARGET]
    out += [f"{s['module']}: {s['function']}: {s['status']} and not listed as equivalent: {s['change']!r}"
            for s in report["survivors"] if s["equivalent"] is None]
    out += [f"{EQUIVALENTS.name}: stale entry (no such survivor): {e}" for e in report["stale_equivalents"]]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=Path, default=ROOT / "mutants", help="mutmut's working copy")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--print", action="store_true", help="print every unexplained survivor")
    args = ap.parse_args(argv)
    if not (args.mutants / "src").is_dir():
        print(f"{args.mutants}: no mutmut run here; run `mutmut run` first (make mutation)", file=sys.stderr)
        return 2
    os.chdir(args.mutants.parent)  # mutmut's own helpers read paths relative to the project
    from importlib.metadata import version

    mutants = read_mutants(args.mutants)
    digests = {module: source_digest(module) for module in {m.module for m in mutants}}  # each file once
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    report = {"tool": f"mutmut {version('mutmut')}",
              **tally(carry_over(mutants, previous, digests), load_equivalents(EQUIVALENTS), digests)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    for module, row in report["modules"].items():
        print(f"{module:45} {row['killed']:5}/{row['mutants']:<5} killed {row['killed_pct']:5.1f}%"
              f"  equivalent {row['equivalent']:3}  score {row['score_pct']:5.1f}%")
    found = problems(report)
    for p in found if args.print else found[:20]:
        print(p)
    if len(found) > 20 and not args.print:
        print(f"... and {len(found) - 20} more (--print)")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
