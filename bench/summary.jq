# Summary tables of a bench/compare.sh run, one per workload, every server side by side with
# its ratio to Tandem. Input: the run's results/*.json, each named SERVER.KEY.json.
#
# Run with: jq -n -r -f bench/summary.jq target/bench/compare/results/*.json

def server_order: ["tandem", "ceiling", "y-websocket", "hocuspocus", "pycrdt", "y-sweet"];
def r(n): if . == null then null else (. * pow(10; n) | round) / pow(10; n) end;
def mib: if . == null then null else . / 1024 | r(1) end;
def show: if . == null then "–" else tostring end;
# ratio(value; tandem): value / tandem as "1.23×", blank for Tandem itself.
def ratio($v; $t):
  if $v == null or $t == null or $t == 0 then "–" else "\($v / $t | r(2))×" end;
def cell($report; f):
  if $report == null then "not run"
  elif $report.failed then "failed"
  else ($report | f | show) end;

reduce inputs as $report ({};
  (input_filename | split("/") | last | rtrimstr(".json") | split(".")) as [$server, $key]
  | .[$server][$key] = $report)
| . as $all
| [server_order[] | select($all[.] != null)] as $servers
| def row($name; $key; f):
    "| \($name) | " + ([$servers[] | cell($all[.][$key]; f)] | join(" | ")) + " |";
  def ratio_row($name; $key; f):
    ($all.tandem[$key] | if . == null or .failed then null else f end) as $t
    | "| \($name) | " + ([$servers[] | $all[.][$key] as $x
        | if $x == null or $x.failed or $x.unavailable then "–" else ratio($x | f; $t) end]
      | join(" | ")) + " |";
  # failures($key): one line per server whose run failed, with the reason.
  def failures($key):
    [$servers[] | . as $s | $all[$s][$key] | select(. != null and .failed)
      | "- \($s) failed: \(.failed | gsub("\\s+"; " ") | .[0:300])"]
    | if length > 0 then "", .[] else empty end;
  def header($title):
    "", "### \($title)", "",
    "| | " + ($servers | join(" | ")) + " |",
    "|---|" + ([$servers[] | "---"] | join("|")) + "|";

  "## Side by side (ratios are the server's value divided by Tandem's)",
  "",
  ([$servers[] | select($all[.].unavailable) | "- **\(.)**: not measured: \($all[.].unavailable)"]
    | if length > 0 then .[] else "Every server was installed and started." end),
  "",
  (if $all.yrs["ceiling-ingest"] then
    $all.yrs["ceiling-ingest"] as $c
    | "Ceiling, yrs alone in-process: \($c.apply_per_s | round) updates/s decode + apply, \($c.apply_encode_per_s | round) with the change encoded for broadcast."
   else empty end),

  header("Ingest: automerge-paper, 259,778 keystroke updates, window 32"),
  row("updates/s (higher is better)"; "ingest"; .updates_per_s | round),
  ratio_row("… ratio"; "ingest"; .updates_per_s),
  row("elapsed s"; "ingest"; .elapsed_s | r(2)),
  row("server CPU s"; "ingest"; .server.cpu_s),
  ratio_row("… ratio (lower is better)"; "ingest"; .server.cpu_s),
  row("server RSS after, MiB"; "ingest"; .server.after.rss_kib | mib),
  row("data dir after, MiB"; "ingest"; .data_dir_bytes | if . == null then null else . / 1048576 | r(2) end),
  failures("ingest"),

  header("Cold load: the ingested document, from a restarted server"),
  row("synced ms (lower is better)"; "cold-load"; .synced_ms | r(1)),
  ratio_row("… ratio"; "cold-load"; .synced_ms),
  row("sync step 2 received ms"; "cold-load"; .step2_ms | r(1)),
  row("sync step 2 KiB"; "cold-load"; .step2_bytes / 1024 | r(1)),
  row("server RSS before → loaded, MiB"; "cold-load";
    "\(.server_before.rss_kib | mib) → \(.server.after.rss_kib | mib)"),
  ratio_row("… loaded RSS ratio"; "cold-load"; .server.after.rss_kib),
  row("data dir, MiB"; "cold-load"; .data_dir_bytes | if . == null then null else . / 1048576 | r(2) end),
  failures("cold-load"),

  (($all.tandem // {} | keys[] | select(startswith("fan-out-"))) as $key
    | ($key | ltrimstr("fan-out-")) as $n
    | header("Fan-out: 1 writer at \($all.tandem[$key].rate // "?") updates/s, \($n) readers"),
      row("deliveries / expected"; $key; "\(.delivered) / \(.expected)"),
      row("latency p50 ms"; $key; .latency.p50_ms | r(2)),
      row("latency p99 ms"; $key; .latency.p99_ms | r(2)),
      ratio_row("… p99 ratio (lower is better)"; $key; .latency.p99_ms),
      row("latency max ms"; $key; .latency.max_ms | r(2)),
      row("deliveries/s"; $key; .delivered_per_s | round),
      row("server CPU s per 1,000 deliveries"; $key; .server_cpu_s_per_1000 | r(4)),
      ratio_row("… ratio (lower is better)"; $key; .server_cpu_s_per_1000),
      row("server RSS MiB"; $key; .server.after.rss_kib | mib),
      row("readers failed"; $key; .readers_failed),
      row("generator CPU s"; $key; .generator_cpu_s),
      failures($key)),

  header("Presence storm: \($all.tandem.presence.peers // 200) peers × \($all.tandem.presence.hz // 60) Hz"),
  row("frames per receiver per s"; "presence"; .frames_per_receiver_s | r(1)),
  row("KiB per receiver per s"; "presence"; .bytes_per_receiver_s / 1024 | r(1)),
  row("entries per receiver per s"; "presence"; .entries_per_receiver_s | round),
  row("server CPU s per s"; "presence"; .server_cpu_share | r(2)),
  ratio_row("… ratio (lower is better)"; "presence"; .server_cpu_share),
  row("server RSS MiB"; "presence"; .server.after.rss_kib | mib),
  row("peers failed"; "presence"; .peers_failed),
  row("generator CPU s"; "presence"; .generator_cpu_s),
  failures("presence"),

  header("Connections: \($all.tandem.connections.connections // "?") idle connections over \($all.tandem.connections.docs // "?") documents"),
  row("all open and synced, s"; "connections"; .connect_s | r(2)),
  row("server RSS before → after, MiB"; "connections";
    "\(.server_before.rss_kib | mib) → \(.server.after.rss_kib | mib)"),
  row("server RSS per connection, KiB"; "connections"; .rss_per_connection_kib | r(1)),
  ratio_row("… ratio (lower is better)"; "connections"; .rss_per_connection_kib),
  row("server CPU s"; "connections"; .server.cpu_s),
  failures("connections"),

  header("Many documents: \($all.tandem["many-docs"].docs // "?") documents touched once each"),
  row("touched in s"; "many-docs"; .touch_s | r(2)),
  row("server RSS before, MiB"; "many-docs"; .server_before.rss_kib | mib),
  row("server RSS after the last, MiB"; "many-docs"; .server_touched.after.rss_kib | mib),
  row("server peak RSS, MiB"; "many-docs"; .server_touched.after.hwm_kib | mib),
  row("server RSS after \($all.tandem["many-docs"].idle_s // "?") s idle, MiB"; "many-docs"; .server_idle.rss_kib | mib),
  ratio_row("… ratio (lower is better)"; "many-docs"; .server_idle.rss_kib),
  row("server CPU s"; "many-docs"; .server_touched.cpu_s),
  row("data dir MiB"; "many-docs"; .data_dir_bytes | if . == null then null else . / 1048576 | r(2) end),
  failures("many-docs")
