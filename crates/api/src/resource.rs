//! A loaded object: what it is, and where it came from.

use crate::kube::{
    ConfigMap, Deployment, EndpointSlice, Endpoints, Namespace, Node, Pod, Secret, Service,
};
use crate::meta::ObjectMeta;
use crate::networking::{DestinationRule, Gateway, ServiceEntry, VirtualService, WorkloadEntry};
use crate::security::{AuthnPolicy, PeerAuthentication};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a resource was read from: a place in a file, or nowhere (an object read from an
/// API server, or one the mesh made).
///
/// One pointer, null for an object from an API server: a registry holds one origin per
/// object, and most of a cluster's objects are its pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin(Option<Arc<Place>>);

/// A place in a file that a resource was read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Place {
    /// The file, when it came from one (shared by all of the file's objects).
    file: Option<Arc<PathBuf>>,
    /// The 1-based line its document starts on.
    line: u32,
    /// The document's text, used to point errors at the line of a field.
    text: Option<Arc<String>>,
}

impl Origin {
    /// The document that starts at `line` of `file` (none: text given without a file),
    /// with its `text` (kept to point errors at the line of a field).
    pub fn document(file: Option<Arc<PathBuf>>, line: u32, text: Option<Arc<String>>) -> Self {
        Origin(Some(Arc::new(Place { file, line, text })))
    }

    /// The file, when it came from one.
    pub fn file(&self) -> Option<&Arc<PathBuf>> {
        self.0.as_ref()?.file.as_ref()
    }

    /// The 1-based line its document starts on; 0 when it was not read from text.
    pub fn line(&self) -> u32 {
        self.0.as_ref().map_or(0, |p| p.line)
    }

    /// The document's text, while it is kept.
    pub fn text(&self) -> Option<&Arc<String>> {
        self.0.as_ref()?.text.as_ref()
    }

    /// Drops the document's text (a registry keeps it only for the kinds it checks again
    /// after loading); the file and line stay.
    pub fn forget_text(&mut self) {
        if let Some(p) = self.0.as_mut().filter(|p| p.text.is_some()) {
            Arc::make_mut(p).text = None;
        }
    }
}

/// Every kind the mesh reads. A Pod is in line: a cluster has one per endpoint, and in line
/// it costs no allocation of its own (it is 80 bytes, with its spec shared). Every other
/// variant is boxed, so that the enum takes the room of a Pod rather than that of the
/// largest kind (a DestinationRule is 304 bytes); a resource of another kind carries the 64
/// bytes a Pod needs beyond its box's pointer, as there are few of them.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Object {
    Namespace(Box<Namespace>),
    /// A Node (the locality of its pods).
    Node(Box<Node>),
    Service(Box<Service>),
    /// A Pod, in line: the kind a registry holds most of (one per endpoint), so it takes
    /// one allocation, not two.
    Pod(Pod),
    Endpoints(Box<Endpoints>),
    EndpointSlice(Box<EndpointSlice>),
    ConfigMap(Box<ConfigMap>),
    Deployment(Box<Deployment>),
    /// A Secret (remote-registry credentials).
    Secret(Box<Secret>),
    ServiceEntry(Box<ServiceEntry>),
    WorkloadEntry(Box<WorkloadEntry>),
    DestinationRule(Box<DestinationRule>),
    VirtualService(Box<VirtualService>),
    Gateway(Box<Gateway>),
    /// A Sidecar (egress scoping).
    Sidecar(Box<crate::networking::Sidecar>),
    PeerAuthentication(Box<PeerAuthentication>),
    /// `security.istio.io` AuthorizationPolicy.
    AuthorizationPolicy(Box<crate::authorization::AuthorizationPolicy>),
    /// `security.istio.io` RequestAuthentication.
    RequestAuthentication(Box<crate::authentication::RequestAuthentication>),
    /// `authentication.istio.io/v1alpha1` MeshPolicy (mesh-wide).
    MeshPolicy(Box<AuthnPolicy>),
    /// `authentication.istio.io/v1alpha1` Policy (namespace).
    AuthnPolicy(Box<AuthnPolicy>),
    /// A kind the mesh does not read (ServiceAccount, RBAC, ...), kept by name only.
    Other(Box<OtherObject>),
}

/// An object of a kind the mesh does not read.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherObject {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
}

