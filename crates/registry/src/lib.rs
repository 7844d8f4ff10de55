//! Configuration registries. A registry holds the Kubernetes and Istio objects of one
//! cluster, as the API server would return them: a [`Source`] yields typed [`Event`]s and a
//! [`Writer`] applies them to the store ([`ClusterConfig`]) that everything downstream
//! reads. This crate has the file source: one directory per cluster, watched for changes,
//! with last-good semantics so that a bad edit never takes configuration away.

pub mod file;
pub mod resources;
pub mod source;
pub mod watch;

pub use file::{FileRegistry, FileSource};
pub use isthmus_api::KeyRef;
pub use resources::Resources;
pub use source::{ClusterConfig, Event, KeyChange, Registry, Source, Writer};
pub use watch::{unwatch, watch_dirs, watch_more, Changes, WatchError};
