//! The OpenAPI 3.1 description of the HTTP API (`GET /openapi.json`), generated from
//! `OPERATIONS`: one entry per method and path, with its parameters, body and responses.
//!
//! The router is built from its own tables ([`crate::routes`]); a test compares the two, so an
//! endpoint cannot be added or removed without its description following.

use axum::http::Method;
use serde_json::{json, Map, Value};

/// What a request or response body is.
#[derive(Debug, Clone, Copy)]
enum Content {
    None,
    /// A binary Yjs encoding.
    Binary,
    /// JSON, described in words.
    Json,
    /// Prometheus text.
    Text,
    /// `text/event-stream`.
    EventStream,
}

/// One operation of the API.
struct Operation {
    method: Method,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    /// The right the token needs, if any.
    right: Option<&'static str>,
    /// Query parameters and what they mean.
    query: &'static [(&'static str, &'static str)],
    request: Content,
    /// Status, meaning and body of each response.
    responses: &'static [(u16, &'static str, Content)],
}

/// Errors every document endpoint may answer, besides its own.
const AUTH_ERRORS: &[(u16, &str, Content)] = &[
    (
        401,
        "no token, or a bad one (`unauthenticated`)",
        Content::Json,
    ),
    (
        403,
        "the token does not cover this (`forbidden`)",
        Content::Json,
    ),
    (
        414,
        "document name too long (`name_too_long`)",
        Content::Json,
    ),
];

