//! What the server under test costs, read from outside it: memory and CPU time from `/proc`, disk
//! from its data directory. Reading from outside works for any server, whatever its language,
//! and measures the whole process (allocator, runtime, store) rather than what it reports.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Serialize;

/// A reading of a process's memory and CPU time.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size since the process started (`VmHWM`), KiB.
    pub hwm_kib: u64,
    /// User plus system CPU time of all its threads, dead ones included, seconds.
    pub cpu_s: f64,
}

impl Sample {
    /// Reads `/proc/{pid}/status` and `/proc/{pid}/stat`.
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let status_path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&status_path)
            .with_context(|| format!("reading {status_path} (is the server running?)"))?;
        let stat_path = format!("/proc/{pid}/stat");
        let stat =
            std::fs::read_to_string(&stat_path).with_context(|| format!("reading {stat_path}"))?;
        Ok(Self {
            rss_kib: status_kib(&status, "VmRSS")?,
            hwm_kib: status_kib(&status, "VmHWM")?,
            cpu_s: cpu_ticks(&stat)? as f64 / rustix::param::clock_ticks_per_second() as f64,
        })
    }
}

/// A `Key:   1234 kB` line of `/proc/{pid}/status`.
fn status_kib(status: &str, key: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .with_context(|| format!("no {key} in /proc status"))?;
    let Some(kib) = line.trim().strip_suffix("kB") else {
        bail!("{key} is not in kB: {line:?}");
    };
    kib.trim()
        .parse()
        .with_context(|| format!("parsing {key}: {line:?}"))
}

/// `utime + stime` (fields 14 and 15) of `/proc/{pid}/stat`, in clock ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted from its closing `)`.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let after_name = stat
        .rfind(')')
        .map(|end| &stat[end + 1..])
        .context("no command name in /proc stat")?;
    // After the name: field 3 (state) is index 0, so utime is index 11 and stime index 12.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .context("/proc stat too short")?
            .parse()
            .context("parsing /proc stat")
    };
    Ok(field(11)? + field(12)?)
}

/// What the server spent during a run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// Memory at the end of the run.
    pub after: Sample,
    /// CPU seconds between the two readings.
    pub cpu_s: f64,
}

impl Usage {
    /// The difference between a reading before and one after.
    pub fn between(before: &Sample, after: Sample) -> Self {
        Self {
            after,
            // Both readings are whole clock ticks: rounding drops the float noise.
            cpu_s: ((after.cpu_s - before.cpu_s) * 1000.0).round() / 1000.0,
        }
    }
}

/// The apparent size of everything under `dir`: the sum of its files' lengths, recursively,
/// symbolic links not followed.
pub fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?
                .len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() -> anyhow::Result<()> {
        let sample = Sample::read(std::process::id())?;
        assert!(sample.rss_kib > 0);
        assert!(sample.hwm_kib >= sample.rss_kib);
        assert!(sample.cpu_s >= 0.0);
        Ok(())
    }

    #[test]
    fn parses_stat_with_an_awkward_name() -> anyhow::Result<()> {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat)?, 325);
        Ok(())
    }

    #[test]
    fn parses_status_lines() -> anyhow::Result<()> {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS")?, 1024);
        assert_eq!(status_kib(status, "VmHWM")?, 2048);
        assert!(status_kib(status, "VmSwap").is_err());
        Ok(())
    }

    #[test]
    fn sums_a_tree() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("a"), [0; 10])?;
        std::fs::write(dir.path().join("sub/b"), [0; 5])?;
        assert_eq!(dir_bytes(dir.path())?, 15);
        Ok(())
    }
}
