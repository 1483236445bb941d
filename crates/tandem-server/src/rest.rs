//! The REST API under `/docs`: read a document (binary Yjs update, state vector, JSON,
//! metadata, presence), change it (`POST` an update), publish presence and send custom events
//! without a WebSocket, list and delete documents.
//!
//! Document names are the rest of the path, percent-decoded to exact bytes, so they may contain
//! `/`. The endpoint is chosen by the path's suffix *before* decoding: `/docs/a/b/json` is the
//! JSON of `a/b`, while `/docs/a%2Fjson` is the metadata of the document `a/json`. A name whose
//! last segment is an endpoint's name needs its last `/` encoded as `%2F`.
//!
//! A document that the store holds nothing for and that is not loaded does not exist: reading
//! it answers 404 (Yjs itself has no notion of a missing document; an empty one is created by
//! its first write or connection). Event streams (`/docs/{doc}/events`) may follow a document
//! before it exists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};
use tandem_core::awareness::OUTDATED_TIMEOUT;
use tandem_core::protocol::{
    decode_state_vector, AwarenessEntry, AwarenessUpdate, ClientMessage, MAX_EVENT_TYPE_BYTES,
    MAX_SAFE_INTEGER,
};
use tandem_core::{peer, DocError, DocName, Document, PeerId, Rights};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info_span, Instrument};
use yrs::updates::encoder::Encode;
use yrs::StateVector;

use crate::api::{
    authorize, authorize_prefix, doc_name, query_value, remote_addr, timestamp, with_name,
    ApiError, Caller, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT,
};
use crate::limits::CountRate;
use crate::metrics::{Direction, MessageType};
use crate::peers::PeerKind;
use crate::{sse, Tandem};

/// What a path under `/docs/{doc}` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Info,
    Delete,
    GetUpdate,
    PostUpdate,
    StateVector,
    Json,
    GetPresence,
    PostPresence,
    Events,
    PostEvent,
}

/// Every endpoint under `/docs/{doc}`: the path suffix after the name, the method, and what it
/// does. The dispatcher and the OpenAPI document both read this table.
pub(crate) const DOC_ENDPOINTS: [(&str, Method, Endpoint); 10] = [
    ("", Method::GET, Endpoint::Info),
    ("", Method::DELETE, Endpoint::Delete),
    ("/update", Method::GET, Endpoint::GetUpdate),
    ("/update", Method::POST, Endpoint::PostUpdate),
    ("/state-vector", Method::GET, Endpoint::StateVector),
    ("/json", Method::GET, Endpoint::Json),
    ("/presence", Method::GET, Endpoint::GetPresence),
    ("/presence", Method::POST, Endpoint::PostPresence),
    ("/events", Method::GET, Endpoint::Events),
    ("/events", Method::POST, Endpoint::PostEvent),
];

/// `/docs/{*rest}`: finds the endpoint by suffix and method and runs it.
pub(crate) async fn doc_route(State(tandem): State<Tandem>, request: Request) -> Response {
    let result = dispatch(&tandem, request).await;
    respond(&tandem, result)
}

/// Turns a handler's result into a response, counting refusals.
pub(crate) fn respond(tandem: &Tandem, result: Result<Response, ApiError>) -> Response {
    match result {
        Ok(response) => response,
        Err(error) => {
            if error.status.is_client_error() {
                tandem.inner.metrics.refused(error.code);
            }
            error.into_response()
        }
    }
}

