//! Service-account tokens against a real kube-apiserver: a bound token for `istio-ca`
//! requested for a pod is reviewed as that pod's namespace and service account; a forged
//! token, a token for another audience and a token of a deleted pod are not. Needs the
//! binaries from scripts/install-kubernetes.sh; fails saying so when they are missing.

use isthmus_kube::local::{locate_binaries, LocalCluster, LocalOptions};
use isthmus_kube::token::{self, BoundPod, TokenError};

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const OBJECTS: &str = "apiVersion: v1
kind: Namespace
metadata: {name: foo}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sleep, namespace: foo}
---
apiVersion: v1
kind: Pod
metadata: {name: sleep-0, namespace: foo}
spec:
  serviceAccountName: sleep
  automountServiceAccountToken: false
  containers: [{name: sleep, image: curlimages/curl}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_tokens_are_reviewed_as_their_service_account() {
    std::env::set_current_dir(repo_root()).expect("repository root");
    let bin = locate_binaries(None).unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("isthmus-kube-token-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = LocalOptions::loopback(bin, dir.clone());
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(options))
        .await
        .expect("start")
        .unwrap_or_else(|e| panic!("{e}"));
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        cluster
            .kubectl(args, stdin)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    };
    kubectl(&["apply", "-f", "-"], Some(OBJECTS));
    let uid = kubectl(
        &[
            "get",
            "pod",
            "sleep-0",
            "-n",
            "foo",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    );
    let client = cluster.client().await.expect("client");

    let issued = token::request(
        &client,
        "foo",
        "sleep",
        BoundPod {
            name: "sleep-0",
            uid: uid.trim(),
        },
        3600,
    )
    .await
    .expect("a token");
    assert_eq!(issued.split('.').count(), 3, "a JWT");
    let who = token::review(&client, &issued).await.expect("reviewed");
    assert_eq!(
        (who.namespace.as_str(), who.service_account.as_str()),
        ("foo", "sleep")
    );

    // Forged: the right shape, signed by nobody the API server knows.
    let forged = format!(
        "{}.{}.c2lnbmF0dXJl",
        issued.split('.').next().unwrap_or_default(),
        "eyJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMuZGVmYXVsdC5zdmMuY2x1c3Rlci5sb2NhbCIsInN1YiI6InN5c3RlbTpzZXJ2aWNlYWNjb3VudDpmb286c2xlZXAifQ"
    );
    let err = token::review(&client, &forged).await.expect_err("forged");
    assert!(matches!(err, TokenError::NotAuthenticated(_)), "{err}");
    assert!(
        !err.to_string().contains(&forged),
        "the message never holds the token"
    );

    // Another audience: a token the pod could show to some other service.
    let other = kubectl(
        &[
            "create",
            "token",
            "sleep",
            "-n",
            "foo",
            "--audience",
            "not-istio",
        ],
        None,
    );
    let err = token::review(&client, other.trim())
        .await
        .expect_err("another audience");
    assert!(matches!(err, TokenError::NotAuthenticated(_)), "{err}");

    // A bound token dies with its pod.
    kubectl(
        &[
            "delete",
            "pod",
            "sleep-0",
            "-n",
            "foo",
            "--grace-period=0",
            "--force",
        ],
        None,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match token::review(&client, &issued).await {
            Err(TokenError::NotAuthenticated(_)) => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "the token of a deleted pod still authenticates: {other:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
