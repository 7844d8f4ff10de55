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
                "grpc_services": [{ "envoy_grpc": { "cluster_name": "xds-grpc" } }],
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
                    "typed_extension_protocol_options": http2(),
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
