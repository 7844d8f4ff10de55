//! Scenario S1 in the lab, as a user runs it: `isthmus lab up`, `status`, `run`, `exec`,
//! `delete`, `down`, with real network namespaces, iptables capture, Envoy, mTLS and the
//! mesh DNS. Needs root, iptables, curl and Envoy (`scripts/install-envoy.sh`); CI has
//! them, and without them this test fails saying what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Lab {
    state: PathBuf,
    prefix: String,
}

impl Lab {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_isthmus"))
            .arg("lab")
            .args(args)
            .current_dir(root())
            .env("ISTHMUS_LAB_STATE", &self.state)
            .env("ISTHMUS_LAB_PREFIX", &self.prefix)
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("run isthmus")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "isthmus lab {args:?} failed:\n{text}");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        text
    }

    fn namespaces(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.cmd(&["down"]);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// One lab at a time: five labs on two cores at once make the time-bounded steps (failover
/// within 5 s, cleanup within 5 s) measure the machine instead of the mesh.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn require() -> std::sync::MutexGuard<'static, ()> {
    let guard = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.to_string())
        })
        .unwrap_or_default();
    assert!(
        uid.split_whitespace().nth(1) == Some("0"),
        "the lab test needs root (network namespaces, iptables); CI runs it as root. Run `sudo -E cargo test -p isthmus --test lab_scenarios`."
    );
    for tool in ["ip", "iptables", "iptables-restore", "curl", "getent"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(tool).is_file());
        assert!(
            found,
            "`{tool}` is missing: apt-get install iproute2 iptables curl"
        );
    }
    assert!(
        root().join(".venv/bin/envoy").is_file()
            || std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .any(|d| d.join("envoy").is_file()),
        "Envoy is missing: run scripts/install-envoy.sh"
    );
    guard
}

