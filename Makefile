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

clean:
	rm -rf build dist .mypy_cache .ruff_cache bench/.data
