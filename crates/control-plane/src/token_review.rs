//! Kubernetes service-account tokens at the CA: each is reviewed (TokenReview) by the API
//! server of the cluster its caller names, among the clusters this control plane reads
//! from API servers (its own, and remote clusters joined by credential Secrets).

use crate::clusters::ApiClient;
use std::collections::BTreeMap;
use std::sync::RwLock;

/// The API servers tokens can be reviewed at, by cluster; kept in step with the registries.
#[derive(Debug)]
pub struct KubeTokenReviewer {
    local: String,
    clients: RwLock<BTreeMap<String, ApiClient>>,
}

impl KubeTokenReviewer {
    /// A reviewer for the control plane of cluster `local` (a token whose caller names no
    /// cluster is reviewed there).
    pub fn new(local: &str) -> KubeTokenReviewer {
        KubeTokenReviewer {
            local: local.to_string(),
            clients: RwLock::new(BTreeMap::new()),
        }
    }

    /// Replaces the API servers known, by cluster.
    pub fn set_clusters(&self, clients: impl IntoIterator<Item = (String, ApiClient)>) {
        if let Ok(mut c) = self.clients.write() {
            *c = clients.into_iter().collect();
        }
    }

    fn client(&self, cluster: &str) -> Option<ApiClient> {
        self.clients.read().ok()?.get(cluster).cloned()
    }
}

#[tonic::async_trait]
impl isthmus_ca::TokenReviewer for KubeTokenReviewer {
    async fn review(&self, token: &str, cluster: Option<&str>) -> Result<(String, String), String> {
        let cluster = cluster.unwrap_or(&self.local);
        let client = self.client(cluster).ok_or_else(|| {
            format!("cluster {cluster} is not one this control plane reads from a Kubernetes API server")
        })?;
        isthmus_kube::token::review(&client.0, token)
            .await
            .map(|who| (who.namespace, who.service_account))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_ca::TokenReviewer;

    #[tokio::test]
    async fn a_cluster_without_an_api_server_cannot_review() {
        let r = KubeTokenReviewer::new("cluster1");
        let err = r.review("a.b.c", None).await.expect_err("no API server");
        assert!(err.contains("cluster1"), "{err}");
        let err = r
            .review("a.b.c", Some("cluster2"))
            .await
            .expect_err("no API server");
        assert!(err.contains("cluster2") && !err.contains("a.b.c"), "{err}");
    }
}
