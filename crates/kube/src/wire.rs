//! Objects as a watcher reads them off the API server's JSON, in one pass: the metadata the
//! mesh uses, and of the rest only what the kind's [`Fields`] keep.
//!
//! kube-rs's `DynamicObject` reads an object twice: its flattened fields are first buffered
//! whole (serde's `Content`), then read again into a JSON tree, and its metadata parses
//! `managedFields` (a tree per field manager) only to be dropped. Reading the first list of
//! 100,000 pods that way was most of the control plane's CPU before its first snapshot.
//! Here the metadata skips managed fields and owner references without building them, a
//! Pod keeps only its projection ([`PodFields`]), a Node nothing ([`NoFields`]), and any
//! other kind its fields as one JSON tree ([`Tree`]).
//!
//! Leaf values stay JSON values: a field of an unexpected type is kept for the object
//! reader to report, never a failed list (which would stop the whole kind).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::{ApiResource, DynamicResourceScope};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;

/// What a kind keeps of an object's fields other than `metadata`, `apiVersion` and `kind`.
pub trait Fields: Default + Clone + Debug + Send + Sync + 'static {
    /// Reads (or skips) the value of the object's field `key`.
    fn field<'de, A: MapAccess<'de>>(&mut self, key: String, map: &mut A) -> Result<(), A::Error>;

    /// What was kept, as the JSON fields of the object (without metadata). `deleting`: the
    /// object has a deletion timestamp.
    fn into_value(self, deleting: bool) -> Value;
}

/// An object of an API server, read in one pass.
#[derive(Debug, Clone, Default)]
pub struct WireObject<F> {
    /// The metadata the mesh and the watcher use (no managed fields, no owner references).
    pub metadata: ObjectMeta,
    /// The rest, as the kind keeps it.
    pub fields: F,
}

impl<F: Fields> WireObject<F> {
    /// The object's fields as a JSON object (without metadata), and its metadata.
    pub fn into_parts(self) -> (ObjectMeta, Value) {
        let deleting = self.metadata.deletion_timestamp.is_some();
        (self.metadata, self.fields.into_value(deleting))
    }
}

impl<F: Fields> kube::Resource for WireObject<F> {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// `metadata` as read: unknown fields (managed fields, owner references, timestamps) are
/// skipped by the parser without being built.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MetaWire {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    resource_version: Option<String>,
    uid: Option<String>,
    deletion_timestamp: Option<Time>,
}

impl From<MetaWire> for ObjectMeta {
    fn from(m: MetaWire) -> Self {
        ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            labels: m.labels,
            annotations: m.annotations,
            resource_version: m.resource_version,
            uid: m.uid,
            deletion_timestamp: m.deletion_timestamp,
            ..Default::default()
        }
    }
}

impl<'de, F: Fields> Deserialize<'de> for WireObject<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<F>(PhantomData<F>);

        impl<'de, F: Fields> Visitor<'de> for ObjectVisitor<F> {
            type Value = WireObject<F>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Kubernetes object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut object = WireObject::<F>::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "metadata" => {
                            object.metadata = map
                                .next_value::<Option<MetaWire>>()?
                                .unwrap_or_default()
                                .into();
                        }
                        // Known from the kind being watched (list items may lack them).
                        "apiVersion" | "kind" => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        _ => object.fields.field(key, &mut map)?,
                    }
                }
                Ok(object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// Every field, as one JSON tree (Services, EndpointSlices, Istio's kinds...).
#[derive(Debug, Clone, Default)]
pub struct Tree(serde_json::Map<String, Value>);

impl Fields for Tree {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: String, map: &mut A) -> Result<(), A::Error> {
        let value = map.next_value::<Value>()?;
        self.0.insert(key, value);
        Ok(())
    }

    fn into_value(self, _deleting: bool) -> Value {
        Value::Object(self.0)
    }
}

/// Nothing but the metadata (a Node: its labels give its pods' locality; its status of
/// images, conditions and addresses is most of its size).
#[derive(Debug, Clone, Default)]
pub struct NoFields;

