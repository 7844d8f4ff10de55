//! Istio and Kubernetes API types as users write them, loaded from YAML with their source
//! locations, and validated with errors that name the file, line, resource and field.
//!
//! This crate does no I/O beyond reading the files it is asked to load: types can be used
//! and tested without a cluster or a network.

pub mod authentication;
pub mod authorization;
pub mod diagnostic;
pub mod duration;
pub mod enums;
pub mod fast_yaml;
pub mod kube;
pub mod labels;
pub mod load;
pub mod locate;
pub mod mesh;
pub mod meta;
pub mod networking;
pub mod node;
pub mod policy;
pub mod resource;
pub mod security;
pub mod shared;
pub mod telemetry;
pub mod validate;
pub mod yaml;

pub use diagnostic::{Diagnostic, Severity};
pub use labels::Labels;
pub use load::{load_dir, load_file, load_shared_file, load_str, yaml_files, Loaded, ObjectReader};
pub use meta::{Annotations, Namespace, ObjectMeta};
pub use node::{Interception, NodeId, NodeKind, NodeMetadata, RouterMode};
pub use resource::{KeyRef, Object, Origin, OtherObject, Resource, ResourceKey};
