//! The state-of-the-world request as the server reads it.
//!
//! Envoy's SotW requests for endpoints name every EDS cluster, and every ACK repeats the
//! list: at 10,000 clusters that is 10,000 strings per ACK per proxy, almost always the same
//! as last time. Here the names are decoded as slices of the received buffer (no copy, no
//! allocation per name) and turned into strings only when they differ from what the stream
//! holds. The fields and tags are those of `envoy.service.discovery.v3.DiscoveryRequest`;
//! fields not read here are skipped.

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use std::sync::Arc;

/// `DiscoveryRequest`, with `resource_names` left as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SotwRequest {
    /// The version the proxy last accepted.
    #[prost(string, tag = "1")]
    pub version_info: String,
    /// Who the proxy is (first request of a stream).
    #[prost(message, optional, tag = "2")]
    pub node: Option<Node>,
    /// The names asked for, undecoded (see [`SotwRequest::names_equal`]).
    #[prost(bytes = "bytes", repeated, tag = "3")]
    pub resource_names: Vec<Bytes>,
    /// The resource type.
    #[prost(string, tag = "4")]
    pub type_url: String,
    /// The nonce of the response this request answers.
    #[prost(string, tag = "5")]
    pub response_nonce: String,
    /// Set when the proxy rejected that response (a NACK).
    #[prost(message, optional, tag = "6")]
    pub error_detail: Option<RpcStatus>,
}

impl SotwRequest {
    /// Whether the names asked for are exactly `names`, in order.
    pub fn names_equal(&self, names: &[Arc<str>]) -> bool {
        self.resource_names.len() == names.len()
            && self
                .resource_names
                .iter()
                .zip(names)
                .all(|(a, b)| a.as_ref() == b.as_bytes())
    }

    /// The names asked for, as strings: `known`'s where it has the name (so that thousands
    /// of names are not held again per proxy), new ones otherwise. A name that is not UTF-8
    /// is refused, as the protobuf `string` type requires.
    pub fn names_with(
        &self,
        known: impl Fn(&str) -> Option<Arc<str>>,
    ) -> Result<Vec<Arc<str>>, tonic::Status> {
        self.resource_names
            .iter()
            .map(|n| {
                let s = std::str::from_utf8(n).map_err(|_| {
                    tonic::Status::invalid_argument(format!(
                        "{}: a resource name is not UTF-8",
                        self.type_url
                    ))
                })?;
                Ok(known(s).unwrap_or_else(|| Arc::from(s)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use prost::Message;

    #[test]
    fn reads_what_envoy_sends() {
        let sent = DiscoveryRequest {
            version_info: "3".into(),
            node: Some(Node {
                id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local".into(),
                ..Default::default()
            }),
            resource_names: vec!["outbound|80||a.ns.svc.cluster.local".into(), "b".into()],
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            response_nonce: "7".into(),
            error_detail: Some(RpcStatus {
                code: 13,
                message: "bad cluster".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let got = SotwRequest::decode(Bytes::from(sent.encode_to_vec())).expect("decodes");
        assert_eq!(got.version_info, sent.version_info);
        assert_eq!(got.node, sent.node);
        assert_eq!(got.type_url, sent.type_url);
        assert_eq!(got.response_nonce, sent.response_nonce);
        assert_eq!(got.error_detail, sent.error_detail);
        let shared: Arc<str> = Arc::from("b");
        let names = got
            .names_with(|n| (n == "b").then(|| shared.clone()))
            .expect("utf-8");
        assert_eq!(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            sent.resource_names
        );
        assert!(
            Arc::ptr_eq(&names[1], &shared),
            "a known name is not copied"
        );
        assert!(got.names_equal(&names));
        assert!(!got.names_equal(&names[..1]));
        assert!(!got.names_equal(&[names[0].clone(), Arc::from("c")]));
    }

    #[test]
    fn a_name_that_is_not_utf8_is_refused() {
        let req = SotwRequest {
            type_url: "t".into(),
            resource_names: vec![Bytes::from_static(&[0xff, 0xfe])],
            ..Default::default()
        };
        let err = req.names_with(|_| None).expect_err("not UTF-8");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("not UTF-8"), "{}", err.message());
    }
}
