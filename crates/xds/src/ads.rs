//! The ADS gRPC service, and its state-of-the-world stream.

use crate::cache::PUSH_ORDER;
use crate::demand::{Demands, Scoping, Slot};
use crate::nds::{NameTables, NDS_TYPE};
use crate::peer::Peer;
use crate::request::SotwRequest;
use crate::service::{AdsService, Requests, ResponseTx, StreamHandler};
use crate::state::StreamProxy;
use crate::status::{StreamStatus, XdsStatus};
use crate::update::MeshUpdate;
use crate::wire::WireMessage;
use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use futures::StreamExt;
use isthmus_dns::demand::{encode_in_force, ALL_IN_FORCE, DEMAND_TYPE};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::Status;

/// The ADS server: every stream follows `snapshots`.
#[derive(Debug, Clone)]
pub struct AdsServer {
    snapshots: watch::Receiver<MeshUpdate>,
    status: Arc<XdsStatus>,
    cache: crate::cache::ResourceCache,
    trust_domain: Arc<str>,
    names: Option<NameTables>,
    demands: Demands,
}

impl AdsServer {
    /// A server following `snapshots`, recording into `status`, serving only proxies that
    /// hold a workload certificate of `trust_domain` for the identity they claim.
    pub fn new(
        snapshots: watch::Receiver<MeshUpdate>,
        status: Arc<XdsStatus>,
        trust_domain: &str,
    ) -> Self {
        AdsServer {
            snapshots,
            status,
            cache: crate::cache::ResourceCache::default(),
            trust_domain: trust_domain.into(),
            names: None,
            demands: Demands::default(),
        }
    }

    /// Scopes sidecars as `scoping` says (every service, or what each workload asked for).
    pub fn with_scoping(mut self, scoping: Scoping) -> Self {
        self.demands = Demands::new(scoping);
        self
    }

    /// Serves `names` to agents that ask for the name table ([`crate::nds::NDS_TYPE`]);
    /// without it such a request fails the stream with `Unimplemented`.
    pub fn with_name_tables(mut self, names: NameTables) -> Self {
        self.names = Some(names);
        self
    }

    /// The gRPC service to add to a tonic server.
    pub fn into_service(self) -> AdsService<AdsServer> {
        AdsService::new(self)
    }
}

/// What a SotW stream remembers per type.
#[derive(Debug)]
struct Watch {
    /// Identifies the names of the last request (compared with the next one's).
    names: crate::request::NamesKey,
    /// The names the proxy asked for, sorted for lookups; the strings are the resources'
    /// own where the proxy names one (Envoy names every EDS cluster: thousands per proxy,
    /// held once).
    sorted: Arc<[Arc<str>]>,
    /// No names, or `*`: every resource of the type.
    all: bool,
    nonce: String,
    sent_version: u64,
    /// The resource set of the last response: the proxy holds exactly its resources of
    /// this type that `names` selects (every response leaves it so), which is how a stream
    /// knows what its proxy holds without a map of 10,000 names per proxy.
    base: Option<Arc<crate::cache::Encoded>>,
    /// How many resources the proxy holds (those of `base` that `names` selects).
    held: usize,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            names: Default::default(),
            sorted: Arc::new([]),
            // A request without names asks for everything.
            all: true,
            nonce: String::new(),
            sent_version: 0,
            base: None,
            held: 0,
        }
    }
}

impl Watch {
    /// Whether the proxy asked for `name` (no names, or `*`, asks for all).
    fn wants(&self, name: &str) -> bool {
        self.all
            || self
                .sorted
                .binary_search_by(|s| s.as_ref().cmp(name))
                .is_ok()
    }
}

/// Listener and Cluster responses must carry the whole set; for the other types a
/// state-of-the-world response may carry only what changed (the xDS protocol's rule).
fn whole_set_type(type_url: &str) -> bool {
    type_url == isthmus_envoy::CLUSTER_TYPE || type_url == isthmus_envoy::LISTENER_TYPE
}

