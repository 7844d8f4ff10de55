//! Kubernetes object metadata.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

fn no_labels(l: &Arc<BTreeMap<String, String>>) -> bool {
    l.is_empty()
}

/// The part of `metadata` that Isthmus reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Namespace; empty for cluster-scoped objects or when the file leaves it to the loader
    /// (shared by a file's objects).
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub namespace: Arc<str>,
    /// Labels (shared: a pod's labels are also its endpoints' and its proxy's).
    #[serde(default, skip_serializing_if = "no_labels")]
    pub labels: Arc<BTreeMap<String, String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}
