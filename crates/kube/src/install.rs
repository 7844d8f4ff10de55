//! `isthmus install`: the objects of the Helm chart (`manifests/charts/isthmus`) for users
//! without Helm, rendered from the same values and applied with server-side apply.
//!
//! The chart's `values.yaml` is the one source of defaults (embedded here); user values
//! (files and `--set`) merge over it and are read into [`InstallValues`], which refuses any
//! key the chart's schema refuses. A test renders both this and `helm template` with the
//! same values and compares every object.

use crate::remote_secret::reader_rules;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The chart's default values.
pub const CHART_VALUES: &str = include_str!("../../../manifests/charts/isthmus/values.yaml");

/// The field manager of what `isthmus install` applies.
const MANAGER: &str = "isthmus-install";

/// Something is wrong with the values or the install.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A values file or `--set` is not valid.
    #[error("{origin}: {reason}")]
    Values {
        /// The file, or `--set KEY=VALUE`.
        origin: String,
        /// Why.
        reason: String,
    },
    /// The CRD file could not be read.
    #[error("Istio's CRDs ({path}): {reason}")]
    Crds {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The API server refused an object.
    #[error("apply {what}: {source}")]
    Apply {
        /// Kind and name.
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// The chart's values, as its schema allows them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallValues {
    /// `global`.
    pub global: Global,
    /// Istio's meshNetworks, by network.
    #[serde(default)]
    pub mesh_networks: serde_json::Map<String, Value>,
    /// `meshConfig`.
    pub mesh_config: MeshConfigValues,
    /// `cacerts`.
    pub cacerts: Cacerts,
    /// `pilot`.
    pub pilot: Pilot,
    /// `eastWestGateway`.
    pub east_west_gateway: EastWestGateway,
    /// `base`.
    pub base: Base,
    /// `istiodRemote`: the remote profile's settings.
    #[serde(default)]
    pub istiod_remote: IstiodRemote,
}

/// `istiodRemote`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IstiodRemote {
    /// The injector's caBundle in a remote cluster (base64 of the mesh root, PEM): no
    /// control plane here keeps it.
    #[serde(rename = "injectionCABundle", default)]
    pub injection_ca_bundle: String,
}

/// `global`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Global {
    /// `global.multiCluster`.
    pub multi_cluster: MultiCluster,
    /// This cluster's network.
    pub network: String,
    /// Where the control plane and gateway run.
    pub istio_namespace: String,
    /// Image registry.
    pub hub: String,
    /// Image tag.
    pub tag: String,
    /// Image pull policy.
    pub image_pull_policy: String,
    /// Istio's remote profile: no control plane in this cluster; the one of another
    /// cluster serves it through that cluster's east-west gateway at this address.
    #[serde(default)]
    pub remote_pilot_address: String,
}

/// `global.multiCluster`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MultiCluster {
    /// This cluster's name.
    pub cluster_name: String,
}

/// `meshConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshConfigValues {
    /// The trust domain.
    pub trust_domain: String,
}

/// `cacerts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cacerts {
    /// The CA Secret's name.
    pub secret_name: String,
}

/// `pilot`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pilot {
    /// Replicas.
    pub replica_count: u32,
    /// The container's resources.
    pub resources: Value,
    /// What sidecars are sent (`--scoping`).
    pub scoping: Scoping,
    /// With on-demand scoping, a sidecar's own namespace from the start
    /// (`--scoping-namespace`).
    pub scoping_namespace: bool,
    /// Injected sidecars' `--scope-idle` in seconds (`--injection-scope-idle`); 0: never.
    pub scope_idle_seconds: u64,
}

/// `pilot.scoping`: the control plane's `--scoping`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Scoping {
    /// Only what each sidecar's workload used.
    OnDemand,
    /// Every service a sidecar may see.
    Full,
}

impl Scoping {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Scoping::OnDemand => "on-demand",
            Scoping::Full => "full",
        }
    }
}

/// `eastWestGateway`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EastWestGateway {
    /// Install it.
    pub enabled: bool,
    /// Its name.
    pub name: String,
    /// Its Service.
    pub service: GatewayService,
}

