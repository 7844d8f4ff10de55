//! The delta (incremental) ADS stream: only changed resources are sent, removals are named,
//! and subscriptions change resource by resource.

use crate::cache::PUSH_ORDER;
use crate::peer::Peer;
use crate::service::Requests;
use crate::state::StreamProxy;
use crate::status::{StreamStatus, XdsStatus};
use crate::update::MeshUpdate;
use crate::wire::{DeltaEntry, WireMessage};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::Status;

type Tx = crate::service::ResponseTx;

/// What a delta stream remembers per type.
#[derive(Debug, Default)]
struct Subscription {
    wildcard: bool,
    /// The names subscribed, sorted, sharing the snapshot's encoded names where the
    /// resource exists; when they are every resource of the type (1,000 proxies subscribing
    /// to every cluster's endpoints) the list itself is the resource set's, held once.
    names: Arc<[Arc<str>]>,
    /// What the proxy holds: the resources of `base` this subscription selects (every push
    /// leaves it so), except the names in `overrides`. A stream does not keep a map of every
    /// resource per proxy: 14,000 names per proxy made a push to 1,000 proxies hold 600 MB.
    base: Option<Arc<crate::cache::Encoded>>,
    /// Per name: held at this version (`Some`), or not held (`None`), whatever `base` says.
    /// Subscription changes and a reconnecting proxy's initial versions go here.
    overrides: BTreeMap<Arc<str>, Option<u64>>,
    nonce: String,
    /// The snapshot version of the last response (what an ACK of `nonce` confirms).
    sent_version: String,
    answered: bool,
}

impl Subscription {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.subscribed(name)
    }

    /// Whether `name` is among the names subscribed.
    fn subscribed(&self, name: &str) -> bool {
        self.names
            .binary_search_by(|n| n.as_ref().cmp(name))
            .is_ok()
    }

    /// The names subscribed after `add` and then `remove` (sorted): a new list, the
    /// resource set's own when it is every resource of `type_url` in `encoded`.
    fn resubscribe(
        &mut self,
        add: Vec<Arc<str>>,
        remove: &[&str],
        encoded: Option<&crate::cache::Encoded>,
        type_url: &str,
    ) {
        let mut names: Vec<Arc<str>> = self
            .names
            .iter()
            .cloned()
            .chain(add)
            .filter(|n| remove.binary_search(&n.as_ref()).is_err())
            .collect();
        names.sort();
        names.dedup();
        self.names = match encoded {
            Some(e) => e.share_names(type_url, names),
            None => names.into(),
        };
    }

    /// The version of `name` the proxy holds.
    fn holds(&self, type_url: &str, name: &str) -> Option<u64> {
        if let Some(o) = self.overrides.get(name) {
            return *o;
        }
        if !self.wants(name) {
            return None;
        }
        self.base.as_ref()?.find(type_url, name).map(|r| r.version)
    }

    /// Writes what the proxy holds out as overrides, before a change of the wildcard makes
    /// `base` select differently.
    fn materialize(&mut self, type_url: &str) {
        let Some(base) = self.base.take() else {
            return;
        };
        for r in base.of_type(type_url) {
            if !self.overrides.contains_key(&r.name) && self.wants(&r.name) {
                self.overrides.insert(r.name.clone(), Some(r.version));
            }
        }
    }
}

fn is_wildcard_type(type_url: &str) -> bool {
    type_url == isthmus_envoy::CLUSTER_TYPE || type_url == isthmus_envoy::LISTENER_TYPE
}

