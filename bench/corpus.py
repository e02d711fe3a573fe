"""Corpus preparation throughput and peak memory on a synthetic web dump, at two sizes.

    python bench/corpus.py [--segments 200000 1000000]

Each size is prepared in its own child process (`--worker`), which reports its own peak RSS, so
one size's memory cannot hide another's. Throughput per core is segments / CPU seconds of that
child (user + system): on a machine shared with other work, CPU time is the fair measure.
Peak RSS should stay flat as the corpus grows: batches stream through and only the dedup indexes grow
(about 0.27 KB per segment, 0.45 KB per kept one), so a million segments fit in 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# make_corpus with its defaults gives 6.006 (1M) to 6.02 (200k) segments per document (a title plus
# about 5 sections): 6.0 makes a requested size a floor
SEGMENTS_PER_DOC = 6.0


def worker(corpus: str, out_dir: str) -> dict:
    """Prepare one corpus file in this process; the metrics plus this process's peak RSS and CPU time."""
    from humpback.corpus.config import CorpusConfig, SourceConfig
    from humpback.corpus.pipeline import prepare_corpus

    cfg = CorpusConfig(sources=[SourceConfig(kind="table", path=corpus, name="synthetic")])
    start, timings = time.perf_counter(), {}
    metrics = prepare_corpus(cfg, Path(out_dir) / "segments.parquet", Path(out_dir) / "rejected.parquet",
                             timings=timings)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "segments_in": metrics["segments_in"],
        "segments_kept": metrics["segments_kept"],
        "seconds": round(wall, 2),
        "cpu_seconds": timings["cpu_seconds"],
        "process_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),  # imports included
        "peak_rss_mb": _peak_rss_mb(usage),
    }


def _peak_rss_mb(usage) -> float:
    """This process's peak RSS. ru_maxrss carries over the parent's peak through fork and exec (a bench
    process that loaded models first reported 9 GB here); VmHWM belongs to the new address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return round(usage.ru_maxrss / 1024, 1)  # Linux reports KiB


def measure(n_segments: int, tmp: Path, seed: int = 0) -> dict:
    """Write a synthetic corpus of about `n_segments` segments and prepare it in a child process."""
    from humpback.corpus.synthetic import make_corpus

    path = tmp / f"corpus-{n_segments}.jsonl"
    start = time.perf_counter()
    make_corpus(path, max(1, round(n_segments / SEGMENTS_PER_DOC)), seed=seed)
    made = time.perf_counter() - start
    out = tmp / f"out-{n_segments}"
    out.mkdir()
    proc = subprocess.run([sys.executable, __file__, "--worker", str(path), str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"corpus worker failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["segments_per_cpu_second"] = round(result["segments_in"] / result["cpu_seconds"], 1)
    result["segments_per_second"] = round(result["segments_in"] / result["seconds"], 1)
    result["corpus_mb"] = round(path.stat().st_size / 2**20, 1)
    result["make_corpus_seconds"] = round(made, 1)
    path.unlink()
    return result


def run(sizes: tuple[int, ...] = (200_000, 1_000_000)) -> dict:
    """{str(size): measurements, "_summary": growth ratios}."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            results[str(n)] = measure(n, Path(tmp))
    small, large = results[str(min(sizes))], results[str(max(sizes))]
    results["_summary"] = {
        "segments_ratio": round(large["segments_in"] / small["segments_in"], 2),
        "rss_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2),
    }
    print(f"{'segments':>9} {'kept':>8} {'wall s':>7} {'cpu s':>7} {'seg/cpu-s':>10} {'peak RSS MB':>12}")
    for n in sizes:
        r = results[str(n)]
        print(f"{r['segments_in']:>9} {r['segments_kept']:>8} {r['seconds']:>7} {r['cpu_seconds']:>7} "
              f"{r['segments_per_cpu_second']:>10} {r['peak_rss_mb']:>12}")
    print(results["_summary"])
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--worker", nargs=2, metavar=("CORPUS", "OUT_DIR"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(*a.worker)))
        return
    run(tuple(a.segments))


if __name__ == "__main__":
    main()
