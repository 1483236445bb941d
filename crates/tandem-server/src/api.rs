//! What every HTTP endpoint shares: its tunables ([`ApiConfig`]), JSON errors with a stable
//! `code`, authorization of a request for a document and a right, and document names taken
//! from paths and queries.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use axum::extract::ConnectInfo;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tandem_core::{AuthError, DocError, DocName, Grant, Rights, StoreError, UpdateError};
use tracing::warn;

use crate::creation::{Creator, NotCreated};
use crate::{auth, Tandem};

/// How often an idle event stream sends a `ping` comment, so proxies keep it open.
pub const DEFAULT_SSE_PING_INTERVAL: Duration = Duration::from_secs(15);

/// Shortest time between two whole-document JSON events of one `?format=json` stream: a
/// dashboard needs a few frames a second, not one per keystroke.
pub const DEFAULT_SSE_JSON_INTERVAL: Duration = Duration::from_millis(250);

/// Documents one multiplexed event stream (`GET /events?doc=…`) may follow; more: 400. Each is a
/// peer of its document.
pub const DEFAULT_MAX_STREAM_DOCS: usize = 32;

/// Documents in one page of `GET /docs` unless the request asks for fewer.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// Most documents one page of `GET /docs` may ask for; more: 400.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Documents `GET /status` shows with their peer counts (the busiest).
pub const DEFAULT_STATUS_TOP: usize = 10;

/// HTTP presence client ids (`POST /docs/{doc}/presence`) one caller may hold at once, over all
/// documents; a new one past it: 429 `caller_presence_limit`. Each is a peer of its document,
/// outside every connection cap; a script or a server-side bot publishes one or two.
pub const DEFAULT_MAX_HTTP_PRESENCE_PER_CALLER: usize = 8;

/// HTTP presence client ids one document may have at once, from all callers together; a new
/// one past it: 429 `document_presence_limit`. Every one is a peer the document's every change
/// is sent to, so they cost the document as much as WebSocket clients do.
pub const DEFAULT_MAX_HTTP_PRESENCE_PER_DOC: usize = 64;

/// Presence posts one caller may send per second, sustained, over all documents; more: 429
/// `rate_limited` with `Retry-After`. A client moving a cursor over HTTP posts a few a second.
pub const DEFAULT_HTTP_PRESENCE_PER_SEC: u32 = 10;

/// Presence posts one caller may send in a burst above the sustained rate.
pub const DEFAULT_HTTP_PRESENCE_BURST: u32 = 20;

/// Tunables of the HTTP API (REST, event streams, status), each with the default the binary
/// uses.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// See [`DEFAULT_SSE_PING_INTERVAL`].
    pub sse_ping_interval: Duration,
    /// See [`DEFAULT_SSE_JSON_INTERVAL`].
    pub sse_json_interval: Duration,
    /// See [`DEFAULT_MAX_STREAM_DOCS`].
    pub max_stream_docs: usize,
    /// See [`DEFAULT_STATUS_TOP`].
    pub status_top: usize,
    /// See [`DEFAULT_MAX_HTTP_PRESENCE_PER_CALLER`].
    pub max_http_presence_per_caller: usize,
    /// See [`DEFAULT_MAX_HTTP_PRESENCE_PER_DOC`].
    pub max_http_presence_per_doc: usize,
    /// See [`DEFAULT_HTTP_PRESENCE_PER_SEC`]; 0 turns the limit off.
    pub http_presence_per_sec: u32,
    /// See [`DEFAULT_HTTP_PRESENCE_BURST`].
    pub http_presence_burst: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            sse_ping_interval: DEFAULT_SSE_PING_INTERVAL,
            sse_json_interval: DEFAULT_SSE_JSON_INTERVAL,
            max_stream_docs: DEFAULT_MAX_STREAM_DOCS,
            status_top: DEFAULT_STATUS_TOP,
            max_http_presence_per_caller: DEFAULT_MAX_HTTP_PRESENCE_PER_CALLER,
            max_http_presence_per_doc: DEFAULT_MAX_HTTP_PRESENCE_PER_DOC,
            http_presence_per_sec: DEFAULT_HTTP_PRESENCE_PER_SEC,
            http_presence_burst: DEFAULT_HTTP_PRESENCE_BURST,
        }
    }
}