async fn dispatch(tandem: &Tandem, request: Request) -> Result<Response, ApiError> {
    let path = request.uri().path().to_owned();
    let raw = path.strip_prefix("/docs/").ok_or_else(ApiError::no_route)?;
    let suffix = DOC_ENDPOINTS
        .iter()
        .map(|(suffix, _, _)| *suffix)
        .find(|suffix| !suffix.is_empty() && raw.len() > suffix.len() && raw.ends_with(suffix))
        .unwrap_or("");
    let candidates: Vec<_> = DOC_ENDPOINTS
        .iter()
        .filter(|(s, _, _)| *s == suffix)
        .collect();
    let Some((_, _, endpoint)) = candidates
        .iter()
        .find(|(_, method, _)| method == request.method())
    else {
        let allowed: Vec<&str> = candidates.iter().map(|(_, m, _)| m.as_str()).collect();
        let mut response = ApiError::method_not_allowed().into_response();
        if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(ALLOW, allow);
        }
        tandem.inner.metrics.refused("method_not_allowed");
        return Ok(response);
    };
    let name = doc_name(tandem, &raw.as_bytes()[..raw.len() - suffix.len()])?;
    let (parts, body) = request.into_parts();
    match endpoint {
        Endpoint::Info => info(tandem, &parts, name).await,
        Endpoint::Delete => delete(tandem, &parts, name).await,
        Endpoint::GetUpdate => get_update(tandem, &parts, name).await,
        Endpoint::PostUpdate => post_update(tandem, parts, body, name).await,
        Endpoint::StateVector => state_vector(tandem, &parts, name).await,
        Endpoint::Json => get_json(tandem, &parts, name).await,
        Endpoint::GetPresence => get_presence(tandem, &parts, name).await,
        Endpoint::PostPresence => post_presence(tandem, parts, body, name).await,
        Endpoint::Events => sse::doc_events(tandem, &parts, name).await,
        Endpoint::PostEvent => post_event(tandem, parts, body, name).await,
    }
}

/// A document that exists (see the module docs), ready to be read.
async fn existing(tandem: &Tandem, name: DocName) -> Result<Document, ApiError> {
    let loaded = tandem.registry().is_loaded(&name);
    if !loaded {
        match tandem.inner.store.doc_info(&name).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(ApiError::not_found(format!("no document named {name}"))),
            // A store without metadata cannot tell: every document exists.
            Err(tandem_core::StoreError::Unsupported(_)) => {}
            Err(error) => return Err(ApiError::store(&error)),
        }
    }
    Ok(tandem.document(name).await?)
}

/// Decodes a base64 state vector (standard or URL-safe alphabet, padded or not).
pub(crate) fn parse_state_vector(encoded: &str) -> Result<StateVector, ApiError> {
    let bytes = decode_base64(encoded).ok_or_else(|| {
        ApiError::bad_request("invalid_state_vector", "the state vector is not base64")
    })?;
    decode_state_vector(&bytes).map_err(|_| {
        ApiError::bad_request(
            "invalid_state_vector",
            "the state vector does not decode as a Yjs v1 state vector",
        )
    })
}

/// Decodes base64 in either alphabet, with or without padding. A space is read as `+`: in a
/// query string a standard-alphabet `+` that was not percent-encoded arrives as a space.
pub(crate) fn decode_base64(encoded: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let spaced = encoded.trim().replace(' ', "+");
    let trimmed = spaced.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
        .ok()
}

