//! Envoy's bootstrap: node identity and metadata, admin, the ADS connection to the control
//! plane over TLS (client certificate from SDS), and the SDS connection to this agent.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// What the bootstrap needs.
#[derive(Debug, Clone)]
pub struct BootstrapParams<'a> {
    /// Istio node id.
    pub node_id: String,
    /// Service cluster (`app.namespace`).
    pub service_cluster: String,
    /// String metadata (CLUSTER_ID, NETWORK, INTERCEPTION_MODE, ROUTER_MODE, ...).
    pub metadata: BTreeMap<String, String>,
    /// Admin address.
    pub admin_address: &'a str,
    /// Admin port.
    pub admin_port: u16,
    /// Control plane host (IP or name) and port.
    pub control_plane: (&'a str, u16),
    /// Root certificate file, to check the control plane.
    pub root_cert: &'a Path,
    /// The agent's SDS socket.
    pub sds_socket: &'a Path,
    /// Delta xDS instead of state of the world.
    pub delta: bool,
}

fn http2() -> Value {
    json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} }
        }
    })
}

fn sds_source() -> Value {
    json!({
        "api_config_source": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [{ "envoy_grpc": { "cluster_name": "sds-grpc" } }],
            "set_node_on_first_message_only": true
        },
        "resource_api_version": "V3"
    })
}

/// The bootstrap as JSON.
pub fn bootstrap(p: &BootstrapParams<'_>) -> Value {
    let cp_is_ip = p.control_plane.0.parse::<std::net::IpAddr>().is_ok();
    json!({
        "node": {
            "id": p.node_id,
            "cluster": p.service_cluster,
            "metadata": p.metadata,
        },
        "admin": {
            "address": { "socket_address": { "address": p.admin_address, "port_value": p.admin_port } }
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": if p.delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                // A restarted control plane is found again within a second: Envoy's
                // default backoff grows to 30 s.
                "grpc_services": [{ "envoy_grpc": {
                    "cluster_name": "xds-grpc",
                    "retry_policy": { "retry_back_off": { "base_interval": "0.1s", "max_interval": "1s" } }
                } }],
                "set_node_on_first_message_only": true
            },
            "cds_config": { "ads": {}, "resource_api_version": "V3" },
            "lds_config": { "ads": {}, "resource_api_version": "V3" }
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds-grpc",
                    "type": if cp_is_ip { "STATIC" } else { "STRICT_DNS" },
                    "connect_timeout": "1s",
                    // As Istio's bootstrap: an HTTP/2 PING every 30 s, answered within 10 s,
                    // and TCP keepalive, so that a connection a NAT or load balancer dropped
                    // silently is given up and made again instead of waiting for pushes that
                    // never come.
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": { "http2_protocol_options": {
                                "connection_keepalive": { "interval": "30s", "timeout": "10s" }
                            } }
                        }
                    },
                    "upstream_connection_options": { "tcp_keepalive": { "keepalive_time": 300 } },
                    "load_assignment": {
                        "cluster_name": "xds-grpc",
                        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                            "socket_address": { "address": p.control_plane.0, "port_value": p.control_plane.1 }
                        }}}]}]
                    },
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                            "sni": isthmus_ca::CONTROL_PLANE_DNS,
                            "common_tls_context": {
                                "alpn_protocols": ["h2"],
                                "tls_certificate_sds_secret_configs": [{ "name": "default", "sds_config": sds_source() }],
                                "validation_context": {
                                    "trusted_ca": { "filename": p.root_cert.display().to_string() },
                                    "match_typed_subject_alt_names": [{
                                        "san_type": "DNS",
                                        "matcher": { "exact": isthmus_ca::CONTROL_PLANE_DNS }
                                    }]
                                }
                            }
                        }
                    }
                },
                {
                    "name": "sds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": http2(),
                    "load_assignment": {
                        "cluster_name": "sds-grpc",
                        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                            "pipe": { "path": p.sds_socket.display().to_string() }
                        }}}]}]
                    }
                }
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(delta: bool, cp: &'static str) -> Value {
        let mut md = BTreeMap::new();
        md.insert("CLUSTER_ID".to_string(), "cluster2".to_string());
        bootstrap(&BootstrapParams {
            node_id: "router~127.0.2.1~gw-0.istio-system~istio-system.svc.cluster.local".into(),
            service_cluster: "istio-eastwestgateway.istio-system".into(),
            metadata: md,
            admin_address: "127.0.2.1",
            admin_port: 15000,
            control_plane: (cp, 15012),
            root_cert: Path::new("/certs/root-cert.pem"),
            sds_socket: Path::new("/work/sds.sock"),
            delta,
        })
    }

    #[test]
    fn node_admin_ads_and_sds_are_wired() {
        let b = params(false, "127.0.0.1");
        assert_eq!(
            b["node"]["id"],
            "router~127.0.2.1~gw-0.istio-system~istio-system.svc.cluster.local"
        );
        assert_eq!(b["node"]["metadata"]["CLUSTER_ID"], "cluster2");
        assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 15000);
        assert_eq!(b["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        let clusters = b["static_resources"]["clusters"]
            .as_array()
            .expect("clusters");
        let xds = &clusters[0];
        assert_eq!(xds["name"], "xds-grpc");
        assert_eq!(xds["type"], "STATIC");
        let keepalive = &xds["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
            ["http2_protocol_options"]["connection_keepalive"];
        assert_eq!(keepalive["interval"], "30s");
        assert_eq!(keepalive["timeout"], "10s");
        let tls = &xds["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], isthmus_ca::CONTROL_PLANE_DNS);
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"],
            "/certs/root-cert.pem"
        );
        assert_eq!(
            tls["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["name"],
            "default"
        );
        let sds = &clusters[1];
        assert_eq!(sds["name"], "sds-grpc");
        assert_eq!(
            sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["pipe"]["path"],
            "/work/sds.sock"
        );
    }

    #[test]
    fn delta_and_control_plane_by_name() {
        let b = params(true, "istiod.istio-system.svc");
        assert_eq!(
            b["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        assert_eq!(b["static_resources"]["clusters"][0]["type"], "STRICT_DNS");
    }
}
