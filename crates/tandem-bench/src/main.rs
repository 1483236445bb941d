//! `tandem-bench`: a load generator for y-websocket servers. It drives Tandem, or any server
//! that speaks y-websocket at `{url}/{doc}`, through one workload per run, prints a table and
//! optionally writes the numbers as JSON. `docs/BENCHMARKS.md` has the results and how to
//! reproduce them; `bench/ingest.sh` runs them against a release build.
//!
//! # Layout
//!
//! - [`protocol`]: the y-websocket frames the workloads send and read, without IO
//! - [`client`]: connecting and the sync handshake, every wait with a deadline
//! - [`trace`]: editing traces and the keystroke updates pre-generated from them
//! - [`probe`]: the server's memory and CPU time from `/proc`, its data directory's size
//! - [`workload`]: one module per workload (`ingest`, `cold_load`, `fan_out`, `presence`,
//!   `connections`, `many_docs`) and the `ceiling`s they are measured against
//! - [`stats`], percentiles, and [`report`], the human table and the JSON

mod client;
mod probe;
mod protocol;
mod report;
mod stats;
mod trace;
mod workload;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::report::Report;
use crate::workload::{ceiling, cold_load, connections, fan_out, ingest, many_docs, presence};

/// Load generator for y-websocket servers.
#[derive(Debug, Parser)]
#[command(name = "tandem-bench", version, about)]
struct Cli {
    /// Also write the results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,

    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Type an editing trace into a fresh document, one update per keystroke, until a second
    /// client has the final text.
    Ingest(ingest::IngestArgs),
    /// Open a document holding a whole trace while the server has it unloaded; time until synced.
    ColdLoad(cold_load::ColdLoadArgs),
    /// One writer at a steady rate, N readers: latency from the writer's update to each
    /// reader's receipt, deliveries per second, server CPU per delivery.
    FanOut(fan_out::FanOutArgs),
    /// Peers moving their cursors at 60 Hz: awareness frames and bytes per receiver, server CPU.
    Presence(presence::PresenceArgs),
    /// C idle connections over D documents: server memory per connection, time to open them.
    Connections(connections::ConnectionsArgs),
    /// K documents touched once each: server memory after it had time to unload them.
    ManyDocs(many_docs::ManyDocsArgs),
    /// yrs alone, in this process, applying the trace's updates: the ingest ceiling.
    CeilingIngest(ceiling::CeilingIngestArgs),
    /// Run a minimal broadcast server without CRDT (the fan-out ceiling) until SIGTERM.
    CeilingServer(ceiling::CeilingServerArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match &cli.workload {
        Workload::Ingest(args) => Report::Ingest(ingest::run(args).await?),
        Workload::ColdLoad(args) => Report::ColdLoad(cold_load::run(args).await?),
        Workload::FanOut(args) => Report::FanOut(fan_out::run(args).await?),
        Workload::Presence(args) => Report::Presence(presence::run(args).await?),
        Workload::Connections(args) => Report::Connections(connections::run(args).await?),
        Workload::ManyDocs(args) => Report::ManyDocs(many_docs::run(args).await?),
        Workload::CeilingIngest(args) => Report::CeilingIngest(ceiling::ingest(args)?),
        Workload::CeilingServer(args) => return ceiling::serve(args).await,
    };
    print!("{}", report.table());
    if let Some(path) = &cli.json {
        report.write_json(path)?;
    }
    Ok(())
}
