# syntax=docker/dockerfile:1
# The envsync operator image: `envsync run` on a slim Python, as a non-root user.
#
# Stage 1 builds the wheel from the source tree and installs it, with its dependencies, into a
# virtualenv. Stage 2 copies only that virtualenv onto a fresh slim image: no compiler, no build
# backend, no pip cache, no source tree. The dependencies come from requirements/operator.lock
# (`make lock`), hashes checked. tests/test_wheel.py proves the same wheel installs on the
# locked set and runs; tests/test_dockerfile.py lints this file with hadolint.

# The base image by digest: the tag moves with every Debian and Python patch release, so two
# builds of one commit could differ. `make pin-base-image` re-resolves the tag; Dependabot
# proposes the same update (.github/dependabot.yml). A build for another base still passes
# `--build-arg PYTHON_IMAGE=...`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/operator.lock ./requirements/
COPY operator ./operator
# The dependencies exactly as locked, each file checked against its hash (an image built next
# month holds the same versions); then the wheel alone, and pip's check that the two agree.
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/envsync \
 && /opt/envsync/bin/pip install --require-hashes --no-deps -r requirements/operator.lock \
 && /opt/envsync/bin/pip install --no-deps /dist/*.whl \
 && /opt/envsync/bin/pip check \
 && /opt/envsync/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="envsync" \
      org.opencontainers.image.description="Kubernetes operator that keeps AWS SSM Parameter Store and Secrets Manager in step with .env files" \
      org.opencontainers.image.source="https://github.com/envsync/envsync" \
      org.opencontainers.image.url="https://github.com/envsync/envsync" \
      org.opencontainers.image.documentation="https://github.com/envsync/envsync/tree/main/docs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="envsync" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/opt/envsync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A named account (kopf and getpass look the user up) with a fixed numeric UID/GID, so that
# Kubernetes can verify runAsNonRoot from the image alone; and no installer left behind: the
# base image's own pip, setuptools and wheel go.
RUN groupadd --system --gid 65532 envsync \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin envsync \
 && python -m pip uninstall --yes --no-cache-dir pip setuptools wheel
COPY --from=build /opt/envsync /opt/envsync
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["envsync", "run"]
