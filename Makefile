PYTHON ?= python3
.PHONY: test lint typecheck layers pytest bench demo crds clean

test: lint typecheck layers pytest  ## everything CI runs

lint:
	$(PYTHON) -m ruff check operator tests bench
	$(PYTHON) -m ruff format --check operator tests bench

typecheck:
	$(PYTHON) -m mypy

layers:
	lint-imports

pytest:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) bench/run.py

demo:  ## the operator against local Kubernetes and AWS emulators (kmock, moto): no cluster, no account
	[ -x .venv/bin/envsync ] || { python3 -m venv .venv && .venv/bin/python -m pip install -q -e '.[test]'; } && .venv/bin/envsync demo

clean:
	rm -rf build dist .mypy_cache .ruff_cache bench/.data
