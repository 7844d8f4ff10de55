//! The labels and annotations the mesh reads from Kubernetes objects, and the locality their
//! topology labels give.

/// The label that puts a pod or namespace on a network.
pub const NETWORK_LABEL: &str = "topology.istio.io/network";
/// The annotation that says a pod has no sidecar.
pub const INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";

/// The label of a locality's subzone (Istio's; Kubernetes has none).
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";

/// The locality a pod's or a Node's topology labels give (`region/zone/subzone`), or a
/// pod's `istio-locality` label; empty when they give none.
pub(crate) fn locality_of(labels: &isthmus_api::Labels) -> String {
    let region = labels.get("topology.kubernetes.io/region");
    let zone = labels.get("topology.kubernetes.io/zone");
    match (region, zone) {
        (Some(r), Some(z)) => match labels.get(SUBZONE_LABEL) {
            Some(sz) => format!("{r}/{z}/{sz}"),
            None => format!("{r}/{z}"),
        },
        (Some(r), None) => r.clone(),
        _ => labels
            .get("istio-locality")
            .map(|l| l.replace('.', "/"))
            .unwrap_or_default(),
    }
}