fn binary(bytes: Vec<u8>) -> Response {
    ([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

/// `GET /docs/{doc}`: size, peers and last change.
async fn info(tandem: &Tandem, parts: &Parts, name: DocName) -> Result<Response, ApiError> {
    authorize(tandem, parts, &name, Rights::READ).await?;
    let stored = match tandem.inner.store.doc_info(&name).await {
        Ok(info) => info,
        Err(tandem_core::StoreError::Unsupported(_)) => None,
        Err(error) => return Err(ApiError::store(&error)),
    };
    let loaded = tandem.registry().is_loaded(&name);
    if !loaded && stored.is_none() {
        return Err(ApiError::not_found(format!("no document named {name}")));
    }
    let size = if loaded {
        tandem.document(name.clone()).await?.stats().await?.size
    } else {
        stored.as_ref().map_or(0, |info| info.size)
    };
    let info = json!({
        "size": size,
        "peers": tandem.inner.peers.peers_of(&name),
        "loaded": loaded,
        "lastChange": stored.map(|info| timestamp(info.last_change)),
    });
    Ok(Json(with_name(info, "name", &name)).into_response())
}

/// `GET /docs/{doc}/update[?sv=]`: the document, or what a state vector lacks, as one update.
async fn get_update(tandem: &Tandem, parts: &Parts, name: DocName) -> Result<Response, ApiError> {
    authorize(tandem, parts, &name, Rights::READ).await?;
    let since = query_value(parts.uri.query(), "sv")
        .map(|sv| parse_state_vector(&sv))
        .transpose()?;
    let document = existing(tandem, name).await?;
    let update = match since {
        Some(sv) => document.encode_diff(sv).await?,
        None => document.encode_state().await?,
    };
    Ok(binary(update))
}

/// `GET /docs/{doc}/state-vector`.
async fn state_vector(tandem: &Tandem, parts: &Parts, name: DocName) -> Result<Response, ApiError> {
    authorize(tandem, parts, &name, Rights::READ).await?;
    let document = existing(tandem, name).await?;
    Ok(binary(document.state_vector().await?.encode_v1()))
}

/// `GET /docs/{doc}/json`.
async fn get_json(tandem: &Tandem, parts: &Parts, name: DocName) -> Result<Response, ApiError> {
    authorize(tandem, parts, &name, Rights::READ).await?;
    let document = existing(tandem, name).await?;
    Ok(Json(document.get_json().await?).into_response())
}

/// Reads a request body within the body limit.
async fn body_bytes(tandem: &Tandem, parts: Parts, body: Body) -> Result<Bytes, ApiError> {
    let request = Request::from_parts(parts, body);
    Bytes::from_request(request, tandem)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::body_too_large(tandem.config().max_body_bytes)
            } else {
                ApiError::bad_request("invalid_body", "the request body could not be read")
            }
        })
}

