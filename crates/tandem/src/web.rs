//! The web demo (`web-demo/`), built into the binary by `build.rs` and served next to
//! Tandem's own routes as their fallback: the demo's files by path, and its page for `/` and
//! for the demo's own routes (`/d/{document}`), which the page reads in the browser. Text files
//! go out gzipped (compressed once, at build time) to clients that accept it.

use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, VARY,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tracing::info;

/// One file of the built demo.
struct Asset {
    /// Its URL path, from `/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// `body` gzipped, when that makes it smaller.
    gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Where the demo's pages live; everything under it is the page, which routes in the browser.
const PAGE_ROUTES: &str = "/d/";

/// Vite names every file under `/assets/` by a hash of its content, so it never changes.
const IMMUTABLE_PREFIX: &str = "/assets/";

/// What the page may load and connect to: only this server (WebSockets included). Styles may be
/// inline: CodeMirror injects its own.
const PAGE_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

/// `router` with the web demo as its fallback, so Tandem's routes keep precedence.
pub fn with_demo(router: Router) -> Router {
    if DEMO_BUILT {
        info!("serving the web demo at /");
    } else {
        info!("this build has no web demo: / says how to build it (scripts/serve.sh)");
    }
    router.fallback(serve)
}

async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::NOT_FOUND.into_response();
    }
    match resolve(uri.path()) {
        Some(asset) => respond(asset, accepts_gzip(&headers)),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// Whether the request's `Accept-Encoding` takes gzip: named (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|param| {
                param
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// The file a path names: an asset by its path, the page for `/` and the page routes.
fn resolve(path: &str) -> Option<&'static Asset> {
    let page = path == "/" || path == "/index.html" || path.starts_with(PAGE_ROUTES);
    let wanted = if page { "/index.html" } else { path };
    ASSETS.iter().find(|asset| asset.path == wanted)
}

fn respond(asset: &'static Asset, gzip: bool) -> Response {
    let cache = if asset.path.starts_with(IMMUTABLE_PREFIX) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let body = match asset.gzip {
        Some(compressed) if gzip => compressed,
        _ => asset.body,
    };
    let mut response = (
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    if asset.gzip.is_some() {
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    if asset.content_type.starts_with("text/html") {
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_answers_its_own_routes() {
        for path in ["/", "/index.html", "/d/notes", "/d/notes/2024/plan", "/d/"] {
            let asset = resolve(path).map(|asset| asset.path);
            assert_eq!(asset, Some("/index.html"), "{path}");
        }
    }

    #[test]
    fn other_paths_are_not_the_page() {
        for path in ["/nope", "/assets/missing.js", "/dx", "/d", "/docsx"] {
            assert!(resolve(path).is_none(), "{path}");
        }
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                ACCEPT_ENCODING,
                HeaderValue::from_str(value).expect("header"),
            );
            accepts_gzip(&headers)
        };
        for yes in [
            "gzip",
            "gzip, deflate, br",
            "br;q=1.0, GZIP;q=0.5",
            "*",
            "identity, *;q=0.1",
        ] {
            assert!(accepts(yes), "{yes}");
        }
        for no in [
            "",
            "br",
            "deflate, br",
            "gzip;q=0",
            "gzip; q=0.0, br",
            "xgzip",
        ] {
            assert!(!accepts(no), "{no}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn every_asset_is_found_by_its_path() {
        for asset in ASSETS {
            assert_eq!(
                resolve(asset.path).map(|found| found.path),
                Some(asset.path)
            );
        }
    }
}
