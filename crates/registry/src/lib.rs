//! Configuration registries. A registry holds the Kubernetes and Istio objects of one
//! cluster, as the API server would return them. This crate has the file registry: one
//! directory per cluster, watched for changes, with last-good semantics so that a bad edit
//! never takes configuration away.

pub mod file;
pub mod resources;
pub mod watch;

pub use file::{ClusterConfig, FileRegistry, KeyChange};
pub use isthmus_api::KeyRef;
pub use resources::Resources;
pub use watch::{unwatch, watch_dirs, watch_more, Changes, WatchError};
