//! `proxy-config --offline`: what the control plane would send a node, as the config dump
//! a live Envoy would give for it (Envoy's JSON, not Rust debug text) and as istioctl's
//! tables.

use std::path::PathBuf;
use std::process::Command;

const NODE: &str = "sidecar~127.0.1.1~sleep-0.foo~foo.svc.cluster.local";

fn proxy_config(args: &[&str]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .arg("proxy-config")
        .args(args)
        .args([
            "--offline",
            "--cluster",
            "cluster1",
            "--network",
            "network1",
            "--registry",
            "cluster1=testdata/seed000/cluster1",
            "--node-id",
            NODE,
        ])
        .current_dir(root)
        .output()
        .expect("run isthmus");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_offline_dump_is_envoys_json_with_every_any_expanded() {
    let clusters: serde_json::Value =
        serde_json::from_str(&proxy_config(&["cluster", "-o", "json"])).expect("JSON");
    assert_eq!(
        clusters["@type"],
        "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
    );
    let names: Vec<&str> = clusters["dynamic_active_clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .filter_map(|c| c["cluster"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"outbound|80||sleep.foo.svc.cluster.local"),
        "{names:?}"
    );
    let listeners = proxy_config(&["listener", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&listeners).expect("JSON");
    assert!(v["dynamic_listeners"]
        .as_array()
        .is_some_and(|l| !l.is_empty()));
    // Packed configs are expanded, as in Envoy's own dump, and snake_case as Envoy writes.
    assert!(listeners.contains(
        "\"@type\": \"type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config\""
    ));
    assert!(listeners.contains("\"stat_prefix\""), "snake_case names");
    assert!(!listeners.contains("Some("), "no Rust debug text");
    let yaml = proxy_config(&["route", "-o", "yaml"]);
    assert!(yaml.contains("dynamic_route_configs:"), "{yaml}");
}

#[test]
fn the_offline_tables_are_the_live_ones() {
    let clusters = proxy_config(&["cluster"]);
    assert!(clusters.starts_with("SERVICE FQDN"), "{clusters}");
    assert!(clusters
        .lines()
        .any(|l| l.starts_with("sleep.foo.svc.cluster.local") && l.contains("outbound")));
    let endpoints = proxy_config(&["endpoint"]);
    assert!(
        endpoints.lines().any(
            |l| l.contains("outbound|80||sleep.foo.svc.cluster.local") && l.contains("HEALTHY")
        ),
        "{endpoints}"
    );
}