impl Object {
    /// The kind as written in YAML.
    pub fn kind(&self) -> &str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Node(_) => "Node",
            Object::Service(_) => "Service",
            Object::Pod(_) => "Pod",
            Object::Endpoints(_) => "Endpoints",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Deployment(_) => "Deployment",
            Object::Secret(_) => "Secret",
            Object::ServiceEntry(_) => "ServiceEntry",
            Object::WorkloadEntry(_) => "WorkloadEntry",
            Object::DestinationRule(_) => "DestinationRule",
            Object::VirtualService(_) => "VirtualService",
            Object::Gateway(_) => "Gateway",
            Object::Sidecar(_) => "Sidecar",
            Object::PeerAuthentication(_) => "PeerAuthentication",
            Object::AuthorizationPolicy(_) => "AuthorizationPolicy",
            Object::RequestAuthentication(_) => "RequestAuthentication",
            Object::MeshPolicy(_) => "MeshPolicy",
            Object::AuthnPolicy(_) => "Policy",
            Object::Other(o) => &o.kind,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ServiceEntry(o) => &o.metadata,
            Object::WorkloadEntry(o) => &o.metadata,
            Object::DestinationRule(o) => &o.metadata,
            Object::VirtualService(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::Sidecar(o) => &o.metadata,
            Object::PeerAuthentication(o) => &o.metadata,
            Object::AuthorizationPolicy(o) => &o.metadata,
            Object::RequestAuthentication(o) => &o.metadata,
            Object::MeshPolicy(o) | Object::AuthnPolicy(o) => &o.metadata,
            Object::Other(o) => &o.metadata,
        }
    }

    /// Mutable metadata, for the loader to fill in a default namespace.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Namespace(o) => &mut o.metadata,
            Object::Node(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::Pod(o) => &mut o.metadata,
            Object::Endpoints(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::Deployment(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ServiceEntry(o) => &mut o.metadata,
            Object::WorkloadEntry(o) => &mut o.metadata,
            Object::DestinationRule(o) => &mut o.metadata,
            Object::VirtualService(o) => &mut o.metadata,
            Object::Gateway(o) => &mut o.metadata,
            Object::Sidecar(o) => &mut o.metadata,
            Object::PeerAuthentication(o) => &mut o.metadata,
            Object::AuthorizationPolicy(o) => &mut o.metadata,
            Object::RequestAuthentication(o) => &mut o.metadata,
            Object::MeshPolicy(o) | Object::AuthnPolicy(o) => &mut o.metadata,
            Object::Other(o) => &mut o.metadata,
        }
    }

    /// True for kinds that live outside namespaces.
    pub fn is_cluster_scoped(&self) -> bool {
        match self {
            Object::Namespace(_) | Object::Node(_) | Object::MeshPolicy(_) => true,
            Object::Other(o) => {
                matches!(
                    o.kind.as_str(),
                    "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition"
                )
            }
            _ => false,
        }
    }
}

/// Identifies a resource: kind, namespace, name (ordered as its [`KeyRef`] is).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        KeyRef::from_key(self).fmt(f)
    }
}

/// A resource's key, borrowed from the resource itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyRef<'a> {
    /// Kind.
    pub kind: &'a str,
    /// Namespace (empty for cluster-scoped kinds).
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
}

impl<'a> KeyRef<'a> {
    /// The key of `r`.
    pub fn of(r: &'a Resource) -> Self {
        let m = r.object.metadata();
        KeyRef {
            kind: r.object.kind(),
            namespace: &m.namespace,
            name: &m.name,
        }
    }

    /// The key `k`, borrowed.
    pub fn from_key(k: &'a ResourceKey) -> Self {
        KeyRef {
            kind: &k.kind,
            namespace: &k.namespace,
            name: &k.name,
        }
    }

    /// An owned copy.
    pub fn to_key(self) -> ResourceKey {
        ResourceKey {
            kind: self.kind.to_string(),
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
        }
    }
}

impl PartialEq<ResourceKey> for KeyRef<'_> {
    fn eq(&self, other: &ResourceKey) -> bool {
        *self == KeyRef::from_key(other)
    }
}

impl fmt::Display for KeyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// An object with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The object.
    pub object: Object,
    /// Where it came from.
    pub origin: Origin,
}

impl Resource {
    /// Its key.
    pub fn key(&self) -> ResourceKey {
        KeyRef::of(self).to_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_pod_fits_the_96_byte_class() {
        // A registry holds one of these per Pod, in an `Arc`: the Pod in line (its tag in a
        // niche of the Pod's own fields), the origin one null pointer. 72 bytes plus the
        // `Arc`'s two counts, 88, fit the allocator's 96-byte class (glibc: the request
        // plus an 8-byte header, rounded up to 16); at 89 they would take the 112-byte one.
        // The other kinds take one more allocation, boxed, as there are few of them.
        assert_eq!(std::mem::size_of::<crate::kube::PodStatus>(), 16);
        assert_eq!(std::mem::size_of::<crate::kube::Pod>(), 64);
        assert_eq!(std::mem::size_of::<Object>(), 64);
        assert_eq!(std::mem::size_of::<Origin>(), 8);
        assert_eq!(std::mem::size_of::<Resource>(), 72);
    }
}
