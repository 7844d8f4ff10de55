//! `isthmus analyze` as a user runs it: Istio's codes, file:line, resource and field for
//! each message; JSON and YAML output; the failure threshold; the conflicts the control
//! plane itself rejects.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `isthmus analyze ARGS` from the repository root: exit code and stdout.
fn analyze(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .arg("analyze")
        .args(args)
        .current_dir(root())
        .output()
        .expect("run isthmus");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn cross_resource_problems_are_reported_with_istios_codes_and_their_place() {
    let (code, out) = analyze(&["testdata/analyze"]);
    assert_eq!(code, 1, "errors fail the command:\n{out}");
    for expected in [
        "Error [IST0101] (VirtualService reviews-from-outside.default testdata/analyze/mesh.yaml:24) spec.gateways[0]: Referenced gateway not found: \"ingress\"",
        "Error [IST0101] (VirtualService reviews-from-outside.default testdata/analyze/mesh.yaml:27) spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: \"reviews+v3\"",
        "Error [IST0101] (VirtualService reviews-from-outside.default testdata/analyze/mesh.yaml:29) spec.http[0].route[1].destination.host: Referenced host not found: \"ratings\"",
        "Error [IST0101] (Gateway nobody.istio-system testdata/analyze/gateway.yaml:33) spec.selector: Referenced selector not found: \"istio=no-such-gateway\"",
        "Warning [IST0104] (Gateway ingress.istio-system testdata/analyze/gateway.yaml:26) spec.servers[1].port.number: The gateway refers to a port that is not exposed on the workload (pod selector istio=ingressgateway; port 8443)",
        "Error [IST0109] (VirtualService reviews-a.default testdata/analyze/mesh.yaml:36) spec.hosts:",
        "Error [IST0109] (VirtualService reviews-b.default testdata/analyze/mesh.yaml:45) spec.hosts:",
        // What the control plane refuses when it builds the mesh from the same files.
        "Error [ISM0001] (ServiceEntry api-2.default testdata/analyze/mesh.yaml:62) spec.hosts: host api.example.com is already defined by another ServiceEntry",
        "Warning [IST0128] (DestinationRule api.default testdata/analyze/mesh.yaml:72) spec.trafficPolicy.tls.insecureSkipVerify:",
        "12 resources loaded: 7 errors, 2 warnings",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(expected)),
            "no line starting {expected:?} in\n{out}"
        );
    }
    // The port the gateway's Service sends to (its targetPort) is not reported, nor are
    // the subsets and hosts that exist.
    assert!(!out.contains("port 8080)"), "{out}");
    assert!(
        !out.contains("reviews+v1") && !out.contains("reviews+v2"),
        "{out}"
    );
}

#[test]
fn json_and_yaml_carry_istioctls_keys_and_the_threshold_decides_the_exit() {
    let (code, json) = analyze(&["testdata/analyze", "-o", "json"]);
    assert_eq!(code, 1);
    let messages: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let first_ist0101 = messages
        .as_array()
        .expect("an array")
        .iter()
        .find(|m| m["code"] == "IST0101")
        .expect("an IST0101");
    assert_eq!(first_ist0101["name"], "ReferencedResourceNotFound");
    assert_eq!(first_ist0101["level"], "Error");
    assert!(first_ist0101["reference"]
        .as_str()
        .is_some_and(|r| r.starts_with("testdata/analyze/")));
    assert_eq!(
        first_ist0101["documentationUrl"],
        "https://istio.io/latest/docs/reference/config/analysis/ist0101/"
    );
    let (_, yaml) = analyze(&["testdata/analyze", "-o", "yaml"]);
    assert!(yaml.contains("code: IST0109"), "{yaml}");

    // Only warnings: passes at the default threshold (Error), fails at Warning.
    let only_warnings = root().join("testdata/analyze/mesh.yaml");
    let dir = std::env::temp_dir().join(format!("isthmus-analyze-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let text = std::fs::read_to_string(&only_warnings).expect("read");
    let dr = text
        .split("\n---\n")
        .last()
        .expect("the last document is the DestinationRule");
    let file = dir.join("dr.yaml");
    std::fs::write(&file, dr).expect("write");
    let path = file.to_string_lossy().into_owned();
    let (code, out) = analyze(&[&path]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[IST0128]"), "{out}");
    let (code, _) = analyze(&[&path, "--failure-threshold", "Warning"]);
    assert_eq!(code, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_without_problems_say_so_and_pass() {
    let (code, out) = analyze(&["testdata/seed000"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "10 resources loaded: 0 errors, 0 warnings");
}

/// What an API server holds is analyzed as files are: `analyze --kubeconfig` lists every
/// kind the mesh reads (as the control plane lists it) and reports with the same codes;
/// the object has no file, so the message names the resource only. Needs the binaries from
/// scripts/install-kubernetes.sh and the CRDs from scripts/install-istio-crds.sh; fails
/// saying so when they are missing.
#[test]
fn a_live_api_server_is_analyzed_with_the_same_codes() {
    use isthmus_kube::local::{locate_binaries, locate_istio_crds, LocalCluster, LocalOptions};
    std::env::set_current_dir(root()).expect("repository root");
    let bin = locate_binaries(None).unwrap_or_else(|e| panic!("{e}"));
    let crds = locate_istio_crds().unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("isthmus-analyze-kube-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = LocalCluster::start(LocalOptions::loopback(bin, dir.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    cluster.install_istio_crds(&crds).expect("Istio CRDs");
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        cluster
            .kubectl(args, stdin)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    };
    kubectl(&["create", "namespace", "bar"], None);
    kubectl(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Service\nmetadata: {name: httpbin, namespace: bar}\nspec:\n  selector: {app: httpbin}\n  ports: [{name: http, port: 8000}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: httpbin, namespace: bar}\nspec:\n  hosts: [httpbin.example.com]\n  gateways: [missing-gateway]\n  http:\n  - route:\n    - destination: {host: httpbin, subset: v9}\n",
        ),
    );
    let kubeconfig = cluster.kubeconfig_path();
    let (code, out) = analyze(&["--kubeconfig", &kubeconfig.to_string_lossy()]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "Error [IST0101] (VirtualService httpbin.bar) spec.gateways[0]: Referenced gateway not found: \"missing-gateway\"",
        "Error [IST0101] (VirtualService httpbin.bar) spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: \"httpbin+v9\"",
    ] {
        assert!(out.lines().any(|l| l == expected), "no {expected:?} in\n{out}");
    }
    // A file's version replaces the server's: with the gateway given as a file, that
    // message goes.
    let gw = dir.join("gateway.yaml");
    std::fs::write(&gw, "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: missing-gateway, namespace: bar}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n").expect("write");
    let (_, out) = analyze(&[
        &gw.to_string_lossy(),
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
    ]);
    assert!(!out.contains("missing-gateway\""), "{out}");
    assert!(out.contains("httpbin+v9"), "{out}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
