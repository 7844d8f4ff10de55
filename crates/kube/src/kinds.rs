//! The kinds a control plane watches: in its own cluster what istiod reads, and every Istio
//! kind whose objects must either take effect or be reported as not supported; in a remote
//! cluster its services and endpoints, with its Istio kinds only counted.

use kube::discovery::ApiResource;

/// One kind to watch, and which of its objects.
#[derive(Debug, Clone)]
pub struct WatchedKind {
    /// Group, version, kind and plural.
    pub api: ApiResource,
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<&'static str>,
    /// Label selector.
    pub labels: Option<&'static str>,
    /// Field selector.
    pub fields: Option<&'static str>,
    /// An Istio CRD, which a cluster may not have installed: a `404` for it means "no objects
    /// of this kind can exist", not an error.
    pub custom: bool,
}

impl WatchedKind {
    fn new(group: &str, version: &str, kind: &str, plural: &str) -> WatchedKind {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        WatchedKind {
            api: ApiResource {
                group: group.to_string(),
                version: version.to_string(),
                api_version,
                kind: kind.to_string(),
                plural: plural.to_string(),
            },
            namespace: None,
            labels: None,
            fields: None,
            custom: !group.is_empty() && group.ends_with(".istio.io"),
        }
    }

    /// `Kind` as the user writes it.
    pub fn kind(&self) -> &str {
        &self.api.kind
    }
}

/// The Secrets of `istio-system` the control plane reads: every type but service-account
/// tokens and Helm's release records (other clusters' credentials, gateway certificates).
pub const SECRET_FIELDS: &str =
    "type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1";

/// The EndpointSlices the control plane reads: all but the EndpointSlice controller's. Those
/// mirror the Pods of Services with selectors, which the build reads itself; selected out
/// by the API server, they are neither sent, parsed nor kept, and a pod's change does not
/// arrive twice.
pub const SLICE_LABELS: &str =
    "endpointslice.kubernetes.io/managed-by!=endpointslice-controller.k8s.io";

/// Everything watched in the control plane's own cluster, in the order the initial lists are
/// awaited.
///
/// - Namespaces, Services, Pods, Nodes (the locality of their pods) and EndpointSlices (`discovery.k8s.io/v1`, as istiod reads
///   them) for services and endpoints;
/// - Secrets of `istio-system` (other clusters' credentials, labelled
///   `istio/multiCluster=true`, and gateways' certificates for `credentialName`; no
///   service-account tokens) and its `istio` ConfigMap (mesh config and meshNetworks);
/// - every kind of `networking.istio.io` and `security.istio.io`, and Istio's telemetry and
///   extension kinds: those Isthmus enforces, and those it refuses, so that an
///   AuthorizationPolicy or an EnvoyFilter in the cluster is reported rather than silently
///   not applied. Istio kinds are watched at `v1` where Istio serves it (all served versions
///   of a kind share one schema).
pub fn watched_kinds() -> Vec<WatchedKind> {
    // Only istiod's namespace (a Secret anyone can write elsewhere must not add a cluster):
    // other clusters' credentials (label istio/multiCluster=true, checked where they are
    // read) and the gateways' certificates (`credentialName`); never service-account tokens
    // or Helm's release records.
    let mut secrets = WatchedKind::new("", "v1", "Secret", "secrets");
    secrets.namespace = Some("istio-system");
    secrets.fields = Some(SECRET_FIELDS);
    let mut mesh_config = WatchedKind::new("", "v1", "ConfigMap", "configmaps");
    mesh_config.namespace = Some("istio-system");
    mesh_config.fields = Some("metadata.name=istio");
    let mut slices = WatchedKind::new("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices");
    slices.labels = Some(SLICE_LABELS);
    let net = "networking.istio.io";
    let sec = "security.istio.io";
    vec![
        WatchedKind::new("", "v1", "Namespace", "namespaces"),
        WatchedKind::new("", "v1", "Service", "services"),
        WatchedKind::new("", "v1", "Pod", "pods"),
        WatchedKind::new("", "v1", "Node", "nodes"),
        slices,
        secrets,
        mesh_config,
        WatchedKind::new(net, "v1", "ServiceEntry", "serviceentries"),
        WatchedKind::new(net, "v1", "WorkloadEntry", "workloadentries"),
        WatchedKind::new(net, "v1", "WorkloadGroup", "workloadgroups"),
        WatchedKind::new(net, "v1", "DestinationRule", "destinationrules"),
        WatchedKind::new(net, "v1", "VirtualService", "virtualservices"),
        WatchedKind::new(net, "v1", "Gateway", "gateways"),
        WatchedKind::new(net, "v1", "Sidecar", "sidecars"),
        WatchedKind::new(net, "v1alpha3", "EnvoyFilter", "envoyfilters"),
        WatchedKind::new(net, "v1beta1", "ProxyConfig", "proxyconfigs"),
        WatchedKind::new(sec, "v1", "PeerAuthentication", "peerauthentications"),
        WatchedKind::new(sec, "v1", "AuthorizationPolicy", "authorizationpolicies"),
        WatchedKind::new(sec, "v1", "RequestAuthentication", "requestauthentications"),
        WatchedKind::new("telemetry.istio.io", "v1", "Telemetry", "telemetries"),
        WatchedKind::new(
            "extensions.istio.io",
            "v1alpha1",
            "WasmPlugin",
            "wasmplugins",
        ),
    ]
}

