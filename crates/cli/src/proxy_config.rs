//! `isthmus proxy-config KIND --admin HOST:PORT`: what a live Envoy holds, read from its
//! admin (`/config_dump`, `/clusters?format=json`), as istioctl's tables or as JSON/YAML.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::net::SocketAddr;

/// What to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigKind {
    /// Clusters (`outbound|PORT|SUBSET|HOST`, `inbound|PORT||`, ...).
    Cluster,
    /// Listeners and their filter chains.
    Listener,
    /// Route configurations and their virtual hosts.
    Route,
    /// Every cluster's endpoints with their health.
    Endpoint,
    /// The certificates Envoy holds (`default`, `ROOTCA`, gateways' Secrets).
    Secret,
    /// All of the above.
    All,
}

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables, as istioctl prints them.
    Table,
    /// Envoy's own JSON (the part of the dump asked for).
    Json,
    /// The same as YAML.
    Yaml,
}

/// The `@type` of each section of a config dump.
fn section_type(kind: ConfigKind) -> &'static str {
    match kind {
        ConfigKind::Cluster => "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
        ConfigKind::Listener => "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
        ConfigKind::Route => "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
        ConfigKind::Secret => "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        ConfigKind::Endpoint | ConfigKind::All => "",
    }
}

fn fetch(admin: SocketAddr, path: &str) -> Result<Value> {
    let (code, body) = isthmus_lab::http::get(admin, path)
        .with_context(|| format!("cannot reach Envoy's admin at {admin}"))?;
    if code != 200 {
        bail!("{admin}{path}: HTTP {code}");
    }
    serde_json::from_str(&body).with_context(|| format!("{admin}{path} is not JSON"))
}

/// Reads `kind` from the Envoy whose admin listens at `admin` and prints it as `format`.
pub fn live(admin: SocketAddr, kind: ConfigKind, format: Format) -> Result<String> {
    read_and_render(kind, format, |path| fetch(admin, path))
}

/// Reads what `kind` needs of an Envoy's admin with `get` (a path to its JSON): the config
/// dump, and `/clusters?format=json` for endpoints; then prints it as `format`.
pub fn read_and_render(
    kind: ConfigKind,
    format: Format,
    get: impl Fn(&str) -> Result<Value>,
) -> Result<String> {
    let dump = match kind {
        ConfigKind::Endpoint => Value::Null,
        _ => get("/config_dump")?,
    };
    let endpoints = match kind {
        ConfigKind::Endpoint | ConfigKind::All => get("/clusters?format=json")?,
        _ => Value::Null,
    };
    render(kind, format, &dump, &endpoints)
}

/// Prints `kind` of a config dump (and of `/clusters?format=json` for endpoints).
pub fn render(kind: ConfigKind, format: Format, dump: &Value, endpoints: &Value) -> Result<String> {
    let kinds: Vec<ConfigKind> = match kind {
        ConfigKind::All => vec![
            ConfigKind::Cluster,
            ConfigKind::Listener,
            ConfigKind::Route,
            ConfigKind::Endpoint,
            ConfigKind::Secret,
        ],
        one => vec![one],
    };
    if format != Format::Table {
        let value = match kind {
            ConfigKind::All => serde_json::json!({"config_dump": dump, "clusters": endpoints}),
            ConfigKind::Endpoint => endpoints.clone(),
            k => section(dump, k).cloned().unwrap_or(Value::Null),
        };
        return Ok(match format {
            Format::Json => format!("{}\n", serde_json::to_string_pretty(&value)?),
            _ => serde_saphyr::to_string(&value).context("writing YAML")?,
        });
    }
    let mut out = String::new();
    for (i, k) in kinds.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&match k {
            ConfigKind::Cluster => cluster_table(dump),
            ConfigKind::Listener => listener_table(dump),
            ConfigKind::Route => route_table(dump),
            ConfigKind::Endpoint => endpoint_table(endpoints),
            _ => secret_table(dump),
        });
    }
    Ok(out)
}

fn section(dump: &Value, kind: ConfigKind) -> Option<&Value> {
    dump["configs"]
        .as_array()?
        .iter()
        .find(|c| c["@type"] == section_type(kind))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// Lines of columns, each padded to its widest cell (also `proxy-status`'s).
pub fn table(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            format!("{}\n", cells.join("   ").trim_end())
        })
        .collect()
}