const OPERATIONS: &[Operation] = &[
    Operation {
        method: Method::GET,
        path: "/ws",
        id: "hocuspocus",
        summary: "Hocuspocus connection (WebSocket upgrade); documents and tokens travel in the frames",
        right: None,
        query: &[("token", "access token used when a session's auth message carries none")],
        request: Content::None,
        responses: &[
            (101, "switching to the Hocuspocus protocol", Content::None),
            (403, "the origin is not allowed", Content::None),
            (503, "connection caps reached", Content::None),
        ],
    },
    Operation {
        method: Method::GET,
        path: "/ws/{doc}",
        id: "websocket",
        summary: "y-websocket connection to a document (WebSocket upgrade)",
        right: Some("read"),
        query: &[("token", "access token")],
        request: Content::None,
        responses: &[
            (101, "switching to the y-websocket protocol", Content::None),
            (401, "no token, or a bad one", Content::None),
            (403, "the token does not cover the document, or the origin is not allowed", Content::None),
            (503, "connection caps reached", Content::None),
        ],
    },
    Operation {
        method: Method::GET,
        path: "/healthz",
        id: "healthz",
        summary: "Liveness: 200 while the process serves",
        right: None,
        query: &[],
        request: Content::None,
        responses: &[(200, "alive", Content::Text)],
    },
    Operation {
        method: Method::GET,
        path: "/readyz",
        id: "readyz",
        summary: "Readiness: the store answers and the server accepts work",
        right: None,
        query: &[],
        request: Content::None,
        responses: &[
            (200, "ready", Content::Json),
            (503, "shutting down, or the store failed", Content::Json),
        ],
    },
    Operation {
        method: Method::GET,
        path: "/status",
        id: "status",
        summary: "Version, uptime, connections, loaded documents, busiest documents (`{name, nameEncoding?, peers}`), store size",
        right: None,
        query: &[],
        request: Content::None,
        responses: &[(200, "the status", Content::Json)],
    },
    Operation {
        method: Method::GET,
        path: "/metrics",
        id: "metrics",
        summary: "Prometheus metrics",
        right: None,
        query: &[],
        request: Content::None,
        responses: &[(200, "text exposition format 0.0.4", Content::Text)],
    },
    Operation {
        method: Method::GET,
        path: "/openapi.json",
        id: "openapi",
        summary: "This document",
        right: None,
        query: &[],
        request: Content::None,
        responses: &[(200, "OpenAPI 3.1", Content::Json)],
    },
    Operation {
        method: Method::GET,
        path: "/docs",
        id: "listDocuments",
        summary: "Stored documents with their size and last change, a page at a time",
        right: Some("admin over the prefix"),
        query: &[
            ("prefix", "only names starting with this"),
            ("cursor", "`nextCursor` of the previous page"),
            ("limit", "documents per page, 1 to 1000 (default 100)"),
        ],
        request: Content::None,
        responses: &[
            (200, "`{documents: [{name, nameEncoding?, size, lastChange, loaded, peers}], nextCursor}`; a name that is not UTF-8 is percent-encoded and marked `nameEncoding: \"percent\"` (use it in a path as it is)", Content::Json),
            (400, "bad limit or cursor", Content::Json),
            (401, "no token, or a bad one", Content::Json),
            (403, "the token is not admin over the prefix", Content::Json),
        ],
    },
    Operation {
        method: Method::GET,
        path: "/docs/{doc}",
        id: "getDocument",
        summary: "A document's size, peers and last change",
        right: Some("read"),
        query: &[],
        request: Content::None,
        responses: &[
            (200, "`{name, nameEncoding?, size, peers, loaded, lastChange}` (`nameEncoding` as in the listing)", Content::Json),
            (404, "no such document (`not_found`)", Content::Json),
        ],
    },
    Operation {
        method: Method::DELETE,
        path: "/docs/{doc}",
        id: "deleteDocument",
        summary: "Deletes a document: its peers are disconnected (close 4404), the store forgets it",
        right: Some("admin"),
        query: &[],
        request: Content::None,
        responses: &[
            (204, "deleted", Content::None),
            (404, "no such document", Content::Json),
        ],
    },
    Operation {
        method: Method::GET,
        path: "/docs/{doc}/update",
        id: "getUpdate",
        summary: "The document as one Yjs v1 update, or only what a state vector lacks",
        right: Some("read"),
        query: &[("sv", "base64 Yjs v1 state vector: answer only what it lacks")],
        request: Content::None,
        responses: &[
            (200, "a Yjs v1 update", Content::Binary),
            (400, "`sv` is not a base64 state vector (`invalid_state_vector`)", Content::Json),
            (404, "no such document", Content::Json),
        ],
    },
    Operation {
        method: Method::POST,
        path: "/docs/{doc}/update",
        id: "postUpdate",
        summary: "Applies a Yjs v1 update; answers once it is durable",
        right: Some("write"),
        query: &[],
        request: Content::Binary,
        responses: &[
            (204, "applied, broadcast and durable", Content::None),
            (400, "the body is not a Yjs v1 update (`invalid_update`)", Content::Json),
            (413, "body over the limit (`body_too_large`) or document over its size limit (`document_too_large`)", Content::Json),
            (422, "the update decoded but could not be integrated", Content::Json),
        ],
    },
    Operation {
        method: Method::GET,
        path: "/docs/{doc}/state-vector",
        id: "getStateVector",
        summary: "The document's Yjs v1 state vector",
        right: Some("read"),
        query: &[],
        request: Content::None,
        responses: &[
            (200, "a Yjs v1 state vector", Content::Binary),
            (404, "no such document", Content::Json),
        ],
    },
    Operation {
        method: Method::GET,
        path: "/docs/{doc}/json",
        id: "getJson",
        summary: "The document's root types as JSON (XML as {nodeName, attributes, children})",
        right: Some("read"),
        query: &[],
        request: Content::None,
        responses: &[
            (200, "one property per root type", Content::Json),
            (404, "no such document", Content::Json),
        ],
    },
    Operation {
        method: Method::GET,
        path: "/docs/{doc}/presence",
        id: "getPresence",
        summary: "Who is here: client id, sub, state, last update time",
        right: Some("read"),
        query: &[],
        request: Content::None,
        responses: &[
            (200, "`{clients: [{clientId, clock, sub, state, lastUpdated}]}`", Content::Json),
            (404, "no such document", Content::Json),
        ],
    },
    Operation {
        method: Method::POST,
        path: "/docs/{doc}/presence",
        id: "postPresence",
        summary: "Publishes a client's presence for 30 s (`{clientId, state}`; `state: null` removes it)",
        right: Some("presence"),
        query: &[],
        request: Content::Json,
        responses: &[
            (200, "`{clientId, clock, ttlMs}`", Content::Json),
            (400, "not `{clientId, state}` (`invalid_json`, `invalid_client_id`)", Content::Json),
            (403, "the token does not cover this (`forbidden`), or the client id's presence was created by another caller (`sub`, else IP address; `presence_not_owned`)", Content::Json),
            (413, "state over the awareness limit (`awareness_too_large`)", Content::Json),
            (429, "the caller's or the document's cap of HTTP presence client ids (`caller_presence_limit`, `document_presence_limit`, Retry-After), or the caller's post rate (`rate_limited`, Retry-After)", Content::Json),
        ],
    },
    Operation {
        method: Method::GET,
        path: "/docs/{doc}/events",
        id: "documentEvents",
        summary: "Server-Sent Events: update (base64 Yjs update) or json, presence, event (custom \
                  event {seq, type, data, from, at}), gap ({from, to}: events a resumed stream \
                  missed that the history no longer has), ping. Each id is the cursor \
                  `<base64url state vector>.<event seq>`: Last-Event-ID resumes with exactly \
                  the missing changes and events",
        right: Some("read"),
        query: &[
            ("format", "`binary` (default: update events) or `json` (whole-document json events)"),
            ("sv", "base64 state vector to resume from (Last-Event-ID takes precedence)"),
        ],
        request: Content::None,
        responses: &[
            (200, "an event stream", Content::EventStream),
            (400, "bad `sv` or `format`", Content::Json),
            (503, "connection caps reached", Content::Json),
        ],
    },
    Operation {
        method: Method::POST,
        path: "/docs/{doc}/events",
        id: "postEvent",
        summary: "Sends a custom event `{type, data}` to every peer receiving events (from: the \
                  token's sub, or `http`); kept in the document's event history",
        right: Some("events"),
        query: &[],
        request: Content::Json,
        responses: &[
            (200, "`{seq}`: the event's sequence number in the document", Content::Json),
            (400, "the body is not JSON (`invalid_json`)", Content::Json),
            (413, "body over the event limit (`event_too_large`) or the body limit (`body_too_large`)", Content::Json),
            (422, "not `{type: string of 1 to 128 bytes, data: any}` (`invalid_event`)", Content::Json),
            (429, "more events than the caller's rate for this document (`rate_limited`, Retry-After)", Content::Json),
        ],
    },
    Operation {
        method: Method::GET,
        path: "/events",
        id: "events",
        summary: "Server-Sent Events of several documents in one stream (`?doc=a&doc=b`); ids \
                  join each document's cursor with `~`",
        right: Some("read on every document"),
        query: &[
            ("doc", "a document to follow; repeat for several"),
            ("format", "`binary` (default) or `json`"),
        ],
        request: Content::None,
        responses: &[
            (200, "an event stream; each event's data names its document", Content::EventStream),
            (400, "no `doc`, too many, or a bad `format`", Content::Json),
            (401, "no token, or a bad one", Content::Json),
            (403, "the token does not cover a document", Content::Json),
        ],
    },
];

