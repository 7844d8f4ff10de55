//! The delta (incremental) ADS stream: only changed resources are sent, removals are named,
//! and subscriptions change resource by resource.

use crate::state::{StreamProxy, PUSH_ORDER};
use crate::status::XdsStatus;
use crate::wire::{DeltaEntry, WireMessage};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use futures::StreamExt;
use isthmus_model::MeshSnapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::{Status, Streaming};

type Tx = crate::service::ResponseTx;

/// What a delta stream remembers per type.
#[derive(Debug, Default)]
struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the proxy has: name -> version.
    sent: BTreeMap<Arc<str>, u64>,
    nonce: String,
    answered: bool,
    /// The resource set `sent` reflects (after a full comparison or a patched push).
    base: Option<Arc<crate::cache::Encoded>>,
}

fn is_wildcard_type(type_url: &str) -> bool {
    type_url == isthmus_envoy::CLUSTER_TYPE || type_url == isthmus_envoy::LISTENER_TYPE
}

/// Runs one delta stream until the proxy goes away.
pub async fn delta_stream(
    input: &mut Streaming<DeltaDiscoveryRequest>,
    tx: &Tx,
    snapshots: &mut watch::Receiver<Arc<MeshSnapshot>>,
    status: &Arc<XdsStatus>,
    cache: crate::cache::ResourceCache,
) -> Result<(), Status> {
    let Some(first) = input.next().await.transpose()? else {
        return Ok(());
    };
    let mut proxy = StreamProxy::from_node(first.node.as_ref(), cache)?;
    let id = status.open(&proxy.node.to_string(), "delta");
    tracing::info!(proxy = %proxy.node, "ADS stream opened (delta)");
    let mut subs: BTreeMap<String, Subscription> = BTreeMap::new();
    let mut nonce = 0u64;
    let mut pending = Some(first);
    let result: Result<(), Status> = async {
        loop {
            if let Some(req) = pending.take() {
                let snapshot = snapshots.borrow_and_update().clone();
                let first_for_type = !subs.contains_key(&req.type_url);
                let sub = subs.entry(req.type_url.clone()).or_default();
                if !req.response_nonce.is_empty() {
                    if req.response_nonce != sub.nonce {
                        continue;
                    }
                    if let Some(err) = &req.error_detail {
                        status.nack(id, &req.type_url, &err.message);
                        tracing::warn!(proxy = %proxy.node, type_url = %req.type_url, error = %err.message, "Envoy rejected configuration (NACK)");
                    } else {
                        status.ack(id, &req.type_url, &snapshot.version.to_string());
                    }
                }
                if first_for_type {
                    sub.wildcard = is_wildcard_type(&req.type_url) && req.resource_names_subscribe.is_empty();
                    // Versions this server did not write (not our hex hashes) match nothing,
                    // so those resources are sent again.
                    sub.sent = req
                        .initial_resource_versions
                        .iter()
                        .map(|(n, v)| (Arc::from(n.as_str()), u64::from_str_radix(v, 16).unwrap_or(0)))
                        .collect();
                }
                let mut changed = first_for_type;
                for n in &req.resource_names_subscribe {
                    if n == "*" {
                        changed |= !sub.wildcard;
                        sub.wildcard = true;
                    } else if sub.names.insert(n.clone()) {
                        changed = true;
                        // Re-send on re-subscribe even if the proxy had it.
                        sub.sent.remove(n.as_str());
                    }
                }
                for n in &req.resource_names_unsubscribe {
                    if n == "*" {
                        sub.wildcard = false;
                    }
                    sub.names.remove(n);
                    sub.sent.remove(n.as_str());
                }
                if changed {
                    nonce += 1;
                    push(tx, &mut proxy, &snapshot, &req.type_url, sub, nonce, status, false).await?;
                }
                continue;
            }
            tokio::select! {
                next = input.next() => match next {
                    Some(req) => pending = Some(req?),
                    None => return Ok(()),
                },
                changed = snapshots.changed() => {
                    if changed.is_err() { return Ok(()); }
                    let snapshot = snapshots.borrow_and_update().clone();
                    for type_url in PUSH_ORDER {
                        if let Some(sub) = subs.get_mut(type_url) {
                            nonce += 1;
                            push(tx, &mut proxy, &snapshot, type_url, sub, nonce, status, true).await?;
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

fn delta_resource(r: &crate::cache::EncodedResource) -> DeltaEntry<'_> {
    DeltaEntry {
        name: &r.name,
        version: r.version,
        any: r.any_bytes(),
    }
}

/// Sends what changed for `type_url`. After a snapshot change (`on_change`) whose resource
/// set was patched from the one this subscription reflects, only the patched names are
/// looked at; otherwise every resource is compared with what the proxy has.
#[allow(clippy::too_many_arguments)]
async fn push(
    tx: &Tx,
    proxy: &mut StreamProxy,
    snapshot: &Arc<MeshSnapshot>,
    type_url: &str,
    sub: &mut Subscription,
    nonce: u64,
    status: &XdsStatus,
    on_change: bool,
) -> Result<(), Status> {
    let encoded = proxy.refresh(snapshot);
    let wanted = |name: &str| sub.wildcard || sub.names.contains(name);
    let mut resources = Vec::new();
    let patched = if on_change && sub.answered {
        sub.base
            .as_ref()
            .and_then(|b| encoded.changed_since(b, type_url))
    } else {
        None
    };
    if let Some(names) = patched {
        let mut removed = Vec::new();
        for name in names.iter().filter(|n| wanted(n)) {
            match encoded.find(type_url, name) {
                Some(r) => {
                    if sub.sent.get(&r.name) != Some(&r.version) {
                        sub.sent.insert(r.name.clone(), r.version);
                        resources.push(delta_resource(r));
                    }
                }
                None => {
                    if sub.sent.remove(name.as_str()).is_some() {
                        removed.push(name.clone());
                    }
                }
            }
        }
        sub.base = Some(encoded.clone());
        if resources.is_empty() && removed.is_empty() {
            return Ok(());
        }
        return respond(
            tx, snapshot, type_url, sub, nonce, status, resources, removed,
        )
        .await;
    }
    let mut present = std::collections::HashSet::new();
    for r in encoded.of_type(type_url).iter().filter(|r| wanted(&r.name)) {
        present.insert(r.name.as_ref());
        if sub.sent.get(&r.name) != Some(&r.version) {
            sub.sent.insert(r.name.clone(), r.version);
            resources.push(delta_resource(r));
        }
    }
    let removed: Vec<String> = sub
        .sent
        .keys()
        .filter(|n| !present.contains(n.as_ref()))
        .map(|n| n.to_string())
        .collect();
    for n in &removed {
        sub.sent.remove(n.as_str());
    }
    sub.base = Some(encoded.clone());
    if resources.is_empty() && removed.is_empty() && sub.answered {
        return Ok(());
    }
    respond(
        tx, snapshot, type_url, sub, nonce, status, resources, removed,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn respond(
    tx: &Tx,
    snapshot: &Arc<MeshSnapshot>,
    type_url: &str,
    sub: &mut Subscription,
    nonce: u64,
    status: &XdsStatus,
    resources: Vec<DeltaEntry<'_>>,
    removed: Vec<String>,
) -> Result<(), Status> {
    sub.answered = true;
    sub.nonce = nonce.to_string();
    status.pushes.fetch_add(1, Ordering::Relaxed);
    let resp = WireMessage::delta(
        &snapshot.version.to_string(),
        type_url,
        &sub.nonce,
        &resources,
        &removed,
    );
    tx.send(Ok(resp))
        .await
        .map_err(|_| Status::cancelled("stream closed"))
}
