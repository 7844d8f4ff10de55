//! One cluster's API server as a [`Source`]: a kube-rs watcher per watched kind, whose events
//! are read into [`Resource`]s and handed to the registry's writer.
//!
//! The writer's complete list ([`Event::Init`] .. [`Event::InitDone`]) replaces every object,
//! while a watcher relists one kind at a time. So the source waits until every kind has been
//! listed once and then gives one complete list; after that, a kind that is listed again (a
//! watch that expired with `410 Gone`, a reconnection) is compared with the objects of that
//! kind in force and given as point events.

use crate::kinds::{watched_kinds, WatchedKind};
use futures::StreamExt;
use isthmus_api::{Diagnostic, ObjectMeta, ObjectReader, OtherObject, Resource, ResourceKey};
use isthmus_registry::{ClusterConfig, Event, Registry, Source};
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// The annotation `kubectl apply` keeps a whole copy of the object in: never stored.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A registry fed by an API server.
pub type KubeRegistry = Registry<KubeSource>;

/// What a watcher task reports.
enum Message {
    /// An event of kind number `.0`.
    Event(usize, Box<watcher::Event<DynamicObject>>),
    /// The watch of kind `.0` failed; it retries with backoff. `absent`: the API server does
    /// not serve the kind (a CRD that is not installed).
    Failed {
        kind: usize,
        error: String,
        absent: bool,
    },
}

/// What the source knows of one kind.
#[derive(Default)]
struct KindState {
    /// Until every kind has been listed once: this kind's objects so far.
    known: BTreeMap<ResourceKey, Arc<Resource>>,
    /// Whether a complete list of the kind arrived (or the kind is not served).
    listed: bool,
    /// Whether the API server does not serve the kind (last reported).
    absent: bool,
    /// A complete list being received.
    listing: Option<BTreeMap<ResourceKey, Arc<Resource>>>,
    /// The keys of that list, usable or not.
    seen: BTreeSet<ResourceKey>,
}