#[test]
fn s1_and_its_variants_in_the_lab_with_one_pod_cidr_in_both_clusters() {
    let _one = require();
    let lab = Lab {
        state: std::env::temp_dir().join(format!("isthmus-lab-test-{}", std::process::id())),
        prefix: format!("it{}", std::process::id() % 100_000),
    };

    let up = lab.ok(&["up", "examples/gateway-connected"]);
    assert!(up.contains("cluster2: bar/httpbin-0 ready"), "{up}");
    let status = lab.ok(&["status"]);
    for pod in ["istiod-0", "istio-ingressgateway-0", "sleep-0", "httpbin-0"] {
        assert!(status.contains(pod), "{status}");
    }
    assert!(
        !status.contains("Failed") && !status.contains("not ready"),
        "{status}"
    );
    // Both clusters put their control plane at the same address: the pod networks overlap.
    assert_eq!(status.matches(" 10.10.0.2 ").count(), 2, "{status}");

    let run = lab.ok(&["run", "examples/gateway-connected/s1.yaml"]);
    assert!(run.contains("13 of 13 steps passed"), "{run}");

    // The lab protects itself: `up` of another lab with the same state folder, or with the
    // same prefix from another state folder, is refused and the running lab keeps serving.
    let again = lab.cmd(&["up", "examples/split-horizon"]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success(),
        "a second `up` replaced the running lab"
    );
    assert!(
        err.contains("is running") && err.contains("--replace") && err.contains("lab down"),
        "{err}"
    );
    let same_prefix = Lab {
        state: lab.state.with_extension("other"),
        prefix: lab.prefix.clone(),
    };
    let out = same_prefix.cmd(&["up", "examples/split-horizon"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("another lab uses this prefix"),
        "{err}"
    );
    std::mem::forget(same_prefix); // its `down` would stop the first lab
    let _ = std::fs::remove_dir_all(lab.state.with_extension("other"));

    // kubectl-style exec (and the lab still serves).
    let ip = lab.ok(&[
        "exec",
        "cluster1",
        "foo",
        "sleep",
        "--",
        "curl",
        "-sS",
        "-f",
        "httpbin.bar.global:8000/ip",
    ]);
    assert!(ip.contains("\"origin\""), "{ip}");

    // istioctl-style tooling against the running mesh: every type sleep was sent is ACKed,
    // and its live Envoy holds the remote service's cluster and the gateway's endpoint.
    // Scoped on demand, sleep holds only what it called, httpbin.bar.global, a DNS cluster:
    // its Envoy asks for no endpoints, so EDS is NOT SENT (istioctl's words for a type the
    // proxy never asked for).
    let status = lab.ok(&["proxy-status", "cluster1"]);
    let sleep: Vec<&str> = status
        .lines()
        .find(|l| l.starts_with("sleep-0.foo"))
        .unwrap_or_else(|| panic!("no sleep row: {status}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        sleep[1..7],
        ["cluster1", "SYNCED", "SYNCED", "NOT", "SENT", "SYNCED"],
        "{status}"
    );
    let clusters = lab.ok(&["proxy-config", "cluster", "cluster1", "foo", "sleep"]);
    assert!(
        clusters
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "httpbin.bar.global",
                    "8000",
                    "-",
                    "outbound",
                    "STRICT_DNS",
                    "yes"
                ]),
        "{clusters}"
    );
    let endpoints = lab.ok(&["proxy-config", "endpoint", "cluster1", "foo", "sleep"]);
    assert!(
        endpoints.contains(
            "198.18.1.2:15443   HEALTHY   OK              outbound|8000||httpbin.bar.global"
        ),
        "{endpoints}"
    );

    // The S1 variants of issue 4: egress gateway, version-aware routing, cleanup.
    for (scenario, steps) in [
        // Right after s1 (later scenarios leave subsets and routes behind).
        ("traffic-policy", 12),
        ("registry-only", 13),
        ("protocols", 32),
        ("vm", 15),
        ("metrics", 11),
        ("mesh-page", 3),
        ("authz", 23),
        ("peer-authn", 29),
        ("jwt", 15),
        ("jwt-discovery", 11),
        ("tls-origination", 14),
        ("restart", 16),
        ("dns-outage", 16),
        ("s1-egress", 6),
        ("s1-subsets", 10),
        ("s1-cleanup", 8),
        ("vs-features", 23),
    ] {
        let run = lab.ok(&[
            "run",
            &format!("examples/gateway-connected/{scenario}.yaml"),
        ]);
        assert!(
            run.contains(&format!("{steps} of {steps} steps passed")),
            "{scenario}:\n{run}"
        );
    }

    let down = lab.ok(&["down"]);
    assert!(down.contains("lab is down"), "{down}");
    assert!(
        lab.namespaces().is_empty(),
        "left behind: {:?}",
        lab.namespaces()
    );
    assert!(
        !Path::new("/etc/netns").exists()
            || std::fs::read_dir("/etc/netns")
                .map(|d| d.filter_map(|e| e.ok()).all(|e| !e
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", lab.prefix))))
                .unwrap_or(true),
        "resolv.conf folders left in /etc/netns"
    );
}

/// The outbound clusters a pod's Envoy holds now, read from its admin.
fn outbound_clusters(lab: &Lab, cluster: &str, ns: &str, app: &str) -> Vec<String> {
    let clusters = lab.ok(&[
        "exec",
        cluster,
        ns,
        app,
        "--",
        "curl",
        "-s",
        "127.0.0.1:15000/clusters",
    ]);
    let mut names: Vec<String> = clusters
        .lines()
        .filter(|l| l.starts_with("outbound|"))
        .filter_map(|l| l.split("::").next())
        .map(str::to_string)
        .collect();
    names.dedup();
    names
}

#[test]
fn on_demand_scoping_s1_and_its_variants_in_the_lab() {
    let _one = require();
    let lab = Lab {
        state: std::env::temp_dir().join(format!("isthmus-lab-od-{}", std::process::id())),
        prefix: format!("od{}", std::process::id() % 100_000),
    };
    lab.ok(&["up", "examples/gateway-connected", "--scoping", "on-demand"]);
    // Nothing resolved yet: sleep's sidecar holds no service of the mesh, though
    // cluster1 has some (its own namespace's sleep, the gateways).
    assert_eq!(
        outbound_clusters(&lab, "cluster1", "foo", "sleep"),
        Vec::<String>::new()
    );

    let run = lab.ok(&["run", "examples/gateway-connected/s1.yaml"]);
    assert!(run.contains("13 of 13 steps passed"), "{run}");
    // What S1's calls resolved, and nothing else.
    assert_eq!(
        outbound_clusters(&lab, "cluster1", "foo", "sleep"),
        ["outbound|8000||httpbin.bar.global"]
    );

    // Headless Services and StatefulSet pod names, TCP routes, sniffed ports; a control
    // plane restart (the sidecar keeps what it used); subsets.
    for (scenario, steps) in [("protocols", 32), ("restart", 16), ("s1-subsets", 10)] {
        let run = lab.ok(&[
            "run",
            &format!("examples/gateway-connected/{scenario}.yaml"),
        ]);
        assert!(
            run.contains(&format!("{steps} of {steps} steps passed")),
            "{scenario}:\n{run}"
        );
    }
    let down = lab.ok(&["down"]);
    assert!(down.contains("lab is down"), "{down}");

    // Services leave a sidecar's scope once the pod neither resolves them nor calls them
    // for --scope-idle, and come back at the next lookup.
    lab.ok(&["up", "examples/gateway-connected", "--scope-idle", "3"]);
    let run = lab.ok(&["run", "examples/gateway-connected/s1.yaml"]);
    assert!(run.contains("13 of 13 steps passed"), "{run}");
    wait_out_of_scope(&lab);
    let again = sleep_http_code(&lab, "httpbin.bar.global:8000/ip");
    assert_eq!(
        again, "200",
        "the next call waits for the service, then gets it"
    );
    assert_eq!(
        outbound_clusters(&lab, "cluster1", "foo", "sleep"),
        ["outbound|8000||httpbin.bar.global"]
    );

    // A call by address alone (no lookup) to a service outside the scope goes where
    // Istio's sidecar sends it, the passthrough cluster; the agent sees the address there
    // and wants the name, and the calls after it are mesh calls.
    wait_out_of_scope(&lab);
    let by_ip = |lab: &Lab| sleep_http_code(lab, "http://127.255.0.2:8000/ip");
    let first = by_ip(&lab);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut later = first.clone();
    while later != "200" {
        assert!(
            std::time::Instant::now() < deadline,
            "calls by address to httpbin.bar.global's 127.255.0.2 still got {later:?} 15 s after \
             the first ({first:?}); sleep's clusters: {:?}",
            outbound_clusters(&lab, "cluster1", "foo", "sleep")
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        later = by_ip(&lab);
    }
    assert_eq!(
        outbound_clusters(&lab, "cluster1", "foo", "sleep"),
        ["outbound|8000||httpbin.bar.global"],
        "the call by address brought its service into sleep's scope"
    );
}

/// The HTTP status of one `curl URL` from cluster1's sleep (`000` when the call failed).
fn sleep_http_code(lab: &Lab, url: &str) -> String {
    let out = lab.cmd(&[
        "exec",
        "cluster1",
        "foo",
        "sleep",
        "--",
        "curl",
        "-sS",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url,
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until sleep's sidecar in cluster1 holds no outbound cluster (`--scope-idle` let
/// go of every service).
fn wait_out_of_scope(lab: &Lab) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !outbound_clusters(lab, "cluster1", "foo", "sleep").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "sleep's services stayed in its scope 30 s after their last use: {:?}",
            outbound_clusters(lab, "cluster1", "foo", "sleep")
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

#[test]
fn bad_manifests_stop_up_before_anything_is_created() {
    let _one = require();
    let lab = Lab {
        state: std::env::temp_dir().join(format!("isthmus-lab-bad-{}", std::process::id())),
        prefix: format!("ib{}", std::process::id() % 100_000),
    };
    let dir = std::env::temp_dir().join(format!("isthmus-lab-bad-example-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("cluster1/foo")).expect("mkdir");
    std::fs::copy(
        root().join("examples/gateway-connected/topology.yaml"),
        dir.join("topology.yaml"),
    )
    .expect("copy");
    let sleep =
        std::fs::read_to_string(root().join("examples/gateway-connected/cluster1/foo/sleep.yaml"))
            .expect("read");
    std::fs::write(
        dir.join("cluster1/foo/sleep.yaml"),
        sleep.replace("governmentpaas/curl-ssl", "nginx:1.25"),
    )
    .expect("write");
    std::fs::write(dir.join("cluster1/foo/se.yaml"), "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  name: x\nspec:\n  hosts: [x.bar.global]\n  endpoints:\n  - address: ${GATEWAY_IP_CLUSTER9}\n").expect("write");

    let out = lab.cmd(&["up", dir.to_str().expect("utf-8 path")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("se.yaml:8: unknown placeholder ${GATEWAY_IP_CLUSTER9}"),
        "{err}"
    );
    assert!(
        lab.namespaces().is_empty(),
        "namespaces were created: {:?}",
        lab.namespaces()
    );

    std::fs::remove_file(dir.join("cluster1/foo/se.yaml")).expect("rm");
    let out = lab.cmd(&["up", dir.to_str().expect("utf-8 path")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Deployment foo/sleep: image `nginx:1.25` is not a built-in demo app"),
        "{err}"
    );
    assert!(lab.namespaces().is_empty());

    // Without root the lab says so plainly.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_isthmus"),
            "lab",
            "up",
            "examples/gateway-connected",
        ])
        .current_dir(root())
        .env("ISTHMUS_LAB_STATE", &lab.state)
        .env("ISTHMUS_LAB_PREFIX", &lab.prefix)
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the lab needs root"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 16, item 3: three clusters, a `*.global` ServiceEntry whose endpoints are two
/// gateways; one gateway starts dropping packets silently and no call fails after 5 s,
/// without any DestinationRule.
#[test]
fn a_silent_gateway_leaves_rotation_without_configuration() {
    let _one = require();
    let lab = Lab {
        state: std::env::temp_dir().join(format!("isthmus-lab-failover-{}", std::process::id())),
        prefix: format!("if{}", std::process::id() % 100_000),
    };
    // Locality failover and distribute first (in the same three clusters), while no
    // earlier scenario has sent calls that sleep's per-endpoint counters would hold.
    let run = lab.ok(&["run", "examples/gateway-failover/locality.yaml"]);
    assert!(run.contains("17 of 17 steps passed"), "{run}");
    let run = lab.ok(&["run", "examples/gateway-failover/failover.yaml"]);
    assert!(run.contains("13 of 13 steps passed"), "{run}");
    lab.ok(&["down"]);
    assert!(
        lab.namespaces().is_empty(),
        "left behind: {:?}",
        lab.namespaces()
    );
}

#[test]
fn s2_replicated_services_http_and_tcp_both_ways() {
    let _one = require();
    let lab = Lab {
        state: std::env::temp_dir().join(format!("isthmus-lab-s2-{}", std::process::id())),
        prefix: format!("i2{}", std::process::id() % 100_000),
    };
    let run = lab.ok(&["run", "examples/replicated-services/s2.yaml"]);
    assert!(run.contains("11 of 11 steps passed"), "{run}");
    lab.ok(&["down"]);
    assert!(
        lab.namespaces().is_empty(),
        "left behind: {:?}",
        lab.namespaces()
    );
}

#[test]
fn s1_and_s2_with_generated_service_entries_and_export_control() {
    let _one = require();
    let lab = Lab {
        state: std::env::temp_dir().join(format!("isthmus-lab-auto-{}", std::process::id())),
        prefix: format!("ia{}", std::process::id() % 100_000),
    };
    lab.ok(&["up", "examples/multi-primary-auto"]);
    // Generated ServiceEntries are visible and say where they came from.
    // The control planes notice the other cluster's pods a moment after `up` wrote them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let generated = loop {
        let g = lab.ok(&[
            "get",
            "serviceentries",
            "--generated",
            "--cluster",
            "cluster1",
        ]);
        if g.contains("3 endpoints via") || std::time::Instant::now() > deadline {
            break g;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(
        generated
            .contains("# generated from cluster2: 1 endpoint via 198.18.1.2:15443; VIP 240.240."),
        "{generated}"
    );
    assert!(generated.contains("\"httpbin.bar.global\""), "{generated}");
    assert!(
        generated.contains("# generated from cluster2: 3 endpoints via 198.18.1.2:15443"),
        "bar.ns2 has three pods in cluster2: {generated}"
    );
    assert!(!generated.contains("secret.ns2"), "{generated}");
    let run = lab.ok(&["run", "examples/multi-primary-auto/auto.yaml"]);
    assert!(run.contains("13 of 13 steps passed"), "{run}");
    lab.ok(&["down"]);
    assert!(
        lab.namespaces().is_empty(),
        "left behind: {:?}",
        lab.namespaces()
    );
}

#[test]
fn s3_one_control_plane_split_horizon_through_the_gateway() {
    let _one = require();
    let lab = Lab {
        state: std::env::temp_dir().join(format!("isthmus-lab-s3-{}", std::process::id())),
        prefix: format!("i3{}", std::process::id() % 100_000),
    };
    let run = lab.ok(&["run", "examples/split-horizon/s3.yaml"]);
    assert!(run.contains("21 of 21 steps passed"), "{run}");
    let run = lab.ok(&["run", "examples/split-horizon/hash.yaml"]);
    assert!(run.contains("9 of 9 steps passed"), "{run}");
    let status = lab.ok(&["status"]);
    // The remote cluster runs no control plane of its own.
    assert_eq!(status.matches("istiod-0").count(), 1, "{status}");
    lab.ok(&["down"]);
    assert!(
        lab.namespaces().is_empty(),
        "left behind: {:?}",
        lab.namespaces()
    );
}

#[test]
fn s4_remote_suffix_through_egress_and_ingress_gateways() {
    let _one = require();
    let lab = Lab {
        state: std::env::temp_dir().join(format!("isthmus-lab-s4-{}", std::process::id())),
        prefix: format!("i4{}", std::process::id() % 100_000),
    };
    let run = lab.ok(&["run", "examples/remote-suffix/s4.yaml"]);
    assert!(run.contains("18 of 18 steps passed"), "{run}");
    // Every Bookinfo service answered through the page; both directions crossed gateways.
    for needle in [
        "pod default/productpage-v1-0 (bookinfo productpage)",
        "pod default/reviews-v3-0 (bookinfo reviews v3)",
    ] {
        assert!(run.contains(needle), "{needle}: {run}");
    }
    let tls = lab.ok(&["run", "examples/remote-suffix/gateway-tls.yaml"]);
    assert!(tls.contains("23 of 23 steps passed"), "{tls}");
    let status = lab.ok(&["status"]);
    // Two separate meshes: each cluster runs its own control plane.
    assert_eq!(status.matches("istiod-0").count(), 2, "{status}");
    lab.ok(&["down"]);
    assert!(
        lab.namespaces().is_empty(),
        "left behind: {:?}",
        lab.namespaces()
    );
}
