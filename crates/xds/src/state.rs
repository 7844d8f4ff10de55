//! Per-stream helpers shared by both protocol variants: who the proxy is and its resources
//! at the current snapshot (generated once per snapshot version).

use crate::cache::{Encoded, ResourceCache};
use crate::peer::{Claim, Peer};
use crate::status::XdsStatus;
use crate::update::MeshUpdate;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;
use isthmus_api::NodeMetadata;
use isthmus_model::{NodeId, Proxy};
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

    /// Regenerates (or patches, or keeps) when the snapshot moved on, as its push request
    /// says.
    pub fn refresh(&mut self, update: &MeshUpdate) -> Arc<Encoded> {
        if self.version != update.version() || self.version == 0 {
            let proxy: Proxy = update.snapshot.proxy(&self.node, &self.metadata);
            self.resources = self.cache.get(update, &proxy);
            self.version = update.version();
        }
        self.resources.clone()
    }
}
