//! The CA's token reviewer against a real kube-apiserver: a bound `istio-ca` token of
//! another cluster's pod is reviewed at that cluster's API server (the one its agent names
//! in `ClusterID`), and nowhere else. Needs the binaries from
//! scripts/install-kubernetes.sh; fails saying so when they are missing.

use isthmus_ca::TokenReviewer;
use isthmus_control_plane::clusters::ApiClient;
use isthmus_control_plane::token_review::KubeTokenReviewer;
use isthmus_kube::local::{locate_binaries, LocalCluster, LocalOptions};
use isthmus_kube::token::{self, BoundPod};

const OBJECTS: &str = "apiVersion: v1
kind: Namespace
metadata: {name: sample}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: helloworld, namespace: sample}
---
apiVersion: v1
kind: Pod
metadata: {name: helloworld-v2-0, namespace: sample}
spec:
  serviceAccountName: helloworld
  automountServiceAccountToken: false
  containers: [{name: helloworld, image: istio/examples-helloworld-v2}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_reviewed_at_the_api_server_of_the_cluster_its_agent_names() {
    std::env::set_current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .expect("repository root");
    let bin = locate_binaries(None).unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("isthmus-cp-review-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = LocalOptions::loopback(bin, dir.clone());
    let remote = tokio::task::spawn_blocking(move || LocalCluster::start(options))
        .await
        .expect("start")
        .unwrap_or_else(|e| panic!("{e}"));
    remote
        .kubectl(&["apply", "-f", "-"], Some(OBJECTS))
        .unwrap_or_else(|e| panic!("{e}"));
    let uid = remote
        .kubectl(
            &[
                "get",
                "pod",
                "helloworld-v2-0",
                "-n",
                "sample",
                "-o",
                "jsonpath={.metadata.uid}",
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let client = remote.client().await.expect("client");
    let issued = token::request(
        &client,
        "sample",
        "helloworld",
        BoundPod {
            name: "helloworld-v2-0",
            uid: uid.trim(),
        },
        3600,
    )
    .await
    .expect("a token");

    // The control plane of `local` reads `remote` from its API server (a remote secret).
    let reviewer = KubeTokenReviewer::new("local");
    reviewer.set_clusters([("remote".to_string(), ApiClient(client.clone()))]);
    let who = reviewer
        .review(&issued, Some("remote"))
        .await
        .expect("reviewed at remote's API server");
    assert_eq!(who, ("sample".to_string(), "helloworld".to_string()));
    let err = reviewer
        .review(&issued, None)
        .await
        .expect_err("local has no API server here");
    assert!(err.contains("local"), "{err}");
    assert!(!err.contains(&issued), "never the token: {err}");

    // The remote secret goes: remote's tokens cannot be reviewed any more.
    reviewer.set_clusters([]);
    let err = reviewer
        .review(&issued, Some("remote"))
        .await
        .expect_err("remote no longer read");
    assert!(err.contains("remote"), "{err}");
    drop(remote);
    let _ = std::fs::remove_dir_all(&dir);
}
