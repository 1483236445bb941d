#!/usr/bin/env bash
# Ingest and cold-load benchmarks of Tandem, as reported in docs/BENCHMARKS.md.
#
# Run with: bench/ingest.sh [OUT_DIR]        (default OUT_DIR: target/bench)
#
# Builds release binaries, then for each compaction setting (the defaults, and compaction
# thresholds so high that the whole trace stays in the update log):
#   1. starts `tandem serve` on loopback pinned to CPU 0, with a fresh data directory;
#   2. runs `tandem-bench ingest`, pinned to CPU 1: the automerge-paper trace, one update per
#      keystroke, until a second client has the final text;
#   3. waits until the server logs that it unloaded the document (compacting it on the way);
#   4. runs `tandem-bench cold-load` against the unloaded document;
#   5. stops the server with SIGTERM (it must exit 0), starts it again on the same data and runs
#      cold-load once more: the document must come back exactly.
# Results: a table per run on stdout, JSON and server logs in OUT_DIR.
#
# Loopback only; every wait is bounded. Needs 2 CPUs and taskset; the editing trace is the one
# checked in at data/editing-traces (TANDEM_BENCH_TRACE picks another).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${1:-target/bench}
PORT=${TANDEM_BENCH_PORT:-4460}
URL="ws://127.0.0.1:$PORT/ws"
SERVER_CPU=0
BENCH_CPU=1
# Seconds to wait for the server to start, unload a document, or stop.
WAIT=60

if [ "$(nproc)" -lt 2 ]; then
  echo "needs 2 CPUs to pin server and generator apart, found $(nproc)" >&2
  exit 1
fi

cargo build --release -p tandem -p tandem-bench
TARGET=${CARGO_TARGET_DIR:-target}
TANDEM=$TARGET/release/tandem
BENCH=$TARGET/release/tandem-bench
mkdir -p "$OUT"

SERVER_PID=
stop_on_exit() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; fi
}
trap stop_on_exit EXIT

# wait_for_log FILE PATTERN [DOC]: until a JSON log line has the message (and the document).
wait_for_log() {
  local file=$1 message=$2 doc=${3:-}
  for _ in $(seq $((WAIT * 10))); do
    # No `grep -q` at the end: with pipefail, the first grep's SIGPIPE would read as "not found".
    if grep -F "\"message\":\"$message\"" "$file" | grep -F "$doc" >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "no \"$message\" $doc in $file after ${WAIT}s" >&2
  exit 1
}

# start_server DATA_DIR LOG [FLAGS...]: rate limits off (one client sends 259k updates in
# seconds), documents unloaded 2 s after their last peer leaves, debug logs for the unload.
start_server() {
  local data=$1 log=$2
  shift 2
  RUST_LOG=info,tandem_core::actor=debug taskset -c "$SERVER_CPU" "$TANDEM" serve \
    --addr "127.0.0.1:$PORT" --data-dir "$data" --log-format json --unload-delay 2s \
    --max-messages-per-sec 0 --max-bytes-per-sec 0 "$@" >>"$log" 2>&1 &
  SERVER_PID=$!
  wait_for_log "$log" listening
}

# stop_server: SIGTERM, and the server must exit 0 within WAIT seconds.
stop_server() {
  kill -TERM "$SERVER_PID"
  for _ in $(seq $((WAIT * 10))); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "server still running ${WAIT}s after SIGTERM" >&2
    kill -KILL "$SERVER_PID"
    exit 1
  fi
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=
  if [ "$rc" -ne 0 ]; then
    echo "server exited with $rc after SIGTERM" >&2
    exit 1
  fi
}

bench() {
  RUST_LIB_BACKTRACE=0 timeout 900 taskset -c "$BENCH_CPU" "$BENCH" "$@"
}

run_setting() {
  local name=$1
  shift
  local dir="$OUT/$name" doc="ingest-$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  echo "## $name ($*)"

  start_server "$dir/data" "$dir/server-1.log" "$@"
  bench --json "$dir/ingest.json" ingest --url "$URL" --doc "$doc" \
    --server-pid "$SERVER_PID" --data-dir "$dir/data" ${TANDEM_BENCH_WINDOW:+--window "$TANDEM_BENCH_WINDOW"}
  wait_for_log "$dir/server-1.log" "document unloaded" "$doc"
  bench --json "$dir/cold-load.json" cold-load --url "$URL" --doc "$doc" \
    --server-pid "$SERVER_PID" --data-dir "$dir/data"
  stop_server

  start_server "$dir/data" "$dir/server-2.log" "$@"
  bench --json "$dir/cold-load-restarted.json" cold-load --url "$URL" --doc "$doc" \
    --server-pid "$SERVER_PID" --data-dir "$dir/data"
  stop_server
  echo
}

# summary: one line per setting from the JSON results (needs jq; the tables above have it all).
summary() {
  command -v jq >/dev/null || return 0
  echo "| setting | updates/s | elapsed s | server CPU s | RSS / peak MiB | data dir MiB: after ingest, after unload, after restart | cold load ms (RSS MiB) | after restart ms (RSS MiB) |"
  echo "|---|---|---|---|---|---|---|---|"
  for name in "$@"; do
    jq -rs --arg name "$name" '
      def bytes_to_mib: . / 1048576 * 100 | round / 100;
      def kib_to_mib: . / 1024 * 10 | round / 10;
      .[0] as $i | .[1] as $c | .[2] as $r |
      "| \($name) | \($i.updates_per_s | round) | \($i.elapsed_s * 1000 | round / 1000) | \($i.server.cpu_s) | \($i.server.after.rss_kib | kib_to_mib) / \($i.server.after.hwm_kib | kib_to_mib) | \($i.data_dir_bytes | bytes_to_mib), \($c.data_dir_bytes | bytes_to_mib), \($r.data_dir_bytes | bytes_to_mib) | \($c.synced_ms * 10 | round / 10) (\($c.server.after.rss_kib | kib_to_mib)) | \($r.synced_ms * 10 | round / 10) (\($r.server_before.rss_kib | kib_to_mib) → \($r.server.after.rss_kib | kib_to_mib)) |"
    ' "$OUT/$name/ingest.json" "$OUT/$name/cold-load.json" "$OUT/$name/cold-load-restarted.json"
  done
}

run_setting default
run_setting uncompacted --compact-log-entries 1000000 --compact-log-bytes 1000000000
summary default uncompacted | tee "$OUT/summary.md"
echo "results in $OUT"
