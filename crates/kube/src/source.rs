//! One cluster's API server as a [`Source`]: a kube-rs watcher per watched kind, whose events
//! are read into [`Resource`]s and handed to the registry's writer.
//!
//! The writer's complete list ([`Event::Init`] .. [`Event::InitDone`]) replaces every object,
//! while a watcher relists one kind at a time. So the source waits until every kind has been
//! listed once and then gives one complete list; after that, a kind that is listed again (a
//! watch that expired with `410 Gone`, a reconnection) is compared with the objects of that
//! kind in force and given as point events.

use crate::events::EventKind;
use crate::kinds::{remote_config_kinds, remote_kinds, watched_kinds, WatchedKind};
use crate::served;
use crate::wire;
use futures::StreamExt;
use isthmus_api::{
    Diagnostic, KeyRef, ObjectMeta, ObjectReader, OtherObject, Resource, ResourceKey,
};
use isthmus_registry::{ClusterConfig, Event, Registry, Resources, Source};
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// The annotation `kubectl apply` keeps a whole copy of the object in: never stored.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A registry fed by an API server.
pub type KubeRegistry = Registry<KubeSource>;

/// An object as its watcher task read it (the API's JSON is read where it arrives and
/// dropped at once, so that no object waits in the queue as a JSON tree).
enum Read {
    /// Usable, with any warnings. Its key is made from it where it is taken: made on the
    /// reader thread, the key's three strings would be freed by the source's thread,
    /// leaving holes among the objects kept in the reader's arena that nothing fills once a
    /// list is read (about 100 bytes per object).
    Good(Arc<Resource>, Vec<Diagnostic>),
    /// Not usable: why.
    Bad(ResourceKey, Vec<Diagnostic>),
    /// Only its key counts (a delete).
    Key(ResourceKey),
}

impl Read {
    fn key(&self) -> ResourceKey {
        match self {
            Read::Good(r, _) => r.key(),
            Read::Bad(k, _) | Read::Key(k) => k.clone(),
        }
    }
}

/// What a watcher task reports.
enum Message {
    /// An event of kind number `.0`.
    Event(usize, watcher::Event<Read>),
    /// The periodic check of the API server and credential: `None` when it answered. A
    /// revoked token or a server gone silent shows here within [`PROBE_EVERY`], while
    /// watches that are already open could keep quiet for minutes.
    Probe(Option<String>),
    /// A remote cluster's Istio objects, counted (see [`census`]).
    Census(Vec<Counted>),
    /// The watch of kind `.0` failed; it retries with backoff. `absent`: the API server does
    /// not serve the kind (a CRD that is not installed).
    Failed {
        kind: usize,
        error: String,
        absent: bool,
    },
}

/// What the source knows of one kind.
///
/// No key of its own is made for an object: a list of a cluster's pods is thousands of them,
/// and a map keyed by [`ResourceKey`] would allocate three strings and a node slot for each,
/// on the control plane's thread, among what the model keeps, only to free them once the
/// list is in. Objects are kept in vectors and found by the key they carry.
#[derive(Default)]
struct KindState {
    /// Until every kind has been listed once: this kind's objects so far.
    known: Resources,
    /// Whether a complete list arrived (or the kind is not served).
    listed: bool,
    /// Whether the API server does not serve the kind (last reported).
    absent: bool,
    /// A complete list being received: its objects as they came (of an unusable one, the
    /// version in force, if any).
    listing: Option<Vec<Arc<Resource>>>,
    /// The keys of that list's objects that could not be read.
    unusable: Vec<ResourceKey>,
    /// Whether the kind's changes move endpoints only ([`ENDPOINT_KINDS`]).
    moves_endpoints: bool,
}

impl KindState {
    /// The state of `kind` before anything is read.
    fn of(kind: &WatchedKind) -> Self {
        KindState {
            moves_endpoints: ENDPOINT_KINDS.contains(&kind.kind()),
            ..KindState::default()
        }
    }
}

/// An object as the source takes it from the reader: usable, or the key of one that is not.
enum Taken {
    Good(Arc<Resource>),
    Bad(ResourceKey),
}

impl Taken {
    fn key(&self) -> KeyRef<'_> {
        match self {
            Taken::Good(r) => KeyRef::of(r),
            Taken::Bad(k) => KeyRef::from_key(k),
        }
    }
}

/// What the reader thread hands to the source, taken by the source all at once.
///
/// Not a channel: a channel allocates a block for every 32 messages on the sending thread,
/// and while the source waits out its debounce, a whole list's blocks are outstanding,
/// placed among the objects the reader keeps; freed, they leave holes in the reader's
/// arena that nothing fills once the list is read. A vector grows by doubling: few of its
/// buffers are freed, and the large ones are whole pages that go back to the system.
#[derive(Default)]
struct Inbox(std::sync::Mutex<Vec<Message>>);

/// The source is gone: nothing takes messages any more.
#[derive(Debug)]
struct Closed;

impl Inbox {
    /// Hands `message` to the source (`self`: the reader's handle); `Err` once the source is
    /// gone.
    fn send(self: &Arc<Self>, message: Message) -> Result<(), Closed> {
        if Arc::strong_count(self) == 1 {
            return Err(Closed);
        }
        self.messages().push(message);
        Ok(())
    }

    /// Every message handed over so far, in order.
    fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.messages())
    }

    /// The messages, locked (a push cannot leave them half made, so a poisoned lock is
    /// taken as it is).
    fn messages(&self) -> std::sync::MutexGuard<'_, Vec<Message>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The kinds whose changes move endpoints only. A pod's change is one event of one of them
/// (the EndpointSlice controller's slices are not watched); a change of configuration may
/// come with others, from the same `kubectl apply`.
const ENDPOINT_KINDS: [&str; 3] = ["Pod", "EndpointSlice", "Node"];

/// What a source has received and not yet given ([`KubeSource::pending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Nothing.
    Nothing,
    /// Events of Pods, EndpointSlices and Nodes only.
    Endpoints,
    /// Something else: another kind's event, a failing watch, a probe, a census.
    Other,
}

/// Watches one cluster's API server.
pub struct KubeSource {
    cluster: String,
    kinds: Vec<WatchedKind>,
    state: Vec<KindState>,
    inbox: Arc<Inbox>,
    wake: Arc<Notify>,
    /// Whether the complete first list has been given.
    synced: bool,
    /// Problems by object key (or `watch <Kind>`), the ones of the latest events.
    problems: BTreeMap<String, Vec<Diagnostic>>,
    problems_changed: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    access: String,
    /// The kinds whose watch is failing, with the error, and since when the API server has
    /// not been read (reported as one problem of the cluster, not one per kind).
    failing: BTreeMap<String, String>,
    failing_since: Option<k8s_openapi::jiff::Timestamp>,
    /// A remote cluster's latest census (none before the first, nor for the own cluster),
    /// and whether it is to be weighed again.
    counted: Option<Vec<Counted>>,
    census_changed: bool,
}

