//! Reading and changing documents from server code, without a socket.
//!
//! A [`Document`] names a document; every call runs inside the document's actor, so it sees
//! and changes the same state the peers do. Changes reach every connected peer and are stored
//! exactly like a peer's update. A document that unloads between calls is loaded again by the
//! next one; a call that meets a document in the middle of unloading is retried on the new actor.

use serde_json::{json, Value};
use tokio::sync::oneshot;
use yrs::types::text::YChange;
use yrs::types::AsPrelim;
use yrs::{
    Array, Doc, GetString, Map, Out, ReadTxn, StateVector, Text, Transact, Transaction,
    TransactionMut, Xml, XmlFragment, XmlOut, XmlTextRef,
};

use crate::actor::{DocError, DocHandle, DocStats, ReadJob, UpdateError, WriteJob};
use crate::awareness::ClientState;
use crate::name::DocName;
use crate::nesting::MAX_TYPE_NESTING;
use crate::protocol::ReceivedUpdate;
use crate::registry::{Registry, JOIN_ATTEMPTS};

/// A closure for the document's actor, which hands it back unrun when it is unloading.
trait Job: Sized + Send + 'static {
    fn queue(self, handle: &DocHandle) -> BoxFuture<'_, Result<Returned<Self>, Self>>;
}

/// Where a job comes back unrun, with the reason, from an actor that cannot run it.
type Returned<J> = oneshot::Receiver<(J, DocError)>;

impl Job for ReadJob {
    fn queue(self, handle: &DocHandle) -> BoxFuture<'_, Result<Returned<Self>, Self>> {
        Box::pin(handle.read(self))
    }
}

impl Job for WriteJob {
    fn queue(self, handle: &DocHandle) -> BoxFuture<'_, Result<Returned<Self>, Self>> {
        Box::pin(handle.write(self))
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A handle for server code to read and change one document. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Document {
    registry: Registry,
    name: DocName,
}

impl Document {
    pub(crate) fn new(registry: Registry, name: DocName) -> Self {
        Self { registry, name }
    }

    /// The document's name.
    pub fn name(&self) -> &DocName {
        &self.name
    }

    /// Runs `read` on the document's current state and returns what it returns.
    ///
    /// Root types must be reached through the transaction (`txn.get_text("text")`). A panic in
    /// `read` is caught: the call fails with [`DocError::Aborted`] and the document goes on.
    pub async fn read<R, F>(&self, read: F) -> Result<R, DocError>
    where
        F: FnOnce(&Transaction<'_>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (result, outcome) = oneshot::channel();
        let job: ReadJob = Box::new(move |txn| {
            let _ = result.send(read(txn));
        });
        self.run(job, outcome).await
    }

    /// Runs `change` in a transaction on the document and returns what it returns. What it
    /// changed is stored and broadcast to every peer, like a peer's update.
    ///
    /// Server code is trusted: the document size limit does not apply here (it does to
    /// [`Document::apply_update`]). A panic in `change` is caught: the call fails with
    /// [`DocError::Aborted`], and whatever it changed before panicking is kept and broadcast.
    pub async fn transact<R, F>(&self, change: F) -> Result<R, DocError>
    where
        F: FnOnce(&mut TransactionMut<'_>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (result, outcome) = oneshot::channel();
        let job: WriteJob = Box::new(move |txn| {
            let _ = result.send(change(txn));
        });
        self.run(job, outcome).await
    }

    /// Runs a job on the document's actor, retrying on the next actor when the one it met was
    /// unloading (which hands the job back unrun), and returns what the job reported.
    async fn run<J: Job, R>(
        &self,
        mut job: J,
        outcome: oneshot::Receiver<R>,
    ) -> Result<R, DocError> {
        for _ in 0..JOIN_ATTEMPTS {
            let handle = self.registry.handle(&self.name)?;
            match job.queue(&handle).await {
                Err(refused) => job = refused,
                Ok(comes_back) => match comes_back.await {
                    Ok((refused, DocError::Unloaded)) => job = refused,
                    // The document failed (its store, or loading it): no use retrying.
                    Ok((_, error)) => return Err(error),
                    // The actor took the job: it ran, or panicked and was dropped.
                    Err(_) => return outcome.await.map_err(|_| DocError::Aborted),
                },
            }
            self.registry.forget(&handle);
        }
        Err(DocError::Unloaded)
    }

    /// Applies a Yjs v1 update (from another system, a backup, a client over HTTP) as a peer's
    /// update would be: validated, refused whole if it would make the document larger than
    /// its limit, stored and broadcast.
    pub async fn apply_update(&self, update: &[u8]) -> Result<(), UpdateError> {
        self.apply(update, false).await
    }

