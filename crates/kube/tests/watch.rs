//! The Kubernetes source against a real etcd and kube-apiserver with Istio's own CRDs: the
//! first complete list, point changes, objects the API server accepts but Isthmus cannot use
//! (last good kept, the object named), kinds Isthmus refuses, deletes, and an API server
//! restart. Needs the binaries from scripts/install-kubernetes.sh and the CRDs from
//! scripts/install-istio-crds.sh; fails saying so when they are missing.

use isthmus_api::Object;
use isthmus_kube::local::{locate_binaries, locate_istio_crds, LocalCluster, LocalOptions};
use isthmus_kube::{KubeRegistry, KubeSource};
use isthmus_registry::{Changes, Registry};
use std::time::{Duration, Instant};

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Syncs until `done` holds or 60 s pass (then fails with `what` and the store's keys).
async fn until(registry: &mut KubeRegistry, what: &str, done: impl Fn(&KubeRegistry) -> bool) {
    let wake = registry.source().wakeup();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        registry.sync(&Changes::default());
        if done(registry) {
            return;
        }
        if Instant::now() > deadline {
            let keys: Vec<String> = registry
                .current()
                .resources
                .keys()
                .map(|k| k.to_string())
                .filter(|k| !k.starts_with("Namespace/"))
                .collect();
            panic!(
                "timed out waiting for {what}; store: {keys:?}; problems: {:?}; waiting for: {:?}",
                registry
                    .current()
                    .diagnostics
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>(),
                registry.source().waiting_for()
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
    }
}

/// This process's established TCP connections to `port` on loopback, from its sockets
/// (`/proc/self/fd`) matched by inode against the kernel's table (`/proc/self/net/tcp`).
fn connections_to(port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/self/net/tcp").expect("/proc/self/net/tcp");
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // remote address, state (01: established), inode.
            f.len() > 9 && f[2] == remote && f[3] == "01" && inodes.contains(f[9])
        })
        .count()
}

fn has(registry: &KubeRegistry, key: &str) -> bool {
    registry
        .current()
        .resources
        .keys()
        .any(|k| k.to_string() == key)
}

fn problems(registry: &KubeRegistry) -> String {
    registry
        .current()
        .diagnostics
        .iter()
        .map(|d| format!("{d}\n"))
        .collect()
}

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: bar}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
";

