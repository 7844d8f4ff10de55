//! The clusters a control plane reads, whatever their source: a registry directory or a
//! Kubernetes API server. The model sees only their stores.

use isthmus_kube::{Access, KubeRegistry, KubeSource};
use isthmus_registry::{Changes, ClusterConfig, FileRegistry, Registry};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Notify;

/// Where a cluster's objects come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// A registry directory (the lab's folders, the embedded default).
    Registry(PathBuf),
    /// A Kubernetes API server.
    Kube(Access),
}

impl Link {
    /// Says where, without any secret.
    pub fn describe(&self) -> String {
        match self {
            Link::Registry(d) => format!("registry {}", d.display()),
            Link::Kube(a) => a.describe(),
        }
    }
}

/// An API server client, shown without its credential.
#[derive(Clone)]
pub struct ApiClient(pub kube::Client);

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiClient")
    }
}

/// One cluster's registry.
#[derive(Debug)]
pub enum ClusterRegistry {
    /// Read from a directory.
    File(FileRegistry),
    /// Watched on an API server.
    Kube {
        /// The registry.
        registry: KubeRegistry,
        /// How it was reached (to tell a changed credential).
        access: Access,
        /// Its client (also for the CA's TokenReviews).
        client: Box<ApiClient>,
    },
}

impl ClusterRegistry {
    /// A registry of `cluster` at `link`, read once (a directory) or watching (an API
    /// server; `wake` is notified when it has events).
    pub async fn open(
        cluster: &str,
        link: &Link,
        wake: &Arc<Notify>,
    ) -> Result<ClusterRegistry, isthmus_kube::AccessError> {
        Ok(match link {
            Link::Registry(dir) => {
                let mut r = FileRegistry::new(cluster, dir.clone());
                r.reload();
                ClusterRegistry::File(r)
            }
            Link::Kube(access) => {
                let client = access.client().await?;
                let source = KubeSource::start_notifying(
                    cluster,
                    client.clone(),
                    access.describe(),
                    wake.clone(),
                );
                ClusterRegistry::Kube {
                    registry: Registry::with_source(source),
                    access: access.clone(),
                    client: Box::new(ApiClient(client)),
                }
            }
        })
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        match self {
            ClusterRegistry::File(r) => r.cluster(),
            ClusterRegistry::Kube { registry, .. } => registry.cluster(),
        }
    }

    /// The objects in force.
    pub fn current(&self) -> &Arc<ClusterConfig> {
        match self {
            ClusterRegistry::File(r) => r.current(),
            ClusterRegistry::Kube { registry, .. } => registry.current(),
        }
    }

    /// Whether the store holds a complete list of the source.
    pub fn is_synced(&self) -> bool {
        match self {
            ClusterRegistry::File(r) => r.is_synced(),
            ClusterRegistry::Kube { registry, .. } => registry.is_synced(),
        }
    }

    /// The API server client, when it reads one.
    pub fn kube_client(&self) -> Option<&ApiClient> {
        match self {
            ClusterRegistry::File(_) => None,
            ClusterRegistry::Kube { client, .. } => Some(client),
        }
    }

    /// Whether it reads an API server.
    pub fn is_kube(&self) -> bool {
        matches!(self, ClusterRegistry::Kube { .. })
    }

    /// Where it reads from.
    pub fn link(&self) -> Link {
        match self {
            ClusterRegistry::File(r) => Link::Registry(r.dir().to_path_buf()),
            ClusterRegistry::Kube { access, .. } => Link::Kube(access.clone()),
        }
    }

    /// Since when (seconds since the epoch) its API server cannot be read, if it cannot.
    pub fn failing_since(&self) -> Option<u64> {
        match self {
            ClusterRegistry::File(_) => None,
            ClusterRegistry::Kube { registry, .. } => registry
                .source()
                .failing_since()
                .and_then(|t| u64::try_from(t.as_second()).ok()),
        }
    }

    /// What an API server registry still waits for before its first complete list.
    pub fn waiting_for(&self) -> Vec<&str> {
        match self {
            ClusterRegistry::File(_) => Vec::new(),
            ClusterRegistry::Kube { registry, .. } => registry.source().waiting_for(),
        }
    }

    /// Brings the store up to date: a directory with the files of `files` (when the
    /// wake-up came from the file watcher), an API server with the events it has. Returns
    /// true when the objects in force changed.
    pub fn sync(&mut self, files: Option<&Changes>) -> bool {
        match self {
            ClusterRegistry::File(r) => files.is_some_and(|c| r.apply(c)),
            ClusterRegistry::Kube { registry, .. } => registry.sync(&Changes::default()),
        }
    }
}

/// The metric lines saying which clusters' sources are read: `isthmus_cluster_source_up`
/// (1 read and complete, 0 not: unreachable, refused, no complete list yet, or a credential
/// that cannot be used) and, for those down, `isthmus_cluster_source_down_since_seconds`.
/// `unusable` lists the clusters whose credential cannot be used, with since when.
pub fn source_metrics<'a>(
    registries: &[ClusterRegistry],
    unusable: impl Iterator<Item = (&'a str, u64)>,
) -> String {
    let mut up = Vec::new();
    let mut since = Vec::new();
    for r in registries {
        let failing = r.failing_since();
        let ok = r.is_synced() && failing.is_none();
        up.push((r.cluster().to_string(), ok));
        if let Some(t) = failing {
            since.push((r.cluster().to_string(), t));
        }
    }
    for (cluster, t) in unusable {
        up.push((cluster.to_string(), false));
        since.push((cluster.to_string(), t));
    }
    let mut out = String::from(
        "# HELP isthmus_cluster_source_up Whether a cluster's API server or registry is read completely (1) or not (0: unreachable, refused, no complete list yet, or a credential that cannot be used).\n# TYPE isthmus_cluster_source_up gauge\n",
    );
    for (c, ok) in &up {
        out.push_str(&format!(
            "isthmus_cluster_source_up{{cluster=\"{}\"}} {}\n",
            label(c),
            u8::from(*ok)
        ));
    }
    out.push_str("# HELP isthmus_cluster_source_down_since_seconds When a cluster's source stopped being read (Unix time).\n# TYPE isthmus_cluster_source_down_since_seconds gauge\n");
    for (c, t) in &since {
        out.push_str(&format!(
            "isthmus_cluster_source_down_since_seconds{{cluster=\"{}\"}} {t}\n",
            label(c)
        ));
    }
    out
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_whose_credential_cannot_be_used_is_down_since_then() {
        let m = source_metrics(&[], [("c-broken", 1_800_000_000u64)].into_iter());
        assert!(
            m.contains("isthmus_cluster_source_up{cluster=\"c-broken\"} 0\n"),
            "{m}"
        );
        assert!(
            m.contains(
                "isthmus_cluster_source_down_since_seconds{cluster=\"c-broken\"} 1800000000\n"
            ),
            "{m}"
        );
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