/// `POST /docs/{doc}/update`: applies a binary Yjs v1 update; answers once it is durable.
async fn post_update(
    tandem: &Tandem,
    parts: Parts,
    body: Body,
    name: DocName,
) -> Result<Response, ApiError> {
    authorize(tandem, &parts, &name, Rights::WRITE).await?;
    let update = body_bytes(tandem, parts, body).await?;
    tandem
        .inner
        .metrics
        .message(Direction::In, MessageType::HttpUpdate, update.len());
    let document = tandem.document(name).await?;
    document.apply_update_durable(&update).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /docs/{doc}/presence`: every client's awareness state, who published it and when.
async fn get_presence(tandem: &Tandem, parts: &Parts, name: DocName) -> Result<Response, ApiError> {
    authorize(tandem, parts, &name, Rights::READ).await?;
    let document = existing(tandem, name).await?;
    let now = (Instant::now(), SystemTime::now());
    let clients: Vec<Value> = document
        .presence()
        .await?
        .into_iter()
        .map(|client| {
            let age = now.0.saturating_duration_since(client.last_updated);
            json!({
                "clientId": client.client,
                "clock": client.clock,
                "sub": tandem.inner.peers.subject(client.owner),
                "state": serde_json::from_str::<Value>(&client.state).unwrap_or(Value::Null),
                "lastUpdated": timestamp(now.1.checked_sub(age).unwrap_or(UNIX_EPOCH)),
            })
        })
        .collect();
    Ok(Json(json!({ "clients": clients })).into_response())
}

/// The body of `POST /docs/{doc}/presence`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PresenceBody {
    client_id: u64,
    state: Value,
}

/// `POST /docs/{doc}/presence`: publishes a client's awareness state for [`OUTDATED_TIMEOUT`];
/// posting again renews it, posting `null` removes it.
///
/// A client id's state belongs to the caller that created it ([`Caller`]: the token's `sub`,
/// else the address): another caller changing or removing it gets 403 `presence_not_owned`.
/// Each caller has a post rate and a number of client ids, each document a number of client
/// ids ([`ApiConfig`](crate::ApiConfig)); past them: 429.
async fn post_presence(
    tandem: &Tandem,
    parts: Parts,
    body: Body,
    name: DocName,
) -> Result<Response, ApiError> {
    let grant = authorize(tandem, &parts, &name, Rights::PRESENCE).await?;
    let caller = Caller::of(&grant, &parts);
    if !tandem.inner.http_presence.admit_post(tandem, &caller) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many presence posts; slow down",
        )
        .retry_after(1));
    }
    let body = body_bytes(tandem, parts, body).await?;
    tandem
        .inner
        .metrics
        .message(Direction::In, MessageType::HttpPresence, body.len());
    let post: PresenceBody = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "invalid_json",
            format!("expected {{\"clientId\": number, \"state\": object or null}}: {error}"),
        )
    })?;
    if post.client_id > MAX_SAFE_INTEGER {
        return Err(ApiError::bad_request(
            "invalid_client_id",
            "clientId must be below 2^53",
        ));
    }
    let state: Option<Arc<str>> = match &post.state {
        Value::Null => None,
        state => Some(state.to_string().into()),
    };
    let limit = tandem.config().max_awareness_bytes;
    if state.as_ref().is_some_and(|state| state.len() > limit) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "awareness_too_large",
            format!("the state is larger than {limit} bytes"),
        ));
    }
    let clock = tandem
        .inner
        .http_presence
        .publish(tandem, name, post.client_id, state, grant.subject, caller)
        .await?;
    Ok(Json(json!({
        "clientId": post.client_id,
        "clock": clock,
        "ttlMs": OUTDATED_TIMEOUT.as_millis() as u64,
    }))
    .into_response())
}

/// `POST /docs/{doc}/events`: sends `{"type": string, "data": any}` as a custom event to every
/// peer that receives events (WebSockets with `?events=1`, Hocuspocus sessions, event streams),
/// keeps it in the history and answers `{"seq": n}`. Its `from` is the token's `sub`, or
/// `http` without one. The body counts against [`Config::max_event_bytes`](crate::Config) like
/// a WebSocket event message, and each caller (`sub`, else address) may send
/// [`Config::events_per_sec`](crate::Config) events per second to a document, with bursts of
/// [`Config::event_burst`](crate::Config).
async fn post_event(
    tandem: &Tandem,
    parts: Parts,
    body: Body,
    name: DocName,
) -> Result<Response, ApiError> {
    let grant = authorize(tandem, &parts, &name, Rights::EVENTS).await?;
    let caller = grant
        .subject
        .clone()
        .or_else(|| remote_addr(&parts).map(|addr| addr.ip().to_string()))
        .unwrap_or_default();
    let body = body_bytes(tandem, parts, body).await?;
    let limit = tandem.config().max_event_bytes;
    if body.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            format!("the event is larger than {limit} bytes"),
        ));
    }
    let (kind, data) = parse_event(&body)?;
    if !tandem
        .inner
        .http_presence
        .admit_event(tandem, name.clone(), caller)
    {
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many events; slow down",
        )
        .into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        tandem.inner.metrics.refused("rate_limited");
        return Ok(response);
    }
    let from = grant.subject.unwrap_or_else(|| "http".to_owned());
    let mut last = DocError::Unloaded;
    for _ in 0..EMIT_ATTEMPTS {
        let handle = tandem.registry().handle(&name)?;
        match handle.emit_as(from.clone(), kind.clone(), &data).await {
            Ok(seq) => return Ok(Json(json!({ "seq": seq })).into_response()),
            // The document was unloading; the next handle is a new actor.
            Err(DocError::Unloaded) => last = DocError::Unloaded,
            Err(error) => return Err(error.into()),
        }
    }
    Err(last.into())
}

/// How often an event is offered to a document that keeps unloading under it.
const EMIT_ATTEMPTS: usize = 8;

/// The type and data of an event body, checked like a WebSocket event message: a JSON object
/// with a `type` of 1 to [`MAX_EVENT_TYPE_BYTES`] bytes and an optional `data`, nothing else.
fn parse_event(body: &[u8]) -> Result<(String, Value), ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request("invalid_json", format!("the body is not JSON: {error}"))
    })?;
    let invalid = |message: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
            message.to_owned(),
        )
    };
    let Value::Object(mut fields) = value else {
        return Err(invalid("expected {\"type\": string, \"data\": any}"));
    };
    let Some(Value::String(kind)) = fields.remove("type") else {
        return Err(invalid("`type` must be a string"));
    };
    if kind.is_empty() || kind.len() > MAX_EVENT_TYPE_BYTES {
        return Err(invalid(&format!(
            "`type` must be 1 to {MAX_EVENT_TYPE_BYTES} bytes"
        )));
    }
    let data = fields.remove("data").unwrap_or(Value::Null);
    if let Some(field) = fields.keys().next() {
        return Err(invalid(&format!(
            "unknown field `{field}`: an event is {{\"type\", \"data\"}}"
        )));
    }
    Ok((kind, data))
}

/// `DELETE /docs/{doc}`: disconnects its peers (4404) and removes it from the store.
async fn delete(tandem: &Tandem, parts: &Parts, name: DocName) -> Result<Response, ApiError> {
    authorize(tandem, parts, &name, Rights::ADMIN).await?;
    let document = existing(tandem, name).await?;
    document.delete().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /docs?prefix=&cursor=&limit=`: stored documents by name, a page at a time.
pub(crate) async fn list(State(tandem): State<Tandem>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let result = list_page(&tandem, &parts).await;
    respond(&tandem, result)
}

async fn list_page(tandem: &Tandem, parts: &Parts) -> Result<Response, ApiError> {
    let query = parts.uri.query();
    let prefix = crate::api::query_values(query, "prefix")
        .into_iter()
        .next()
        .unwrap_or_default();
    authorize_prefix(tandem, parts, &prefix, Rights::ADMIN).await?;
    let limit = match query_value(query, "limit") {
        None => DEFAULT_LIST_LIMIT,
        Some(limit) => limit
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIST_LIMIT).contains(limit))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_limit",
                    format!("limit must be a number from 1 to {MAX_LIST_LIMIT}"),
                )
            })?,
    };
    let after = query_value(query, "cursor")
        .map(|cursor| {
            decode_base64(&cursor)
                .map(DocName::from)
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "the cursor is not valid"))
        })
        .transpose()?;
    let page = tandem
        .inner
        .store
        .list(&prefix, after.as_ref(), limit)
        .await
        .map_err(|error| ApiError::store(&error))?;
    let next = (page.len() == limit)
        .then(|| page.last())
        .flatten()
        .map(|last| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.name.as_bytes()));
    let documents: Vec<Value> = page
        .iter()
        .map(|info| {
            let document = json!({
                "size": info.size,
                "lastChange": timestamp(info.last_change),
                "loaded": tandem.registry().is_loaded(&info.name),
                "peers": tandem.inner.peers.peers_of(&info.name),
            });
            with_name(document, "name", &info.name)
        })
        .collect();
    Ok(Json(json!({ "documents": documents, "nextCursor": next })).into_response())
}

