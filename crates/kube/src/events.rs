//! Counts of the watch events read from API servers, under istiod's names: Istio's own
//! kinds in `pilot_k8s_cfg_events`, Kubernetes' (Services, Pods, ...) in
//! `pilot_k8s_reg_events`, each by `type` (the kind) and `event` (`add`, `update`,
//! `delete`). Process-wide, as istiod's are: every cluster's source adds to the same counts.

use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::LazyLock;

/// What a watch event did to the object it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An object not held before.
    Add,
    /// A new version of an object held.
    Update,
    /// An object gone.
    Delete,
}

impl EventKind {
    /// The `event` label.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Add => "add",
            EventKind::Update => "update",
            EventKind::Delete => "delete",
        }
    }
}

/// The two counter families.
#[derive(Debug, Clone)]
pub struct KubeEvents {
    config: IntCounterVec,
    registry: IntCounterVec,
}

static EVENTS: LazyLock<KubeEvents> = LazyLock::new(|| {
    let family = |name: &str, help: &str| {
        IntCounterVec::new(Opts::new(name, help), &["type", "event"])
            .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
    };
    KubeEvents {
        config: family("pilot_k8s_cfg_events", "Events from k8s config."),
        registry: family("pilot_k8s_reg_events", "Events from k8s registry."),
    }
});

/// The process's event counts.
pub fn events() -> &'static KubeEvents {
    &EVENTS
}

/// istiod's `type` label of a Kubernetes kind in `pilot_k8s_reg_events`.
fn registry_type(kind: &str) -> &str {
    match kind {
        "Service" => "Services",
        "Pod" => "Pods",
        "Node" => "Nodes",
        "Namespace" => "Namespaces",
        "Secret" => "Secrets",
        other => other,
    }
}

impl KubeEvents {
    /// Counts one event of `kind`; `istio` says whether it is one of Istio's kinds.
    pub fn count(&self, kind: &str, istio: bool, event: EventKind) {
        if istio {
            self.config.with_label_values(&[kind, event.as_str()]).inc();
        } else {
            self.registry
                .with_label_values(&[registry_type(kind), event.as_str()])
                .inc();
        }
    }

    /// Events of `kind` counted so far.
    pub fn get(&self, kind: &str, istio: bool, event: EventKind) -> u64 {
        if istio {
            self.config.with_label_values(&[kind, event.as_str()]).get()
        } else {
            self.registry
                .with_label_values(&[registry_type(kind), event.as_str()])
                .get()
        }
    }

    /// Adds both families to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.config.clone()))?;
        registry.register(Box::new(self.registry.clone()))
    }
}