/// Watches one cluster's API server.
pub struct KubeSource {
    cluster: String,
    kinds: Vec<WatchedKind>,
    state: Vec<KindState>,
    rx: mpsc::UnboundedReceiver<Message>,
    wake: Arc<Notify>,
    reader: ObjectReader,
    /// Whether the complete first list has been given.
    synced: bool,
    /// Problems by object key (or `watch <Kind>`), the ones of the latest events.
    problems: BTreeMap<String, Vec<Diagnostic>>,
    problems_changed: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    access: String,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("cluster", &self.cluster)
            .field("access", &self.access)
            .field("synced", &self.synced)
            .finish()
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl KubeSource {
    /// Starts watching every kind of [`watched_kinds`] with `client` (must run inside a Tokio
    /// runtime). `access` says where the client points, for messages.
    pub fn start(cluster: impl Into<String>, client: kube::Client, access: String) -> Self {
        Self::start_kinds(
            cluster,
            client,
            access,
            watched_kinds(),
            Arc::new(Notify::new()),
        )
    }

    /// Starts watching every kind, notifying `wake` whenever events are waiting (one
    /// `Notify` can serve every source of a control plane).
    pub fn start_notifying(
        cluster: impl Into<String>,
        client: kube::Client,
        access: String,
        wake: Arc<Notify>,
    ) -> Self {
        Self::start_kinds(cluster, client, access, watched_kinds(), wake)
    }

    /// Starts watching `kinds`, notifying `wake`.
    pub fn start_kinds(
        cluster: impl Into<String>,
        client: kube::Client,
        access: String,
        kinds: Vec<WatchedKind>,
        wake: Arc<Notify>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                tokio::spawn(watch_kind(
                    i,
                    k.clone(),
                    client.clone(),
                    tx.clone(),
                    wake.clone(),
                ))
            })
            .collect();
        let state = kinds.iter().map(|_| KindState::default()).collect();
        KubeSource {
            cluster: cluster.into(),
            kinds,
            state,
            rx,
            wake,
            reader: ObjectReader::new(),
            synced: false,
            problems: BTreeMap::new(),
            problems_changed: false,
            tasks,
            access,
        }
    }

    /// Notified whenever events are waiting for [`Source::sync`].
    pub fn wakeup(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Where the source reads from (kubeconfig file or Secret, never its content).
    pub fn access(&self) -> &str {
        &self.access
    }

    /// The kinds not yet listed once (what a control plane waiting for its first complete
    /// list is waiting for).
    pub fn waiting_for(&self) -> Vec<&str> {
        self.kinds
            .iter()
            .zip(&self.state)
            .filter(|(_, s)| !s.listed)
            .map(|(k, _)| k.kind())
            .collect()
    }

    /// Reads one object; a problem is recorded under its key.
    fn read(&mut self, kind: usize, obj: DynamicObject) -> (ResourceKey, Option<Arc<Resource>>) {
        let value = to_value(&self.kinds[kind], obj);
        let key = key_of(&self.kinds[kind], &value);
        let problem_key = key.to_string();
        match self.reader.read(&value) {
            Ok((r, warnings)) => {
                self.set_problems(problem_key, warnings);
                (key, Some(Arc::new(r)))
            }
            Err(errors) => {
                let errors = errors
                    .into_iter()
                    .map(|mut d| {
                        d.message = format!(
                            "{} (in cluster {}; the last good version, if any, stays in force)",
                            d.message, self.cluster
                        );
                        d
                    })
                    .collect();
                self.set_problems(problem_key, errors);
                (key, None)
            }
        }
    }

    fn set_problems(&mut self, key: String, problems: Vec<Diagnostic>) {
        let changed = if problems.is_empty() {
            self.problems.remove(&key).is_some()
        } else {
            self.problems.insert(key, problems.clone()) != Some(problems)
        };
        self.problems_changed |= changed;
    }

    fn handle(&mut self, message: Message, store: &ClusterConfig, out: &mut Vec<Event>) {
        match message {
            Message::Failed {
                kind,
                error,
                absent,
            } => {
                let name = self.kinds[kind].kind().to_string();
                if absent && self.kinds[kind].custom {
                    // No CRD, so no objects: an empty list (objects of a CRD that went away
                    // go with it).
                    if !self.state[kind].absent {
                        tracing::info!(cluster = %self.cluster, kind = %name, "the API server does not serve this kind (CRD not installed): no objects of it");
                    }
                    self.state[kind].absent = true;
                    self.set_problems(format!("watch {name}"), Vec::new());
                    self.state[kind].listing = Some(BTreeMap::new());
                    self.list_done(kind, store, out);
                    return;
                }
                tracing::warn!(cluster = %self.cluster, kind = %name, %error, "watch failed; retrying with backoff");
                let d = Diagnostic::error(format!(
                    "cluster {}: watching {name} through {}: {error}; retrying, the last objects read stay in force",
                    self.cluster, self.access
                ));
                self.set_problems(format!("watch {name}"), vec![d]);
            }
            Message::Event(kind, event) => {
                let name = self.kinds[kind].kind().to_string();
                self.set_problems(format!("watch {name}"), Vec::new());
                self.state[kind].absent = false;
                match *event {
                    watcher::Event::Init => {
                        self.state[kind].listing = Some(BTreeMap::new());
                        self.state[kind].seen.clear();
                    }
                    watcher::Event::InitApply(obj) => {
                        let (key, read) = self.read(kind, obj);
                        // Unusable: keep the version in force, if any.
                        let kept = read
                            .or_else(|| store.resources.get(&key).cloned())
                            .or_else(|| self.state[kind].known.get(&key).cloned());
                        let state = &mut self.state[kind];
                        state.seen.insert(key.clone());
                        if let (Some(listing), Some(r)) = (&mut state.listing, kept) {
                            listing.insert(key, r);
                        }
                    }
                    watcher::Event::InitDone => self.list_done(kind, store, out),
                    watcher::Event::Apply(obj) => {
                        let (key, read) = self.read(kind, obj);
                        if let Some(r) = read {
                            if self.synced {
                                out.push(Event::Apply(r));
                            } else {
                                self.state[kind].known.insert(key, r);
                            }
                        }
                    }
                    watcher::Event::Delete(obj) => {
                        let value = to_value(&self.kinds[kind], obj);
                        let key = key_of(&self.kinds[kind], &value);
                        self.set_problems(key.to_string(), Vec::new());
                        if self.synced {
                            out.push(Event::Delete(Arc::new(tombstone(&self.kinds[kind], &key))));
                        } else {
                            self.state[kind].known.remove(&key);
                        }
                    }
                }
            }
        }
    }

    /// A complete list of `kind` arrived.
    fn list_done(&mut self, kind: usize, store: &ClusterConfig, out: &mut Vec<Event>) {
        let Some(listing) = self.state[kind].listing.take() else {
            return;
        };
        let name = self.kinds[kind].kind().to_string();
        // Problems of objects that are no longer listed go.
        let seen = std::mem::take(&mut self.state[kind].seen);
        let stale: Vec<String> = self
            .problems
            .keys()
            .filter(|k| {
                k.split('/').next() == Some(name.as_str())
                    && !seen.iter().any(|s| s.to_string() == **k)
            })
            .cloned()
            .collect();
        for k in stale {
            self.set_problems(k, Vec::new());
        }
        self.state[kind].listed = true;
        if !self.synced {
            self.state[kind].known = listing;
            if self.state.iter().all(|s| s.listed) {
                self.synced = true;
                out.push(Event::Init);
                for s in &mut self.state {
                    out.extend(
                        std::mem::take(&mut s.known)
                            .into_values()
                            .map(Event::InitApply),
                    );
                }
                out.push(Event::InitDone);
                tracing::info!(cluster = %self.cluster, access = %self.access, "complete first list of every watched kind read");
            }
            return;
        }
        // The list supersedes the point events of this kind not yet applied.
        out.retain(|e| match e {
            Event::Apply(r) | Event::Delete(r) | Event::InitApply(r) => r.object.kind() != name,
            _ => true,
        });
        for r in store.of_kind(&name) {
            if !listing.contains_key(&r.key()) {
                out.push(Event::Delete(r.clone()));
            }
        }
        out.extend(listing.into_values().map(Event::Apply));
    }
}

