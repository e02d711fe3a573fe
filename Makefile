# Shortcuts; the README's two commands need nothing but Python and pip.
.PHONY: install dev repro test test-all lint bench

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