impl StreamHandler for AdsServer {
    fn sotw(&self, peer: Peer, mut input: Requests<SotwRequest>, tx: ResponseTx) {
        let mut snapshots = self.snapshots.clone();
        let status = self.status.clone();
        let cache = self.cache.clone();
        let trust_domain = self.trust_domain.clone();
        let names = self.names.clone();
        let demands = self.demands.clone();
        // Every log line of the stream names its peer (debug: each request and response).
        let span = tracing::debug_span!("ads", peer = %peer.addr_text());
        let stream = async move {
            let auth = (&peer, &*trust_domain);
            let result = sotw_stream(
                &mut input,
                &tx,
                &mut snapshots,
                &status,
                (cache, names, demands),
                auth,
            )
            .await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        };
        tokio::spawn(tracing::Instrument::instrument(stream, span));
    }

    fn delta(&self, peer: Peer, mut input: Requests<Box<DeltaDiscoveryRequest>>, tx: ResponseTx) {
        let mut snapshots = self.snapshots.clone();
        let status = self.status.clone();
        let cache = self.cache.clone();
        let trust_domain = self.trust_domain.clone();
        let demands = self.demands.clone();
        tokio::spawn(async move {
            let auth = (&peer, &*trust_domain);
            if let Err(e) = crate::delta::delta_stream(
                &mut input,
                &tx,
                &mut snapshots,
                &status,
                (cache, demands),
                auth,
            )
            .await
            {
                let _ = tx.send(Err(e)).await;
            }
        });
    }
}

type Tx = ResponseTx;