/// The kinds a control plane takes from a remote cluster: the Namespaces (their network
/// label), Services, Pods, the Nodes that give the pods' localities and the EndpointSlices of
/// Services without selectors. Nothing else of a remote cluster reaches the mesh: Istio's
/// configuration, the mesh config and the gateways' Secrets are read from the control
/// plane's own cluster only (istiod also reads a remote cluster's WorkloadEntries, and the
/// Secrets of the gateways that run there; Isthmus does not). So a remote cluster costs five
/// watches, not [`watched_kinds`]'s twenty-one, and none of its Istio objects is kept;
/// [`remote_config_kinds`] are counted instead, to say that they are not applied.
pub fn remote_kinds() -> Vec<WatchedKind> {
    watched_kinds()
        .into_iter()
        .filter(|k| REMOTE_KINDS.contains(&k.kind()))
        .collect()
}

/// What [`remote_kinds`] keeps.
const REMOTE_KINDS: [&str; 5] = ["Namespace", "Service", "Pod", "Node", "EndpointSlice"];

/// The Istio kinds of [`watched_kinds`]: in a remote cluster, counted (not watched), so that
/// objects a user wrote there are reported as not applied rather than silently left.
pub fn remote_config_kinds() -> Vec<WatchedKind> {
    watched_kinds().into_iter().filter(|k| k.custom).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_cluster_is_read_for_its_services_and_endpoints_only() {
        let kinds: Vec<String> = remote_kinds()
            .iter()
            .map(|k| k.kind().to_string())
            .collect();
        assert_eq!(
            kinds,
            ["Namespace", "Service", "Pod", "Node", "EndpointSlice"],
            "in the order they are awaited"
        );
        // The controller's slices stay selected out there too.
        let slices = remote_kinds()
            .into_iter()
            .find(|k| k.kind() == "EndpointSlice")
            .expect("slices");
        assert_eq!(slices.labels, Some(SLICE_LABELS));
        // Every kind is either read or counted, except the control plane's own Secrets and
        // mesh config, which only its own cluster's count.
        let counted: Vec<String> = remote_config_kinds()
            .iter()
            .map(|k| k.kind().to_string())
            .collect();
        assert_eq!(counted.len(), 14);
        for k in watched_kinds() {
            let k = k.kind().to_string();
            assert!(
                kinds.contains(&k) || counted.contains(&k) || k == "Secret" || k == "ConfigMap",
                "{k}"
            );
        }
    }

    #[test]
    fn istio_kinds_are_custom_and_core_kinds_are_not() {
        let kinds = watched_kinds();
        let custom: Vec<&str> = kinds
            .iter()
            .filter(|k| k.custom)
            .map(|k| k.kind())
            .collect();
        assert!(custom.contains(&"AuthorizationPolicy"));
        assert!(custom.contains(&"WasmPlugin"));
        assert!(!custom.contains(&"Pod"));
        assert!(!custom.contains(&"EndpointSlice"));
        let secret = kinds
            .iter()
            .find(|k| k.kind() == "Secret")
            .expect("secrets");
        assert_eq!(secret.labels, None);
        assert_eq!(secret.fields, Some(SECRET_FIELDS));
        assert_eq!(secret.namespace, Some("istio-system"));
        let slices = kinds
            .iter()
            .find(|k| k.kind() == "EndpointSlice")
            .expect("slices");
        assert_eq!(slices.labels, Some(SLICE_LABELS));
        assert_eq!(
            kinds
                .iter()
                .find(|k| k.kind() == "VirtualService")
                .map(|k| k.api.api_version.as_str()),
            Some("networking.istio.io/v1")
        );
    }
}
