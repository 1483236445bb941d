//! The web demo (`web-demo/`), built into the binary by `build.rs` and served next to
//! Tandem's own routes as their fallback: the demo's files by path, and its page for `/` and
//! for the demo's own routes (`/d/{document}`), which the page reads in the browser.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tracing::info;

/// One file of the built demo.
struct Asset {
    /// Its URL path, from `/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
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

async fn serve(method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::NOT_FOUND.into_response();
    }
    match resolve(uri.path()) {
        Some(asset) => respond(asset),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// The file a path names: an asset by its path, the page for `/` and the page routes.
fn resolve(path: &str) -> Option<&'static Asset> {
    let page = path == "/" || path == "/index.html" || path.starts_with(PAGE_ROUTES);
    let wanted = if page { "/index.html" } else { path };
    ASSETS.iter().find(|asset| asset.path == wanted)
}

fn respond(asset: &'static Asset) -> Response {
    let cache = if asset.path.starts_with(IMMUTABLE_PREFIX) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
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
        asset.body,
    )
        .into_response();
    if asset.content_type.starts_with("text/html") {
        response.headers_mut().insert(
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
    fn every_asset_is_found_by_its_path() {
        for asset in ASSETS {
            assert_eq!(
                resolve(asset.path).map(|found| found.path),
                Some(asset.path)
            );
        }
    }
}
