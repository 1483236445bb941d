//! Results, as a table for people (stdout) and as JSON for scripts and for comparing runs.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::probe::Usage;
use crate::workload::ceiling::CeilingIngestReport;
use crate::workload::cold_load::ColdLoadReport;
use crate::workload::connections::ConnectionsReport;
use crate::workload::fan_out::FanOutReport;
use crate::workload::ingest::IngestReport;
use crate::workload::many_docs::ManyDocsReport;
use crate::workload::presence::PresenceReport;

/// The result of one workload run, tagged with the workload's name in JSON.
#[derive(Debug, Serialize)]
#[serde(tag = "workload", rename_all = "kebab-case")]
pub enum Report {
    /// See [`crate::workload::ingest`].
    Ingest(IngestReport),
    /// See [`crate::workload::cold_load`].
    ColdLoad(ColdLoadReport),
    /// See [`crate::workload::fan_out`].
    FanOut(FanOutReport),
    /// See [`crate::workload::presence`].
    Presence(PresenceReport),
    /// See [`crate::workload::connections`].
    Connections(ConnectionsReport),
    /// See [`crate::workload::many_docs`].
    ManyDocs(ManyDocsReport),
    /// See [`crate::workload::ceiling`].
    CeilingIngest(CeilingIngestReport),
}

impl Report {
    fn name(&self) -> &'static str {
        match self {
            Self::Ingest(_) => "ingest",
            Self::ColdLoad(_) => "cold-load",
            Self::FanOut(_) => "fan-out",
            Self::Presence(_) => "presence",
            Self::Connections(_) => "connections",
            Self::ManyDocs(_) => "many-docs",
            Self::CeilingIngest(_) => "ceiling-ingest",
        }
    }

    /// A two-column Markdown table, ready to paste into `docs/BENCHMARKS.md`.
    pub fn table(&self) -> String {
        let rows = match self {
            Self::Ingest(report) => report.rows(),
            Self::ColdLoad(report) => report.rows(),
            Self::FanOut(report) => report.rows(),
            Self::Presence(report) => report.rows(),
            Self::Connections(report) => report.rows(),
            Self::ManyDocs(report) => report.rows(),
            Self::CeilingIngest(report) => report.rows(),
        };
        let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
        let mut table = format!(
            "| {:width$} | |\n|{}|---|\n",
            self.name(),
            "-".repeat(width + 2)
        );
        for (label, value) in rows {
            table.push_str(&format!("| {label:width$} | {value} |\n"));
        }
        table
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

impl Usage {
    /// Rows for the server's memory and CPU time.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("server RSS (VmRSS)", kib(self.after.rss_kib)),
            ("server peak RSS (VmHWM)", kib(self.after.hwm_kib)),
            ("server CPU (user+sys)", format!("{:.2} s", self.cpu_s)),
        ]
    }
}

/// KiB as MiB with one decimal.
pub fn kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Bytes as MiB with two decimals, and the exact count.
pub fn mib(bytes: u64) -> String {
    format!(
        "{:.2} MiB ({bytes} bytes)",
        bytes as f64 / (1024.0 * 1024.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes() {
        assert_eq!(kib(2048), "2.0 MiB");
        assert_eq!(mib(3 * 1024 * 1024), "3.00 MiB (3145728 bytes)");
    }
}