fn content(kind: Content) -> Option<Value> {
    let (media, schema) = match kind {
        Content::None => return None,
        Content::Binary => (
            "application/octet-stream",
            json!({ "type": "string", "format": "binary" }),
        ),
        Content::Json => ("application/json", json!({ "type": "object" })),
        Content::Text => ("text/plain", json!({ "type": "string" })),
        Content::EventStream => ("text/event-stream", json!({ "type": "string" })),
    };
    Some(json!({ media: { "schema": schema } }))
}

/// The OpenAPI document of the API.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for operation in OPERATIONS {
        let mut parameters = Vec::new();
        if operation.path.contains("{doc}") {
            parameters.push(json!({
                "name": "doc",
                "in": "path",
                "required": true,
                "description": "the document name, percent-encoded; it may contain `/`",
                "schema": { "type": "string" },
            }));
        }
        for (name, description) in operation.query {
            parameters.push(json!({
                "name": name,
                "in": "query",
                "required": false,
                "description": description,
                "schema": { "type": "string" },
            }));
        }
        let mut responses = Map::new();
        let errors = if operation.path.starts_with("/docs/") {
            AUTH_ERRORS
        } else {
            &[]
        };
        // An operation's own description of a status replaces the shared one.
        for (status, description, body) in errors.iter().chain(operation.responses) {
            let mut response = json!({ "description": description });
            if let Some(body) = content(*body) {
                response["content"] = body;
            }
            responses.insert(status.to_string(), response);
        }
        let mut entry = json!({
            "operationId": operation.id,
            "summary": operation.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(right) = operation.right {
            entry["description"] = json!(format!("Needs the `{right}` right."));
            entry["security"] = json!([{ "bearer": [] }, { "queryToken": [] }]);
        }
        if let Some(body) = content(operation.request) {
            entry["requestBody"] = json!({ "required": true, "content": body });
        }
        let path = paths.entry(operation.path).or_insert_with(|| json!({}));
        path[operation.method.as_str().to_ascii_lowercase()] = entry;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tandem",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Realtime collaboration server for Yjs documents. Errors are JSON \
                            objects {code, message} with a stable code. A document name shown \
                            in a body is the name itself when it is UTF-8, else its bytes \
                            percent-encoded with `nameEncoding` (or `docEncoding`) set to \
                            \"percent\" beside it.",
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "queryToken": { "type": "apiKey", "in": "query", "name": "token" },
            },
        },
        "paths": paths,
    })
}

/// `GET /openapi.json`.
pub(crate) async fn serve() -> axum::Json<Value> {
    axum::Json(openapi())
}
