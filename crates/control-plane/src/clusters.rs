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

/// Which of the control plane's clusters a registry reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Its own: every kind, Istio's configuration included.
    Local,
    /// Another cluster, linked by a credential: from an API server, its services and
    /// endpoints only (its Istio objects are counted and reported as not applied). A
    /// registry directory is read whole either way; the build takes only the same kinds
    /// from it.
    Remote,
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
    /// server, for what `role` takes of it; `wake` is notified when it has events).
    pub async fn open(
        cluster: &str,
        link: &Link,
        role: Role,
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
                let source = match role {
                    Role::Local => KubeSource::start_notifying(
                        cluster,
                        client.clone(),
                        access.describe(),
                        wake.clone(),
                    ),
                    Role::Remote => KubeSource::start_remote(
                        cluster,
                        client.clone(),
                        access.describe(),
                        wake.clone(),
                    ),
                };
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

    /// What its API server has sent and the build has not read yet (a directory's changes
    /// come from the file watcher instead: nothing).
    pub fn pending(&self) -> isthmus_kube::source::Pending {
        match self {
            ClusterRegistry::File(_) => isthmus_kube::source::Pending::Nothing,
            ClusterRegistry::Kube { registry, .. } => registry.source().pending(),
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

    /// How many kinds it watches (none for a directory).
    pub fn watched(&self) -> usize {
        match self {
            ClusterRegistry::File(_) => 0,
            ClusterRegistry::Kube { registry, .. } => registry.source().watched(),
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

/// Whether each cluster's source is read: `isthmus_cluster_source_up{cluster}` (1 read and
/// complete, 0 not: unreachable, refused, no complete list yet, or a credential that cannot
/// be used) and, for those down, `isthmus_cluster_source_down_since_seconds{cluster}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceState {
    /// The cluster.
    pub cluster: String,
    /// Read completely.
    pub up: bool,
    /// Since when (Unix seconds) it is not, when known.
    pub down_since: Option<u64>,
}

/// The state of every cluster's source; `unusable` lists the clusters whose credential
/// cannot be used, with since when.
pub fn source_states<'a>(
    registries: &[ClusterRegistry],
    unusable: impl Iterator<Item = (&'a str, u64)>,
) -> Vec<SourceState> {
    let mut out: Vec<SourceState> = registries
        .iter()
        .map(|r| {
            let failing = r.failing_since();
            SourceState {
                cluster: r.cluster().to_string(),
                up: r.is_synced() && failing.is_none(),
                down_since: failing,
            }
        })
        .collect();
    out.extend(unusable.map(|(cluster, t)| SourceState {
        cluster: cluster.to_string(),
        up: false,
        down_since: Some(t),
    }));
    out
}

/// Adds the two gauges of [`SourceState`] to `registry`, read from `states` when scraped.
pub fn register_source_metrics(
    registry: &prometheus::Registry,
    states: tokio::sync::watch::Receiver<Vec<SourceState>>,
) -> prometheus::Result<()> {
    use crate::metrics::{gauge_value, ReadWhenScraped};
    let read = states.clone();
    registry.register(Box::new(ReadWhenScraped::new(
        "isthmus_cluster_source_up",
        "Whether a cluster's API server or registry is read completely (1) or not (0: unreachable, refused, no complete list yet, or a credential that cannot be used).",
        &["cluster"],
        move |g: &prometheus::IntGaugeVec| {
            for s in read.borrow().iter() {
                g.with_label_values(&[&s.cluster]).set(i64::from(s.up));
            }
        },
    )?))?;
    registry.register(Box::new(ReadWhenScraped::new(
        "isthmus_cluster_source_down_since_seconds",
        "When a cluster's source stopped being read (Unix time).",
        &["cluster"],
        move |g: &prometheus::IntGaugeVec| {
            for s in states.borrow().iter() {
                if let Some(t) = s.down_since {
                    g.with_label_values(&[&s.cluster]).set(gauge_value(t));
                }
            }
        },
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_whose_credential_cannot_be_used_is_down_since_then() {
        let states = source_states(&[], [("c-broken", 1_800_000_000u64)].into_iter());
        let (_tx, rx) = tokio::sync::watch::channel(states);
        let registry = prometheus::Registry::new();
        register_source_metrics(&registry, rx).expect("register");
        let m = crate::metrics::encode(&registry);
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
    }
}