/// A presence post on its way to the task of its client.
struct PresencePost {
    state: Option<Arc<str>>,
    reply: oneshot::Sender<Result<u64, DocError>>,
}

type PresenceKey = (DocName, u64);

/// What the REST API keeps between requests.
///
/// Clients publishing presence over HTTP: one task per document and client id, which is a
/// peer of the document for as long as the state lives. Its state goes away when the client
/// posts `null`, or [`OUTDATED_TIMEOUT`] after its last post, like a y-websocket client's.
///
/// And the rates of each caller: presence posts over all documents, custom events per
/// document, as a WebSocket connection has its own.
#[derive(Debug, Default)]
pub(crate) struct HttpPresence {
    clients: Mutex<PresenceClients>,
    event_rates: Mutex<HashMap<(DocName, String), EventRate>>,
    post_rates: Mutex<HashMap<Caller, EventRate>>,
}

/// The live HTTP presence clients, who owns each, and how many each caller and document has.
#[derive(Debug, Default)]
struct PresenceClients {
    tasks: HashMap<PresenceKey, PresenceTask>,
    per_caller: HashMap<Caller, usize>,
    per_doc: HashMap<DocName, usize>,
}

/// The task of one HTTP presence client and the caller it belongs to.
#[derive(Debug)]
struct PresenceTask {
    posts: mpsc::Sender<PresencePost>,
    owner: Caller,
}