fn destination_rule(subsets: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: httpbin, namespace: bar}}
spec:
  host: httpbin.bar.svc.cluster.local
  subsets: [{subsets}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_a_real_api_server() {
    // The binaries are found from the repository, as from a user's checkout.
    std::env::set_current_dir(repo_root()).expect("repository root");
    let bin = locate_binaries(None).unwrap_or_else(|e| panic!("{e}"));
    let crds = locate_istio_crds().unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("isthmus-kube-watch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = LocalOptions::loopback(bin, dir.clone());
    let mut cluster = tokio::task::spawn_blocking(move || LocalCluster::start(options))
        .await
        .expect("start")
        .unwrap_or_else(|e| panic!("{e}"));
    cluster.install_istio_crds(&crds).expect("Istio CRDs");
    fn run(cluster: &LocalCluster, args: &[&str], stdin: Option<&str>) -> String {
        cluster
            .kubectl(args, stdin)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }
    macro_rules! kubectl {
        ($args:expr, $stdin:expr $(,)?) => {
            run(&cluster, $args, $stdin)
        };
    }
    kubectl!(&["create", "namespace", "bar"], None);
    kubectl!(&["apply", "-f", "-"], Some(SERVICE));

    let client = cluster.client().await.expect("client");
    let mut registry: KubeRegistry =
        Registry::with_source(KubeSource::start("c1", client, "test".into()));
    until(&mut registry, "the first complete list", |r| r.is_synced()).await;
    assert!(has(&registry, "Service/bar/httpbin"));
    // Every kind's watch and the version check share one HTTP/2 connection, as client-go's
    // do (kube-rs alone would hold one HTTP/1.1 connection per open watch).
    let port: u16 = cluster
        .url(std::net::IpAddr::from([127, 0, 0, 1]))
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the API server's port");
    assert_eq!(connections_to(port), 1, "one connection for all watches");

    // A request that has started the connection and is then left unpolled (a watch inside a
    // `select!` whose other branch calls the same server) holds up no other request: the dial
    // runs in a task of its own, not in the first request's future.
    {
        use k8s_openapi::api::core::v1::Namespace;
        let fresh = cluster.client().await.expect("client");
        let first_api: kube::Api<Namespace> = kube::Api::all(fresh.clone());
        let list = kube::api::ListParams::default();
        let mut first = Box::pin(first_api.list(&list));
        assert!(futures::poll!(first.as_mut()).is_pending());
        let second: kube::Api<Namespace> = kube::Api::all(fresh);
        let namespaces = tokio::time::timeout(Duration::from_secs(20), second.list(&list))
            .await
            .expect("the second request is not held up by the first, unpolled")
            .expect("namespaces listed");
        assert!(namespaces
            .items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("bar")));
        assert!(first.await.is_ok(), "the first completes when polled again");
    }
    assert!(has(&registry, "Namespace//bar") || has(&registry, "Namespace/bar"));

    // A point change: a DestinationRule written as v1beta1 arrives (read at v1).
    kubectl!(
        &["apply", "-f", "-"],
        Some(&destination_rule("{name: v1, labels: {version: v1}}"))
    );
    until(&mut registry, "the DestinationRule", |r| {
        has(r, "DestinationRule/bar/httpbin")
    })
    .await;

    // EndpointSlices: one a user wrote (read: a selector-less Service's endpoints) and one of
    // the EndpointSlice controller's (selected out by the API server: the build reads the
    // pods it mirrors).
    let slice = |name: &str, managed_by: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: bar, labels: {{kubernetes.io/service-name: httpbin, endpointslice.kubernetes.io/managed-by: {managed_by}}}}}\naddressType: IPv4\nports: [{{name: http, port: 80}}]\nendpoints: [{{addresses: [10.1.0.9]}}]\n"
        )
    };
    kubectl!(
        &["apply", "-f", "-"],
        Some(&format!(
            "{}---\n{}",
            slice("httpbin-controller", "endpointslice-controller.k8s.io"),
            slice("httpbin-user", "someone")
        ))
    );
    until(&mut registry, "the user's EndpointSlice", |r| {
        has(r, "EndpointSlice/bar/httpbin-user")
    })
    .await;
    assert!(
        !has(&registry, "EndpointSlice/bar/httpbin-controller"),
        "the controller's slice is not read"
    );

    // Valid to the API server, wrong to Isthmus (two subsets named v1): the last good version
    // stays, and the problem names the object and the field.
    kubectl!(
        &["apply", "-f", "-"],
        Some(&destination_rule(
            "{name: v1, labels: {version: v1}}, {name: v1, labels: {version: v2}}",
        )),
    );
    until(&mut registry, "a problem with the DestinationRule", |r| {
        problems(r).contains("DestinationRule/bar/httpbin")
    })
    .await;
    let p = problems(&registry);
    assert!(
        p.contains("spec.subsets[1].name") && p.contains("duplicate subset"),
        "{p}"
    );
    let dr = registry
        .current()
        .resources
        .values()
        .find(|r| r.key().to_string() == "DestinationRule/bar/httpbin")
        .cloned()
        .expect("the last good DestinationRule stays");
    let Object::DestinationRule(dr) = &dr.object else {
        panic!("kind")
    };
    assert_eq!(
        dr.spec.subsets.len(),
        1,
        "the last good version, not the bad one"
    );

    // A kind Isthmus does not enforce is refused loudly, never ignored; so is a policy
    // action it cannot enforce; an AuthorizationPolicy it enforces is read.
    kubectl!(
        &["apply", "-f", "-"],
        Some("apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: wasm, namespace: bar}\nspec: {url: 'oci://registry.invalid/filter:1'}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext, namespace: bar}\nspec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: bar}\nspec: {action: DENY, rules: [{}]}\n"),
    );
    until(
        &mut registry,
        "the WasmPlugin and CUSTOM policy reported",
        |r| {
            let p = problems(r);
            p.contains("WasmPlugin (extensions.istio.io/v1alpha1) is not supported by Isthmus")
                && p.contains("AuthorizationPolicy/bar/ext: spec.provider: action CUSTOM")
                && has(r, "AuthorizationPolicy/bar/deny-all")
        },
    )
    .await;
    assert!(!has(&registry, "WasmPlugin/bar/wasm"));
    assert!(!has(&registry, "AuthorizationPolicy/bar/ext"));

    // CRDs older than Istio 1.22 serve AuthorizationPolicy at v1beta1 only: the kind is then
    // watched at the version served, never taken for absent (no policies would be a hole).
    // Here the CRD stops serving v1 (for the rest of the test: the remote census below
    // counts the kind at v1beta1 too); the policy in force stays and one written at v1beta1
    // is read.
    kubectl!(
        &[
            "patch",
            "crd",
            "authorizationpolicies.security.istio.io",
            "--type=json",
            "-p",
            r#"[{"op": "test", "path": "/spec/versions/0/name", "value": "v1"}, {"op": "replace", "path": "/spec/versions/0/served", "value": false}]"#,
        ],
        None,
    );
    kubectl!(
        &["apply", "-f", "-"],
        Some("apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: old-deny, namespace: bar}\nspec: {action: DENY, rules: [{}]}\n"),
    );
    until(
        &mut registry,
        "the AuthorizationPolicy written at v1beta1, read where v1 is not served",
        |r| has(r, "AuthorizationPolicy/bar/old-deny"),
    )
    .await;
    assert!(has(&registry, "AuthorizationPolicy/bar/deny-all"));
    // A control plane that starts now (its first list of the kind at v1 is refused).
    let mut fresh: KubeRegistry = Registry::with_source(KubeSource::start(
        "c1",
        cluster.client().await.expect("client"),
        "test".into(),
    ));
    until(&mut fresh, "a fresh source's first complete list", |r| {
        r.is_synced()
            && has(r, "AuthorizationPolicy/bar/old-deny")
            && has(r, "AuthorizationPolicy/bar/deny-all")
    })
    .await;
    let p = problems(&fresh);
    assert!(
        p.contains("AuthorizationPolicy/bar/ext: spec.provider"),
        "the unusable policy is reported as before: {p}"
    );
    drop(fresh);

    // The same API server read as a remote cluster: its Services, Pods, Nodes, Namespaces
    // and EndpointSlices only; its Istio objects are counted and reported as not applied,
    // never kept nor read (the bad DestinationRule is no error there).
    let remote_client = cluster.client().await.expect("client");
    let mut remote: KubeRegistry = Registry::with_source(KubeSource::start_remote(
        "c2",
        remote_client,
        "test".into(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    ));
    until(
        &mut remote,
        "the remote cluster's Istio objects counted",
        |r| r.is_synced() && problems(r).contains("cluster c2 holds Istio configuration"),
    )
    .await;
    assert!(has(&remote, "Service/bar/httpbin"));
    assert!(has(&remote, "EndpointSlice/bar/httpbin-user"));
    assert!(!has(&remote, "EndpointSlice/bar/httpbin-controller"));
    let kinds: std::collections::BTreeSet<String> = remote
        .current()
        .resources
        .keys()
        .map(|k| k.kind.to_string())
        .collect();
    assert!(
        kinds.iter().all(|k| ["Namespace", "Service", "Pod", "Node", "EndpointSlice"].contains(&k.as_str())),
        "{kinds:?}"
    );
    let p = problems(&remote);
    assert!(
        p.contains("3 AuthorizationPolicy (bar/deny-all and 2 more)")
            && p.contains("1 DestinationRule (bar/httpbin)")
            && p.contains("1 WasmPlugin (bar/wasm)")
            && p.contains("no control plane applies"),
        "{p}"
    );
    assert!(!p.contains("spec.subsets"), "{p}");
    drop(remote);

    // Deletes: the DestinationRule goes and its problem with it.
    kubectl!(&["delete", "destinationrule", "-n", "bar", "httpbin"], None);
    until(&mut registry, "the DestinationRule deleted", |r| {
        !has(r, "DestinationRule/bar/httpbin")
            && !problems(r).contains("DestinationRule/bar/httpbin")
    })
    .await;

    // The API server restarts; the store keeps everything meanwhile and the watch resumes: a
    // change made after the restart arrives.
    let before = registry.current().resources.len();
    cluster.stop_api_server();
    tokio::time::sleep(Duration::from_secs(3)).await;
    registry.sync(&Changes::default());
    assert_eq!(
        registry.current().resources.len(),
        before,
        "nothing is dropped while the API server is down"
    );
    assert!(has(&registry, "Service/bar/httpbin"));
    tokio::task::block_in_place(|| cluster.restart_api_server()).unwrap_or_else(|e| panic!("{e}"));
    kubectl!(
        &["apply", "-f", "-"],
        Some(&destination_rule("{name: v2, labels: {version: v2}}"))
    );
    until(&mut registry, "a change after the restart", |r| {
        has(r, "DestinationRule/bar/httpbin")
    })
    .await;
    assert!(has(&registry, "Service/bar/httpbin"));
    assert_eq!(
        connections_to(port),
        1,
        "the watches started again share one new connection"
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