    /// [`Document::apply_update`], answering only once the document, update included, is
    /// durable in the store: what an HTTP `204` promises. Unlike `apply_update` followed by
    /// [`Document::persisted`], the wait is registered by the actor that applied the update,
    /// so a store failure in between is reported instead of being met by a fresh actor that
    /// never saw the update.
    pub async fn apply_update_durable(&self, update: &[u8]) -> Result<(), UpdateError> {
        self.apply(update, true).await
    }

    async fn apply(&self, update: &[u8], durable: bool) -> Result<(), UpdateError> {
        for _ in 0..JOIN_ATTEMPTS {
            let received = ReceivedUpdate::decode(update).map_err(|_| UpdateError::Malformed)?;
            let handle = self.registry.handle(&self.name)?;
            match handle.apply(received, durable).await {
                Err(UpdateError::Document(DocError::Unloaded)) => self.registry.forget(&handle),
                other => return other,
            }
        }
        Err(UpdateError::Document(DocError::Unloaded))
    }

    /// Sends a custom event to every peer that opted in to events, from `"server"`, keeps it in
    /// the history, and returns its sequence number.
    pub async fn emit_event(
        &self,
        kind: impl Into<String>,
        data: serde_json::Value,
    ) -> Result<u64, DocError> {
        let (kind, data) = (kind.into(), data.to_string());
        for _ in 0..JOIN_ATTEMPTS {
            let handle = self.registry.handle(&self.name)?;
            match handle.emit(kind.clone(), data.clone()).await {
                Err(DocError::Unloaded) => self.registry.forget(&handle),
                other => return other,
            }
        }
        Err(DocError::Unloaded)
    }

    /// The whole document as a Yjs v1 update: what a client that has nothing needs.
    pub async fn encode_state(&self) -> Result<Vec<u8>, DocError> {
        self.read(|txn| txn.encode_state_as_update_v1(&StateVector::default()))
            .await
    }

    /// What a client with state vector `since` lacks, as a Yjs v1 update.
    pub async fn encode_diff(&self, since: StateVector) -> Result<Vec<u8>, DocError> {
        self.read(move |txn| txn.encode_state_as_update_v1(&since))
            .await
    }

    /// The document's state vector.
    pub async fn state_vector(&self) -> Result<StateVector, DocError> {
        self.read(|txn| txn.state_vector()).await
    }

    /// The document as JSON: each root type under its name, texts as strings, maps as objects,
    /// arrays as arrays, XML as nodes (`{"nodeName", "attributes", "children"}` for elements,
    /// `{"children"}` for fragments, `{"text", "delta"}` for XML text). A root whose type no
    /// client has declared to the server is read as what its content looks like (text, map or
    /// array), as Yjs does; a root holding only XML nodes is read as an XML fragment.
    ///
    /// A document stored before nesting was limited and nesting deeper than
    /// [`MAX_TYPE_NESTING`] is refused with [`DocError::NestedTooDeeply`].
    pub async fn get_json(&self) -> Result<serde_json::Value, DocError> {
        self.read(json_of).await?
    }

    /// [`Document::get_json`] together with the state vector of the state it shows.
    pub async fn get_json_with_state_vector(
        &self,
    ) -> Result<(serde_json::Value, StateVector), DocError> {
        self.read(|txn| json_of(txn).map(|json| (json, txn.state_vector())))
            .await?
    }

    /// Every client's current awareness state (presence), with the peer that published it.
    pub async fn presence(&self) -> Result<Vec<ClientState>, DocError> {
        self.on_actor(|handle| async move { handle.presence().await })
            .await
    }

    /// The number of peers and the size of the document.
    pub async fn stats(&self) -> Result<DocStats, DocError> {
        self.on_actor(|handle| async move { handle.stats().await })
            .await
    }

    /// Deletes the document: its peers are disconnected, the store forgets it, and the next use
    /// of the name starts an empty document.
    pub async fn delete(&self) -> Result<(), DocError> {
        self.on_actor(|handle| async move { handle.delete().await })
            .await
    }

    /// Runs a request on the document's actor, again on a new actor if it met one unloading.
    async fn on_actor<T, F, Fut>(&self, request: F) -> Result<T, DocError>
    where
        F: Fn(DocHandle) -> Fut,
        Fut: std::future::Future<Output = Result<T, DocError>>,
    {
        for _ in 0..JOIN_ATTEMPTS {
            let handle = self.registry.handle(&self.name)?;
            match request(handle.clone()).await {
                Err(DocError::Unloaded) => self.registry.forget(&handle),
                other => return other,
            }
        }
        Err(DocError::Unloaded)
    }

