# Shortcuts; the README's two commands need nothing but Python and pip.
.PHONY: install dev repro test test-all lint bench lock mutation

install:
	bash scripts/install.sh

dev:
	bash scripts/install.sh dev

repro: install
	dvc repro

test: dev
	python -m pytest

test-all: dev  # includes the slow tests that load the real embedded model
	python -m pytest -m "not gpu"

lint:
	ruff check src stages tests bench

bench:
	python bench/run.py

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml): every small change to them
# must fail a fast test. metrics/mutation.json gets killed / survived per module; survivors that no
# test can tell apart are listed with their reason in scripts/mutation_equivalents.yaml. MUTANTS narrows
# the run, e.g. make mutation MUTANTS='humpback.curation.*' (results of earlier runs are kept).
MUTANTS ?=
mutation: dev
	mutmut run $(MUTANTS) || true  # survivors make mutmut exit non-zero; the report judges them
	python scripts/mutation_report.py

# The pinned environment scripts/install.sh installs: requirements/runtime.txt (the pipeline) and
# requirements/dev.txt (the same pins plus the test tools), resolved by uv (pip install uv) with the
# settings in requirements/uv.toml. Existing pins are kept; `make lock LOCK_FLAGS=--upgrade` takes
# the newest releases that fit pyproject.toml.
UV ?= uv
LOCK_FLAGS ?=
lock:
	$(UV) pip compile --config-file requirements/uv.toml $(LOCK_FLAGS) pyproject.toml -o requirements/runtime.txt
	$(UV) pip compile --config-file requirements/uv.toml $(LOCK_FLAGS) pyproject.toml --extra dev \
		-c requirements/runtime.txt -o requirements/dev.txt
	@# nvidia-ml-py (NVML bindings, pure Python, for dvclive's system metrics) is no CUDA package
	@if grep -inE '^(torch|triton|nvidia|cuda)' requirements/runtime.txt requirements/dev.txt | grep -v ':nvidia-ml-py=='; then \
		echo "the locks must not pin torch or its CUDA packages (see requirements/uv.toml)"; exit 1; fi