impl PresenceClients {
    fn insert(&mut self, key: PresenceKey, task: PresenceTask) {
        *self.per_caller.entry(task.owner.clone()).or_default() += 1;
        *self.per_doc.entry(key.0.clone()).or_default() += 1;
        self.tasks.insert(key, task);
    }

    fn remove(&mut self, key: &PresenceKey) {
        let Some(task) = self.tasks.remove(key) else {
            return;
        };
        decrement(&mut self.per_caller, &task.owner);
        decrement(&mut self.per_doc, &key.0);
    }
}

fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

/// One caller's token bucket, and when it was last used.
#[derive(Debug)]
struct EventRate {
    rate: CountRate,
    used: Instant,
}

/// Buckets kept before idle ones are dropped.
const EVENT_RATES_KEPT: usize = 4096;

/// Takes one from `key`'s bucket (created full), dropping buckets idle long enough to be full
/// again (they are the same as new ones) once [`EVENT_RATES_KEPT`] are kept; false when empty.
fn admit_rate<K: std::hash::Hash + Eq>(
    rates: &Mutex<HashMap<K, EventRate>>,
    key: K,
    per_sec: u32,
    burst: u32,
) -> bool {
    if per_sec == 0 {
        return true;
    }
    let now = Instant::now();
    let mut rates = rates.lock().unwrap_or_else(PoisonError::into_inner);
    if rates.len() >= EVENT_RATES_KEPT {
        let refill =
            std::time::Duration::from_secs_f64(f64::from(burst.max(1)) / f64::from(per_sec));
        rates.retain(|_, entry| now.saturating_duration_since(entry.used) < refill);
    }
    let entry = rates.entry(key).or_insert_with(|| EventRate {
        rate: CountRate::new(per_sec, burst),
        used: now,
    });
    entry.used = now;
    entry.rate.admit()
}

impl HttpPresence {
    fn lock(&self) -> MutexGuard<'_, PresenceClients> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one event from `caller`'s bucket for `doc`; false when it is empty.
    fn admit_event(&self, tandem: &Tandem, doc: DocName, caller: String) -> bool {
        let config = tandem.config();
        admit_rate(
            &self.event_rates,
            (doc, caller),
            config.events_per_sec,
            config.event_burst,
        )
    }

    /// Takes one presence post from `caller`'s bucket; false when it is empty.
    fn admit_post(&self, tandem: &Tandem, caller: &Caller) -> bool {
        let api = &tandem.inner.api;
        admit_rate(
            &self.post_rates,
            caller.clone(),
            api.http_presence_per_sec,
            api.http_presence_burst,
        )
    }

    /// Publishes (or with `None` removes) a client's state for `caller`; returns the awareness
    /// clock used.
    async fn publish(
        &self,
        tandem: &Tandem,
        doc: DocName,
        client: u64,
        state: Option<Arc<str>>,
        subject: Option<String>,
        caller: Caller,
    ) -> Result<u64, ApiError> {
        let key = (doc, client);
        // A task that ended between the lookup and the send is replaced once.
        for _ in 0..2 {
            let posts = {
                let mut clients = self.lock();
                match clients.tasks.get(&key) {
                    Some(task) if task.owner != caller => {
                        return Err(ApiError::new(
                            StatusCode::FORBIDDEN,
                            "presence_not_owned",
                            format!("the presence of client {client} belongs to another caller"),
                        ));
                    }
                    Some(task) => task.posts.clone(),
                    None if state.is_none() => return Ok(0),
                    None => {
                        check_presence_caps(tandem, &clients, &key.0, &caller)?;
                        let (posts, received) = mpsc::channel(8);
                        let task = PresenceTask {
                            posts: posts.clone(),
                            owner: caller.clone(),
                        };
                        clients.insert(key.clone(), task);
                        let span = info_span!(parent: None, "presence", doc = %key.0, client);
                        tokio::spawn(
                            presence_peer(
                                tandem.clone(),
                                key.clone(),
                                received,
                                posts.clone(),
                                subject.clone(),
                            )
                            .instrument(span),
                        );
                        posts
                    }
                }
            };
            let (reply, replied) = oneshot::channel();
            let post = PresencePost {
                state: state.clone(),
                reply,
            };
            if posts.send(post).await.is_ok() {
                if let Ok(result) = replied.await {
                    return Ok(result?);
                }
            }
            self.forget(&key, &posts);
        }
        Err(DocError::Unloaded.into())
    }

