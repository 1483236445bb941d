#!/usr/bin/env bash
# The README's first command: builds the web demo (web-demo/, with npm), then builds and starts
# the server with the demo built in, at http://127.0.0.1:4455/. Arguments go to `tandem serve`
# (`./scripts/serve.sh --addr 127.0.0.1:8080 --data-dir /tmp/notes`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update
  apt-get install -y nodejs npm
fi
npm ci --prefix web-demo --no-audit --no-fund
npm run build --prefix web-demo
exec cargo run --release -p tandem -- serve "$@"
