//! The agent's DNS: it follows the control plane's name table (Istio's NDS) on an ADS stream
//! authenticated with the workload certificate, and serves the pod's DNS from the last table
//! it received ([`isthmus_dns::proxy`]), so that names keep resolving while the control
//! plane is away. The stream reconnects quickly (100 ms doubling to 1 s) and again with the
//! new certificate after a rotation.

use crate::sds::Material;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use isthmus_dns::demand::{decode_in_force, InForce, Wants, ALL_IN_FORCE, DEMAND_TYPE};
use isthmus_dns::nds::NDS_TYPE;
use isthmus_dns::NameTable;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The node an agent's name-table stream presents: its pod's node id and metadata, so that
/// the control plane checks the stream's certificate against the same identity as Envoy's.
pub fn node(id: &str, metadata: &BTreeMap<String, String>) -> Node {
    Node {
        id: id.to_string(),
        metadata: Some(Struct {
            fields: metadata
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Value {
                            kind: Some(Kind::StringValue(v.clone())),
                        },
                    )
                })
                .collect(),
        }),
        ..Default::default()
    }
}

/// Why one stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamEnd {
    #[error("{0}")]
    Connect(String),
    #[error("{}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    #[error("the control plane closed the stream")]
    Closed,
    #[error("a new workload certificate: reconnecting with it")]
    Rotated,
}

/// A TLS channel to the control plane presenting the workload certificate.
async fn channel(address: &str, m: &Material) -> Result<Channel, StreamEnd> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&m.root))
        .identity(Identity::from_pem(&m.chain, &m.key))
        .domain_name(isthmus_ca::CONTROL_PLANE_DNS);
    Channel::from_shared(format!("https://{address}"))
        .map_err(|e| StreamEnd::Connect(format!("control plane address `{address}`: {e}")))?
        .tls_config(tls)
        .map_err(|e| StreamEnd::Connect(format!("TLS settings: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| {
            StreamEnd::Connect(format!("cannot reach the control plane at {address}: {e}"))
        })
}

/// What an answer says: the table, or why it was refused (sent back as a NACK).
fn read(resp: &DiscoveryResponse) -> Result<NameTable, String> {
    match resp.resources.as_slice() {
        [one] if one.type_url == NDS_TYPE => {
            NameTable::from_nds(&one.value).map_err(|e| e.to_string())
        }
        [one] => Err(format!("expected a {NDS_TYPE}, got a {}", one.type_url)),
        other => Err(format!(
            "expected one name table, got {} resources",
            other.len()
        )),
    }
}

/// The request naming every name `wants` holds (an answer to `nonce` when not empty).
fn demand_request(wants: &Wants, nonce: &str, version: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: DEMAND_TYPE.to_string(),
        resource_names: wants.names(),
        response_nonce: nonce.to_string(),
        version_info: version.to_string(),
        ..Default::default()
    }
}

/// What an answer to the wanted names says is in force. An answer without the resource is
/// a control plane that does not scope (one older than on-demand scoping answers an unknown
/// type with no resources): everything is in force, and lookups are never held.
fn read_in_force(resp: &DiscoveryResponse) -> Result<InForce, isthmus_dns::demand::DemandError> {
    if resp.version_info == ALL_IN_FORCE || resp.resources.is_empty() {
        return Ok(InForce {
            all: true,
            ..Default::default()
        });
    }
    let mut hosts = std::collections::BTreeMap::new();
    for r in &resp.resources {
        hosts.extend(decode_in_force(&r.value)?);
    }
    Ok(InForce {
        all: false,
        names: Arc::new(hosts.keys().cloned().collect()),
        hosts: Arc::new(hosts),
    })
}

