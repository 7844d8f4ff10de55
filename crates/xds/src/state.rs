//! Per-stream helpers shared by both protocol variants: who the proxy is and its resources
//! at the current snapshot (generated once per snapshot version).

use crate::cache::{Encoded, ResourceCache};
use crate::demand::{Demands, InForceTracker};
use crate::peer::{Claim, Peer};
use crate::status::XdsStatus;
use crate::update::MeshUpdate;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;
use isthmus_api::NodeMetadata;
use isthmus_model::{NodeId, NodeKind, Proxy};
use std::sync::Arc;
use tonic::Status;

/// The proxy on a stream and its resources at one snapshot version.
#[derive(Debug)]
pub struct StreamProxy {
    /// Parsed node id.
    pub node: NodeId,
    /// The metadata the node sent.
    pub metadata: NodeMetadata,
    /// The version `resources` were generated at.
    pub version: u64,
    /// Resources at `version`, shared with streams of identical proxies.
    pub resources: Arc<Encoded>,
    /// The generation of the wanted names `resources` were generated with (on-demand
    /// scoping; 0 otherwise).
    pub demand_generation: u64,
    /// On-demand scoping: the node's wanted names and what Envoy acknowledged of them.
    demand: Option<InForceTracker>,
    cache: ResourceCache,
}

impl StreamProxy {
    /// Reads the node of a first request; a missing or malformed node is refused.
    pub fn from_node(node: Option<&Node>, cache: ResourceCache) -> Result<StreamProxy, Status> {
        let node =
            node.ok_or_else(|| Status::invalid_argument("the first request must carry the node"))?;
        let id = NodeId::parse(&node.id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let metadata = NodeMetadata::from_map(node.metadata.iter().flat_map(|md| {
            md.fields.iter().filter_map(|(k, v)| match &v.kind {
                Some(Kind::StringValue(s)) => Some((k, s)),
                _ => None,
            })
        }));
        Ok(StreamProxy {
            node: id,
            metadata,
            version: 0,
            resources: Arc::new(Encoded::default()),
            demand_generation: 0,
            demand: None,
            cache,
        })
    }

    /// Reads the node of a first request and checks that `peer`'s certificate proves the
    /// identity the proxy will be configured as: the node id's namespace and the service
    /// account of its workload (the registry's when it has the pod, else the metadata's).
    /// A refusal is logged once with the node, the certificate's identity and the address,
    /// counted in `status`, and returned as the stream's status.
    /// An accepted stream is registered in `status` under `protocol` (`sotw`, `delta`);
    /// returns the proxy and its stream id.
    pub fn open(
        node: Option<&Node>,
        cache: ResourceCache,
        (peer, trust_domain): (&Peer, &str),
        snapshots: &tokio::sync::watch::Receiver<MeshUpdate>,
        status: &XdsStatus,
        protocol: &str,
    ) -> Result<(StreamProxy, u64), Status> {
        let proxy = StreamProxy::from_node(node, cache)?;
        let service_account = snapshots
            .borrow()
            .snapshot
            .proxy(&proxy.node, &proxy.metadata)
            .service_account;
        let node_text = proxy.node.to_string();
        let claim = Claim {
            node: &node_text,
            namespace: &proxy.node.namespace,
            service_account: &service_account,
        };
        match crate::peer::authorize(peer, trust_domain, claim) {
            Ok(identity) => {
                let id = status.open(
                    &node_text,
                    proxy.metadata.cluster_id.as_deref().unwrap_or_default(),
                    protocol,
                );
                tracing::info!(proxy = %node_text, %identity, protocol, "ADS stream opened");
                Ok((proxy, id))
            }
            Err(refusal) => {
                status.refused();
                tracing::warn!(
                    peer = %peer.addr_text(),
                    node = %node_text,
                    certificate = ?peer.uris,
                    reason = %refusal,
                    "refused ADS stream"
                );
                Err(refusal.status())
            }
        }
    }

    /// Scopes the proxy to what its workload asks for when `demands` says so: a sidecar
    /// whose agent answers its pod's DNS (the agent says which names the pod resolved).
    /// Waits, briefly, for the agent's first word.
    pub async fn follow_demand(&mut self, demands: &Demands) {
        let applies = demands.scoping().on_demand
            && self.node.kind == NodeKind::Sidecar
            && self.metadata.dns_capture;
        if !applies {
            return;
        }
        let mut tracker = InForceTracker::new(demands.slot(&self.node.to_string()));
        tracker.wait_for_agent().await;
        self.demand = Some(tracker);
    }

    /// Resolves when the wanted names change (never without on-demand scoping).
    pub async fn demand_changed(&mut self) {
        match self.demand.as_mut() {
            Some(t) => t.changed().await,
            None => std::future::pending().await,
        }
    }

    /// Whether the proxy is scoped on demand (its pushes are tracked).
    pub fn tracks_demand(&self) -> bool {
        self.demand.is_some()
    }

    /// Records a push of `type_url`: `nonce` when a response went out, `None` when nothing
    /// of the type changed; `covers` when Envoy asked for every resource of the type (see
    /// [`InForceTracker::sent`]).
    pub fn pushed(&mut self, type_url: &str, nonce: Option<&str>, covers: bool) {
        let generation = self.demand_generation;
        if let Some(t) = self.demand.as_mut() {
            match nonce {
                Some(n) => t.sent(type_url, n, generation, covers),
                None => t.unchanged(type_url, generation, covers),
            }
        }
    }

    /// Records Envoy's answer (ACK or NACK) to `nonce` of `type_url`.
    pub fn answered(&mut self, type_url: &str, nonce: &str) {
        if let Some(t) = self.demand.as_mut() {
            t.answered(type_url, nonce);
        }
    }

    /// Regenerates (or patches, or keeps) when the snapshot moved on, as its push request
    /// says, or when the wanted names changed.
    pub fn refresh(&mut self, update: &MeshUpdate) -> Arc<Encoded> {
        let wanted = self.demand.as_mut().map(InForceTracker::current);
        let generation = wanted.as_ref().map_or(0, |w| w.generation);
        if self.version != update.version()
            || self.version == 0
            || generation != self.demand_generation
        {
            let mut proxy: Proxy = update.snapshot.proxy(&self.node, &self.metadata);
            proxy.demand = wanted.map(|w| w.demand);
            self.resources = self.cache.get(update, &proxy);
            self.version = update.version();
            self.demand_generation = generation;
        }
        self.resources.clone()
    }
}