async fn sotw_stream(
    input: &mut Requests<SotwRequest>,
    tx: &Tx,
    snapshots: &mut watch::Receiver<MeshUpdate>,
    status: &Arc<XdsStatus>,
    (cache, names, demands): (crate::cache::ResourceCache, Option<NameTables>, Demands),
    (peer, trust_domain): (&Peer, &str),
) -> Result<(), Status> {
    let Some(first) = input.next().await.transpose()? else {
        return Ok(());
    };
    // An agent's stream asks for the name table only: listed apart from Envoy's.
    let protocol = if first.type_url == NDS_TYPE || first.type_url == DEMAND_TYPE {
        "nds"
    } else {
        "sotw"
    };
    let (mut proxy, id) = StreamProxy::open(
        first.node.as_deref(),
        cache,
        (peer, trust_domain),
        snapshots,
        status,
        protocol,
    )?;
    let st = status.stream(id);
    if protocol == "sotw" {
        proxy.follow_demand(&demands).await;
    }
    let mut watches: BTreeMap<String, Watch> = BTreeMap::new();
    let mut nonce = 0u64;
    let mut pending = Some(first);
    // The agent's wanted names (on-demand scoping): the last ones it sent, and the answer
    // waiting for Envoy to hold them.
    let mut wanted = WantedNames::default();
    // The name table: the tables followed once the agent asked, and what was sent.
    let mut name_watch: Option<(
        tokio::sync::watch::Receiver<Arc<isthmus_dns::NameTable>>,
        NamesSent,
    )> = None;
    let result: Result<(), Status> = async {
        loop {
            if pending.as_ref().is_some_and(|r| r.type_url == DEMAND_TYPE) {
                let Some(req) = pending.take() else { continue };
                let names = read_wanted(&req.names_with(|_| None)?)?;
                if !req.response_nonce.is_empty() && wanted.last.as_ref() == Some(&names) {
                    // The agent's ACK of an answer.
                    st.ack(DEMAND_TYPE, &req.version_info);
                    continue;
                }
                wanted.last = Some(names.clone());
                if !demands.scoping().on_demand {
                    nonce += 1;
                    send_in_force(tx, None, nonce, &st).await?;
                    continue;
                }
                let slot = wanted
                    .slot
                    .get_or_insert_with(|| demands.slot(&proxy.node.to_string()))
                    .clone();
                let g = slot.want(names.clone());
                let in_force = wanted.in_force.get_or_insert_with(|| slot.in_force());
                if *in_force.borrow_and_update() >= g || !slot.has_envoy() {
                    wanted.waiting = None;
                    nonce += 1;
                    let hosts = hosts_by_name(&snapshots.borrow(), &proxy, &names);
                    send_in_force(tx, Some((g, &hosts)), nonce, &st).await?;
                } else {
                    wanted.waiting = Some((g, names));
                }
                continue;
            }
            if pending.as_ref().is_some_and(|r| r.type_url == NDS_TYPE) {
                let Some(req) = pending.take() else { continue };
                let Some(tables) = &names else {
                    return Err(Status::unimplemented("this control plane serves no name table"));
                };
                let (_, sent) = name_watch.get_or_insert_with(|| (tables.subscribe(), NamesSent::default()));
                if !req.response_nonce.is_empty() {
                    if req.response_nonce != sent.nonce {
                        continue;
                    }
                    match &req.error_detail {
                        Some(err) => {
                            st.nack(NDS_TYPE, &err.message);
                            tracing::warn!(proxy = %proxy.node, error = %err.message, "agent rejected the name table (NACK)");
                        }
                        None => st.ack(NDS_TYPE, &req.version_info),
                    }
                    continue;
                }
                nonce += 1;
                send_names(tx, tables, sent, nonce, &st, true).await?;
                continue;
            }
            if let Some(req) = pending.take() {
                let snapshot = snapshots.borrow_and_update().clone();
                let w = watches.entry(req.type_url.clone()).or_default();
                tracing::debug!(
                    proxy = %proxy.node,
                    type_url = %req.type_url,
                    nonce = %req.response_nonce,
                    sent_nonce = %w.nonce,
                    names = req.names.count,
                    nack = req.error_detail.is_some(),
                    "request"
                );
                if !req.response_nonce.is_empty() && req.response_nonce != w.nonce {
                    // A reply to an older response; the newer one is still in flight.
                    continue;
                }
                let mut respond = req.response_nonce.is_empty();
                if !req.response_nonce.is_empty() {
                    if let Some(err) = &req.error_detail {
                        st.nack(&req.type_url, &err.message);
                        tracing::warn!(proxy = %proxy.node, type_url = %req.type_url, error = %err.message, "Envoy rejected configuration (NACK)");
                    } else {
                        st.ack(&req.type_url, &req.version_info);
                    }
                    proxy.answered(&req.type_url, &req.response_nonce);
                }
                if req.names != w.names {
                    let encoded = proxy.refresh(&snapshot);
                    w.names = req.names;
                    let mut sorted = req.names_with(|n| {
                        encoded.find(&req.type_url, n).map(|r| r.name.clone())
                    })?;
                    sorted.sort();
                    w.sorted = encoded.share_names(&req.type_url, sorted);
                    w.all = w.sorted.is_empty() || w.sorted.iter().any(|n| &**n == "*");
                    respond = true;
                }
                if w.sent_version != snapshot.version() && !req.response_nonce.is_empty() {
                    respond = true;
                }
                if respond {
                    nonce += 1;
                    // Boxed, here and below: a send lives only during a push, and inline it
                    // would grow every waiting stream's future by its size.
                    Box::pin(send(tx, &mut proxy, &snapshot, &req.type_url, w, nonce, &st, true, &[])).await?;
                    note_push(&mut proxy, &req.type_url, w, nonce);
                }
                continue;
            }
            let names_changed = async {
                match name_watch.as_mut() {
                    Some((rx, _)) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let wanted_in_force = async {
                match (&wanted.waiting, wanted.in_force.as_mut()) {
                    (Some((g, _)), Some(rx)) => {
                        let g = *g;
                        rx.wait_for(|v| *v >= g).await.is_ok()
                    }
                    _ => std::future::pending().await,
                }
            };
            let push_round = tokio::select! {
                next = input.next() => match next {
                    Some(req) => {
                        pending = Some(req?);
                        false
                    }
                    None => return Ok(()),
                },
                alive = names_changed => {
                    if let (true, Some(tables), Some((rx, sent))) = (alive, &names, name_watch.as_mut()) {
                        rx.borrow_and_update();
                        nonce += 1;
                        send_names(tx, tables, sent, nonce, &st, false).await?;
                    } else if !alive {
                        return Ok(());
                    }
                    false
                },
                held = wanted_in_force => {
                    if let (true, Some((g, names))) = (held, wanted.waiting.take()) {
                        nonce += 1;
                        let hosts = hosts_by_name(&snapshots.borrow(), &proxy, &names);
                        send_in_force(tx, Some((g, &hosts)), nonce, &st).await?;
                    }
                    false
                },
                () = proxy.demand_changed() => true,
                changed = snapshots.changed() => {
                    if changed.is_err() { return Ok(()); }
                    true
                }
            };
            if push_round {
                let snapshot = snapshots.borrow_and_update().clone();
                // Envoy warms a cluster it was sent again until that cluster's
                // endpoints come, unchanged or not: they follow it.
                let mut updated_clusters = Vec::new();
                for type_url in PUSH_ORDER {
                    if let Some(w) = watches.get_mut(type_url) {
                        nonce += 1;
                        let force = if type_url == isthmus_envoy::ENDPOINT_TYPE {
                            std::mem::take(&mut updated_clusters)
                        } else {
                            Vec::new()
                        };
                        let sent = Box::pin(send(tx, &mut proxy, &snapshot, type_url, w, nonce, &st, false, &force)).await?;
                        note_push(&mut proxy, type_url, w, nonce);
                        if type_url == isthmus_envoy::CLUSTER_TYPE {
                            updated_clusters = sent;
                        }
                    }
                }
            }
        }
    }
    .await;
    status.close(id);
    tracing::info!(proxy = %proxy.node, "ADS stream closed");
    result
}

/// The agent's side of on-demand scoping on its stream.
#[derive(Debug, Default)]
struct WantedNames {
    /// The names of its last request (an ACK repeats them).
    last: Option<std::collections::BTreeSet<String>>,
    /// Its node's slot, once it asked.
    slot: Option<Arc<Slot>>,
    /// The generation Envoy holds, followed once it asked.
    in_force: Option<watch::Receiver<u64>>,
    /// The generation (and its names) whose answer waits for Envoy.
    waiting: Option<(u64, std::collections::BTreeSet<String>)>,
}

/// The most names one agent may want, and the longest name (DNS's limit).
const MAX_WANTED: usize = 100_000;
const MAX_NAME: usize = 253;

/// The names of an agent's request, normalized (lower case, no final dot); a request over
/// the limits is refused.
fn read_wanted(names: &[Arc<str>]) -> Result<std::collections::BTreeSet<String>, Status> {
    if names.len() > MAX_WANTED {
        return Err(Status::invalid_argument(format!(
            "{DEMAND_TYPE}: {} names, at most {MAX_WANTED}",
            names.len()
        )));
    }
    let mut out = std::collections::BTreeSet::new();
    for n in names {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        if n.is_empty() || n.len() > MAX_NAME || n.chars().any(|c| c.is_whitespace()) {
            return Err(Status::invalid_argument(format!(
                "{DEMAND_TYPE}: `{n}` is not a host name"
            )));
        }
        out.insert(n);
    }
    Ok(out)
}

/// Wanted names, each with the service hosts it brings into the proxy's scope.
type HostsByName = Vec<(String, Vec<String>)>;

/// Per wanted name, the service hosts it brings into the proxy's scope: the agent watches
/// their clusters for traffic before it lets the name go.
fn hosts_by_name(
    update: &MeshUpdate,
    proxy: &StreamProxy,
    names: &std::collections::BTreeSet<String>,
) -> HostsByName {
    let snapshot = &update.snapshot;
    let p = snapshot.proxy(&proxy.node, &proxy.metadata);
    names
        .iter()
        .map(|n| {
            let one = isthmus_model::Demand {
                names: [n.clone()].into(),
                namespace: false,
            };
            let hosts: std::collections::BTreeSet<String> = snapshot
                .demand_scope(&p, &one)
                .into_iter()
                .map(|(_, h)| h)
                .filter(|h| snapshot.services.contains_key(h))
                .collect();
            (n.clone(), hosts.into_iter().collect())
        })
        .collect()
}

/// Tells the agent what its sidecar holds: the names of generation `g` with the hosts each
/// brought (`None`: every name, nothing is scoped).
async fn send_in_force(
    tx: &Tx,
    held: Option<(u64, &HostsByName)>,
    nonce: u64,
    status: &StreamStatus<'_>,
) -> Result<(), Status> {
    let nonce = nonce.to_string();
    let (version, entries) = match held {
        None => (ALL_IN_FORCE.to_string(), Vec::new()),
        Some((g, names)) => {
            let any = envoy_types::pb::google::protobuf::Any {
                type_url: DEMAND_TYPE.to_string(),
                value: encode_in_force(names.iter().map(|(n, h)| (n.as_str(), h.as_slice()))),
            };
            let mut buf = bytes::BytesMut::with_capacity(crate::wire::resource_entry_len(&any));
            crate::wire::put_resource_entry(&mut buf, &any);
            (g.to_string(), vec![buf.freeze()])
        }
    };
    status.sent(DEMAND_TYPE, &version, None);
    tx.send(Ok(WireMessage::sotw(
        &version,
        DEMAND_TYPE,
        &nonce,
        entries,
    )))
    .await
    .map_err(|_| Status::cancelled("stream closed"))
}

/// Records, for on-demand scoping, what a push of `type_url` left the proxy with: a
/// response (when the watch's nonce is this push's) or nothing new.
fn note_push(proxy: &mut StreamProxy, type_url: &str, w: &Watch, nonce: u64) {
    if !proxy.tracks_demand() {
        return;
    }
    let covers = whole_set_type(type_url)
        || w.all
        || proxy
            .resources
            .of_type(type_url)
            .iter()
            .all(|r| w.wants(&r.name));
    let nonce = nonce.to_string();
    let sent = (w.nonce == nonce).then_some(nonce.as_str());
    proxy.pushed(type_url, sent, covers);
}

/// What a stream last sent of the name table.
#[derive(Debug, Default)]
struct NamesSent {
    nonce: String,
    version: Option<u64>,
}

/// Sends the current name table: always when `full` (an answer to a request), else only
/// when its content changed since the last one sent.
async fn send_names(
    tx: &Tx,
    tables: &NameTables,
    sent: &mut NamesSent,
    nonce: u64,
    status: &StreamStatus<'_>,
    full: bool,
) -> Result<(), Status> {
    let current = tables.current();
    if !full && sent.version == Some(current.version) {
        return Ok(());
    }
    sent.nonce = nonce.to_string();
    sent.version = Some(current.version);
    let version = format!("{:016x}", current.version);
    let resp = WireMessage::sotw(&version, NDS_TYPE, &sent.nonce, vec![current.entry.clone()]);
    status.sent(NDS_TYPE, &version, None);
    tx.send(Ok(resp))
        .await
        .map_err(|_| Status::cancelled("stream closed"))
}

/// Sends `type_url` to the proxy. A `full` response (an answer to a request) carries every
/// wanted resource; a push after a snapshot change is skipped when nothing the proxy holds
/// changed, and for EDS and RDS carries only the changed resources and those named in
/// `force` (the endpoints of clusters just sent again). Returns the names of the resources
/// that changed for the proxy.
#[allow(clippy::too_many_arguments)]
async fn send(
    tx: &Tx,
    proxy: &mut StreamProxy,
    snapshot: &MeshUpdate,
    type_url: &str,
    w: &mut Watch,
    nonce: u64,
    status: &StreamStatus<'_>,
    full: bool,
    force: &[Arc<str>],
) -> Result<Vec<Arc<str>>, Status> {
    let encoded = proxy.refresh(snapshot);
    if !full && force.is_empty() {
        if let Some(done) = push_patch(tx, &encoded, snapshot, type_url, w, nonce, status).await {
            return done;
        }
    }
    let wanted = |name: &str| w.wants(name);
    let current: Vec<&crate::cache::EncodedResource> = encoded
        .of_type(type_url)
        .iter()
        .filter(|r| wanted(&r.name))
        .collect();
    // What differs from what the proxy holds, without copying what does not.
    let held = w
        .base
        .as_ref()
        .map(|b| b.of_type(type_url))
        .unwrap_or_default();
    let (mut changed, added) = differences(&current, held);
    let changed_names: Vec<Arc<str>> = changed.iter().map(|r| r.name.clone()).collect();
    if !force.is_empty() {
        for r in &current {
            let forced = force.binary_search_by(|n| n.as_ref().cmp(&*r.name)).is_ok();
            if forced && !changed.iter().any(|c| c.name == r.name) {
                changed.push(r);
            }
        }
    }
    let removed_any = w.held + added != current.len();
    if !full && changed.is_empty() && !removed_any {
        w.sent_version = snapshot.version();
        w.base = Some(encoded.clone());
        return Ok(changed_names);
    }
    let send_all = full || whole_set_type(type_url);
    let resources = if send_all && current.len() == encoded.of_type(type_url).len() {
        // The whole set: one shared body.
        vec![encoded.whole(type_url)]
    } else if send_all {
        current.iter().map(|r| r.entry.clone()).collect()
    } else {
        changed.iter().map(|r| r.entry.clone()).collect()
    };
    w.held = current.len();
    w.base = Some(encoded.clone());
    respond(tx, snapshot, type_url, w, nonce, status, resources).await?;
    Ok(changed_names)
}

/// The resources of `current` whose bytes differ from `held` (both sorted by name), and how
/// many of them `held` does not have at all.
fn differences<'a>(
    current: &'a [&'a crate::cache::EncodedResource],
    held: &'a [crate::cache::EncodedResource],
) -> (Vec<&'a crate::cache::EncodedResource>, usize) {
    let mut changed = Vec::new();
    let mut added = 0;
    for (r, v) in crate::cache::held_versions(current, held) {
        if v != Some(r.version) {
            changed.push(r);
            added += usize::from(v.is_none());
        }
    }
    (changed, added)
}

