//! Builds the web demo into the binary: copies the built `web-demo/dist` (`npm run build
//! --prefix web-demo`) into `OUT_DIR` and writes the table of its files that `src/web.rs`
//! includes. Without a build there, the table holds one placeholder page that says how to
//! make one. Text files are also gzipped here, once, so the server never compresses at
//! request time. Nothing is written into the source tree.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs, io};

use flate2::write::GzEncoder;
use flate2::Compression;

/// The page served when the binary was built without the web demo.
const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tandem</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2933}code{background:#f0f2f5;padding:.1rem .3rem;border-radius:4px}</style>
</head>
<body>
<h1>Tandem is running</h1>
<p>This binary was built without the web demo. Build the demo and the server together with
<code>./scripts/serve.sh</code>, or run <code>npm ci --prefix web-demo &amp;&amp; npm run build --prefix web-demo</code>
and rebuild <code>tandem</code>.</p>
<p>y-websocket clients connect to <code>ws://HOST/ws/{document}</code>; <code>/openapi.json</code> describes the HTTP API.</p>
</body>
</html>
"#;

fn main() -> io::Result<()> {
    let manifest_dir = env_path("CARGO_MANIFEST_DIR")?;
    let out_dir = env_path("OUT_DIR")?;
    let demo = manifest_dir.join("../../web-demo");
    let dist = demo.join("dist");
    let web = out_dir.join("web");
    for folder in [&web, &out_dir.join("web-gzip")] {
        if folder.exists() {
            fs::remove_dir_all(folder)?;
        }
    }
    fs::create_dir_all(&web)?;

    println!("cargo::rerun-if-changed=build.rs");
    let built = dist.join("index.html").is_file();
    if built {
        println!("cargo::rerun-if-changed={}", dist.display());
        copy_dir(&dist, &web)?;
    } else {
        // Watching the demo's folder notices `dist` when a build creates it.
        println!("cargo::rerun-if-changed={}", demo.display());
        fs::write(web.join("index.html"), PLACEHOLDER)?;
    }

    let mut files = Vec::new();
    list_files(&web, &mut files)?;
    files.sort();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "/// Whether `web-demo/dist` was built into this binary (otherwise: a placeholder page).\n\
         const DEMO_BUILT: bool = {built};\n\n\
         /// Every file of the web demo, by URL path.\n\
         static ASSETS: &[Asset] = &["
    );
    for file in &files {
        let relative = file
            .strip_prefix(&web)
            .map_err(|error| io::Error::other(error.to_string()))?;
        let url_path = relative
            .components()
            .map(|component| component.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let content_type = content_type(file);
        let gzip = match compressible(content_type) {
            true => gzip(file, &out_dir.join("web-gzip").join(relative))?,
            false => None,
        };
        let gzip = match gzip {
            Some(path) => format!("Some(include_bytes!({:?}))", utf8(&path)?),
            None => "None".to_owned(),
        };
        let _ = writeln!(
            table,
            "    Asset {{ path: {:?}, content_type: {:?}, body: include_bytes!({:?}), gzip: {gzip} }},",
            format!("/{url_path}"),
            content_type,
            utf8(file)?
        );
    }
    table.push_str("];\n");
    fs::write(out_dir.join("web_assets.rs"), table)
}

fn env_path(name: &str) -> io::Result<PathBuf> {
    env::var_os(name)
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other(format!("{name} is not set")))
}

fn utf8(path: &Path) -> io::Result<&str> {
    path.to_str()
        .ok_or_else(|| io::Error::other(format!("{} is not UTF-8", path.display())))
}

/// Writes `file` gzipped to `target` and returns `target`, unless gzip does not make it
/// smaller.
fn gzip(file: &Path, target: &Path) -> io::Result<Option<PathBuf>> {
    let body = fs::read(file)?;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(&body)?;
    let compressed = encoder.finish()?;
    if compressed.len() >= body.len() {
        return Ok(None);
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(target, compressed)?;
    Ok(Some(target.to_owned()))
}

/// Whether a file of this type is worth compressing: text is; images and fonts already are.
fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.starts_with("application/json")
        || content_type.starts_with("application/manifest+json")
        || content_type.starts_with("image/svg+xml")
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn list_files(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            list_files(&entry.path(), files)?;
        } else {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// The `Content-Type` of a built file, by extension; what Vite emits is in here.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
