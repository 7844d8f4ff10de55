//! `isthmus proxy-status`: each connected proxy's CDS/LDS/EDS/RDS state, as istioctl prints
//! it, from the control plane's `/debug/syncz` (what it sent and what the proxy ACKed).

use anyhow::{Context, Result};
use serde_json::Value;

/// The type URLs, in istioctl's column order.
const TYPES: [(&str, &str); 4] = [
    ("CDS", "type.googleapis.com/envoy.config.cluster.v3.Cluster"),
    (
        "LDS",
        "type.googleapis.com/envoy.config.listener.v3.Listener",
    ),
    (
        "EDS",
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    ),
    (
        "RDS",
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    ),
];

/// One type's state: `SYNCED` (the proxy ACKed what was sent last), `STALE` (sent, not yet
/// ACKed: in flight, or NACKed, which is said), `NOT SENT`.
fn state(p: &Value, type_url: &str) -> String {
    let sent = p["sent"][type_url].as_str();
    let acked = p["acked"][type_url].as_str();
    let nacked = p["nacked"][type_url].is_string();
    match (sent, acked) {
        (None, _) => "NOT SENT".into(),
        _ if nacked => "STALE (NACK)".into(),
        (Some(s), Some(a)) if s == a => "SYNCED".into(),
        _ => "STALE".into(),
    }
}

/// `sidecar~10.0.0.1~sleep-0.foo~foo.svc.cluster.local` -> `sleep-0.foo`.
fn name(node_id: &str) -> &str {
    node_id.split('~').nth(2).unwrap_or(node_id)
}

/// The table of the proxies in `/debug/syncz`'s `body` (agents' name-table streams left out),
/// served by `control_plane`.
pub fn table(body: &str, control_plane: &str) -> Result<String> {
    let proxies: Vec<Value> =
        serde_json::from_str(body).context("the control plane's /debug/syncz is not JSON")?;
    let mut rows: Vec<Vec<String>> = vec![[
        "NAME",
        "CLUSTER",
        "CDS",
        "LDS",
        "EDS",
        "RDS",
        "CONTROL PLANE",
        "VERSION",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    let mut envoys: Vec<&Value> = proxies.iter().filter(|p| p["protocol"] != "nds").collect();
    envoys.sort_by_key(|p| name(p["node_id"].as_str().unwrap_or_default()).to_string());
    for p in envoys {
        let mut row = vec![
            name(p["node_id"].as_str().unwrap_or("-")).to_string(),
            p["cluster"]
                .as_str()
                .filter(|c| !c.is_empty())
                .unwrap_or("-")
                .to_string(),
        ];
        row.extend(TYPES.iter().map(|(_, t)| state(p, t)));
        row.push(control_plane.to_string());
        row.push(p["sent"][TYPES[0].1].as_str().unwrap_or("-").to_string());
        rows.push(row);
    }
    Ok(crate::proxy_config::table(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_stale_nacked_and_not_sent_as_istioctl_says_them() {
        let cds = TYPES[0].1;
        let lds = TYPES[1].1;
        let eds = TYPES[2].1;
        let body = serde_json::json!([
            {"node_id": "sidecar~10.0.0.1~sleep-0.foo~foo.svc.cluster.local", "protocol": "sotw",
             "cluster": "cluster1",
             "sent": {cds: "7", lds: "7", eds: "8"},
             "acked": {cds: "7", lds: "6", eds: "7"},
             "nacked": {eds: "bad endpoint"}},
            {"node_id": "sidecar~10.0.0.1~sleep-0.foo~foo.svc.cluster.local", "protocol": "nds",
             "sent": {}, "acked": {}, "nacked": {}}
        ])
        .to_string();
        let t = table(&body, "10.10.0.2:15012").expect("table");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "agents' name-table streams are left out: {t}"
        );
        assert!(
            lines[0].starts_with("NAME") && lines[0].ends_with("VERSION"),
            "{t}"
        );
        let cols: Vec<&str> = lines[1]
            .split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cols,
            [
                "sleep-0.foo",
                "cluster1",
                "SYNCED",
                "STALE",
                "STALE (NACK)",
                "NOT SENT",
                "10.10.0.2:15012",
                "7"
            ]
        );
        assert!(table("nope", "x").is_err());
    }
}