    /// Waits until every change made before this call is durable in the store.
    pub async fn persisted(&self) -> Result<(), DocError> {
        for _ in 0..JOIN_ATTEMPTS {
            let handle = self.registry.handle(&self.name)?;
            match handle.persist().await {
                Err(DocError::Unloaded) => self.registry.forget(&handle),
                other => return other,
            }
        }
        Err(DocError::Unloaded)
    }
}

/// A document as JSON, as [`Document::get_json`] shows it. Root types the server never
/// declared are undefined to yrs (`Out::UndefinedRef`); copying every root into a map of a
/// scratch document makes yrs infer their types, without declaring anything on the live one.
///
/// The copy and the conversion recurse as deep as the document's types nest, so the nesting
/// is measured first, without recursion, on the document's encoding (yrs' own iterators loop
/// forever over a root whose type was never declared): a document nesting deeper than
/// [`MAX_TYPE_NESTING`] (possible only in one stored before the limit) is refused.
pub fn json_of(txn: &Transaction<'_>) -> Result<Value, DocError> {
    let state = txn.encode_state_as_update_v1(&StateVector::default());
    if crate::nesting::deepest_in(&state).map_or(true, |depth| depth > MAX_TYPE_NESTING) {
        return Err(DocError::NestedTooDeeply {
            limit: MAX_TYPE_NESTING,
        });
    }
    let scratch = Doc::new();
    let roots = scratch.get_or_insert_map("roots");
    {
        let mut copy = scratch.transact_mut();
        for (name, value) in txn.root_refs() {
            roots.insert(&mut copy, name, value.as_prelim(txn));
        }
    }
    let copy = scratch.transact();
    Ok(Value::Object(
        roots
            .iter(&copy)
            .map(|(name, value)| (name.to_owned(), root_json(value, &copy)))
            .collect(),
    ))
}

/// A root's JSON. Updates do not say which type a root is; yrs infers a root of XML nodes to be
/// an array of them, which is what an XML fragment (ProseMirror's and Tiptap's document) is.
fn root_json<T: ReadTxn>(value: Out, txn: &T) -> Value {
    if let Out::YArray(array) = &value {
        let items: Vec<Out> = array.iter(txn).collect();
        let xml = |item: &Out| matches!(item, Out::YXmlElement(_) | Out::YXmlText(_));
        if !items.is_empty() && items.iter().all(xml) {
            let children: Vec<Value> = items.into_iter().map(|v| out_json(v, txn)).collect();
            return json!({ "children": children });
        }
    }
    out_json(value, txn)
}

fn out_json<T: ReadTxn>(value: Out, txn: &T) -> Value {
    match value {
        Out::Any(any) => serde_json::to_value(&any).unwrap_or(Value::Null),
        Out::YText(text) => Value::String(text.get_string(txn)),
        Out::YArray(array) => Value::Array(array.iter(txn).map(|v| out_json(v, txn)).collect()),
        Out::YMap(map) => Value::Object(
            map.iter(txn)
                .map(|(key, v)| (key.to_owned(), out_json(v, txn)))
                .collect(),
        ),
        Out::YXmlElement(element) => {
            let attributes: serde_json::Map<String, Value> = element
                .attributes(txn)
                .map(|(key, v)| (key.to_owned(), out_json(v, txn)))
                .collect();
            let children: Vec<Value> = element.children(txn).map(|c| xml_json(c, txn)).collect();
            json!({
                "nodeName": element.tag().as_ref(),
                "attributes": attributes,
                "children": children,
            })
        }
        Out::YXmlFragment(fragment) => {
            let children: Vec<Value> = fragment.children(txn).map(|c| xml_json(c, txn)).collect();
            json!({ "children": children })
        }
        Out::YXmlText(text) => xml_text_json(&text, txn),
        Out::YDoc(doc) => json!({ "guid": doc.guid().as_ref() }),
        _ => Value::Null,
    }
}

fn xml_json<T: ReadTxn>(node: XmlOut, txn: &T) -> Value {
    match node {
        XmlOut::Element(element) => out_json(Out::YXmlElement(element), txn),
        XmlOut::Fragment(fragment) => out_json(Out::YXmlFragment(fragment), txn),
        XmlOut::Text(text) => xml_text_json(&text, txn),
    }
}

/// XML text as its plain text and its formatted delta (marks such as bold are attributes).
fn xml_text_json<T: ReadTxn>(text: &XmlTextRef, txn: &T) -> Value {
    let mut plain = String::new();
    let delta: Vec<Value> = text
        .diff(txn, YChange::identity)
        .into_iter()
        .map(|chunk| {
            let insert = out_json(chunk.insert, txn);
            if let Value::String(s) = &insert {
                plain.push_str(s);
            }
            let mut entry = json!({ "insert": insert });
            if let Some(attributes) = chunk.attributes {
                let attributes: serde_json::Map<String, Value> = attributes
                    .iter()
                    .map(|(key, v)| {
                        (
                            key.to_string(),
                            serde_json::to_value(v).unwrap_or(Value::Null),
                        )
                    })
                    .collect();
                entry["attributes"] = Value::Object(attributes);
            }
            entry
        })
        .collect();
    json!({ "text": plain, "delta": delta })
}
