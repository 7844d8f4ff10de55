//! The labels and annotations the mesh reads from Kubernetes objects, and the locality their
//! topology labels give.

/// The label that puts a pod or namespace on a network.
pub const NETWORK_LABEL: &str = "topology.istio.io/network";
/// The annotation that says a pod has no sidecar.
pub const INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";

/// The locality of a pod from its topology labels (`region/zone/subzone`).
pub(crate) fn locality_of(labels: &isthmus_api::Labels) -> String {
    let region = labels.get("topology.kubernetes.io/region");
    let zone = labels.get("topology.kubernetes.io/zone");
    match (region, zone) {
        (Some(r), Some(z)) => format!("{r}/{z}"),
        (Some(r), None) => r.clone(),
        _ => labels
            .get("istio-locality")
            .map(|l| l.replace('.', "/"))
            .unwrap_or_default(),
    }
}
