//! Kubernetes API servers as a registry source, and real local API servers to run them.
//!
//! - [`KubeSource`] watches one cluster's API server with kube-rs watchers (list+watch,
//!   bookmarks, a relist after `410 Gone`, reconnection with backoff) and yields the same
//!   typed [`isthmus_registry::Event`]s as the file source, so the model cannot tell them
//!   apart. Objects are read by the same reader and validation as files
//!   ([`isthmus_api::ObjectReader`]); one that Isthmus cannot use keeps its last good
//!   version and is reported by namespace/name and field.
//! - [`access`] turns a kubeconfig file, a kubeconfig held in a Secret, or a pod's in-cluster
//!   credentials into a client.
//! - [`token`] requests bound service-account tokens for the audience `istio-ca` and
//!   reviews them (TokenReview), as Istio's agents and CA do.
//! - [`remote_secret`] makes another cluster's credential as `istioctl create-remote-secret`
//!   does: a reader ServiceAccount with only the rights the control plane uses, and its token.
//! - [`inject`] adds the sidecar to a pod being created, as Istio's injection webhook does.
//! - [`install`] renders the Helm chart's objects from the chart's own values, for
//!   `isthmus install`, and applies them.
//! - [`events`] counts watch events under istiod's metric names.
//! - [`local`] starts a real etcd and kube-apiserver (built by `scripts/install-kubernetes.sh`)
//!   for the lab, tests and benchmarks.
//!
//! Layers, bottom first: `events` (their counts), `kinds` (what is watched) -> `access` (clients) -> `token`
//! (service-account tokens) -> `remote_secret` (credentials for other clusters) ->
//! `install` (the chart's objects) -> `source` (events) -> `local` (processes).

pub mod access;
pub mod events;
mod http2;
pub mod inject;
pub mod install;
pub mod kinds;
pub mod local;
pub mod remote_secret;
pub mod served;
pub mod source;
pub mod token;
mod wire;

pub use access::{Access, AccessError};
pub use kinds::{watched_kinds, WatchedKind};
pub use source::{read_once, KubeRegistry, KubeSource, ReadOnceError};
