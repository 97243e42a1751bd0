#!/usr/bin/env bash
# The test command: brings up the real services, checks formatting and lints, runs every test.
# Exits non-zero on any failure. Used as is by CI (.ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# Python with Confluent's client (confluent-kafka from PyPI): the tests read Avro topics and talk to
# the schema registry with it. The venv lives under target/ and is made once.
ensure_python() {
  # venv for the Confluent client; PyYAML for reading docker-compose.yml in tests/compose.rs.
  if ! python3 -c 'import ensurepip, venv, yaml' >/dev/null 2>&1; then
    step "installing python3-venv and python3-yaml"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-yaml
  fi
  local venv=target/registry-venv
  if ! "$venv/bin/python" -c 'import confluent_kafka.schema_registry.avro' >/dev/null 2>&1; then
    step "python venv with confluent-kafka"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'confluent-kafka[avro,schemaregistry]'
  fi
}

ensure_build_tools() {
  # librdkafka is built from its bundled source: it needs a C toolchain, make and perl.
  local missing=()
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v perl >/dev/null 2>&1 || missing+=(perl)
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing build tools: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
}

# kcat: a Kafka client nobody here wrote, used by the tests to read topics as the ecosystem does.
ensure_test_tools() {
  if ! command -v kcat >/dev/null 2>&1; then
    step "installing kcat"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat
  fi
}

ensure_build_tools
ensure_test_tools
ensure_python

step "services"
scripts/services.sh up

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
cargo test --locked