/// `secs` since the epoch as RFC 3339 (UTC, to the second).
pub fn rfc3339(secs: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(secs.min(i64::MAX as u64) as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// How often the API server and the credential are checked (a `GET /version` with the
/// credential: a revoked or expired token is refused there at once).
pub const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The name the credential check's failures go by in a cluster's problem.
const PROBE: &str = "the credential check";

/// Checks the API server with the credential every [`PROBE_EVERY`], saying when the answer
/// changes (the first answer too), until the source is dropped.
async fn probe(client: kube::Client, raw: std::sync::mpsc::Sender<Raw>) {
    let mut last: Option<Option<String>> = None;
    loop {
        let now = match tokio::time::timeout(PROBE_EVERY, client.apiserver_version()).await {
            Ok(Ok(_)) => None,
            Ok(Err(kube::Error::Api(s))) => {
                Some(format!("{} {} ({})", s.code, s.message, s.reason))
            }
            Ok(Err(e)) => Some(describe_error(&e)),
            Err(_) => Some(format!("no answer within {}s", PROBE_EVERY.as_secs())),
        };
        if last.as_ref() != Some(&now) {
            if raw.send(Raw::Probe(now.clone())).is_err() {
                return;
            }
            last = Some(now);
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// How often a remote cluster's Istio objects are counted ([`census`]).
pub const CENSUS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What a remote cluster holds of one Istio kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Counted {
    /// Objects of it.
    Some {
        /// `Kind`.
        kind: String,
        /// How many (at least, when `more`).
        count: u64,
        /// Whether there are more than `count` (the API server said so without a number).
        more: bool,
        /// The first one's `namespace/name`.
        first: String,
    },
    /// The API server refused to list it (the credential may not): whether there are any
    /// is unknown.
    Refused {
        /// `Kind`.
        kind: String,
        /// The API server's answer.
        error: String,
    },
}

/// Counts `kinds`' objects in a remote cluster every [`CENSUS_EVERY`] (one list of at most
/// one object's metadata per kind: the API server gives the rest as a number) and says what
/// it found, until the source is dropped. A kind the server does not serve (CRD not
/// installed) has none; one served at another version only (CRDs older than Istio 1.22) is
/// counted there. A kind the API server refuses to list is reported as such; one that
/// cannot be listed for want of an answer keeps its last count (the credential check reports
/// an API server that cannot be reached).
async fn census(
    client: kube::Client,
    mut kinds: Vec<WatchedKind>,
    raw: std::sync::mpsc::Sender<Raw>,
) {
    use kube::api::ListParams;
    let mut counts: Vec<Option<Counted>> = vec![None; kinds.len()];
    loop {
        for (k, count) in kinds.iter_mut().zip(&mut counts) {
            let list = |api: &kube::discovery::ApiResource| {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), api);
                async move {
                    tokio::time::timeout(
                        PROBE_EVERY,
                        api.list_metadata(&ListParams::default().limit(1)),
                    )
                    .await
                }
            };
            let mut listed = list(&k.api).await;
            if matches!(&listed, Ok(Err(kube::Error::Api(s))) if s.code == 404) && k.custom {
                match served::served(&client, &k.api, PROBE_EVERY).await {
                    Ok(Some(api)) if api.version != k.api.version => {
                        k.api = api;
                        listed = list(&k.api).await;
                    }
                    Ok(_) => {}
                    // Unknown whether another version serves it: the last count stays.
                    Err(e) => {
                        tracing::debug!(kind = k.kind(), error = %describe_error(&e), "cannot ask a remote cluster which version serves this kind; the last count stays");
                        continue;
                    }
                }
            }
            *count = match listed {
                Ok(Ok(list)) => list.items.first().map(|o| {
                    let remaining = list
                        .metadata
                        .remaining_item_count
                        .and_then(|n| u64::try_from(n).ok());
                    Counted::Some {
                        kind: k.kind().to_string(),
                        count: list.items.len() as u64 + remaining.unwrap_or(0),
                        // The count of the rest is optional; a continue token says there is
                        // a rest.
                        more: remaining.is_none()
                            && list
                                .metadata
                                .continue_
                                .as_deref()
                                .is_some_and(|c| !c.is_empty()),
                        first: format!(
                            "{}/{}",
                            o.metadata.namespace.as_deref().unwrap_or_default(),
                            o.metadata.name.as_deref().unwrap_or_default()
                        ),
                    }
                }),
                Ok(Err(kube::Error::Api(s))) if s.code == 404 => None,
                Ok(Err(kube::Error::Api(s))) => Some(Counted::Refused {
                    kind: k.kind().to_string(),
                    error: format!("{} {}", s.code, s.reason),
                }),
                Ok(Err(e)) => {
                    tracing::debug!(kind = k.kind(), error = %describe_error(&e), "cannot count a remote cluster's objects of this kind; the last count stays");
                    continue;
                }
                Err(_) => continue,
            };
        }
        // Said every round: the source weighs it against what it holds then (whether the
        // cluster runs a control plane of its own).
        let now: Vec<Counted> = counts.iter().flatten().cloned().collect();
        if raw.send(Raw::Census(now)).is_err() {
            return;
        }
        tokio::time::sleep(CENSUS_EVERY).await;
    }
}

/// The Service that says whether a cluster runs a control plane of its own.
const ISTIOD: isthmus_api::KeyRef<'static> = isthmus_api::KeyRef {
    kind: "Service",
    namespace: "istio-system",
    name: "istiod",
};

/// Whether `event` is about [`ISTIOD`], or begins a complete list.
fn is_istiod_event(event: &Event) -> bool {
    match event {
        Event::Apply(r) | Event::Delete(r) | Event::InitApply(r) => {
            isthmus_api::KeyRef::of(r) == ISTIOD
        }
        Event::Init => true,
        Event::InitDone | Event::Problems(_) => false,
    }
}

/// Whether a cluster runs a control plane of its own once `events` are applied to `store`:
/// its `istio-system/istiod` Service selects pods (Istio's and Isthmus's remote profile make
/// it a Service without a selector, whose endpoints are the primary's control plane).
fn runs_own_control_plane(store: &ClusterConfig, events: &[Event]) -> bool {
    let selects = |r: &Resource| match &r.object {
        isthmus_api::Object::Service(s) => !s.spec.selector.is_empty(),
        _ => false,
    };
    // The last word on it among the events: its latest version, its delete, or a complete
    // list that did not hold it.
    for e in events.iter().rev() {
        match e {
            Event::Apply(r) | Event::InitApply(r) if isthmus_api::KeyRef::of(r) == ISTIOD => {
                return selects(r);
            }
            Event::Delete(r) if isthmus_api::KeyRef::of(r) == ISTIOD => return false,
            Event::Init => return false,
            _ => {}
        }
    }
    store.resources.get_ref(ISTIOD).is_some_and(|r| selects(r))
}

/// The warning for a remote cluster holding Istio objects, or whose objects cannot be
/// counted (none when it holds none, or runs a control plane of its own that applies them).
fn census_problem(cluster: &str, counted: &[Counted], own_control_plane: bool) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    let mut refused = Vec::new();
    for c in counted {
        match c {
            Counted::Some {
                kind,
                count,
                more,
                first,
            } => found.push(match (count, more) {
                (1, false) => format!("1 {kind} ({first})"),
                (n, false) => format!("{n} {kind} ({first} and {} more)", n - 1),
                (n, true) => format!("{n} or more {kind} ({first} and more)"),
            }),
            Counted::Refused { kind, error } => refused.push(format!("{kind}: {error}")),
        }
    }
    let mut out = Vec::new();
    if !found.is_empty() && !own_control_plane {
        out.push(Diagnostic::warning(format!(
            "cluster {cluster} holds Istio configuration that no control plane applies: {}. Isthmus applies the Istio configuration of its own cluster only (so does istiod, but for a remote cluster's WorkloadEntries and gateways' Secrets); write it in this control plane's cluster",
            found.join(", ")
        )));
    }
    if !refused.is_empty() {
        out.push(Diagnostic::warning(format!(
            "cluster {cluster}: cannot tell whether it holds Istio configuration that is not applied: its API server refuses to list {} (the credential needs `list` on Istio's kinds, as `isthmus create-remote-secret` grants)",
            refused.join(", ")
        )));
    }
    out
}

/// An error with its sources, in one line.
fn describe_error(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}

/// Why an API server cannot be read, in a word (for messages and metrics).
pub fn failure_reason(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if status(&e, "401") || e.contains("unauthorized") {
        "unauthorized (the token or certificate is not accepted)"
    } else if status(&e, "403") || e.contains("forbidden") {
        "forbidden (the credential lacks read rights)"
    } else if e.contains("certificate") || e.contains("tls") || e.contains("unknownissuer") {
        "TLS (the server's certificate is not trusted by the kubeconfig's CA)"
    } else if e.contains("connect")
        || e.contains("timed out")
        || e.contains("refused")
        || e.contains("dns")
    {
        "unreachable"
    } else {
        "error"
    }
}

/// Whether `text` holds the HTTP status `code` as a number of its own, not inside an address
/// or port (`127.0.0.1:40145`, `10.0.40.1`).
fn status(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        let part_of_number = |c: char| c.is_ascii_digit() || c == '.' || c == ':';
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        !before.is_some_and(part_of_number) && !after.is_some_and(part_of_number)
    })
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

    /// Starts reading a remote cluster: watching [`remote_kinds`] and counting its Istio
    /// objects ([`remote_config_kinds`], reported as not applied), notifying `wake`.
    pub fn start_remote(
        cluster: impl Into<String>,
        client: kube::Client,
        access: String,
        wake: Arc<Notify>,
    ) -> Self {
        Self::start_counting(
            cluster,
            client,
            access,
            remote_kinds(),
            remote_config_kinds(),
            wake,
        )
    }

    /// Starts watching `kinds`, notifying `wake`.
    pub fn start_kinds(
        cluster: impl Into<String>,
        client: kube::Client,
        access: String,
        kinds: Vec<WatchedKind>,
        wake: Arc<Notify>,
    ) -> Self {
        Self::start_counting(cluster, client, access, kinds, Vec::new(), wake)
    }

    /// Starts watching `kinds` and counting the objects of `counted` ([`census`]; none:
    /// no census), notifying `wake`.
    fn start_counting(
        cluster: impl Into<String>,
        client: kube::Client,
        access: String,
        kinds: Vec<WatchedKind>,
        counted: Vec<WatchedKind>,
        wake: Arc<Notify>,
    ) -> Self {
        let inbox = Arc::new(Inbox::default());
        let tx = inbox.clone();
        let cluster = cluster.into();
        // Every object is read on one thread of its own: one reader for every kind (a
        // Service's selector and its pods' labels are one map), and the objects kept are
        // allocated apart from the JSON that the watchers parse and drop, so that the
        // memory of a large list can go back to the system once it is read.
        let (raw_tx, raw_rx) = std::sync::mpsc::channel::<Raw>();
        let reader_kinds = kinds.clone();
        let reader_wake = wake.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("kube-reader-{cluster}"))
            .spawn(move || read_loop(reader_kinds, raw_rx, tx, reader_wake));
        if let Err(e) = spawned {
            tracing::error!(%cluster, error = %e, "cannot start the thread that reads the API server's objects");
        }
        let mut tasks: Vec<tokio::task::JoinHandle<()>> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let (k, client, raw) = (k.clone(), client.clone(), raw_tx.clone());
                // Each kind read in one pass, keeping only what the mesh reads of it.
                match k.api.kind.as_str() {
                    "Pod" => tokio::spawn(watch_kind::<wire::PodFields>(i, k, client, raw)),
                    "Node" => tokio::spawn(watch_kind::<wire::NoFields>(i, k, client, raw)),
                    _ => tokio::spawn(watch_kind::<wire::Tree>(i, k, client, raw)),
                }
            })
            .collect();
        tasks.push(tokio::spawn(probe(client.clone(), raw_tx.clone())));
        if !counted.is_empty() {
            tasks.push(tokio::spawn(census(
                client.clone(),
                counted,
                raw_tx.clone(),
            )));
        }
        let state = kinds.iter().map(KindState::of).collect();
        KubeSource {
            cluster,
            kinds,
            state,
            inbox,
            wake,
            synced: false,
            problems: BTreeMap::new(),
            problems_changed: false,
            tasks,
            access,
            failing: BTreeMap::new(),
            failing_since: None,
            counted: None,
            census_changed: false,
        }
    }

    /// Since when the API server cannot be read (some watch fails), if it cannot.
    pub fn failing_since(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        self.failing_since
    }

    /// Records that the watch of `kind` fails with `error` (`None`: it works again) and
    /// reports the cluster's one problem: which cluster, through what, why, since when.
    fn set_failing(&mut self, kind: &str, error: Option<String>) {
        match error {
            Some(e) => {
                self.failing.insert(kind.to_string(), e);
                if self.failing_since.is_none() {
                    let now = k8s_openapi::jiff::Timestamp::now().as_second();
                    self.failing_since = k8s_openapi::jiff::Timestamp::from_second(now).ok();
                }
            }
            None => {
                if self.failing.remove(kind).is_none() {
                    return;
                }
                if self.failing.is_empty() {
                    self.failing_since = None;
                    tracing::info!(cluster = %self.cluster, access = %self.access, "the API server is read again");
                }
            }
        }
        let mut by_error: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (k, e) in &self.failing {
            by_error.entry(e.as_str()).or_default().push(k.as_str());
        }
        if by_error.is_empty() {
            self.set_problems("api server".to_string(), Vec::new());
            return;
        }
        // One problem for the cluster: the reason in a word (the credential check's when it
        // fails: it speaks for the server and the credential), then each distinct error
        // with what it stops.
        let reason = failure_reason(
            self.failing
                .get(PROBE)
                .or_else(|| self.failing.values().next())
                .map(String::as_str)
                .unwrap_or_default(),
        );
        let details: Vec<String> = by_error
            .into_iter()
            .map(|(error, kinds)| {
                let watched = kinds.iter().filter(|k| **k != PROBE).count();
                let which = if watched == self.kinds.len() && watched < kinds.len() {
                    format!("every watched kind and {PROBE}")
                } else if watched == self.kinds.len() {
                    "every watched kind".to_string()
                } else {
                    kinds.join(", ")
                };
                format!("{which}: {error}")
            })
            .collect();
        let kept = if self.synced {
            "the last objects read stay in force"
        } else {
            "nothing read yet, so none of its services or endpoints are in the mesh"
        };
        let problems = vec![Diagnostic::error(format!(
            "cluster {}: cannot read the API server through {}: {reason} since {} ({}); retrying with backoff, {kept}",
            self.cluster,
            self.access,
            self.failing_since.map(|t| t.to_string()).unwrap_or_default(),
            details.join("; "),
        ))];
        self.set_problems("api server".to_string(), problems);
    }

    /// Notified whenever events are waiting for [`Source::sync`].
    pub fn wakeup(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Where the source reads from (kubeconfig file or Secret, never its content).
    pub fn access(&self) -> &str {
        &self.access
    }

    /// How many kinds it watches.
    pub fn watched(&self) -> usize {
        self.kinds.len()
    }

    /// What the messages waiting to be read are: nothing, only events of the kinds that move
    /// endpoints (Pods, EndpointSlices, Nodes), or anything else.
    pub fn pending(&self) -> Pending {
        let messages = self.inbox.messages();
        if messages.is_empty() {
            return Pending::Nothing;
        }
        let endpoints = messages.iter().all(|m| {
            matches!(m, Message::Event(k, _) if self.state.get(*k).is_some_and(|s| s.moves_endpoints))
        });
        if endpoints {
            Pending::Endpoints
        } else {
            Pending::Other
        }
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

    /// Takes one object as its task read it (not a delete's); a problem is recorded under
    /// its key.
    fn take(&mut self, read: Read) -> Taken {
        match read {
            Read::Good(r, warnings) => {
                // Most objects have no problem, and none before: no key is written for them.
                if !(warnings.is_empty() && self.problems.is_empty()) {
                    self.set_problems(KeyRef::of(&r).to_string(), warnings);
                }
                Taken::Good(r)
            }
            Read::Bad(key, errors) => {
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
                self.set_problems(key.to_string(), errors);
                Taken::Bad(key)
            }
            Read::Key(key) => Taken::Bad(key),
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
            Message::Probe(result) => {
                if let Some(e) = &result {
                    if self.failing.get(PROBE) != Some(e) {
                        tracing::warn!(cluster = %self.cluster, error = %e, "the API server does not answer the credential check");
                    }
                }
                self.set_failing(PROBE, result);
            }
            Message::Census(counted) => {
                self.census_changed |= self.counted.as_ref() != Some(&counted);
                self.counted = Some(counted);
            }
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
                    self.set_failing(&name, None);
                    self.state[kind].listing = Some(Vec::new());
                    // Nor any unusable one of a list that was cut off.
                    self.state[kind].unusable.clear();
                    self.list_done(kind, store, out);
                    return;
                }
                if self.failing.get(&name) != Some(&error) {
                    tracing::warn!(cluster = %self.cluster, kind = %name, %error, "watch failed; retrying with backoff");
                }
                self.set_failing(&name, Some(error));
            }
            Message::Event(kind, event) => {
                let name = self.kinds[kind].kind().to_string();
                self.set_failing(&name, None);
                self.state[kind].absent = false;
                match event {
                    watcher::Event::Init => {
                        self.state[kind].listing = Some(Vec::new());
                        self.state[kind].unusable.clear();
                    }
                    watcher::Event::InitApply(obj) => {
                        let taken = self.take(obj);
                        let in_force = store.resources.get_ref(taken.key());
                        if in_force.is_none() {
                            self.count(kind, EventKind::Add);
                        }
                        let state = &mut self.state[kind];
                        let kept = match taken {
                            Taken::Good(r) => Some(r),
                            // Unusable: keep the version in force, if any.
                            Taken::Bad(key) => {
                                let kept = in_force.cloned().or_else(|| {
                                    state.known.get_ref(KeyRef::from_key(&key)).cloned()
                                });
                                state.unusable.push(key);
                                kept
                            }
                        };
                        if let (Some(listing), Some(r)) = (&mut state.listing, kept) {
                            listing.push(r);
                        }
                    }
                    watcher::Event::InitDone => self.list_done(kind, store, out),
                    watcher::Event::Apply(obj) => {
                        let taken = self.take(obj);
                        let held = store.resources.get_ref(taken.key()).is_some()
                            || self.state[kind].known.get_ref(taken.key()).is_some();
                        self.count(
                            kind,
                            if held {
                                EventKind::Update
                            } else {
                                EventKind::Add
                            },
                        );
                        if let Taken::Good(r) = taken {
                            if self.synced {
                                out.push(Event::Apply(r));
                            } else {
                                self.state[kind].known.put(r);
                            }
                        }
                    }
                    watcher::Event::Delete(obj) => {
                        let key = obj.key();
                        self.count(kind, EventKind::Delete);
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

    /// Counts an event of the `kind`-th watched kind.
    fn count(&self, kind: usize, event: EventKind) {
        let watched = &self.kinds[kind];
        crate::events::events().count(watched.kind(), watched.custom, event);
    }

    /// A complete list of `kind` arrived.
    fn list_done(&mut self, kind: usize, store: &ClusterConfig, out: &mut Vec<Event>) {
        let Some(listing) = self.state[kind].listing.take() else {
            return;
        };
        let listing: Resources = listing.into_iter().collect();
        let unusable = std::mem::take(&mut self.state[kind].unusable);
        let name = self.kinds[kind].kind().to_string();
        // Problems of objects that are no longer listed go (the keys of the list are written
        // out only when there are problems of the kind).
        let of_kind = |k: &String| k.split('/').next() == Some(name.as_str());
        if self.problems.keys().any(of_kind) {
            let seen: std::collections::HashSet<String> = listing
                .keys()
                .map(|k| k.to_string())
                .chain(unusable.iter().map(ResourceKey::to_string))
                .collect();
            let stale: Vec<String> = self
                .problems
                .keys()
                .filter(|k| of_kind(k) && !seen.contains(*k))
                .cloned()
                .collect();
            for k in stale {
                self.set_problems(k, Vec::new());
            }
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
                            .into_vec()
                            .into_iter()
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
            if listing.get_ref(KeyRef::of(r)).is_none() {
                out.push(Event::Delete(r.clone()));
            }
        }
        out.extend(listing.into_vec().into_iter().map(Event::Apply));
    }
}

impl Source for KubeSource {
    fn cluster(&self) -> &str {
        &self.cluster
    }

    fn sync(&mut self, store: &ClusterConfig, _hint: &isthmus_registry::Changes) -> Vec<Event> {
        let mut out = Vec::new();
        let was_synced = self.synced;
        for message in self.inbox.take() {
            self.handle(message, store, &mut out);
        }
        // The census is weighed against the objects in force once these events are applied,
        // and only once the first complete list is in (a cluster's istiod Service says
        // whether it runs a control plane of its own).
        if self.synced
            && (std::mem::take(&mut self.census_changed)
                || !was_synced
                || out.iter().any(is_istiod_event))
        {
            let problems = self
                .counted
                .as_ref()
                .map(|c| census_problem(&self.cluster, c, runs_own_control_plane(store, &out)));
            if let Some(problems) = problems {
                self.set_problems("istio configuration".to_string(), problems);
            }
        }
        if std::mem::take(&mut self.problems_changed) {
            out.push(Event::Problems(
                self.problems.values().flatten().cloned().collect(),
            ));
        }
        out
    }
}

/// What a watcher task hands to the reader thread, in the order it happened.
enum Raw {
    /// An event of kind number `.0`, as the API server sent it.
    Event(usize, Box<watcher::Event<DynamicObject>>),
    /// The watch of a kind failed (see [`Message::Failed`]).
    Failed {
        kind: usize,
        error: String,
        absent: bool,
    },
    /// The periodic check of the API server and credential: `None` when it answered.
    Probe(Option<String>),
    /// A remote cluster's Istio objects, counted.
    Census(Vec<Counted>),
}

/// The reader thread: reads every object the watchers received and passes the events on,
/// until every watcher is gone.
fn read_loop(
    kinds: Vec<WatchedKind>,
    raw: std::sync::mpsc::Receiver<Raw>,
    tx: Arc<Inbox>,
    wake: Arc<Notify>,
) {
    let mut reader = ObjectReader::new();
    // Once every kind has been listed, a relist starts the shared values afresh, so that
    // values no object uses any more (old pod-template-hash labels) are not held forever.
    let mut listed = vec![false; kinds.len()];
    while let Ok(item) = raw.recv() {
        match &item {
            Raw::Event(_, e)
                if matches!(**e, watcher::Event::Init) && listed.iter().all(|l| *l) =>
            {
                reader.forget();
            }
            Raw::Event(i, e) if matches!(**e, watcher::Event::InitDone) => listed[*i] = true,
            Raw::Failed {
                kind, absent: true, ..
            } => listed[*kind] = true,
            _ => {}
        }
        let message = match item {
            Raw::Event(i, event) => Message::Event(i, read_event(&kinds[i], &mut reader, *event)),
            Raw::Failed {
                kind,
                error,
                absent,
            } => Message::Failed {
                kind,
                error,
                absent,
            },
            Raw::Probe(p) => Message::Probe(p),
            Raw::Census(c) => Message::Census(c),
        };
        if tx.send(message).is_err() {
            return;
        }
        wake.notify_one();
    }
}

/// Runs one kind's watcher until the source is dropped, keeping of each object what `F`
/// keeps.
///
/// An Istio kind its version does not serve (a `404`) is looked up in the API server's
/// discovery: served at another version (a cluster with CRDs older than Istio 1.22), it is
/// watched there, its objects read as the same kind; served at none, it is absent.
async fn watch_kind<F: wire::Fields>(
    index: usize,
    mut kind: WatchedKind,
    client: kube::Client,
    raw: std::sync::mpsc::Sender<Raw>,
) {
    let mut config = watcher::Config::default();
    if let Some(l) = kind.labels {
        config = config.labels(l);
    }
    if let Some(f) = kind.fields {
        config = config.fields(f);
    }
    loop {
        let api: Api<wire::WireObject<F>> = match kind.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.api),
            None => Api::all_with(client.clone(), &kind.api),
        };
        let stream = watcher(api, config.clone()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut moved = None;
        while let Some(item) = stream.next().await {
            let item = match item {
                Ok(event) => Raw::Event(index, Box::new(carried(event))),
                Err(e) if kind.custom && is_not_found(&e) => {
                    match served::served(&client, &kind.api, PROBE_EVERY).await {
                        Ok(Some(api)) if api.version != kind.api.version => {
                            moved = Some(api);
                            break;
                        }
                        // Served at this very version (a CRD being established): retry.
                        Ok(Some(_)) => Raw::Failed {
                            kind: index,
                            absent: false,
                            error: describe(&e),
                        },
                        Ok(None) => Raw::Failed {
                            kind: index,
                            absent: true,
                            error: describe(&e),
                        },
                        // Not known to be absent: a failing watch, never an empty kind.
                        Err(d) => Raw::Failed {
                            kind: index,
                            absent: false,
                            error: format!(
                                "{}; asking the API server which version serves {} failed: {}",
                                describe(&e),
                                kind.api.plural,
                                describe_error(&d)
                            ),
                        },
                    }
                }
                Err(e) => Raw::Failed {
                    kind: index,
                    absent: is_not_found(&e),
                    error: describe(&e),
                },
            };
            if raw.send(item).is_err() {
                return;
            }
        }
        let Some(api) = moved else {
            return;
        };
        tracing::info!(
            kind = %kind.kind(),
            from = %kind.api.api_version,
            to = %api.api_version,
            "the API server does not serve this kind at the version Isthmus reads; watching the version it serves (every version of an Istio kind has one schema)"
        );
        kind.api = api;
        // Not at once: discovery and the serving handlers could disagree for a moment.
        tokio::time::sleep(MOVE_PAUSE).await;
    }
}

/// How long a watch waits before it starts again at another version of its kind.
const MOVE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// An event's object as the reader thread takes it (its kept fields as one JSON object).
fn carried<F: wire::Fields>(
    event: watcher::Event<wire::WireObject<F>>,
) -> watcher::Event<DynamicObject> {
    let carry = |o: wire::WireObject<F>| {
        let (metadata, data) = o.into_parts();
        DynamicObject {
            types: None,
            metadata,
            data,
        }
    };
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(carry(o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(carry(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(carry(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
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
        other => describe_error(other),
    }
}

/// Reads the objects of one watcher event; a delete needs only the key.
fn read_event(
    kind: &WatchedKind,
    reader: &mut ObjectReader,
    event: watcher::Event<DynamicObject>,
) -> watcher::Event<Read> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(read(kind, reader, o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(read(kind, reader, o)),
        watcher::Event::Delete(o) => {
            watcher::Event::Delete(Read::Key(key_of(kind, &to_value(kind, o))))
        }
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Reads one object from the API.
fn read(kind: &WatchedKind, reader: &mut ObjectReader, obj: DynamicObject) -> Read {
    let value = to_value(kind, obj);
    match reader.read(&value) {
        Ok((r, warnings)) => Read::Good(Arc::new(r), warnings),
        Err(errors) => Read::Bad(key_of(kind, &value), errors),
    }
}

/// The object as the reader takes it: `apiVersion` and `kind` set (list items may lack
/// them), and without what only takes memory (managed fields, `kubectl apply`'s copy).
fn to_value(kind: &WatchedKind, mut obj: DynamicObject) -> serde_json::Value {
    if let Some(a) = &mut obj.metadata.annotations {
        a.remove(LAST_APPLIED);
    }
    // The object's own fields are already a JSON tree, holding only what its kind keeps
    // (`wire`): only the metadata is converted, and only what the reader keeps of it.
    let mut value = std::mem::take(&mut obj.data);
    drop_nulls(&mut value);
    if let Some(map) = value.as_object_mut() {
        let m = &obj.metadata;
        let mut meta = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            meta.insert(k.to_string(), v);
        };
        if let Some(n) = &m.name {
            put("name", n.clone().into());
        }
        if let Some(n) = &m.namespace {
            put("namespace", n.clone().into());
        }
        if let Some(l) = m.labels.as_ref().filter(|l| !l.is_empty()) {
            put("labels", serde_json::to_value(l).unwrap_or_default());
        }
        if let Some(a) = m.annotations.as_ref().filter(|a| !a.is_empty()) {
            put("annotations", serde_json::to_value(a).unwrap_or_default());
        }
        map.insert("metadata".into(), meta.into());
        map.insert("apiVersion".into(), kind.api.api_version.clone().into());
        map.insert("kind".into(), kind.api.kind.clone().into());
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

/// Why [`read_once`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum ReadOnceError {
    /// No client could be made.
    #[error(transparent)]
    Access(#[from] crate::AccessError),
    /// The first complete list did not arrive in time.
    #[error("{access}: no complete list within {seconds} s; still waiting for {waiting}")]
    Timeout {
        /// The API server.
        access: String,
        /// How long was waited.
        seconds: u64,
        /// The kinds not listed yet, and why, when known.
        waiting: String,
    },
}

/// Every object of `access`'s API server the mesh reads, listed once exactly as the control
/// plane lists it (its problems included), for `isthmus analyze --kubeconfig`.
pub async fn read_once(
    access: &crate::Access,
    cluster: &str,
    timeout: std::time::Duration,
) -> Result<Arc<ClusterConfig>, ReadOnceError> {
    let client = access.client().await?;
    let mut registry: KubeRegistry =
        Registry::with_source(KubeSource::start(cluster, client, access.describe()));
    let wake = registry.source().wakeup();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        registry.sync(&Default::default());
        if registry.is_synced() {
            return Ok(registry.current().clone());
        }
        if tokio::time::Instant::now() >= deadline {
            let source = registry.source();
            let mut waiting = source.waiting_for().join(", ");
            if let Some(e) = source.failing.values().next() {
                waiting.push_str(&format!(" ({e})"));
            }
            return Err(ReadOnceError::Timeout {
                access: access.describe(),
                seconds: timeout.as_secs(),
                waiting,
            });
        }
        let _ = tokio::time::timeout_at(deadline, wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use isthmus_registry::Writer;

    impl KubeSource {
        /// A source fed by hand: what its reader thread would send goes into the inbox.
        fn fed(kinds: Vec<WatchedKind>) -> (KubeSource, Arc<Inbox>) {
            let inbox = Arc::new(Inbox::default());
            let tx = inbox.clone();
            let state = kinds.iter().map(KindState::of).collect();
            let source = KubeSource {
                cluster: "c1".into(),
                kinds,
                state,
                inbox,
                wake: Arc::new(Notify::new()),
                synced: false,
                problems: BTreeMap::new(),
                problems_changed: false,
                tasks: Vec::new(),
                access: "test".into(),
                failing: BTreeMap::new(),
                failing_since: None,
                counted: None,
                census_changed: false,
            };
            (source, tx)
        }
    }

    fn good(yaml: &str) -> Read {
        let loaded = isthmus_api::load_str(yaml, None, "ns");
        let r = loaded.resources.into_iter().next().expect("an object");
        Read::Good(Arc::new(r), Vec::new())
    }

    fn service(name: &str, port: u32) -> Read {
        good(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{name: http, port: {port}}}]}}\n"
        ))
    }

    #[test]
    fn pending_says_whether_only_endpoints_moved() {
        let kinds = watched_kinds();
        let index = |kind: &str| {
            kinds
                .iter()
                .position(|k| k.kind() == kind)
                .expect("watched")
        };
        let (pod, slice, service, dr) = (
            index("Pod"),
            index("EndpointSlice"),
            index("Service"),
            index("DestinationRule"),
        );
        let (source, tx) = KubeSource::fed(kinds);
        assert_eq!(source.pending(), Pending::Nothing);
        let event = |k: usize| {
            let key = ResourceKey {
                kind: "X".into(),
                namespace: "ns".into(),
                name: "x".into(),
            };
            Message::Event(k, watcher::Event::Delete(Read::Key(key)))
        };
        tx.send(event(pod)).expect("open");
        tx.send(event(slice)).expect("open");
        assert_eq!(source.pending(), Pending::Endpoints);
        tx.send(event(service)).expect("open");
        assert_eq!(source.pending(), Pending::Other);
        tx.take();
        tx.send(event(dr)).expect("open");
        assert_eq!(source.pending(), Pending::Other);
        tx.take();
        tx.send(Message::Probe(None)).expect("open");
        assert_eq!(source.pending(), Pending::Other);
    }

    #[test]
    fn the_inbox_hands_over_messages_in_order_until_the_source_is_gone() {
        let inbox = Arc::new(Inbox::default());
        let reader = inbox.clone();
        for p in ["a", "b"] {
            reader
                .send(Message::Probe(Some(p.into())))
                .expect("the source is there");
        }
        let taken: Vec<Option<String>> = inbox
            .take()
            .into_iter()
            .map(|m| match m {
                Message::Probe(p) => p,
                _ => None,
            })
            .collect();
        assert_eq!(taken, [Some("a".to_string()), Some("b".to_string())]);
        assert!(inbox.take().is_empty(), "taken once");
        drop(inbox);
        assert!(reader.send(Message::Probe(None)).is_err());
    }

    fn keys(w: &Writer) -> Vec<String> {
        w.store().resources.keys().map(|k| k.to_string()).collect()
    }

    fn problems(w: &Writer) -> Vec<String> {
        w.store()
            .diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn watch_events_are_counted_under_istiods_names_as_add_update_or_delete() {
        // Only this test feeds DestinationRules or Namespaces: the process-wide counts of
        // those move by exactly what it sends.
        let kinds: Vec<WatchedKind> = watched_kinds()
            .into_iter()
            .filter(|k| k.kind() == "DestinationRule" || k.kind() == "Namespace")
            .collect();
        assert_eq!(kinds[0].kind(), "Namespace");
        let (mut source, tx) = KubeSource::fed(kinds);
        let mut writer = Writer::new("c1");
        let events = crate::events::events();
        let count = |kind: &str, istio: bool, e: EventKind| events.get(kind, istio, e);
        let before = [
            count("DestinationRule", true, EventKind::Add),
            count("DestinationRule", true, EventKind::Update),
            count("DestinationRule", true, EventKind::Delete),
            count("Namespace", false, EventKind::Add),
        ];
        let dr = |host: &str| {
            good(&format!(
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r}}\nspec: {{host: {host}}}\n"
            ))
        };
        let ns = good("apiVersion: v1\nkind: Namespace\nmetadata: {name: foo}\n");
        for m in [
            Message::Event(0, watcher::Event::Init),
            Message::Event(0, watcher::Event::InitApply(ns)),
            Message::Event(0, watcher::Event::InitDone),
            Message::Event(1, watcher::Event::Init),
            Message::Event(1, watcher::Event::InitDone),
        ] {
            tx.send(m).expect("send");
        }
        writer.apply(source.sync(writer.store(), &Default::default()));
        assert!(writer.is_synced());
        let first = dr("a.foo.svc.cluster.local");
        let key = first.key();
        tx.send(Message::Event(1, watcher::Event::Apply(first)))
            .expect("send");
        writer.apply(source.sync(writer.store(), &Default::default()));
        assert!(writer.store().resources.contains_key(&key), "in force");
        for m in [
            Message::Event(1, watcher::Event::Apply(dr("b.foo.svc.cluster.local"))),
            Message::Event(1, watcher::Event::Delete(Read::Key(key))),
        ] {
            tx.send(m).expect("send");
        }
        writer.apply(source.sync(writer.store(), &Default::default()));
        let after = [
            count("DestinationRule", true, EventKind::Add),
            count("DestinationRule", true, EventKind::Update),
            count("DestinationRule", true, EventKind::Delete),
            count("Namespace", false, EventKind::Add),
        ];
        let moved: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        assert_eq!(moved, [1, 1, 1, 1], "add, update, delete, namespace add");
        let registry = prometheus::Registry::new();
        events.register(&registry).expect("register");
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encode");
        assert!(
            text.contains("pilot_k8s_cfg_events{event=\"update\",type=\"DestinationRule\"}"),
            "{text}"
        );
        assert!(
            text.contains("pilot_k8s_reg_events{event=\"add\",type=\"Namespaces\"}"),
            "{text}"
        );
    }

    #[test]
    fn a_remote_cluster_s_istio_objects_are_reported_while_they_are_there() {
        let kinds: Vec<WatchedKind> = remote_kinds()
            .into_iter()
            .filter(|k| k.kind() == "Namespace" || k.kind() == "Service")
            .collect();
        let (mut source, tx) = KubeSource::fed(kinds);
        let mut writer = Writer::new("c1");
        let counted = |kind: &str, count, more, first: &str| Counted::Some {
            kind: kind.into(),
            count,
            more,
            first: first.into(),
        };
        let census = || {
            Message::Census(vec![
                counted("VirtualService", 3, false, "bar/reviews"),
                counted("AuthorizationPolicy", 1, false, "foo/deny"),
                counted("Gateway", 1, true, "istio-system/cross-network"),
            ])
        };
        for m in [
            Message::Event(0, watcher::Event::Init),
            Message::Event(0, watcher::Event::InitDone),
            Message::Event(1, watcher::Event::Init),
            Message::Event(1, watcher::Event::InitDone),
            census(),
        ] {
            tx.send(m).expect("send");
        }
        writer.apply(source.sync(writer.store(), &Default::default()));
        let p = problems(&writer);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("cluster c1 holds Istio configuration that no control plane applies: 3 VirtualService (bar/reviews and 2 more), 1 AuthorizationPolicy (foo/deny), 1 or more Gateway (istio-system/cross-network and more)."),
            "{p:?}"
        );
        assert_eq!(
            writer.store().diagnostics[0].severity,
            isthmus_api::Severity::Warning
        );
        // Deleted there: the warning goes.
        tx.send(Message::Census(Vec::new())).expect("send");
        writer.apply(source.sync(writer.store(), &Default::default()));
        assert!(problems(&writer).is_empty(), "{:?}", problems(&writer));

        // A cluster running a control plane of its own (multi-primary): that one applies them.
        let istiod = good("apiVersion: v1\nkind: Service\nmetadata: {name: istiod, namespace: istio-system}\nspec: {selector: {app: istiod}, ports: [{name: grpc-xds, port: 15012}]}\n");
        for m in [Message::Event(1, watcher::Event::Apply(istiod)), census()] {
            tx.send(m).expect("send");
        }
        writer.apply(source.sync(writer.store(), &Default::default()));
        assert!(problems(&writer).is_empty(), "{:?}", problems(&writer));

        // A credential that may not list them: said, whatever the cluster runs.
        tx.send(Message::Census(vec![Counted::Refused {
            kind: "VirtualService".into(),
            error: "403 Forbidden".into(),
        }]))
        .expect("send");
        writer.apply(source.sync(writer.store(), &Default::default()));
        let p = problems(&writer);
        assert!(
            p.len() == 1 && p[0].contains("cluster c1: cannot tell whether it holds Istio configuration that is not applied: its API server refuses to list VirtualService: 403 Forbidden"),
            "{p:?}"
        );
    }

    #[test]
    fn one_complete_list_once_every_kind_is_listed_then_relists_become_point_events() {
        let kinds: Vec<WatchedKind> = watched_kinds()
            .into_iter()
            .filter(|k| k.kind() == "Service" || k.kind() == "VirtualService")
            .collect();
        assert_eq!(kinds[0].kind(), "Service");
        let (mut source, tx) = KubeSource::fed(kinds);
        let mut writer = Writer::new("c1");
        let step = |source: &mut KubeSource, writer: &mut Writer, messages: Vec<Message>| {
            for m in messages {
                tx.send(m).expect("send");
            }
            let events = source.sync(writer.store(), &Default::default());
            writer.apply(events.clone());
            events
        };
        // Services are listed, VirtualServices not yet: nothing is in force.
        let events = step(
            &mut source,
            &mut writer,
            vec![
                Message::Event(0, watcher::Event::Init),
                Message::Event(0, watcher::Event::InitApply(service("a", 80))),
                Message::Event(0, watcher::Event::InitDone),
                Message::Event(0, watcher::Event::Apply(service("b", 80))),
            ],
        );
        assert!(events.is_empty(), "{events:?}");
        assert!(!writer.is_synced());
        assert_eq!(source.waiting_for(), ["VirtualService"]);
        // The VirtualService CRD is not installed: an empty list, and the first complete
        // list of the cluster (with b, applied after Services were listed).
        step(
            &mut source,
            &mut writer,
            vec![Message::Failed {
                kind: 1,
                error: "404 the server could not find the requested resource".into(),
                absent: true,
            }],
        );
        assert!(writer.is_synced());
        assert_eq!(keys(&writer), ["Service/ns/a", "Service/ns/b"]);
        assert!(
            writer.store().diagnostics.is_empty(),
            "a missing CRD is no problem"
        );
        // Services are listed again (a watch that expired with 410 Gone): a is gone, b
        // changed, c is new; only point events come out, and only for what changed.
        let events = step(
            &mut source,
            &mut writer,
            vec![
                Message::Event(0, watcher::Event::Apply(service("a", 81))),
                Message::Event(0, watcher::Event::Init),
                Message::Event(0, watcher::Event::InitApply(service("b", 90))),
                Message::Event(0, watcher::Event::InitApply(service("c", 80))),
                Message::Event(0, watcher::Event::InitDone),
            ],
        );
        assert!(
            events
                .iter()
                .all(|e| matches!(e, Event::Apply(_) | Event::Delete(_))),
            "{events:?}"
        );
        assert_eq!(keys(&writer), ["Service/ns/b", "Service/ns/c"]);
        let change = writer.store().last_change.clone().expect("a point change");
        let changed: Vec<String> = change.keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(changed, ["Service/ns/a", "Service/ns/b", "Service/ns/c"]);
        // An object Isthmus cannot use keeps the last good version and is reported by key;
        // a failed watch is reported too; both clear when they are over.
        let bad_key = ResourceKey {
            kind: "Service".into(),
            namespace: "ns".into(),
            name: "b".into(),
        };
        step(
            &mut source,
            &mut writer,
            vec![
                Message::Event(
                    0,
                    watcher::Event::Apply(Read::Bad(
                        bad_key.clone(),
                        vec![Diagnostic::error("duplicate port name `http`")
                            .at("spec.ports[1].name")],
                    )),
                ),
                Message::Failed {
                    kind: 1,
                    error: "403 forbidden".into(),
                    absent: false,
                },
            ],
        );
        assert_eq!(keys(&writer), ["Service/ns/b", "Service/ns/c"]);
        let found = problems(&writer);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.contains("spec.ports[1].name") && p.contains("in cluster c1")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p
                .contains("cluster c1: cannot read the API server through test: forbidden")
                && p.contains(" since 20")
                && p.contains("(VirtualService: 403 forbidden)")),
            "{found:?}"
        );
        // Listed again with b still unusable: b's version in force stays, and so does its
        // problem.
        let unusable = || {
            Read::Bad(
                bad_key.clone(),
                vec![Diagnostic::error("duplicate port name `http`").at("spec.ports[1].name")],
            )
        };
        step(
            &mut source,
            &mut writer,
            vec![
                Message::Event(0, watcher::Event::Init),
                Message::Event(0, watcher::Event::InitApply(unusable())),
                Message::Event(0, watcher::Event::InitApply(service("c", 80))),
                Message::Event(0, watcher::Event::InitDone),
            ],
        );
        assert_eq!(keys(&writer), ["Service/ns/b", "Service/ns/c"]);
        let port_of_b = |w: &Writer| match w.store().resources.get(&bad_key).map(|r| &r.object) {
            Some(isthmus_api::Object::Service(s)) => s.spec.ports[0].port,
            other => panic!("b: {other:?}"),
        };
        assert_eq!(port_of_b(&writer), 90, "the last good version");
        assert_eq!(writer.store().diagnostics.len(), 2);
        // Only the failing watch's problem is left.
        let only_the_watch = |w: &Writer| {
            let problems = problems(w);
            assert!(
                problems.len() == 1 && problems[0].contains("403 forbidden"),
                "{problems:?}"
            );
        };
        // b read well again, while another problem stands: its own problem goes.
        step(
            &mut source,
            &mut writer,
            vec![Message::Event(0, watcher::Event::Apply(service("b", 91)))],
        );
        assert_eq!(port_of_b(&writer), 91);
        only_the_watch(&writer);
        // b unusable, then deleted: b goes, and its problem with it.
        step(
            &mut source,
            &mut writer,
            vec![
                Message::Event(0, watcher::Event::Apply(unusable())),
                Message::Event(0, watcher::Event::Delete(Read::Key(bad_key.clone()))),
            ],
        );
        assert_eq!(keys(&writer), ["Service/ns/c"]);
        only_the_watch(&writer);
        // b unusable with no version in force, then listed again without it: its problem
        // goes with the list.
        step(
            &mut source,
            &mut writer,
            vec![Message::Event(0, watcher::Event::Apply(unusable()))],
        );
        assert_eq!(keys(&writer), ["Service/ns/c"]);
        assert_eq!(writer.store().diagnostics.len(), 2);
        step(
            &mut source,
            &mut writer,
            vec![
                Message::Event(0, watcher::Event::Init),
                Message::Event(0, watcher::Event::InitApply(service("c", 80))),
                Message::Event(0, watcher::Event::InitDone),
            ],
        );
        assert_eq!(keys(&writer), ["Service/ns/c"]);
        only_the_watch(&writer);
        step(
            &mut source,
            &mut writer,
            vec![
                Message::Event(1, watcher::Event::Init),
                Message::Event(1, watcher::Event::InitDone),
            ],
        );
        assert_eq!(keys(&writer), ["Service/ns/c"]);
        assert!(
            writer.store().diagnostics.is_empty(),
            "{:?}",
            writer.store().diagnostics
        );
    }

    /// `v` as a watcher of a kind that keeps `F` hands it to the reader.
    fn wire_read<F: wire::Fields>(v: serde_json::Value) -> DynamicObject {
        let text = serde_json::to_string(&v).expect("json");
        let event = watcher::Event::Apply(
            serde_json::from_str::<wire::WireObject<F>>(&text).expect("reads"),
        );
        match carried(event) {
            watcher::Event::Apply(o) => o,
            _ => panic!("an Apply stays an Apply"),
        }
    }

    #[test]
    fn a_pod_keeps_what_the_mesh_reads() {
        let kind = watched_kinds()
            .into_iter()
            .find(|k| k.kind() == "Pod")
            .expect("kind");
        let obj = wire_read::<wire::PodFields>(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "foo", "uid": "u", "resourceVersion": "9",
                         "labels": {"app": "web"}, "ownerReferences": [{"kind": "ReplicaSet", "name": "web-x", "apiVersion": "apps/v1", "uid": "r"}]},
            "spec": {"serviceAccountName": "web", "nodeName": "n", "hostname": "web-0", "subdomain": "web", "volumes": [{"name": "token"}],
                     "containers": [{"name": "app", "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9}]},
                                    {"name": "helper", "image": "h"}],
                     // A native sidecar's named ports are kept after the containers'; a
                     // plain init container's are not (it has exited once the pod runs).
                     "initContainers": [{"name": "setup", "image": "s", "ports": [{"name": "setup", "containerPort": 7}]},
                                        {"name": "proxy", "image": "p", "restartPolicy": "Always",
                                         "ports": [{"name": "http-proxy", "containerPort": 15001}, {"containerPort": 15000}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "qosClass": "BestEffort",
                       "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]}
        }));
        let value = to_value(&kind, obj);
        assert_eq!(
            value,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-0", "namespace": "foo", "labels": {"app": "web"}},
                "spec": {"serviceAccountName": "web", "nodeName": "n", "hostname": "web-0", "subdomain": "web",
                         "containers": [{"name": "", "image": "", "ports": [{"name": "http", "containerPort": 8080}]},
                                        {"name": "", "image": "", "ports": [{"name": "http-proxy", "containerPort": 15001}]}]},
                "status": {"phase": "Running", "podIP": "10.0.0.5", "conditions": [{"type": "Ready", "status": "False"}]}
            })
        );
        // A Node keeps its labels only.
        let node_kind = watched_kinds()
            .into_iter()
            .find(|k| k.kind() == "Node")
            .expect("nodes are watched");
        let node = wire_read::<wire::NoFields>(serde_json::json!({
            "metadata": {"name": "n", "labels": {"topology.kubernetes.io/zone": "z1"}},
            "status": {"images": [{"names": ["big"]}], "capacity": {"cpu": "2"}}
        }));
        assert_eq!(
            to_value(&node_kind, node),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n", "labels": {"topology.kubernetes.io/zone": "z1"}}
            })
        );
        let (r, _) = ObjectReader::new().read(&value).expect("reads");
        let isthmus_api::Object::Pod(p) = &r.object else {
            panic!("a Pod")
        };
        assert_eq!(p.status.ready, Some(false));
        assert_eq!(&*p.spec.service_account_name, "web");
    }

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
        let obj = wire_read::<wire::Tree>(serde_json::json!({
            "metadata": {"name": "web-x", "namespace": "foo", "managedFields": [{"manager": "kcm"}],
                         "annotations": {LAST_APPLIED: "{...}", "keep": "me"}},
            "addressType": "IPv4", "endpoints": null, "ports": null
        }));
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

    #[test]
    fn a_status_code_is_told_from_an_address_that_holds_its_digits() {
        assert_eq!(
            failure_reason("TLS handshake with 127.0.0.1:40145 failed: corrupt message"),
            "TLS (the server's certificate is not trusted by the kubeconfig's CA)"
        );
        assert_eq!(
            failure_reason("cannot connect to 10.0.40.3:6443: Connection refused"),
            "unreachable"
        );
        assert!(failure_reason("ApiError: 401 (Unauthorized)").starts_with("unauthorized"));
        assert!(failure_reason("status 403 from the server").starts_with("forbidden"));
    }
}