/// An HTTP API error: a status and a JSON body `{"code", "message"}`. The code is stable and
/// meant for programs; the message is for people and may change.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// Seconds to send in `Retry-After`, for refusals that pass.
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 429 `rate_limited` refusal that passes after `wait`.
    pub(crate) fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> Self {
        Self {
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// The same error, telling the client to retry after `seconds`.
    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint")
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method",
        )
    }

    pub(crate) fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// The error for a failed store operation; the cause is logged, never shown.
    pub(crate) fn store(error: &StoreError) -> Self {
        match error {
            StoreError::Unsupported(what) => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                "not_supported",
                format!("the store does not support {what}"),
            ),
            other => {
                warn!(error = %other, "store failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_failed",
                    "the store failed",
                )
            }
        }
    }
}

impl From<DocError> for ApiError {
    fn from(error: DocError) -> Self {
        match error {
            DocError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ),
            DocError::Store(error) => Self::store(&error),
            DocError::Deleted => Self::new(
                StatusCode::CONFLICT,
                "deleted",
                "the document was deleted meanwhile",
            ),
            DocError::Unloaded => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the document is busy unloading; try again",
            ),
            DocError::NestedTooDeeply { limit } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "nested_too_deeply",
                format!("the document nests shared types deeper than {limit}: it cannot be read as JSON"),
            ),
            DocError::Aborted => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the operation failed",
            ),
        }
    }
}

impl From<UpdateError> for ApiError {
    fn from(error: UpdateError) -> Self {
        match error {
            UpdateError::Malformed => {
                Self::bad_request("invalid_update", "the body is not a Yjs v1 update")
            }
            UpdateError::TooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "document_too_large",
                format!("the update would make the document larger than {limit} bytes"),
            ),
            UpdateError::Invalid(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update_not_integrated",
                "the update decoded but could not be integrated",
            ),
            UpdateError::TooDeep { depth, limit } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "nested_too_deeply",
                format!("the update nests shared types {depth} deep; at most {limit} are accepted"),
            ),
            UpdateError::Incomplete => Self::new(
                StatusCode::CONFLICT,
                "missing_dependencies",
                "the update depends on changes the document lacks: send the difference \
                 against GET /docs/{doc}/state-vector",
            ),
            UpdateError::Document(error) => error.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "code": self.code, "message": self.message }));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Authorizes a request for `doc`, requiring `needed`.
pub(crate) async fn authorize(
    tandem: &Tandem,
    parts: &Parts,
    doc: &DocName,
    needed: Rights,
) -> Result<Grant, ApiError> {
    let credentials = credentials(tandem, parts);
    let grant = tandem
        .inner
        .authorizer
        .authorize(&credentials, doc)
        .await
        .map_err(auth_error)?;
    require(&grant, needed)?;
    // Writing (changes, events, presence) opens the document, which creates it if it is new.
    let creates = [Rights::WRITE, Rights::EVENTS, Rights::PRESENCE]
        .into_iter()
        .any(|right| needed.contains(right));
    if creates {
        admit_document(tandem, parts, doc, &grant).await?;
    }
    Ok(grant)
}

/// Counts the creation of `doc` against the caller's allowance, if the document is new.
pub(crate) async fn admit_document(
    tandem: &Tandem,
    parts: &Parts,
    doc: &DocName,
    grant: &Grant,
) -> Result<(), ApiError> {
    let creator = Creator::of(grant.subject.as_deref(), remote_addr(parts).map(|a| a.ip()));
    match tandem.admit_document(doc, &creator).await {
        Ok(()) => Ok(()),
        Err(NotCreated::RateLimited(wait)) => {
            tandem.inner.metrics.refused("rate_limited");
            Err(ApiError::rate_limited(
                "too many new documents; slow down",
                wait,
            ))
        }
        Err(NotCreated::Store(error)) => Err(ApiError::store(&error)),
    }
}

