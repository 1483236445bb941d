#!/usr/bin/env bash
# Installs what the tests need and runs every test: the web demo's unit tests, formatting, lints,
# docs, the Rust unit and integration tests, the interop suites with the real npm y-websocket and
# Hocuspocus clients against the real `tandem` binary, and the web demo end to end in Debian's
# Chromium.
# This is the README's second command; `.ci/run` calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# CI builds once from a clean clone: incremental caches would only cost it disk space.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi

step "installing test dependencies"
missing=()
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
npm ci --prefix tests/interop --no-audit --no-fund
npm ci --prefix tests/hocuspocus --no-audit --no-fund
npm ci --prefix web-demo --no-audit --no-fund

# Before any cargo build: the binary embeds web-demo/dist when it is built.
step "web demo: client layer unit tests (vitest) and build"
npm test --prefix web-demo
npm run build --prefix web-demo

step "checking formatting"
cargo fmt --all --check

step "linting"
cargo clippy --workspace --all-targets -- -D warnings

step "checking docs"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --quiet

# Includes the fuzz targets over their checked-in corpora, regressions and fixed-seed inputs
# (crates/tandem-fuzz/tests/fuzz.rs), the SIGKILL crash test (crates/tandem/tests/crash.rs;
# TANDEM_CRASH_ITERATIONS=200 for a longer run) and the full-disk test, which mounts a small
# tmpfs and so needs root (CI is root; elsewhere it says it skipped).
step "rust tests"
cargo test --workspace

step "interop tests (npm y-websocket against the tandem binary and the embedding example)"
cargo build -p tandem -p tandem-server --example embed --quiet
TANDEM_BIN="$PWD/target/debug/tandem" npm test --prefix tests/interop

step "hocuspocus tests (npm @hocuspocus/provider v3 and v4 against the tandem binary)"
TANDEM_BIN="$PWD/target/debug/tandem" npm test --prefix tests/hocuspocus

step "web demo end to end (Chromium against the tandem binary)"
TANDEM_BIN="$PWD/target/debug/tandem" npm run e2e --prefix web-demo