impl Fields for NoFields {
    fn field<'de, A: MapAccess<'de>>(&mut self, _key: String, map: &mut A) -> Result<(), A::Error> {
        map.next_value::<IgnoredAny>()?;
        Ok(())
    }

    fn into_value(self, _deleting: bool) -> Value {
        Value::Object(Default::default())
    }
}

/// Of a Pod what the mesh reads (as the file registry's Pods hold it): the service account,
/// the named ports of its containers and native sidecars (a Service may target a port by
/// name), the host name and subdomain (a StatefulSet's pod's DNS name), the Node (its
/// locality), and the address, phase and Ready condition. The rest of a real Pod (volumes,
/// tolerations, defaults the API server fills in) is skipped by the parser.
///
/// A pod being deleted is not ready, whatever its condition says: the EndpointSlice
/// controller takes it out of service at once, and so does the mesh.
#[derive(Debug, Clone, Default)]
pub struct PodFields {
    spec: Option<PodSpecWire>,
    status: Option<PodStatusWire>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecWire {
    service_account_name: Option<Value>,
    hostname: Option<Value>,
    subdomain: Option<Value>,
    node_name: Option<Value>,
    containers: Option<Vec<ContainerWire>>,
    init_containers: Option<Vec<ContainerWire>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerWire {
    ports: Option<Vec<PortWire>>,
    /// An init container's: `Always` makes it a native sidecar, which runs beside the
    /// containers and whose named ports a Service may target.
    restart_policy: Option<Value>,
}

impl ContainerWire {
    /// Its named ports, as the mesh keeps them (none: it is left out).
    fn named_ports(self) -> Option<Value> {
        let ports: Vec<Value> = self
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                let name = p.name?;
                let mut port = serde_json::Map::new();
                port.insert("name".into(), name);
                if let Some(n) = p.container_port {
                    port.insert("containerPort".into(), n);
                }
                Some(Value::Object(port))
            })
            .collect();
        (!ports.is_empty()).then(|| serde_json::json!({"name": "", "image": "", "ports": ports}))
    }