/// Authorizes a request for every document whose name starts with `prefix`, requiring `needed`.
pub(crate) async fn authorize_prefix(
    tandem: &Tandem,
    parts: &Parts,
    prefix: &[u8],
    needed: Rights,
) -> Result<Grant, ApiError> {
    let credentials = credentials(tandem, parts);
    let grant = tandem
        .inner
        .authorizer
        .authorize_prefix(&credentials, prefix)
        .await
        .map_err(auth_error)?;
    require(&grant, needed)?;
    Ok(grant)
}

fn credentials(tandem: &Tandem, parts: &Parts) -> tandem_core::Credentials {
    auth::credentials(
        parts,
        remote_addr(parts),
        tandem.config().token_cookie.as_deref(),
    )
}

/// Who is calling, for what an HTTP caller owns and the limits it has: the grant's subject (a
/// token's `sub`), else the remote IP address (anonymous callers, tokens without `sub`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Caller {
    /// A token's `sub`.
    Subject(String),
    /// No subject: the address the request came from.
    Address(IpAddr),
    /// No subject and no known address (a router served without `ConnectInfo`).
    Unknown,
}

impl Caller {
    pub(crate) fn of(grant: &Grant, parts: &Parts) -> Self {
        match (&grant.subject, remote_addr(parts)) {
            (Some(subject), _) => Caller::Subject(subject.clone()),
            (None, Some(addr)) => Caller::Address(addr.ip()),
            (None, None) => Caller::Unknown,
        }
    }
}

pub(crate) fn remote_addr(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

fn require(grant: &Grant, needed: Rights) -> Result<(), ApiError> {
    if grant.expires_at.is_some_and(|at| at <= SystemTime::now()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the token has expired",
        ));
    }
    if grant.rights.contains(needed) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {:?} right", needed),
        ))
    }
}

fn auth_error(error: AuthError) -> ApiError {
    match error {
        AuthError::Unauthenticated(reason) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", reason)
        }
        AuthError::Forbidden(reason) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", reason),
    }
}

/// `object` with a document name under `key` as [`DocName::text`] shows it, and
/// `"{key}Encoding": "percent"` beside it when the name is not UTF-8 and so is shown
/// percent-encoded. Every JSON body that names a document goes through this, so a listed name
/// always leads back to its document.
pub(crate) fn with_name(
    mut object: serde_json::Value,
    key: &str,
    name: &DocName,
) -> serde_json::Value {
    let text = name.text();
    if let Some(fields) = object.as_object_mut() {
        if let Some(encoding) = text.encoding() {
            fields.insert(format!("{key}Encoding"), encoding.into());
        }
        fields.insert(key.to_owned(), text.as_str().into());
    }
    object
}

/// A document name from percent-encoded bytes, checked against the length limit.
pub(crate) fn doc_name(tandem: &Tandem, raw: &[u8]) -> Result<DocName, ApiError> {
    checked_name(tandem, percent_encoding::percent_decode(raw).collect())
}

/// A document name from decoded bytes, checked against the length limit.
pub(crate) fn checked_name(tandem: &Tandem, bytes: Vec<u8>) -> Result<DocName, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "missing_document",
            "no document name",
        ));
    }
    let limit = tandem.config().max_doc_name_bytes;
    if bytes.len() > limit {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "name_too_long",
            format!("document name longer than {limit} bytes"),
        ));
    }
    Ok(DocName::from(bytes))
}

/// The values of one query parameter, percent-decoded to bytes (`+` is a space), in order.
pub(crate) fn query_values(query: Option<&str>, key: &str) -> Vec<Vec<u8>> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name == key).then(|| {
                let value = value.replace('+', " ");
                percent_encoding::percent_decode_str(&value).collect()
            })
        })
        .collect()
}

/// The first value of a query parameter as UTF-8.
pub(crate) fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query_values(query, key)
        .into_iter()
        .next()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// An RFC 3339 timestamp with milliseconds.
pub(crate) fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded_bytes() {
        let query = Some("doc=a%2Fb&x=1&doc=%C3%A9t%C3%A9&doc=%FF+x&token=t");
        assert_eq!(
            query_values(query, "doc"),
            [
                b"a/b".to_vec(),
                "été".as_bytes().to_vec(),
                vec![0xff, b' ', b'x']
            ]
        );
        assert_eq!(query_value(query, "x").as_deref(), Some("1"));
        assert!(query_values(None, "doc").is_empty());
    }
}