    /// Forgets a client's task, if it is still the one registered.
    fn forget(&self, key: &PresenceKey, posts: &mpsc::Sender<PresencePost>) {
        let mut clients = self.lock();
        if clients
            .tasks
            .get(key)
            .is_some_and(|current| current.posts.same_channel(posts))
        {
            clients.remove(key);
        }
    }
}

/// Refuses a new HTTP presence client past its caller's or its document's cap (429; a slot
/// frees when a state is removed or expires, [`OUTDATED_TIMEOUT`] after its last post).
fn check_presence_caps(
    tandem: &Tandem,
    clients: &PresenceClients,
    doc: &DocName,
    caller: &Caller,
) -> Result<(), ApiError> {
    let api = &tandem.inner.api;
    let retry = OUTDATED_TIMEOUT.as_secs();
    let mine = clients.per_caller.get(caller).copied().unwrap_or(0);
    if mine >= api.max_http_presence_per_caller {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "caller_presence_limit",
            format!(
                "this caller already publishes {mine} presence client ids (at most {}); \
                 remove one by posting null",
                api.max_http_presence_per_caller
            ),
        )
        .retry_after(retry));
    }
    let in_doc = clients.per_doc.get(doc).copied().unwrap_or(0);
    if in_doc >= api.max_http_presence_per_doc {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "document_presence_limit",
            format!(
                "the document already has {in_doc} HTTP presence client ids (at most {})",
                api.max_http_presence_per_doc
            ),
        )
        .retry_after(retry));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch: awareness clocks of HTTP clients, so that a client
/// publishing again after its state expired (the server remembers the old clock) is accepted.
fn clock_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |since| since.as_millis() as u64)
        .min(MAX_SAFE_INTEGER)
}

async fn presence_peer(
    tandem: Tandem,
    key: PresenceKey,
    mut posts: mpsc::Receiver<PresencePost>,
    own: mpsc::Sender<PresencePost>,
    subject: Option<String>,
) {
    let (doc, client) = key.clone();
    let peer = PeerId::next();
    let config = tandem.config();
    let (outbox, mut inbox) = peer::bounded_queue(config.peer_queue, config.peer_queue_bytes);
    let handle = match tandem.registry().join(&doc, peer, outbox).await {
        Ok(handle) => handle,
        Err(error) => {
            tandem.inner.http_presence.forget(&key, &own);
            while let Ok(post) = posts.try_recv() {
                let _ = post.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    let registration = tandem.register_peer(&doc, peer, subject, PeerKind::HttpPresence);
    let eviction = inbox.eviction();
    let closing = tandem.inner.closing.clone();
    let mut clock = 0;
    let mut expires = Instant::now() + OUTDATED_TIMEOUT;
    loop {
        tokio::select! {
            _ = closing.cancelled() => break,
            _ = eviction.evicted() => break,
            _ = sleep_until(expires) => break,
            // The peer receives the document's frames; it has no use for them.
            frame = inbox.recv() => if frame.is_none() { break },
            post = posts.recv() => {
                let Some(post) = post else { break };
                clock = (clock + 1).max(clock_now());
                let gone = post.state.is_none();
                let update = AwarenessUpdate {
                    entries: vec![AwarenessEntry { client, clock, state: post.state }],
                };
                let sent = handle
                    .send(peer, vec![ClientMessage::Awareness(update)])
                    .await
                    .map(|()| clock);
                let failed = sent.is_err();
                let _ = post.reply.send(sent);
                if gone || failed {
                    break;
                }
                expires = Instant::now() + OUTDATED_TIMEOUT;
            }
        }
    }
    tandem.inner.http_presence.forget(&key, &own);
    // Posts that raced with the end are answered as "unloaded": the handler retries them on a
    // new task.
    posts.close();
    drop(posts);
    handle.leave(peer).await;
    drop(registration);
    debug!(client, "http presence ended");
}
