//! `proxy-config --offline`: the resources the control plane would send one proxy, as the
//! config dump a live Envoy would give for them (Envoy's own proto3 JSON, snake_case field
//! names, `Any` with `@type`), so that the same tables, JSON and YAML serve both.

use anyhow::{Context, Result};
use isthmus_envoy::resources::ProxyResources;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{json, Value};

/// Every Envoy API message's descriptor, from envoy-types (see build.rs).
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy-types.bin"));

/// Envoy's JSON of one message.
fn to_json<M: prost::Message + prost::Name>(pool: &DescriptorPool, msg: &M) -> Result<Value> {
    let name = M::full_name();
    let desc = pool
        .get_message_by_name(&name)
        .with_context(|| format!("no descriptor for {name}"))?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .with_context(|| format!("reading back a generated {name}"))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .with_context(|| format!("writing {name} as JSON"))
}

/// The config dump of `resources` (version `offline`), and what `/clusters?format=json`
/// would say of their endpoints (each as EDS sent it, health as assigned).
pub fn dump(resources: &ProxyResources) -> Result<(Value, Value)> {
    let pool = DescriptorPool::decode(DESCRIPTORS).context("reading Envoy's descriptors")?;
    let clusters = resources
        .clusters
        .iter()
        .map(|c| Ok(json!({"version_info": "offline", "cluster": to_json(&pool, c)?})))
        .collect::<Result<Vec<_>>>()?;
    let listeners = resources
        .listeners
        .iter()
        .map(|l| {
            Ok(json!({"name": l.name, "active_state": {"version_info": "offline", "listener": to_json(&pool, l)?}}))
        })
        .collect::<Result<Vec<_>>>()?;
    let routes = resources
        .routes
        .iter()
        .map(|r| Ok(json!({"version_info": "offline", "route_config": to_json(&pool, r)?})))
        .collect::<Result<Vec<_>>>()?;
    let endpoints = resources
        .endpoints
        .iter()
        .map(|e| to_json(&pool, e))
        .collect::<Result<Vec<_>>>()?;
    let statuses: Vec<Value> = endpoints
        .iter()
        .map(|cla| {
            let hosts: Vec<Value> = cla["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|locality| locality["lb_endpoints"].as_array().into_iter().flatten())
                .map(|lb| {
                    json!({
                        "address": lb["endpoint"]["address"],
                        "health_status": {"eds_health_status": lb.get("health_status").cloned().unwrap_or_else(|| "HEALTHY".into())},
                    })
                })
                .collect();
            json!({"name": cla["cluster_name"], "host_statuses": hosts})
        })
        .collect();
    let dump = json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": clusters},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": listeners},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": routes},
        {"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump", "dynamic_endpoint_configs":
            endpoints.into_iter().map(|e| json!({"version_info": "offline", "endpoint_config": e})).collect::<Vec<_>>()},
    ]});
    Ok((dump, json!({"cluster_statuses": statuses})))
}
