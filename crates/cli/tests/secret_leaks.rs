//! No Secret data reaches a log or a debug page, whatever goes wrong with the credential it
//! holds (issue 18, items 2 and 3). A real control plane reads a real kube-apiserver in
//! which credential Secrets (label `istio/multiCluster=true`) hold kubeconfigs with a
//! recognisable token: a broken kubeconfig, one that runs a command, an unreachable server,
//! a server whose certificate the kubeconfig's CA does not sign, and a token the server does
//! not accept. Each must be reported on `/debug/diagnostics` (which cluster, what failed,
//! since when), and the token must appear in no log line (at debug level) and no answer of
//! the monitoring port. Needs the binaries from scripts/install-kubernetes.sh.

use base64::Engine as _;
use isthmus_bench::orchestrate::control_plane;
use isthmus_kube::local::{locate_binaries, LocalCluster, LocalOptions};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const CANARY: &str = "leakcanary7f3e9b21d4c8a6";

/// A credential Secret for `cluster` holding `kubeconfig`.
fn secret(cluster: &str, kubeconfig: &str) -> String {
    let indented: String = kubeconfig.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: istio-remote-secret-{cluster}\n  namespace: istio-system\n  labels: {{istio/multiCluster: \"true\"}}\nstringData:\n  {cluster}: |\n{indented}---\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_a_log_or_a_debug_page_whatever_fails() {
    std::env::set_current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .expect("repository root");
    let bin = locate_binaries(None).unwrap_or_else(|e| panic!("{e}"));
    let work = std::env::temp_dir().join(format!("isthmus-secret-leaks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let options = LocalOptions::loopback(bin, work.join("kube"));
    let local = tokio::task::spawn_blocking(move || LocalCluster::start(options))
        .await
        .expect("start")
        .unwrap_or_else(|e| panic!("{e}"));
    local
        .kubectl(&["create", "namespace", "istio-system"], None)
        .unwrap_or_else(|e| panic!("{e}"));
    let cp = control_plane::start_kube_with_env(
        std::path::Path::new(env!("CARGO_BIN_EXE_isthmus")),
        &local.kubeconfig_path(),
        &work,
        &[("RUST_LOG".into(), "debug".into())],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let admin = local.kubeconfig(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let with_token = |text: &str| -> String {
        text.lines()
            .map(|l| match l.split_once("token: ") {
                Some((indent, _)) => format!("{indent}token: {CANARY}\n"),
                None => format!("{l}\n"),
            })
            .collect()
    };
    let good = with_token(&admin);
    let url = local.url(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let other_ca = work.join("other-ca");
    isthmus_ca::create_root(&other_ca).expect("another CA");
    let other_pem = std::fs::read(other_ca.join("root-cert.pem")).expect("other CA");
    let other_b64 = base64::engine::general_purpose::STANDARD.encode(other_pem);
    let wrong_ca: String = good
        .lines()
        .map(|l| match l.split_once("certificate-authority-data: ") {
            Some((indent, _)) => format!("{indent}certificate-authority-data: {other_b64}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    let cases = [
        // (cluster, kubeconfig, what its diagnostic must say)
        (
            "c-broken",
            format!("apiVersion: v1\nkind: Config\nclusters: not-a-list\nusers:\n- name: u\n  user: {{token: {CANARY}}}\n"),
            "not a valid kubeconfig",
        ),
        (
            "c-exec",
            good.replace(
                &format!("token: {CANARY}"),
                &format!("exec: {{apiVersion: client.authentication.k8s.io/v1, command: /bin/echo, args: [{CANARY}]}}"),
            ),
            "uses exec",
        ),
        (
            "c-unreachable",
            good.replace(&url, "https://127.0.0.1:1"),
            "unreachable",
        ),
        ("c-wrong-ca", wrong_ca, "TLS"),
        ("c-bad-token", good.clone(), "unauthorized"),
    ];
    let all: String = cases.iter().map(|(c, k, _)| secret(c, k)).collect();
    local
        .kubectl(&["apply", "-f", "-"], Some(&all))
        .unwrap_or_else(|e| panic!("{e}"));

    // Every credential's problem is reported, each with its cluster, reason and time.
    let deadline = Instant::now() + Duration::from_secs(90);
    let diagnostics = loop {
        let (_, body) =
            isthmus_lab::http::get(cp.monitoring, "/debug/diagnostics").unwrap_or_default();
        let reported = cases.iter().all(|(cluster, _, says)| {
            body.lines().any(|l| {
                l.contains(&format!("cluster {cluster}:"))
                    && l.contains(says)
                    && l.contains(" since 20")
            })
        });
        if reported {
            break body;
        }
        if Instant::now() > deadline {
            panic!("not every credential problem was reported within 90 s:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("diagnostics:\n{diagnostics}");
    // And in metrics: each of them is a source that is not read, with since when.
    let (_, metrics) = isthmus_lab::http::get(cp.monitoring, "/metrics").unwrap_or_default();
    for (cluster, _, _) in &cases {
        for line in [
            format!("isthmus_cluster_source_up{{cluster=\"{cluster}\"}} 0"),
            format!("isthmus_cluster_source_down_since_seconds{{cluster=\"{cluster}\"}} 1"),
        ] {
            assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
        }
    }
    assert!(
        metrics.contains("isthmus_cluster_source_up{cluster=\"cluster1\"} 1"),
        "{metrics}"
    );
    // Let the watches retry a few times, so that their log lines are there to read.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut seen = vec![("/debug/diagnostics".to_string(), diagnostics)];
    for path in [
        "/metrics",
        "/debug/syncz",
        "/debug/serviceentries",
        "/ready",
        "/nope",
    ] {
        let (_, body) = isthmus_lab::http::get(cp.monitoring, path).unwrap_or_default();
        seen.push((path.to_string(), body));
    }
    let log = std::fs::read_to_string(&cp.log).expect("control plane log");
    assert!(
        log.lines().count() > 50,
        "the debug log is too short to mean anything:\n{log}"
    );
    seen.push(("the control plane's log".to_string(), log));
    for (place, text) in &seen {
        if let Some(line) = text.lines().find(|l| l.contains(CANARY)) {
            panic!("the token reached {place}: {line}");
        }
    }
    drop(cp);
    drop(local);
    let _ = std::fs::remove_dir_all(&work);
}
