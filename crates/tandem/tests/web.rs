//! The web demo is served by the binary itself, as the fallback of Tandem's routes: its page at
//! `/` and at the demo's own routes, its files by path, and nothing where nothing is.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// Stops the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the address it listens on.
fn serve(data: &std::path::Path) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tandem");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let (lines, logged) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = logged.recv_timeout(left).expect("the server did not start");
        let addr = line
            .contains("\"listening\"")
            .then(|| line.split("\"addr\":\"").nth(1))
            .flatten()
            .and_then(|rest| rest.split('"').next());
        if let Some(addr) = addr {
            return (server, addr.to_owned());
        }
    }
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.expect("request")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_is_served_next_to_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, addr) = serve(&dir.path().join("data"));
    let base = format!("http://{addr}");

    let page = get(&format!("{base}/")).await;
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert!(header(&page, "content-security-policy").contains("default-src 'self'"));
    let page = page.text().await.expect("body");

    // The demo's routes are the same page, which reads the document name in the browser.
    for route in ["/d/notes", "/d/notes/2024/plan", "/d/a%20b"] {
        let response = get(&format!("{base}{route}")).await;
        assert_eq!(response.status(), 200, "{route}");
        assert_eq!(response.text().await.expect("body"), page, "{route}");
    }

    // Every file the page loads from this server is there.
    for path in page
        .split(['"', '\''])
        .filter(|part| part.starts_with("/assets/") || *part == "/favicon.svg")
    {
        let response = get(&format!("{base}{path}")).await;
        assert_eq!(response.status(), 200, "{path}");
        if path.starts_with("/assets/") {
            assert!(
                header(&response, "cache-control").contains("immutable"),
                "{path}"
            );
        }
    }

    // Text goes out gzipped to clients that take it, and is the same text once unzipped.
    let plain = get(&format!("{base}/")).await;
    assert_eq!(header(&plain, "content-encoding"), "");
    assert_eq!(header(&plain, "vary"), "accept-encoding");
    let plain = plain.bytes().await.expect("body");
    let zipped = reqwest::Client::new()
        .get(format!("{base}/"))
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(header(&zipped, "content-encoding"), "gzip");
    assert!(header(&zipped, "content-type").starts_with("text/html"));
    let zipped = zipped.bytes().await.expect("body");
    assert!(
        zipped.len() < plain.len(),
        "{} of {}",
        zipped.len(),
        plain.len()
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut unzipped)
        .expect("gunzip");
    assert_eq!(unzipped, plain);

    // Nothing where nothing is, and Tandem's own routes come first.
    for missing in ["/nope", "/assets/missing.js", "/d"] {
        assert_eq!(
            get(&format!("{base}{missing}")).await.status(),
            404,
            "{missing}"
        );
    }
    let health = get(&format!("{base}/healthz")).await;
    assert_eq!(health.text().await.expect("body"), "ok");
    let status = get(&format!("{base}/status")).await;
    assert!(header(&status, "content-type").starts_with("application/json"));
    let missing_doc = get(&format!("{base}/docs/never-written")).await;
    assert_eq!(missing_doc.status(), 404);
    assert!(header(&missing_doc, "content-type").starts_with("application/json"));
}