async fn respond(
    tx: &Tx,
    snapshot: &MeshUpdate,
    type_url: &str,
    w: &mut Watch,
    nonce: u64,
    status: &StreamStatus<'_>,
    resources: Vec<Bytes>,
) -> Result<(), Status> {
    w.nonce = nonce.to_string();
    w.sent_version = snapshot.version();
    tracing::debug!(
        type_url,
        version = snapshot.version(),
        nonce = %w.nonce,
        resources = resources.len(),
        "response"
    );
    let version = snapshot.version().to_string();
    let resp = WireMessage::sotw(&version, type_url, &w.nonce, resources);
    status.sent(type_url, &version, Some(snapshot.changed_at));
    tx.send(Ok(resp))
        .await
        .map_err(|_| Status::cancelled("stream closed"))
}

/// A push when the new resource set was patched from the one this stream last sent: only the
/// patched names are looked at (a scan of every resource per stream is what made a change
/// cost a millisecond per proxy). `None` when that does not apply or a resource went away
/// (the full comparison handles it); else the names sent.
async fn push_patch(
    tx: &Tx,
    encoded: &Arc<crate::cache::Encoded>,
    snapshot: &MeshUpdate,
    type_url: &str,
    w: &mut Watch,
    nonce: u64,
    status: &StreamStatus<'_>,
) -> Option<Result<Vec<Arc<str>>, Status>> {
    let base = w.base.clone()?;
    let names = encoded.changed_since(&base, type_url)?;

    let mut changed = Vec::new();
    for name in names {
        if !w.wants(name) {
            continue;
        }
        // Gone, or new to this proxy: the full comparison decides.
        let r = encoded.find(type_url, name)?;
        base.find(type_url, name)?;
        changed.push(r);
    }
    if !changed.is_empty() && whole_set_type(type_url) {
        return None;
    }
    w.base = Some(encoded.clone());
    if changed.is_empty() {
        w.sent_version = snapshot.version();
        return Some(Ok(Vec::new()));
    }
    let names = changed.iter().map(|r| r.name.clone()).collect();
    let resources = changed.iter().map(|r| r.entry.clone()).collect();
    Some(
        respond(tx, snapshot, type_url, w, nonce, status, resources)
            .await
            .map(|()| names),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::EncodedResource;

    #[test]
    fn differences_are_found_by_merging_sorted_sets() {
        let held = [
            EncodedResource::named("a", 1),
            EncodedResource::named("b", 2),
            EncodedResource::named("d", 4),
        ];
        let now = [
            EncodedResource::named("a", 1),
            EncodedResource::named("b", 20),
            EncodedResource::named("c", 3),
            EncodedResource::named("e", 5),
        ];
        let current: Vec<&EncodedResource> = now.iter().collect();
        let (changed, added) = differences(&current, &held);
        let names: Vec<&str> = changed.iter().map(|r| r.name.as_ref()).collect();
        assert_eq!(names, ["b", "c", "e"]);
        assert_eq!(added, 2);
        // "d" went: the proxy held 3, the new set has 4 of which 2 are new.
        assert_ne!(held.len() + added, current.len());
        let (changed, added) = differences(&current, &now);
        assert!(changed.is_empty());
        assert_eq!(added, 0);
    }

    /// A thousand proxies hold a thousand stream futures while they wait: the futures keep
    /// their requests boxed and box the sends of a push (alive only during it), so what a
    /// waiting stream holds stays small (it was 5,000 bytes for SotW and 4,016 for delta).
    #[test]
    fn a_waiting_stream_holds_a_small_future() {
        let (_keep, mut snapshots) = watch::channel(MeshUpdate::full(Arc::new(
            isthmus_model::MeshSnapshot::default(),
        )));
        let status = Arc::new(XdsStatus::default());
        let body = tonic::body::Body::empty;
        let mut sotw_input = Requests::new(body(), SotwRequest::parse, 1);
        let mut delta_input = Requests::new(body(), crate::service::decode_prost, 1);
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let peer = Peer::of_request(&tonic::codegen::http::Request::new(()));
        let sotw = sotw_stream(
            &mut sotw_input,
            &tx,
            &mut snapshots,
            &status,
            (Default::default(), None, Demands::default()),
            (&peer, "td"),
        );
        let sotw_size = std::mem::size_of_val(&sotw);
        drop(sotw);
        let delta = crate::delta::delta_stream(
            &mut delta_input,
            &tx,
            &mut snapshots,
            &status,
            (Default::default(), Demands::default()),
            (&peer, "td"),
        );
        let delta_size = std::mem::size_of_val(&delta);
        assert!(
            sotw_size <= 2_500,
            "a SotW stream's future is {sotw_size} bytes"
        );
        assert!(
            delta_size <= 1_200,
            "a delta stream's future is {delta_size} bytes"
        );
    }
}
