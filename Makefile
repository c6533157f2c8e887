# On a fresh machine `make demo` and `make test` build .venv themselves; CI (.ci/run) passes its
# own PYTHON, whose virtualenv already exists, so the set-up step is skipped there.
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
BIN = $(dir $(PYTHON))
.PHONY: test lint typecheck layers pytest bench dashboard-image demo crds lock sbom pin-base-image clean

test: $(PYTHON) lint typecheck layers pytest  ## everything CI runs

$(PYTHON):  ## a virtualenv with the project and its test extras
	python3 -m venv $(VENV) && $(VENV)/bin/python -m pip install -q --upgrade pip && $(VENV)/bin/python -m pip install -q -e '.[test]'

lint: $(PYTHON)
	$(PYTHON) -m ruff check operator tests bench
	$(PYTHON) -m ruff format --check operator tests bench

typecheck: $(PYTHON)
	$(PYTHON) -m mypy

layers: $(PYTHON)
	$(BIN)lint-imports

pytest: $(PYTHON)
	$(PYTHON) -m pytest -q

bench: $(PYTHON)
	$(PYTHON) bench/run.py

dashboard-image: $(PYTHON)  ## docs/images/dashboard.png: the chart's dashboard over a five-minute run against the emulators (pip install -e '.[test,bench]')
	$(PYTHON) bench/dashboard.py

demo: $(PYTHON)  ## the operator against local Kubernetes and AWS emulators (kmock, moto): no cluster, no account; EXAMPLE=gitops for another of examples/
	$(BIN)envsync demo $(if $(EXAMPLE),--example $(EXAMPLE))

crds: $(PYTHON)  ## regenerate crds/, the chart's copy and the reference docs from the models
	$(BIN)envsync crd --write

lock: $(PYTHON)  ## re-pin requirements/operator.lock (the image's dependencies, with hashes) after a change in pyproject.toml
	$(BIN)pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links --output-file requirements/operator.lock pyproject.toml

sbom: $(PYTHON)  ## dist/sbom.cdx.json: CycloneDX SBOM of the locked dependencies
	mkdir -p dist && $(BIN)cyclonedx-py requirements --pyproject pyproject.toml --of JSON --output-reproducible -o dist/sbom.cdx.json requirements/operator.lock

BASE_TAG ?= python:3.11-slim-bookworm
pin-base-image:  ## re-resolve the Dockerfile's base image to the digest its tag names today (needs docker buildx and a registry)
	digest=$$(docker buildx imagetools inspect $(BASE_TAG) --format '{{print .Manifest.Digest}}') \
	 && test -n "$$digest" \
	 && sed -i "s|^ARG PYTHON_IMAGE=.*|ARG PYTHON_IMAGE=$(BASE_TAG)@$$digest|" Dockerfile \
	 && grep '^ARG PYTHON_IMAGE=' Dockerfile

clean:
	rm -rf build dist .mypy_cache .ruff_cache bench/.data