impl Source for KubeSource {
    fn cluster(&self) -> &str {
        &self.cluster
    }

    fn sync(&mut self, store: &ClusterConfig, _hint: &isthmus_registry::Changes) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(message) = self.rx.try_recv() {
            self.handle(message, store, &mut out);
        }
        if std::mem::take(&mut self.problems_changed) {
            out.push(Event::Problems(
                self.problems.values().flatten().cloned().collect(),
            ));
        }
        out
    }
}

/// Runs one kind's watcher until the source is dropped.
async fn watch_kind(
    index: usize,
    kind: WatchedKind,
    client: kube::Client,
    tx: mpsc::UnboundedSender<Message>,
    wake: Arc<Notify>,
) {
    let api: Api<DynamicObject> = match kind.namespace {
        Some(ns) => Api::namespaced_with(client, ns, &kind.api),
        None => Api::all_with(client, &kind.api),
    };
    let mut config = watcher::Config::default().any_semantic();
    if let Some(l) = kind.labels {
        config = config.labels(l);
    }
    if let Some(f) = kind.fields {
        config = config.fields(f);
    }
    let stream = watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        let message = match item {
            Ok(event) => Message::Event(index, Box::new(event)),
            Err(e) => Message::Failed {
                kind: index,
                absent: is_not_found(&e),
                error: describe(&e),
            },
        };
        if tx.send(message).is_err() {
            return;
        }
        wake.notify_one();
    }
}

fn is_not_found(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 404,
        watcher::Error::WatchError(s) => s.code == 404,
        _ => false,
    }
}

/// A watch error in one line: the API server's code and message, or the transport's.
fn describe(e: &watcher::Error) -> String {
    let api = |s: &kube::core::Status| format!("{} {} ({})", s.code, s.message, s.reason);
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => api(s),
        watcher::Error::WatchError(s) => api(s),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let next = s.to_string();
                if !text.contains(&next) {
                    text = format!("{text}: {next}");
                }
                source = s.source();
            }
            text
        }
    }
}

/// The object as the reader takes it: `apiVersion` and `kind` set (list items may lack
/// them), and without what only takes memory (managed fields, `kubectl apply`'s copy).
fn to_value(kind: &WatchedKind, obj: DynamicObject) -> serde_json::Value {
    let mut value = serde_json::to_value(obj).unwrap_or_default();
    drop_nulls(&mut value);
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), kind.api.api_version.clone().into());
        map.insert("kind".into(), kind.api.kind.clone().into());
        if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("managedFields");
            if let Some(a) = meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
                a.remove(LAST_APPLIED);
            }
        }
    }
    value
}

/// Removes the fields whose value is `null`: to the API an explicit null is the field left
/// out (an EndpointSlice without endpoints has `"endpoints": null`), and the reader takes a
/// missing field for its default.
fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn key_of(kind: &WatchedKind, value: &serde_json::Value) -> ResourceKey {
    let get = |f: &str| {
        value
            .pointer(f)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    ResourceKey {
        kind: kind.api.kind.clone(),
        namespace: get("/metadata/namespace"),
        name: get("/metadata/name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_are_fields_left_out() {
        let mut v =
            serde_json::json!({"a": null, "b": {"c": null, "d": [ {"e": null, "f": 1} ]}, "g": 2});
        drop_nulls(&mut v);
        assert_eq!(v, serde_json::json!({"b": {"d": [{"f": 1}]}, "g": 2}));
    }

    #[test]
    fn a_slice_without_endpoints_reads() {
        let kind = watched_kinds()
            .into_iter()
            .find(|k| k.kind() == "EndpointSlice")
            .expect("kind");
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-x", "namespace": "foo", "managedFields": [{"manager": "kcm"}],
                         "annotations": {LAST_APPLIED: "{...}", "keep": "me"}},
            "addressType": "IPv4", "endpoints": null, "ports": null
        }))
        .expect("object");
        let value = to_value(&kind, obj);
        assert!(value.pointer("/metadata/managedFields").is_none());
        assert!(value.pointer("/metadata/annotations/keep").is_some());
        assert!(value
            .pointer(&format!(
                "/metadata/annotations/{}",
                LAST_APPLIED.replace('/', "~1")
            ))
            .is_none());
        let (r, _) = ObjectReader::new().read(&value).expect("reads");
        assert_eq!(r.key().to_string(), "EndpointSlice/foo/web-x");
    }
}

/// An object that stands for `key` in a delete (only its key counts).
fn tombstone(kind: &WatchedKind, key: &ResourceKey) -> Resource {
    Resource {
        object: isthmus_api::Object::Other(Box::new(OtherObject {
            api_version: kind.api.api_version.clone(),
            kind: key.kind.clone(),
            metadata: ObjectMeta {
                name: key.name.clone().into(),
                namespace: key.namespace.as_str().into(),
                ..Default::default()
            },
        })),
        origin: Default::default(),
    }
}
