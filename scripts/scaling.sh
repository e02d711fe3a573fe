#!/usr/bin/env bash
# Data-scaling curve (the paper's w = alpha * ln N + C): one DVC experiment per curated-data size.
#
#   SIZES="100 200 400 800" MODEL=it2 scripts/scaling.sh
#
# Each size queues `dvc exp run -S ++iterations.it2.select.sample=N`: a seeded random N of the last
# iteration's curated pairs, trained for the paper's steps at its batch for N (Table 18); only
# select@it2, train@it2 and its evaluation re-run, A^(1), M1 and the scores come from the DVC cache
# (tests/test_ablations.py checks it). The queue runs one experiment at a time (JOBS=1; raise it
# only with the memory for several trainings). When it is
# empty, the points are read out of `dvc exp show --json` and fitted:
#   metrics/scaling.json      [{name, rev, N, win_rate}, ...]
#   metrics/scaling_fit.json  {alpha, C, r2, n_points, points}
# COLLECT_ONLY=1 skips queueing and only collects and fits the experiments that already exist.
set -euo pipefail

SIZES="${SIZES:-100 200 400 800}"
MODEL="${MODEL:-it2}"
JOBS="${JOBS:-1}"
PARAM="${PARAM:-iterations.it2.select.sample}"

if [[ "${COLLECT_ONLY:-0}" != 1 ]]; then
  for n in $SIZES; do
    dvc exp run --queue -S "++${PARAM}=${n}" -n "scale-${n}"
  done
  dvc queue start -j "$JOBS"
  # wait until nothing is queued or running
  while dvc queue status | grep -qE '\b(Queued|Running)\b'; do
    sleep 30
  done
  dvc queue status
fi

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
dvc exp show --json > "$tmp"
python -m humpback.evaluation.scaling collect "$tmp" --param "$PARAM" \
  --metric-file "metrics/headline/${MODEL}.json" --metric win --out metrics/scaling.json
python -m humpback.evaluation.scaling fit metrics/scaling.json --out metrics/scaling_fit.json