/// One stream: asks for the table, publishes each one received, ACKs or NACKs it. Returns
/// when the stream ends or the certificate changes.
async fn follow_once(
    address: &str,
    node: &Node,
    material: &mut watch::Receiver<Arc<Material>>,
    tables: &watch::Sender<Option<Arc<NameTable>>>,
    wants: &Wants,
    connected: &mut bool,
) -> StreamEnd {
    let m = material.borrow_and_update().clone();
    let ch = match channel(address, &m).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let (req_tx, req_rx) = mpsc::channel(4);
    let first = DiscoveryRequest {
        node: Some(node.clone()),
        type_url: NDS_TYPE.to_string(),
        ..Default::default()
    };
    if req_tx.send(first).await.is_err() {
        return StreamEnd::Closed;
    }
    // The names wanted so far, even none: the control plane learns that this agent speaks
    // for its sidecar's scope.
    let mut asked = wants.asked();
    asked.borrow_and_update();
    let mut demand_nonce = String::new();
    if req_tx.send(demand_request(wants, "", "")).await.is_err() {
        return StreamEnd::Closed;
    }
    let mut client = AggregatedDiscoveryServiceClient::new(ch);
    let mut responses = match client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(req_rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return StreamEnd::Status(s),
    };
    loop {
        let resp = tokio::select! {
            r = responses.message() => r,
            _ = material.changed() => return StreamEnd::Rotated,
            _ = asked.changed() => {
                asked.borrow_and_update();
                if req_tx.send(demand_request(wants, &demand_nonce, "")).await.is_err() {
                    return StreamEnd::Closed;
                }
                continue;
            }
        };
        let resp = match resp {
            Ok(Some(r)) => r,
            Ok(None) => return StreamEnd::Closed,
            Err(s) => return StreamEnd::Status(s),
        };
        *connected = true;
        if resp.type_url == DEMAND_TYPE {
            demand_nonce = resp.nonce.clone();
            match read_in_force(&resp) {
                Ok(in_force) => {
                    tracing::debug!(version = %resp.version_info, all = in_force.all, names = in_force.names.len(), "names in force in the sidecar");
                    wants.set_in_force(in_force);
                }
                Err(e) => tracing::warn!(error = %e, "unreadable answer to the wanted names"),
            }
            if req_tx
                .send(demand_request(wants, &demand_nonce, &resp.version_info))
                .await
                .is_err()
            {
                return StreamEnd::Closed;
            }
            continue;
        }
        let mut ack = DiscoveryRequest {
            type_url: NDS_TYPE.to_string(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        };
        match read(&resp) {
            Ok(table) => {
                let names = table.len();
                let first = tables.borrow().is_none();
                tables.send_replace(Some(Arc::new(table)));
                if first {
                    tracing::info!(names, version = %resp.version_info, "name table received: answering the pod's DNS from it");
                } else {
                    tracing::debug!(names, version = %resp.version_info, "name table updated");
                }
                ack.version_info = resp.version_info;
            }
            Err(message) => {
                tracing::warn!(error = %message, "refusing the control plane's name table; keeping the last one");
                ack.error_detail = Some(RpcStatus {
                    code: tonic::Code::InvalidArgument as i32,
                    message,
                    details: Vec::new(),
                });
            }
        }
        if req_tx.send(ack).await.is_err() {
            return StreamEnd::Closed;
        }
    }
}

/// Follows the name table for as long as the agent runs, publishing it to `tables`; the
/// last table stays published while the control plane cannot be reached. On the same
/// stream it sends the names the pod resolved (`wants`, on-demand scoping) and records
/// which of them the sidecar holds.
pub async fn follow(
    address: String,
    node: Node,
    mut material: watch::Receiver<Arc<Material>>,
    tables: watch::Sender<Option<Arc<NameTable>>>,
    wants: Arc<Wants>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let mut connected = false;
        let end = follow_once(
            &address,
            &node,
            &mut material,
            &tables,
            &wants,
            &mut connected,
        )
        .await;
        if connected {
            delay = Duration::from_millis(100);
        }
        if matches!(end, StreamEnd::Rotated) {
            tracing::info!("name table stream: {end}");
            continue;
        }
        let names = tables.borrow().as_ref().map(|t| t.len());
        tracing::warn!(reason = %end, retry_in = ?delay, answering_from_last_table = ?names, "name table stream lost");
        // Some jitter, so that agents do not all come back at once.
        let jitter = Duration::from_millis(u64::from(std::process::id() % 50));
        tokio::time::sleep(delay + jitter).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::Any;

    #[test]
    fn a_response_is_read_only_when_it_holds_one_name_table() {
        let table = NameTable::from_entries([("a.global".to_string(), [10, 0, 0, 1].into())], &[]);
        let any = |type_url: &str, value: Vec<u8>| Any {
            type_url: type_url.into(),
            value,
        };
        let resp = |resources| DiscoveryResponse {
            resources,
            ..Default::default()
        };
        let ok = read(&resp(vec![any(NDS_TYPE, table.encode_nds())])).expect("a table");
        assert_eq!(ok, table);
        let wrong =
            read(&resp(vec![any("type.googleapis.com/x", Vec::new())])).expect_err("wrong type");
        assert!(wrong.contains("type.googleapis.com/x"), "{wrong}");
        assert!(read(&resp(Vec::new())).is_err());
        assert!(read(&resp(vec![any(NDS_TYPE, vec![0xff])])).is_err());
    }

    #[test]
    fn an_answer_says_which_names_are_in_force() {
        let resp = |version: &str, resources: Vec<Any>| DiscoveryResponse {
            version_info: version.into(),
            resources,
            ..Default::default()
        };
        let hosts = vec!["a.ns.svc.cluster.local".to_string()];
        let one = Any {
            type_url: DEMAND_TYPE.into(),
            value: isthmus_dns::demand::encode_in_force([(
                "a.ns.svc.cluster.local",
                hosts.as_slice(),
            )]),
        };
        let held = read_in_force(&resp("3", vec![one])).expect("in force");
        assert!(!held.all);
        assert_eq!(held.names.len(), 1);
        assert_eq!(held.hosts["a.ns.svc.cluster.local"], hosts);
        assert!(
            read_in_force(&resp(ALL_IN_FORCE, Vec::new()))
                .expect("all")
                .all
        );
        // A control plane that does not know the type answers it with nothing: not scoped.
        assert!(read_in_force(&resp("7", Vec::new())).expect("old").all);
    }

    #[test]
    fn the_node_carries_the_metadata_as_strings() {
        let md = BTreeMap::from([("NAMESPACE".to_string(), "foo".to_string())]);
        let n = node("sidecar~10.0.0.1~p.foo~foo.svc.cluster.local", &md);
        let v = &n.metadata.expect("metadata").fields["NAMESPACE"];
        assert_eq!(v.kind, Some(Kind::StringValue("foo".into())));
    }
}
