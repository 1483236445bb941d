//! Running the real `tandem` binary in tests: start it on a data directory, find its port,
//! kill it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the binary may take to start (a debug build on a busy machine).
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// A running `tandem serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub http: String,
    /// `ws://127.0.0.1:PORT`.
    #[allow(dead_code)]
    // each test binary compiles this module; not all of them use WebSockets
    pub ws: String,
    /// What the binary logged until it listened.
    #[allow(dead_code)] // only the descriptor-limit tests read it
    pub log: Vec<String>,
}

/// Starts `tandem serve` on `data_dir` with a random port and waits until it listens. Fails with
/// what the binary printed if it exits or does not listen within [`START_DEADLINE`].
#[allow(dead_code)] // the descriptor-limit tests start the binary through a shell instead
pub fn start(data_dir: &Path, extra: &[&str]) -> Result<Server, String> {
    start_with(Command::new(env!("CARGO_BIN_EXE_tandem")), data_dir, extra)
}

/// Like [`start`], with `command` running the binary (a shell that sets limits and `exec`s it).
pub fn start_with(mut command: Command, data_dir: &Path, extra: &[&str]) -> Result<Server, String> {
    let mut child = command
        .args(["serve", "--addr", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("spawning tandem: {error}"))?;
    let (lines, logged) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                // Nobody listens once the server is up; the rest is drained.
                let _ = lines.send(line);
            }
        });
    }
    drop(lines);
    let deadline = Instant::now() + START_DEADLINE;
    let mut output = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match logged.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = listening_addr(&line) {
                    return Ok(Server {
                        child,
                        http: format!("http://{addr}"),
                        ws: format!("ws://{addr}"),
                        log: output,
                    });
                }
                output.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(format!(
                    "tandem did not start ({status}):\n{}",
                    output.join("\n")
                ));
            }
        }
    }
}

/// The address in the JSON log line `listening`, if `line` is it.
fn listening_addr(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    (fields.get("message")?.as_str()? == "listening")
        .then(|| fields.get("addr")?.as_str().map(str::to_owned))
        .flatten()
}

impl Server {
    /// Sends SIGTERM (what a service manager sends to stop it) and waits up to `deadline` for
    /// the process to exit; returns its exit status and how long it took.
    #[allow(dead_code)] // each test binary compiles this module; not all of them stop gracefully
    pub fn terminate(mut self, deadline: Duration) -> Result<(ExitStatus, Duration), String> {
        let sent = Instant::now();
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(|error| format!("running kill: {error}"))?;
        if !kill.success() {
            return Err(format!("kill -TERM failed: {kill}"));
        }
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|error| format!("waiting for tandem: {error}"))?
            {
                return Ok((status, sent.elapsed()));
            }
            if sent.elapsed() > deadline {
                return Err(format!("tandem still running {deadline:?} after SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    #[allow(dead_code)] // only the descriptor-limit tests look into /proc
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL tandem");
        self.child.wait().expect("wait for tandem");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
