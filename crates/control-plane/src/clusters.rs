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
