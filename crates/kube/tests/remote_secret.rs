//! `create-remote-secret` against a real etcd, kube-apiserver and kube-controller-manager
//! with Istio's CRDs: the credential it makes is enough for a control plane's watches of a
//! remote cluster and its count of Istio objects (no `403`), is not enough to write or to
//! read any Secret, is rotated
//! (the old token stops working), and works from the TokenRequest API too. Needs the
//! binaries from scripts/install-kubernetes.sh and the CRDs from
//! scripts/install-istio-crds.sh; fails saying so when they are missing.

use isthmus_kube::local::{locate_binaries, locate_istio_crds, LocalCluster, LocalOptions};
use isthmus_kube::remote_secret::{self, RemoteSecretOptions, TokenSource};
use isthmus_kube::{Access, KubeRegistry, KubeSource};
use isthmus_registry::{Changes, Registry};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, ListParams, PostParams};
use std::time::{Duration, Instant};

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A client from the credential's kubeconfig, as the reading control plane makes it.
async fn client_of(secret: &remote_secret::RemoteSecret) -> kube::Client {
    Access::Text {
        text: secret.kubeconfig.clone(),
        origin: format!("Secret {} key {}", secret.name(), secret.cluster),
    }
    .client()
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The problems `registry` reports, as text.
fn problems_of(registry: &KubeRegistry) -> Vec<String> {
    registry
        .current()
        .diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect()
}

/// Reads `client`'s cluster as a remote one until the first complete list and the first
/// count of its Istio objects (the cluster holds a DestinationRule, whose count is reported),
/// and returns the other problems reported (a `403` would be one).
async fn watch_problems(client: kube::Client) -> Vec<String> {
    let mut registry: KubeRegistry = Registry::with_source(KubeSource::start_remote(
        "remote",
        client,
        "reader".into(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    ));
    let wake = registry.source().wakeup();
    let deadline = Instant::now() + Duration::from_secs(60);
    let counted = |r: &KubeRegistry| {
        problems_of(r)
            .iter()
            .any(|p| p.contains("holds Istio configuration that no control plane applies: 1 DestinationRule (bar/counted)"))
    };
    while !registry.is_synced() || !counted(&registry) {
        registry.sync(&Changes::default());
        let problems: Vec<String> = problems_of(&registry)
            .into_iter()
            .filter(|p| !p.contains("holds Istio configuration"))
            .collect();
        if !problems.is_empty() || Instant::now() > deadline {
            return problems
                .into_iter()
                .chain(
                    registry
                        .source()
                        .waiting_for()
                        .iter()
                        .map(|k| format!("never listed: {k}")),
                )
                .chain((!counted(&registry)).then(|| "never counted".to_string()))
                .collect();
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
    }
    registry.sync(&Changes::default());
    problems_of(&registry)
        .into_iter()
        .filter(|p| !p.contains("holds Istio configuration"))
        .collect()
}

fn status_of(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_secret_reads_what_a_remote_cluster_is_read_for_and_nothing_more() {
    std::env::set_current_dir(repo_root()).expect("repository root");
    let bin = locate_binaries(None).unwrap_or_else(|e| panic!("{e}"));
    let crds = locate_istio_crds().unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("isthmus-remote-secret-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = LocalOptions::loopback(bin, dir.clone());
    // kube-controller-manager's token controller fills service-account token Secrets.
    options.controllers = true;
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(options))
        .await
        .expect("start")
        .unwrap_or_else(|e| panic!("{e}"));
    cluster.install_istio_crds(&crds).expect("Istio CRDs");
    cluster
        .kubectl(&["create", "namespace", "bar"], None)
        .expect("namespace");
    cluster
        .kubectl(
            &["apply", "-f", "-"],
            Some("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: counted, namespace: bar}\nspec: {host: counted.bar.svc.cluster.local}\n"),
        )
        .expect("a DestinationRule");

    let config = remote_secret::load_config(Some(&cluster.kubeconfig_path()), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // What an earlier version made: a Role reading istio-system's Secrets, bound to the
    // reader. Made again, the credential loses it (checked below: Secrets are refused).
    for args in [
        &["create", "namespace", "istio-system"][..],
        &[
            "create",
            "role",
            "istio-reader-istio-system",
            "-n",
            "istio-system",
            "--verb=get,list,watch",
            "--resource=secrets",
        ],
        &[
            "create",
            "rolebinding",
            "istio-reader-istio-system",
            "-n",
            "istio-system",
            "--role=istio-reader-istio-system",
            "--serviceaccount=istio-system:istio-reader-service-account",
        ],
    ] {
        cluster
            .kubectl(args, None)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"));
    }
    let mut steps = Vec::new();
    let opts = RemoteSecretOptions::new("remote");
    let first = remote_secret::create(config.clone(), &opts, &mut |s| steps.push(s.to_string()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(steps.iter().any(|s| s.contains("ClusterRole")), "{steps:?}");
    assert!(first.expires.is_none());
    let yaml = first.to_yaml();
    let doc: serde_json::Value = serde_saphyr::from_str(&yaml).expect("the printed Secret is YAML");
    assert_eq!(doc["metadata"]["labels"]["istio/multiCluster"], "true");
    assert_eq!(
        doc["stringData"]["remote"].as_str(),
        Some(first.kubeconfig.as_str())
    );

    // Enough for every watch of a control plane.
    let reader = client_of(&first).await;
    let problems = watch_problems(reader.clone()).await;
    assert!(
        problems.is_empty(),
        "the reader's watches failed: {problems:?}"
    );
    // Not enough to write, or to read Secrets, even istio-system's (the CA key, other
    // clusters' credentials).
    let services: Api<Service> = Api::namespaced(reader.clone(), "bar");
    let write = services
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "x"},
                "spec": {"ports": [{"port": 80}]}
            }))
            .expect("service"),
        )
        .await
        .expect_err("the reader created a Service");
    assert_eq!(status_of(&write), 403);
    let secrets: Api<Secret> = Api::namespaced(reader.clone(), "default");
    let read = secrets
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .expect_err("the reader listed Secrets in default");
    assert_eq!(status_of(&read), 403);
    let secrets: Api<Secret> = Api::namespaced(reader.clone(), "istio-system");
    let read = secrets
        .list(&ListParams::default())
        .await
        // Counted, not printed: they would hold the reader's own token.
        .map(|l| l.items.len())
        .expect_err("the reader listed Secrets in istio-system");
    assert_eq!(status_of(&read), 403);

    // A control plane's source reading with the first token, kept open across the rotation.
    let mut held: KubeRegistry = Registry::with_source(KubeSource::start_remote(
        "remote",
        reader.clone(),
        "reader".into(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    ));
    let wake = held.source().wakeup();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !held.is_synced() {
        held.sync(&Changes::default());
        assert!(Instant::now() < deadline, "the held source never synced");
        let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
    }

    // Running it again is harmless and gives the same token; rotating gives a new one and
    // the old one stops working.
    let again = remote_secret::create(config.clone(), &opts, &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.kubeconfig, first.kubeconfig);
    let rotated = remote_secret::create(
        config.clone(),
        &RemoteSecretOptions {
            rotate: true,
            ..opts.clone()
        },
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(rotated.kubeconfig, first.kubeconfig);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let old = Api::<Service>::namespaced(reader.clone(), "bar")
            .list(&ListParams::default())
            .await;
        match old {
            Err(e) if status_of(&e) == 401 => break,
            _ if Instant::now() > deadline => panic!("the old token still works: {old:?}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    // The source holding the revoked token says so within 30 s, although its open watches
    // could stay quiet for minutes: the credential check finds it.
    let revoked = Instant::now();
    let said = loop {
        held.sync(&Changes::default());
        let problems = problems_of(&held);
        if let Some(p) = problems.iter().find(|p| p.contains("unauthorized")) {
            break p.clone();
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(30),
            "no diagnostic 30 s after the token was revoked: {problems:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
    };
    assert!(
        said.contains("cluster remote: cannot read the API server"),
        "{said}"
    );
    assert!(
        said.contains("the last objects read stay in force"),
        "{said}"
    );
    drop(held);
    let new = client_of(&rotated).await;
    Api::<Service>::namespaced(new, "bar")
        .list(&ListParams::default())
        .await
        .expect("the rotated token reads");

    // A TokenRequest token, with its expiry said.
    let requested = remote_secret::create(
        config,
        &RemoteSecretOptions {
            token: TokenSource::Request(Duration::from_secs(3600)),
            ..opts.clone()
        },
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let expires = requested.expires.expect("an expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        (now + 3000..=now + 3700).contains(&expires),
        "{expires} vs {now}"
    );
    let problems = watch_problems(client_of(&requested).await).await;
    assert!(problems.is_empty(), "{problems:?}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