    /// Whether it is an init container that runs as a native sidecar.
    fn is_native_sidecar(&self) -> bool {
        self.restart_policy.as_ref().and_then(Value::as_str) == Some("Always")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortWire {
    name: Option<Value>,
    container_port: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatusWire {
    #[serde(rename = "podIP")]
    pod_ip: Option<Value>,
    phase: Option<Value>,
    conditions: Option<Vec<ConditionWire>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ConditionWire {
    #[serde(rename = "type")]
    kind: Option<Value>,
    status: Option<Value>,
}

impl Fields for PodFields {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: String, map: &mut A) -> Result<(), A::Error> {
        match key.as_str() {
            "spec" => self.spec = map.next_value()?,
            "status" => self.status = map.next_value()?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn into_value(self, deleting: bool) -> Value {
        let mut spec = serde_json::Map::new();
        let s = self.spec.unwrap_or_default();
        for (k, v) in [
            ("serviceAccountName", s.service_account_name),
            ("hostname", s.hostname),
            ("subdomain", s.subdomain),
            ("nodeName", s.node_name),
        ] {
            if let Some(v) = v {
                spec.insert(k.into(), v);
            }
        }
        // The containers' named ports, then those of the native sidecars (init containers
        // with `restartPolicy: Always`): where the EndpointSlice controller looks up a
        // Service's named `targetPort`, in that order (`FindPort`, k8s.io/endpointslice).
        let sidecars = s
            .init_containers
            .unwrap_or_default()
            .into_iter()
            .filter(ContainerWire::is_native_sidecar);
        let containers: Vec<Value> = s
            .containers
            .unwrap_or_default()
            .into_iter()
            .chain(sidecars)
            .filter_map(ContainerWire::named_ports)
            .collect();
        if !containers.is_empty() {
            spec.insert("containers".into(), containers.into());
        }
        let mut status = serde_json::Map::new();
        let st = self.status.unwrap_or_default();
        for (k, v) in [("podIP", st.pod_ip), ("phase", st.phase)] {
            if let Some(v) = v {
                status.insert(k.into(), v);
            }
        }
        let ready: Vec<Value> = if deleting {
            vec![serde_json::json!({"type": "Ready", "status": "False"})]
        } else {
            st.conditions
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.kind.as_ref().and_then(Value::as_str) == Some("Ready"))
                .map(|c| {
                    let mut m = serde_json::Map::new();
                    m.insert("type".into(), "Ready".into());
                    if let Some(s) = c.status {
                        m.insert("status".into(), s);
                    }
                    Value::Object(m)
                })
                .collect()
        };
        if !ready.is_empty() {
            status.insert("conditions".into(), ready.into());
        }
        serde_json::json!({"spec": spec, "status": status})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<F: Fields>(v: Value) -> (ObjectMeta, Value) {
        let text = serde_json::to_string(&v).expect("json");
        serde_json::from_str::<WireObject<F>>(&text)
            .expect("reads")
            .into_parts()
    }

    #[test]
    fn metadata_keeps_what_the_mesh_and_the_watcher_use() {
        let (meta, fields) = read::<Tree>(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "foo", "uid": "u", "resourceVersion": "9",
                         "labels": {"app": "web"}, "annotations": {"a": "b"},
                         "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                         "ownerReferences": [{"kind": "X", "name": "y", "apiVersion": "v1", "uid": "z"}],
                         "creationTimestamp": "2026-12-04T00:00:00Z"},
            "spec": {"ports": [{"port": 80}], "selector": null}
        }));
        assert_eq!(meta.name.as_deref(), Some("web"));
        assert_eq!(meta.namespace.as_deref(), Some("foo"));
        assert_eq!(meta.resource_version.as_deref(), Some("9"));
        assert_eq!(meta.uid.as_deref(), Some("u"));
        assert_eq!(meta.labels.unwrap_or_default()["app"], "web");
        assert_eq!(meta.annotations.unwrap_or_default()["a"], "b");
        assert!(meta.managed_fields.is_none() && meta.owner_references.is_none());
        assert!(meta.deletion_timestamp.is_none());
        assert_eq!(
            fields,
            serde_json::json!({"spec": {"ports": [{"port": 80}], "selector": null}})
        );
    }

    #[test]
    fn a_field_of_an_unexpected_type_is_kept_for_the_reader() {
        let (_, fields) = read::<PodFields>(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"serviceAccountName": 7, "containers": [{"ports": [{"name": "http", "containerPort": "x"}]}]}
        }));
        assert_eq!(
            fields["spec"],
            serde_json::json!({"serviceAccountName": 7,
                "containers": [{"name": "", "image": "", "ports": [{"name": "http", "containerPort": "x"}]}]})
        );
    }

    #[test]
    fn a_pod_being_deleted_is_not_ready() {
        let (meta, fields) = read::<PodFields>(serde_json::json!({
            "metadata": {"name": "p", "deletionTimestamp": "2026-12-04T00:00:00Z"},
            "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        assert!(meta.deletion_timestamp.is_some());
        assert_eq!(
            fields["status"],
            serde_json::json!({"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "False"}]})
        );
    }

    #[test]
    fn a_node_keeps_its_metadata_only() {
        let (meta, fields) = read::<NoFields>(serde_json::json!({
            "metadata": {"name": "n", "labels": {"topology.kubernetes.io/zone": "z1"}},
            "status": {"images": [{"names": ["big"]}]}
        }));
        assert_eq!(meta.name.as_deref(), Some("n"));
        assert_eq!(fields, serde_json::json!({}));
    }

    #[test]
    fn a_list_of_them_reads_as_kube_reads_it() {
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "12"},
            "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}, "spec": {"nodeName": "n"}}]
        });
        let text = serde_json::to_string(&list).expect("json");
        let read: kube::core::ObjectList<WireObject<PodFields>> =
            serde_json::from_str(&text).expect("a list");
        assert_eq!(read.metadata.resource_version.as_deref(), Some("12"));
        let names: Vec<_> = read
            .items
            .iter()
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn not_an_object_is_refused() {
        assert!(serde_json::from_str::<WireObject<Tree>>("[1]").is_err());
        assert!(serde_json::from_str::<WireObject<Tree>>(r#"{"metadata": 3}"#).is_err());
    }
}
