"""Run the reliability suite and write metrics/reliability.json: how many bad inputs it tries, how many
faults it injects, and how many checks found the outputs intact after a fault.

    python scripts/reliability_report.py            # the default (fast) suite
    python scripts/reliability_report.py -m slow    # extra pytest arguments, e.g. the long fuzzing too

The file is written only when every test passed (tests/reliability_plugin.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["tests/test_reliability_inputs.py", "tests/test_reliability_stages.py", "tests/test_reliability_kill.py",
         "tests/test_reliability_judge.py", "tests/test_reliability_determinism.py", "tests/test_properties.py",
         "tests/test_fuzz_readers.py", "tests/test_hostile_params.py", "tests/test_hostile_inputs.py",
         "tests/test_hostile_faults.py", "tests/test_hostile_outputs.py"]


def main() -> int:
    out = ROOT / "metrics" / "reliability.json"
    env = {**os.environ, "HUMPBACK_RELIABILITY_OUT": str(out)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:randomly", *SUITE, *sys.argv[1:]]
    code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    if code == 0:
        print(f"wrote {out.relative_to(ROOT)}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