/// `eastWestGateway.service`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayService {
    /// LoadBalancer, NodePort or ClusterIP.
    #[serde(rename = "type")]
    pub type_: String,
}

/// `base`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Base {
    /// Install Istio's CRDs.
    #[serde(rename = "enableCRDs")]
    pub enable_crds: bool,
}

/// Merges `over` into `base` (maps key by key, anything else replaced), as Helm merges values.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A `--set KEY=VALUE` as Helm reads it: dotted keys, and a value that is `true`/`false`, an
/// integer, or a string.
fn set_value(key: &str, value: &str) -> Value {
    let leaf = match value {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        v => v
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(v.to_string())),
    };
    key.rsplit('.')
        .fold(leaf, |inner, part| json!({ part: inner }))
}

/// The values: the chart's defaults, then each `(origin, YAML text)` file, then each
/// `KEY=VALUE` of `sets`, and `KEY=JSON` of `json_sets`, merged in that order.
pub fn values(
    files: &[(String, String)],
    sets: &[String],
    json_sets: &[String],
) -> Result<InstallValues, InstallError> {
    let mut all: Value =
        isthmus_api::yaml::from_str(CHART_VALUES).map_err(|e| InstallError::Values {
            origin: "the chart's values.yaml".into(),
            reason: e.to_string(),
        })?;
    for (origin, text) in files {
        let v: Value = isthmus_api::yaml::from_str(text).map_err(|e| InstallError::Values {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        if !v.is_null() {
            merge(&mut all, v);
        }
    }
    for s in sets {
        let (k, v) = s.split_once('=').ok_or_else(|| InstallError::Values {
            origin: format!("--set {s}"),
            reason: "must be KEY=VALUE".into(),
        })?;
        merge(&mut all, set_value(k, v));
    }
    for s in json_sets {
        let (k, v) = s.split_once('=').ok_or_else(|| InstallError::Values {
            origin: format!("--set-json {s}"),
            reason: "must be KEY=JSON".into(),
        })?;
        let parsed: Value = serde_json::from_str(v).map_err(|e| InstallError::Values {
            origin: format!("--set-json {s}"),
            reason: e.to_string(),
        })?;
        let nested = k
            .rsplit('.')
            .fold(parsed, |inner, part| json!({ part: inner }));
        merge(&mut all, nested);
    }
    let typed: InstallValues = serde_json::from_value(all).map_err(|e| InstallError::Values {
        origin: "values".into(),
        reason: format!("{e} (a value the chart does not use is refused, as its schema does)"),
    })?;
    for (what, v) in [
        (
            "global.multiCluster.clusterName",
            &typed.global.multi_cluster.cluster_name,
        ),
        ("global.istioNamespace", &typed.global.istio_namespace),
        ("eastWestGateway.name", &typed.east_west_gateway.name),
    ] {
        if !crate::remote_secret::is_dns_label(v) {
            return Err(InstallError::Values {
                origin: what.into(),
                reason: format!("{v:?} is not a DNS label"),
            });
        }
    }
    Ok(typed)
}

/// The documents of a YAML stream, split at `---` lines; documents with nothing but
/// comments and blank lines are left out.
pub fn documents(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    out.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    out
}

fn labels(app: &str, extra: &[(&str, &str)]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("app".into(), json!(app));
    for (k, v) in extra {
        m.insert((*k).into(), json!(v));
    }
    m.insert("app.kubernetes.io/part-of".into(), json!("isthmus"));
    m.insert("app.kubernetes.io/managed-by".into(), json!("isthmus"));
    Value::Object(m)
}

fn rules(rules: &[PolicyRule]) -> Value {
    serde_json::to_value(rules).unwrap_or_default()
}

/// The objects, in the order they are applied: Istio's CRDs (the documents of `crds`, when
/// `base.enableCRDs`), then the chart's objects.
pub fn render(v: &InstallValues, crds: Option<&str>) -> Result<Vec<Value>, InstallError> {
    let mut out = Vec::new();
    if v.base.enable_crds {
        let text = crds.ok_or_else(|| InstallError::Crds {
            path: "(none)".into(),
            reason: "not found: run scripts/install-istio-crds.sh, or set base.enableCRDs=false"
                .into(),
        })?;
        for doc in documents(text) {
            let crd: Value = isthmus_api::yaml::from_str(&doc).map_err(|e| InstallError::Crds {
                path: "crd-all.gen.yaml".into(),
                reason: e.to_string(),
            })?;
            if !crd.is_null() {
                out.push(crd);
            }
        }
    }
    let ns = v.global.istio_namespace.as_str();
    let image = format!("{}/isthmus:{}", v.global.hub, v.global.tag);
    let cluster = v.global.multi_cluster.cluster_name.as_str();
    let network = v.global.network.as_str();
    let gw = v.east_west_gateway.name.as_str();
    let gw_sa = format!("{gw}-service-account");
    let role_name = format!("istiod-clusterrole-{ns}");
    let (cluster_rules, namespaced) = reader_rules();
    out.push(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "istiod", "namespace": ns, "labels": labels("istiod", &[])}
    }));
    if v.east_west_gateway.enabled {
        out.push(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": gw_sa, "namespace": ns, "labels": labels(gw, &[])}
        }));
    }
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": role_name, "labels": labels("istiod", &[])},
        "rules": rules(&cluster_rules)
    }));
    let subject = json!([{"kind": "ServiceAccount", "name": "istiod", "namespace": ns}]);
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": role_name, "labels": labels("istiod", &[])},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": subject
    }));
    // What the control plane writes in its own cluster besides what it may do in every
    // cluster it serves (the reader's rules): the caBundle of its injection webhook.
    let writer = format!("istiod-writer-{ns}");
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": writer, "labels": labels("istiod", &[])},
        "rules": [
            {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"], "resourceNames": [INJECTOR], "verbs": ["get", "update"]},
        ]
    }));
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": writer, "labels": labels("istiod", &[])},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": writer},
        "subjects": subject
    }));
    let ns_rules = namespaced.get("istio-system").cloned().unwrap_or_default();
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "istiod", "namespace": ns, "labels": labels("istiod", &[])},
        "rules": rules(&ns_rules)
    }));
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "istiod", "namespace": ns, "labels": labels("istiod", &[])},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "istiod"},
        "subjects": subject
    }));
    out.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": ns, "labels": labels("istiod", &[])},
        "data": {
            "mesh": format!("trustDomain: {}", Value::String(v.mesh_config.trust_domain.clone())),
            "meshNetworks": format!("networks: {}", Value::Object(v.mesh_networks.clone())),
        }
    }));
    let pilot_labels = labels("istiod", &[("istio", "pilot")]);
    let remote = v.global.remote_pilot_address.as_str();
    if remote.is_empty() {
        let mut control_plane_args: Vec<String> = vec![
            "control-plane".into(),
            "--in-cluster".into(),
            format!("--cluster={cluster}"),
            format!("--network={network}"),
            "--cacerts=/etc/cacerts".into(),
            "--credential-key=/var/lib/isthmus/credential-key".into(),
            "--listen=0.0.0.0:15012".into(),
            "--monitoring=0.0.0.0:15014".into(),
            "--dns=0.0.0.0:15053".into(),
            "--injection-listen=0.0.0.0:15017".into(),
            format!("--injection-image={image}"),
            format!("--injection-control-plane=istiod.{ns}.svc:15012"),
            format!("--injection-scope-idle={}", v.pilot.scope_idle_seconds),
            format!("--scoping={}", v.pilot.scoping.as_str()),
        ];
        if v.pilot.scoping_namespace {
            control_plane_args.push("--scoping-namespace".into());
        }
        out.push(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": ns, "labels": pilot_labels},
        "spec": {
            "replicas": v.pilot.replica_count,
            "selector": {"matchLabels": {"app": "istiod"}},
            "template": {
                "metadata": {"labels": {"app": "istiod", "istio": "pilot", "sidecar.istio.io/inject": "false"}},
                "spec": {
                    "serviceAccountName": "istiod",
                    "containers": [{
                        "name": "discovery",
                        "image": image,
                        "imagePullPolicy": v.global.image_pull_policy,
                        "command": ["isthmus"],
                        "args": control_plane_args,
                        "ports": [
                            {"name": "grpc-xds", "containerPort": 15012, "protocol": "TCP"},
                            {"name": "https-webhook", "containerPort": 15017, "protocol": "TCP"},
                            {"name": "http-monitoring", "containerPort": 15014, "protocol": "TCP"},
                            {"name": "dns-udp", "containerPort": 15053, "protocol": "UDP"},
                            {"name": "dns-tcp", "containerPort": 15053, "protocol": "TCP"},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 15014}, "periodSeconds": 3},
                        "resources": v.pilot.resources,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": 1337,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [
                            {"name": "cacerts", "mountPath": "/etc/cacerts", "readOnly": true},
                            {"name": "state", "mountPath": "/var/lib/isthmus"},
                        ],
                    }],
                    "volumes": [
                        {"name": "cacerts", "secret": {"secretName": v.cacerts.secret_name}},
                        {"name": "state", "emptyDir": {}},
                    ],
                }
            }
        }
    }));
    }
    if !remote.is_empty() {
        // Istio's remote profile: `istiod` here is the primary's control plane, reached
        // through its east-west gateway (xDS and CA on 15012, the injector on 15017).
        out.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "istiod", "namespace": ns, "labels": labels("istiod", &[("istio", "pilot")])},
            "spec": {
                "ports": [
                    {"name": "grpc-xds", "port": 15012, "targetPort": 15012, "protocol": "TCP"},
                    {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"},
                ]
            }
        }));
        out.push(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "istiod-remote", "namespace": ns, "labels": {
                "kubernetes.io/service-name": "istiod",
                "endpointslice.kubernetes.io/managed-by": "isthmus",
                "app.kubernetes.io/part-of": "isthmus",
                "app.kubernetes.io/managed-by": "isthmus",
            }},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [remote], "conditions": {"ready": true}}],
            "ports": [
                {"name": "grpc-xds", "port": 15012, "protocol": "TCP"},
                {"name": "https-webhook", "port": 15017, "protocol": "TCP"},
            ]
        }));
        let path = format!("/inject/cluster/{cluster}/net/{network}/discovery/{remote}");
        let bundle = Some(v.istiod_remote.injection_ca_bundle.as_str()).filter(|b| !b.is_empty());
        out.push(injector_webhook(ns, &path, bundle));
    } else {
        out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istiod", "namespace": ns, "labels": labels("istiod", &[("istio", "pilot")])},
        "spec": {
            "selector": {"app": "istiod"},
            "ports": [
                {"name": "grpc-xds", "port": 15012, "targetPort": 15012, "protocol": "TCP"},
                {"name": "http-monitoring", "port": 15014, "targetPort": 15014, "protocol": "TCP"},
                {"name": "dns-udp", "port": 53, "targetPort": 15053, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "targetPort": 15053, "protocol": "TCP"},
                {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"},
            ]
        }
    }));
        out.push(injector_webhook(ns, "/inject", None));
    }
    let control_plane = if remote.is_empty() {
        format!("istiod.{ns}.svc:15012")
    } else {
        format!("{remote}:15012")
    };
    if v.east_west_gateway.enabled {
        let gw_labels = labels(
            gw,
            &[
                ("istio", "eastwestgateway"),
                ("topology.istio.io/network", network),
            ],
        );
        let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
        out.push(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": gw, "namespace": ns, "labels": gw_labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": gw}},
                "template": {
                    "metadata": {"labels": {
                        "app": gw, "istio": "eastwestgateway",
                        "topology.istio.io/network": network,
                        "sidecar.istio.io/inject": "false",
                    }},
                    "spec": {
                        "serviceAccountName": gw_sa,
                        "containers": [{
                            "name": "istio-proxy",
                            "image": image,
                            "imagePullPolicy": v.global.image_pull_policy,
                            "command": ["isthmus"],
                            "args": [
                                "agent",
                                "--kind=router",
                                "--router-mode=sni-dnat",
                                "--interception=NONE",
                                "--ip=$(POD_IP)",
                                "--pod=$(POD_NAME)",
                                "--namespace=$(POD_NAMESPACE)",
                                "--service-account=$(SERVICE_ACCOUNT)",
                                format!("--cluster={cluster}"),
                                format!("--network={network}"),
                                format!("--control-plane={control_plane}"),
                                "--credential-file=/var/run/secrets/tokens/istio-token",
                                "--root-cert=/etc/istio/root/root-cert.pem",
                                "--workdir=/var/lib/isthmus",
                            ],
                            "env": [
                                {"name": "POD_IP", "valueFrom": field("status.podIP")},
                                {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                                {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
                                {"name": "SERVICE_ACCOUNT", "valueFrom": field("spec.serviceAccountName")},
                            ],
                            "ports": [
                                {"name": "tls", "containerPort": 15443, "protocol": "TCP"},
                                {"name": "tls-istiod", "containerPort": 15012, "protocol": "TCP"},
                            ],
                            "volumeMounts": [
                                {"name": "istio-token", "mountPath": "/var/run/secrets/tokens", "readOnly": true},
                                {"name": "root-cert", "mountPath": "/etc/istio/root", "readOnly": true},
                                {"name": "state", "mountPath": "/var/lib/isthmus"},
                            ],
                        }],
                        "volumes": [
                            {"name": "istio-token", "projected": {"sources": [
                                {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}
                            ]}},
                            {"name": "root-cert", "secret": {
                                "secretName": v.cacerts.secret_name,
                                "items": [{"key": "root-cert.pem", "path": "root-cert.pem"}]
                            }},
                            {"name": "state", "emptyDir": {}},
                        ],
                    }
                }
            }
        }));
        out.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": gw, "namespace": ns, "labels": gw_labels},
            "spec": {
                "type": v.east_west_gateway.service.type_,
                "selector": {"app": gw},
                "ports": [
                    {"name": "tls", "port": 15443, "targetPort": 15443, "protocol": "TCP"},
                    {"name": "tls-istiod", "port": 15012, "targetPort": 15012, "protocol": "TCP"},
                ]
            }
        }));
    }
    Ok(out)
}