fn clusters_of(dump: &Value) -> Vec<&Value> {
    let Some(s) = section(dump, ConfigKind::Cluster) else {
        return Vec::new();
    };
    let mut out: Vec<&Value> = s["static_clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            s["dynamic_active_clusters"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .map(|c| &c["cluster"])
        .collect();
    out.sort_by_key(|c| c["name"].as_str().unwrap_or_default().to_string());
    out
}

/// istioctl's cluster table: the parts of Istio's cluster name, then Envoy's type.
fn cluster_table(dump: &Value) -> String {
    let mut rows = vec![vec![
        "SERVICE FQDN".to_string(),
        "PORT".into(),
        "SUBSET".into(),
        "DIRECTION".into(),
        "TYPE".into(),
        "TLS".into(),
    ]];
    for c in clusters_of(dump) {
        let name = str_of(&c["name"]);
        let parts: Vec<&str> = name.split('|').collect();
        let (fqdn, port, subset, direction) = match parts.as_slice() {
            [dir, port, subset, host] => (
                if host.is_empty() { "-" } else { host },
                *port,
                if subset.is_empty() { "-" } else { subset },
                *dir,
            ),
            _ => (name, "-", "-", "-"),
        };
        let kind = c["type"]
            .as_str()
            .or_else(|| c["cluster_type"]["name"].as_str())
            .unwrap_or("EDS");
        let tls = if c["transport_socket"].is_object() || c["transport_socket_matches"].is_array() {
            "yes"
        } else {
            "-"
        };
        rows.push(vec![
            fqdn.to_string(),
            port.to_string(),
            subset.to_string(),
            direction.to_string(),
            kind.to_string(),
            tls.to_string(),
        ]);
    }
    table(rows)
}

/// Listener name, address and port, and its filter chains' names.
fn listener_table(dump: &Value) -> String {
    let mut rows = vec![vec![
        "NAME".to_string(),
        "ADDRESS".into(),
        "PORT".into(),
        "CHAINS".into(),
    ]];
    let Some(s) = section(dump, ConfigKind::Listener) else {
        return table(rows);
    };
    let listeners = s["static_listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| &l["listener"])
        .chain(
            s["dynamic_listeners"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| &l["active_state"]["listener"]),
        )
        .filter(|l| l.is_object());
    for l in listeners {
        let addr = &l["address"]["socket_address"];
        let chains: Vec<&str> = l["filter_chains"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["name"].as_str().unwrap_or("(unnamed)"))
            .collect();
        rows.push(vec![
            str_of(&l["name"]).to_string(),
            str_of(&addr["address"]).to_string(),
            addr["port_value"]
                .as_u64()
                .map_or("-".into(), |p| p.to_string()),
            format!("{}: {}", chains.len(), chains.join(", ")),
        ]);
    }
    table(rows)
}

/// Route configuration, virtual host and its domains.
fn route_table(dump: &Value) -> String {
    let mut rows = vec![vec![
        "NAME".to_string(),
        "VIRTUAL HOST".into(),
        "DOMAINS".into(),
        "ROUTES".into(),
    ]];
    let Some(s) = section(dump, ConfigKind::Route) else {
        return table(rows);
    };
    let configs = s["static_route_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(s["dynamic_route_configs"].as_array().into_iter().flatten())
        .map(|r| &r["route_config"]);
    for rc in configs {
        for vh in rc["virtual_hosts"].as_array().into_iter().flatten() {
            let domains: Vec<&str> = vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            rows.push(vec![
                str_of(&rc["name"]).to_string(),
                str_of(&vh["name"]).to_string(),
                domains.join(","),
                vh["routes"].as_array().map_or(0, Vec::len).to_string(),
            ]);
        }
    }
    table(rows)
}

/// Each host of each cluster, with its health, from `/clusters?format=json`.
fn endpoint_table(clusters: &Value) -> String {
    let mut rows = vec![vec![
        "ENDPOINT".to_string(),
        "STATUS".into(),
        "OUTLIER CHECK".into(),
        "CLUSTER".into(),
    ]];
    let mut statuses: Vec<&Value> = clusters["cluster_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    statuses.sort_by_key(|c| c["name"].as_str().unwrap_or_default().to_string());
    for c in statuses {
        for h in c["host_statuses"].as_array().into_iter().flatten() {
            let a = &h["address"]["socket_address"];
            let endpoint = match a["port_value"].as_u64() {
                Some(p) => format!("{}:{p}", str_of(&a["address"])),
                None => str_of(&a["address"]).to_string(),
            };
            let health = &h["health_status"];
            let ejected = health["failed_outlier_check"].as_bool() == Some(true);
            let status = health["eds_health_status"].as_str().unwrap_or("HEALTHY");
            rows.push(vec![
                endpoint,
                status.to_string(),
                if ejected { "FAILED" } else { "OK" }.to_string(),
                str_of(&c["name"]).to_string(),
            ]);
        }
    }
    table(rows)
}

/// The secrets Envoy holds: name, what it is, and whether it is in use.
fn secret_table(dump: &Value) -> String {
    let mut rows = vec![vec![
        "RESOURCE NAME".to_string(),
        "TYPE".into(),
        "STATUS".into(),
        "LAST UPDATED".into(),
    ]];
    let Some(s) = section(dump, ConfigKind::Secret) else {
        return table(rows);
    };
    let mut add = |list: &Value, status: &str| {
        for sec in list.as_array().into_iter().flatten() {
            let inner = &sec["secret"];
            let kind = if inner["tls_certificate"].is_object() {
                "Cert Chain"
            } else if inner["validation_context"].is_object() {
                "CA"
            } else {
                "-"
            };
            rows.push(vec![
                str_of(&sec["name"]).to_string(),
                kind.to_string(),
                status.to_string(),
                str_of(&sec["last_updated"]).to_string(),
            ]);
        }
    };
    add(&s["static_secrets"], "ACTIVE");
    add(&s["dynamic_active_secrets"], "ACTIVE");
    add(&s["dynamic_warming_secrets"], "WARMING");
    table(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump() -> Value {
        serde_json::json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
             "static_clusters": [{"cluster": {"name": "sds-grpc", "type": "STATIC"}}],
             "dynamic_active_clusters": [
                {"cluster": {"name": "outbound|8000||httpbin.bar.global", "type": "EDS",
                             "transport_socket": {"name": "envoy.transport_sockets.tls"}}},
                {"cluster": {"name": "outbound|80|v1|web.foo.svc.cluster.local", "type": "EDS"}},
                {"cluster": {"name": "inbound|80||", "type": "ORIGINAL_DST"}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
             "dynamic_listeners": [{"name": "virtualOutbound", "active_state": {"listener": {
                "name": "virtualOutbound",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
                "filter_chains": [{"name": "passthrough"}]}}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
             "dynamic_route_configs": [{"route_config": {"name": "8000", "virtual_hosts": [
                {"name": "httpbin.bar.global:8000", "domains": ["httpbin.bar.global", "httpbin.bar.global:8000"], "routes": [{}]}]}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
             "dynamic_active_secrets": [
                {"name": "default", "last_updated": "2026-12-03T17:00:00Z", "secret": {"tls_certificate": {}}},
                {"name": "ROOTCA", "secret": {"validation_context": {}}}]}
        ]})
    }

    #[test]
    fn tables_split_istio_cluster_names_and_list_chains_routes_and_secrets() {
        let clusters =
            render(ConfigKind::Cluster, Format::Table, &dump(), &Value::Null).expect("clusters");
        let lines: Vec<&str> = clusters.lines().collect();
        assert!(lines[0].starts_with("SERVICE FQDN"), "{clusters}");
        let row = |needle: &str| {
            lines
                .iter()
                .find(|l| l.contains(needle))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_else(|| panic!("{needle} missing: {clusters}"))
        };
        assert_eq!(
            row("httpbin.bar.global"),
            ["httpbin.bar.global", "8000", "-", "outbound", "EDS", "yes"]
        );
        assert_eq!(
            row("web.foo"),
            [
                "web.foo.svc.cluster.local",
                "80",
                "v1",
                "outbound",
                "EDS",
                "-"
            ]
        );
        assert_eq!(
            row("inbound"),
            ["-", "80", "-", "inbound", "ORIGINAL_DST", "-"]
        );
        assert_eq!(row("sds-grpc"), ["sds-grpc", "-", "-", "-", "STATIC", "-"]);
        let all = render(ConfigKind::All, Format::Table, &dump(), &serde_json::json!({
            "cluster_statuses": [{"name": "outbound|8000||httpbin.bar.global", "host_statuses": [
                {"address": {"socket_address": {"address": "198.18.1.2", "port_value": 15443}},
                 "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": true}}]}]
        }))
        .expect("all");
        assert!(
            all.contains("virtualOutbound   0.0.0.0   15001   1: passthrough"),
            "{all}"
        );
        assert!(
            all.contains("httpbin.bar.global,httpbin.bar.global:8000"),
            "{all}"
        );
        assert!(all.contains("198.18.1.2:15443   HEALTHY   FAILED"), "{all}");
        assert!(all.contains("default         Cert Chain   ACTIVE"), "{all}");
        assert!(all.contains("ROOTCA          CA"), "{all}");
    }

    #[test]
    fn json_and_yaml_give_the_dumps_section_as_envoy_wrote_it() {
        let json = render(ConfigKind::Route, Format::Json, &dump(), &Value::Null).expect("json");
        let v: Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(
            v["dynamic_route_configs"][0]["route_config"]["name"],
            "8000"
        );
        let yaml = render(ConfigKind::Secret, Format::Yaml, &dump(), &Value::Null).expect("yaml");
        assert!(yaml.contains("ROOTCA"), "{yaml}");
    }
}