/// Runs one delta stream until the proxy goes away; the stream is refused unless `peer`'s
/// certificate proves the identity the node claims in `trust_domain`.
pub async fn delta_stream(
    input: &mut Requests<Box<DeltaDiscoveryRequest>>,
    tx: &Tx,
    snapshots: &mut watch::Receiver<MeshUpdate>,
    status: &Arc<XdsStatus>,
    (cache, demands): (crate::cache::ResourceCache, crate::demand::Demands),
    (peer, trust_domain): (&Peer, &str),
) -> Result<(), Status> {
    let Some(first) = input.next().await.transpose()? else {
        return Ok(());
    };
    let (mut proxy, id) = StreamProxy::open(
        first.node.as_ref(),
        cache,
        (peer, trust_domain),
        snapshots,
        status,
        "delta",
    )?;
    let st = status.stream(id);
    proxy.follow_demand(&demands).await;
    let mut subs: BTreeMap<String, Subscription> = BTreeMap::new();
    let mut nonce = 0u64;
    let mut pending = Some(first);
    let result: Result<(), Status> = async {
        loop {
            if let Some(req) = pending.take() {
                let snapshot = snapshots.borrow_and_update().clone();
                let first_for_type = !subs.contains_key(&req.type_url);
                let sub = subs.entry(req.type_url.clone()).or_default();
                // A stale nonce (a reply to a response since overtaken) is not counted as
                // an ACK or NACK, but its subscription changes stand: Envoy puts them into
                // whatever request it sends next and never sends them again.
                if !req.response_nonce.is_empty() && req.response_nonce == sub.nonce {
                    if let Some(err) = &req.error_detail {
                        st.nack(&req.type_url, &err.message);
                        tracing::warn!(proxy = %proxy.node, type_url = %req.type_url, error = %err.message, "Envoy rejected configuration (NACK)");
                    } else {
                        // The version of the response it answers (a newer snapshot may
                        // have come since).
                        st.ack(&req.type_url, &sub.sent_version);
                    }
                    proxy.answered(&req.type_url, &req.response_nonce);
                }
                if first_for_type {
                    sub.wildcard = is_wildcard_type(&req.type_url) && req.resource_names_subscribe.is_empty();
                    // Versions this server did not write (not our hex hashes) match nothing,
                    // so those resources are sent again.
                    sub.overrides = req
                        .initial_resource_versions
                        .iter()
                        .map(|(n, v)| (Arc::from(n.as_str()), Some(u64::from_str_radix(v, 16).unwrap_or(0))))
                        .collect();
                }
                let mut changed = first_for_type;
                let encoded = (!req.resource_names_subscribe.is_empty()).then(|| proxy.refresh(&snapshot));
                let mut add = Vec::new();
                for n in &req.resource_names_subscribe {
                    if n == "*" {
                        if !sub.wildcard {
                            sub.materialize(&req.type_url);
                            sub.wildcard = true;
                            changed = true;
                        }
                    } else if !sub.subscribed(n) {
                        let name = encoded
                            .as_ref()
                            .and_then(|e| e.find(&req.type_url, n))
                            .map_or_else(|| Arc::from(n.as_str()), |r| r.name.clone());
                        add.push(name.clone());
                        changed = true;
                        // Re-send on re-subscribe even if the proxy had it.
                        sub.overrides.insert(name, None);
                    }
                }
                let mut remove: Vec<&str> = Vec::new();
                for n in &req.resource_names_unsubscribe {
                    if n == "*" && sub.wildcard {
                        sub.materialize(&req.type_url);
                        sub.wildcard = false;
                    }
                    remove.push(n);
                    // The proxy drops it itself.
                    sub.overrides.insert(Arc::from(n.as_str()), None);
                }
                remove.sort_unstable();
                if !add.is_empty() || !remove.is_empty() {
                    // The names are shared with the set they came from, or (for a request
                    // that only unsubscribes) the set last pushed.
                    let from = encoded.clone().or_else(|| sub.base.clone());
                    sub.resubscribe(add, &remove, from.as_deref(), &req.type_url);
                }
                if changed {
                    nonce += 1;
                    // Boxed, here and below: a push is short, and inline it would grow every
                    // waiting stream's future by its size.
                    Box::pin(push(tx, &mut proxy, &snapshot, &req.type_url, sub, nonce, &st, false)).await?;
                    note_push(&mut proxy, &req.type_url, sub, nonce);
                }
                continue;
            }
            let push_round = tokio::select! {
                next = input.next() => match next {
                    Some(req) => {
                        pending = Some(req?);
                        false
                    }
                    None => return Ok(()),
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
                let mut updated_clusters: Vec<Arc<str>> = Vec::new();
                for type_url in PUSH_ORDER {
                    if let Some(sub) = subs.get_mut(type_url) {
                        if type_url == isthmus_envoy::ENDPOINT_TYPE {
                            for name in updated_clusters.drain(..) {
                                if sub.wants(&name) {
                                    sub.overrides.insert(name, None);
                                }
                            }
                        }
                        nonce += 1;
                        let sent = Box::pin(push(tx, &mut proxy, &snapshot, type_url, sub, nonce, &st, true)).await?;
                        note_push(&mut proxy, type_url, sub, nonce);
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

/// Records, for on-demand scoping, what a push of `type_url` left the proxy with: a
/// response (when the subscription's nonce is this push's) or nothing new.
fn note_push(proxy: &mut StreamProxy, type_url: &str, sub: &Subscription, nonce: u64) {
    if !proxy.tracks_demand() {
        return;
    }
    let covers = sub.wildcard
        || proxy
            .resources
            .of_type(type_url)
            .iter()
            .all(|r| sub.wants(&r.name));
    let nonce = nonce.to_string();
    let sent = (sub.nonce == nonce).then_some(nonce.as_str());
    proxy.pushed(type_url, sent, covers);
}

fn delta_resource(r: &crate::cache::EncodedResource) -> DeltaEntry<'_> {
    DeltaEntry {
        name: &r.name,
        version: r.version,
        any: r.any_bytes(),
    }
}

/// Sends what changed for `type_url`. After a snapshot change (`on_change`) whose resource
/// set was patched from the one this subscription reflects, only the patched names are
/// looked at (unless some must be sent again whatever they are: `overrides`); otherwise
/// every resource is compared with what the proxy has. Returns the names sent.
#[allow(clippy::too_many_arguments)]
async fn push(
    tx: &Tx,
    proxy: &mut StreamProxy,
    snapshot: &MeshUpdate,
    type_url: &str,
    sub: &mut Subscription,
    nonce: u64,
    status: &StreamStatus<'_>,
    on_change: bool,
) -> Result<Vec<Arc<str>>, Status> {
    let encoded = proxy.refresh(snapshot);
    let patched = if on_change && sub.answered && sub.overrides.is_empty() {
        sub.base
            .as_ref()
            .and_then(|b| encoded.changed_since(b, type_url))
    } else {
        None
    };
    if let Some(names) = patched {
        let mut resources = Vec::new();
        let mut removed = Vec::new();
        for name in names {
            if !sub.wants(name) {
                continue;
            }
            let held = sub.holds(type_url, name);
            match encoded.find(type_url, name) {
                Some(r) if held != Some(r.version) => resources.push(delta_resource(r)),
                Some(_) => {}
                None if held.is_some() => removed.push(name.clone()),
                None => {}
            }
            // Sent or removed: the proxy now holds what the new set says.
            sub.overrides.remove(name.as_str());
        }
        sub.base = Some(encoded.clone());
        if resources.is_empty() && removed.is_empty() {
            return Ok(Vec::new());
        }
        let names = resources.iter().map(|r| Arc::<str>::from(r.name)).collect();
        respond(
            tx, snapshot, type_url, sub, nonce, status, resources, removed,
        )
        .await?;
        return Ok(names);
    }
    // Every wanted resource against what the proxy holds; both lists are sorted by name.
    let current: Vec<&crate::cache::EncodedResource> = encoded
        .of_type(type_url)
        .iter()
        .filter(|r| sub.wants(&r.name))
        .collect();
    let base = sub.base.clone();
    let base_list = base
        .as_ref()
        .map(|b| b.of_type(type_url))
        .unwrap_or_default();
    let mut resources = Vec::new();
    for (r, in_base) in crate::cache::held_versions(&current, base_list) {
        let held = sub.overrides.get(&r.name).copied().unwrap_or(in_base);
        if held != Some(r.version) {
            resources.push(delta_resource(r));
        }
    }
    // What the proxy holds that is no longer there (or no longer selected).
    let in_current = |name: &str| {
        current
            .binary_search_by(|r| r.name.as_ref().cmp(name))
            .is_ok()
    };
    let mut removed: Vec<String> = base_list
        .iter()
        .filter(|h| {
            !sub.overrides.contains_key(&h.name) && sub.wants(&h.name) && !in_current(&h.name)
        })
        .map(|h| h.name.to_string())
        .collect();
    removed.extend(
        sub.overrides
            .iter()
            .filter(|(n, v)| v.is_some() && !in_current(n))
            .map(|(n, _)| n.to_string()),
    );
    sub.base = Some(encoded.clone());
    sub.overrides.clear();
    if resources.is_empty() && removed.is_empty() && sub.answered {
        return Ok(Vec::new());
    }
    let names: Vec<Arc<str>> = resources.iter().map(|r| Arc::<str>::from(r.name)).collect();
    if removed.is_empty() && resources.len() == encoded.of_type(type_url).len() {
        // The whole set (a proxy's first response): one body shared by every stream.
        let body = encoded.delta_whole(type_url);
        send(
            tx,
            snapshot,
            type_url,
            sub,
            nonce,
            status,
            |version, nonce| WireMessage::delta_shared(version, type_url, nonce, body, &[]),
        )
        .await?;
        return Ok(names);
    }
    respond(
        tx, snapshot, type_url, sub, nonce, status, resources, removed,
    )
    .await?;
    Ok(names)
}

#[allow(clippy::too_many_arguments)]
async fn respond(
    tx: &Tx,
    snapshot: &MeshUpdate,
    type_url: &str,
    sub: &mut Subscription,
    nonce: u64,
    status: &StreamStatus<'_>,
    resources: Vec<DeltaEntry<'_>>,
    removed: Vec<String>,
) -> Result<(), Status> {
    send(
        tx,
        snapshot,
        type_url,
        sub,
        nonce,
        status,
        |version, nonce| WireMessage::delta(version, type_url, nonce, &resources, &removed),
    )
    .await
}

/// Sends the response `build` makes from the snapshot version and the nonce.
async fn send(
    tx: &Tx,
    snapshot: &MeshUpdate,
    type_url: &str,
    sub: &mut Subscription,
    nonce: u64,
    status: &StreamStatus<'_>,
    build: impl FnOnce(&str, &str) -> WireMessage,
) -> Result<(), Status> {
    sub.answered = true;
    sub.nonce = nonce.to_string();
    sub.sent_version = snapshot.version().to_string();
    status.sent(type_url, &sub.sent_version, Some(snapshot.changed_at));
    let resp = build(&sub.sent_version, &sub.nonce);
    tx.send(Ok(resp))
        .await
        .map_err(|_| Status::cancelled("stream closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sub: &Subscription) -> Vec<&str> {
        sub.names.iter().map(|n| n.as_ref()).collect()
    }

    #[test]
    fn subscriptions_add_then_remove_and_stay_sorted() {
        let mut sub = Subscription::default();
        let eds = isthmus_envoy::ENDPOINT_TYPE;
        sub.resubscribe(
            vec![
                Arc::from("c"),
                Arc::from("a"),
                Arc::from("b"),
                Arc::from("a"),
            ],
            &[],
            None,
            eds,
        );
        assert_eq!(names(&sub), ["a", "b", "c"], "sorted, once each");
        assert!(sub.wants("b") && !sub.wants("d"));
        // Subscribed and unsubscribed in one request: unsubscribed, as Envoy means it.
        sub.resubscribe(vec![Arc::from("d")], &["b", "d", "zz"], None, eds);
        assert_eq!(names(&sub), ["a", "c"]);
        assert!(!sub.wants("d"));
        sub.wildcard = true;
        assert!(sub.wants("d"), "a wildcard subscription wants every name");
    }
}