/// The name of the sidecar injector's MutatingWebhookConfiguration (Istio's).
pub const INJECTOR: &str = "istio-sidecar-injector";

/// The sidecar injector's MutatingWebhookConfiguration, as Istio's: pods being created in
/// namespaces labelled `istio-injection=enabled`, except those labelled
/// `sidecar.istio.io/inject: "false"`, go to the control plane's Service `istiod` in
/// `namespace` (port 443, `path`). It fails closed there (a pod that should get a proxy is
/// not created without one) and nowhere else: other namespaces never call it. The caBundle
/// is the control plane's to set (`ca_bundle` only when the caller knows the root).
pub fn injector_webhook(namespace: &str, path: &str, ca_bundle: Option<&str>) -> Value {
    let mut client =
        json!({"service": {"name": "istiod", "namespace": namespace, "path": path, "port": 443}});
    if let Some(b) = ca_bundle {
        client["caBundle"] = json!(b);
    }
    let webhook = |name: &str, namespaces: Value, objects: Value| {
        json!({
            "name": name,
            "clientConfig": client,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": namespaces,
            "objectSelector": objects,
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "reinvocationPolicy": "Never",
            "timeoutSeconds": 10,
        })
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": INJECTOR, "labels": labels("sidecar-injector", &[])},
        "webhooks": [
            // Namespaces labelled for injection: every pod but those that opt out.
            webhook(
                "namespace.sidecar-injector.istio.io",
                json!({"matchLabels": {"istio-injection": "enabled"}}),
                json!({"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]}),
            ),
            // Namespaces without the label: pods that opt in with the label (Istio's
            // `object.sidecar-injector.istio.io`).
            webhook(
                "object.sidecar-injector.istio.io",
                json!({"matchExpressions": [
                    {"key": "istio-injection", "operator": "DoesNotExist"},
                    {"key": "istio.io/rev", "operator": "DoesNotExist"},
                ]}),
                json!({"matchExpressions": [
                    {"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]},
                    {"key": "istio.io/rev", "operator": "DoesNotExist"},
                ]}),
            ),
        ]
    })
}

/// `objects` as one YAML stream (`---` between documents), as `helm template` prints them.
pub fn to_yaml(objects: &[Value]) -> Result<String, InstallError> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(o).map_err(|e| InstallError::Values {
                origin: format!(
                    "{} {}",
                    o["kind"].as_str().unwrap_or_default(),
                    o["metadata"]["name"].as_str().unwrap_or_default()
                ),
                reason: e.to_string(),
            })?,
        );
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// The API resource (plural, scope) of the kinds [`render`] makes.
fn api_resource(api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let (plural, namespaced) = match kind {
        "CustomResourceDefinition" => ("customresourcedefinitions", false),
        "Namespace" => ("namespaces", false),
        "ServiceAccount" => ("serviceaccounts", true),
        "ClusterRole" => ("clusterroles", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "Role" => ("roles", true),
        "RoleBinding" => ("rolebindings", true),
        "ConfigMap" => ("configmaps", true),
        "Deployment" => ("deployments", true),
        "Service" => ("services", true),
        "MutatingWebhookConfiguration" => ("mutatingwebhookconfigurations", false),
        "EndpointSlice" => ("endpointslices", true),
        _ => return None,
    };
    Some((
        ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
        },
        namespaced,
    ))
}

/// Applies `objects` (from [`render`]) with server-side apply, the namespace first;
/// `progress` is told each object.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    objects: &[Value],
    progress: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for o in std::iter::once(&ns).chain(objects) {
        let api_version = o["apiVersion"].as_str().unwrap_or_default();
        let kind = o["kind"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let what = format!("{kind} {name}");
        let (ar, namespaced) =
            api_resource(api_version, kind).ok_or_else(|| InstallError::Values {
                origin: what.clone(),
                reason: format!("{api_version} {kind} is not a kind isthmus install applies"),
            })?;
        let obj: DynamicObject =
            serde_json::from_value(o.clone()).map_err(|e| InstallError::Values {
                origin: what.clone(),
                reason: e.to_string(),
            })?;
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(
                client.clone(),
                o["metadata"]["namespace"].as_str().unwrap_or(namespace),
                &ar,
            )
        } else {
            Api::all_with(client.clone(), &ar)
        };
        api.patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(|source| InstallError::Apply {
            what: what.clone(),
            source,
        })?;
        *by_kind.entry(kind.to_string()).or_default() += 1;
        if kind != "CustomResourceDefinition" {
            progress(&format!("applied {what}"));
        }
    }
    if let Some(n) = by_kind.get("CustomResourceDefinition") {
        progress(&format!("applied {n} of Istio's CustomResourceDefinitions"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charts_defaults_are_read_and_set_overrides_them() {
        let v = values(
            &[("east.yaml".into(), "global:\n  network: net-east\n".into())],
            &[
                "global.multiCluster.clusterName=east".into(),
                "eastWestGateway.enabled=false".into(),
            ],
            &[r#"meshNetworks={"net-east": {"endpoints": [{"fromRegistry": "east"}]}}"#.into()],
        )
        .expect("values");
        assert_eq!(v.global.multi_cluster.cluster_name, "east");
        assert_eq!(v.global.network, "net-east");
        assert_eq!(
            v.global.istio_namespace, "istio-system",
            "the chart's default"
        );
        assert!(!v.east_west_gateway.enabled);
        assert!(v.mesh_networks.contains_key("net-east"));
        let objects = render(&v, None).err().map(|e| e.to_string());
        assert!(objects.is_some_and(|e| e.contains("install-istio-crds")));
    }

    #[test]
    fn a_value_the_chart_does_not_use_is_refused_by_name() {
        let e = values(&[], &["global.meshID=mesh1".into()], &[])
            .expect_err("an unused value was accepted")
            .to_string();
        assert!(e.contains("meshID"), "{e}");
        let e = values(&[], &["global.multiCluster.clusterName=East_1".into()], &[])
            .expect_err("a bad cluster name was accepted")
            .to_string();
        assert!(e.contains("global.multiCluster.clusterName"), "{e}");
    }

    #[test]
    fn every_rendered_kind_can_be_applied() {
        let mut v = values(&[], &[], &[]).expect("values");
        v.base.enable_crds = false;
        for o in render(&v, None).expect("render") {
            let kind = o["kind"].as_str().unwrap_or_default();
            assert!(
                api_resource(o["apiVersion"].as_str().unwrap_or_default(), kind).is_some(),
                "{kind}"
            );
        }
    }
}
