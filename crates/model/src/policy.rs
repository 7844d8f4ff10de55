//! Policies as they apply to a workload: peer authentication (the mTLS mode) and
//! authorization (which AuthorizationPolicies select it).

use isthmus_api::enums::MtlsMode;
use std::collections::BTreeMap;

/// One policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsPolicy {
    /// Namespace; the root namespace (`istio-system`) or empty means mesh-wide.
    pub namespace: String,
    /// Workload labels it selects; none means the whole namespace.
    pub selector: BTreeMap<String, String>,
    /// The mode.
    pub mode: MtlsMode,
    /// Per-port modes.
    pub ports: BTreeMap<u32, MtlsMode>,
}

/// Every policy of the mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtlsPolicies {
    /// The policies.
    pub policies: Vec<MtlsPolicy>,
}

/// A security policy (its spec `S`) and the namespace it lives in.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedPolicy<S> {
    /// Its namespace (the root namespace: the whole mesh).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What it says.
    pub spec: S,
}

/// An AuthorizationPolicy and the namespace it lives in.
pub type AuthzPolicy = NamedPolicy<isthmus_api::authorization::AuthorizationPolicySpec>;

/// Every AuthorizationPolicy of the mesh (the control plane's cluster's), by namespace and
/// name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthzPolicies {
    /// The policies, sorted by namespace and name.
    pub policies: Vec<AuthzPolicy>,
}

impl AuthzPolicies {
    /// The policies that apply to a workload of `namespace` with `labels`, as Istio selects
    /// them: those of the root namespace (every workload of the mesh) and of its own
    /// namespace, each when it has no selector or its selector's labels are all the
    /// workload's.
    pub fn for_workload<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a AuthzPolicy> + Clone + 'a {
        self.policies.iter().filter(move |p| {
            (p.namespace == namespace || p.namespace == ROOT_NAMESPACE)
                && p.spec
                    .selector
                    .as_ref()
                    .is_none_or(|s| s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
        })
    }
}

/// A RequestAuthentication and the namespace it lives in.
pub type JwtPolicy = NamedPolicy<isthmus_api::authentication::RequestAuthenticationSpec>;

/// Every RequestAuthentication of the mesh (the control plane's cluster's), by namespace and
/// name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JwtPolicies {
    /// The policies, sorted by namespace and name.
    pub policies: Vec<JwtPolicy>,
}

impl JwtPolicies {
    /// The JWT rules that apply to a workload of `namespace` with `labels` (selected as
    /// AuthorizationPolicies are), sorted by issuer as Istio orders its providers.
    pub fn rules_for(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<&isthmus_api::authentication::JwtRule> {
        let mut rules: Vec<_> = self
            .policies
            .iter()
            .filter(|p| {
                (p.namespace == namespace || p.namespace == ROOT_NAMESPACE)
                    && p.spec.selector.as_ref().is_none_or(|s| {
                        s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
            })
            .flat_map(|p| p.spec.jwt_rules.iter())
            .collect();
        rules.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        rules
    }

    /// Every place keys must be fetched from.
    pub fn key_locations(&self) -> std::collections::BTreeSet<KeyLocation> {
        self.policies
            .iter()
            .flat_map(|p| p.spec.jwt_rules.iter())
            .filter_map(|r| r.key_source().location())
            .collect()
    }
}

/// Key sets (JWKS documents) the control plane fetched, or why it could not, by where they
/// come from. A rule whose keys are missing or failed is sent keys that verify no token,
/// as Istio does: a token that cannot be checked is refused, never let through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedKeys {
    /// The documents, or the error.
    pub by_location: BTreeMap<KeyLocation, Result<String, String>>,
}

use isthmus_api::authentication::KeyLocation;

/// The namespace whose policies apply mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

impl MtlsPolicies {
    /// The policies that apply to a workload, most specific first: its own (by selector),
    /// its namespace's, the mesh's.
    fn applicable<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a MtlsPolicy> + 'a {
        let selects = |p: &MtlsPolicy| p.selector.iter().all(|(k, v)| labels.get(k) == Some(v));
        let workload = self
            .policies
            .iter()
            .find(move |p| p.namespace == namespace && !p.selector.is_empty() && selects(p));
        let ns = self.policies.iter().find(move |p| {
            p.namespace == namespace && p.selector.is_empty() && namespace != ROOT_NAMESPACE
        });
        let mesh = self.policies.iter().find(|p| {
            (p.namespace == ROOT_NAMESPACE || p.namespace.is_empty()) && p.selector.is_empty()
        });
        [workload, ns, mesh].into_iter().flatten()
    }

    /// The mode for a workload's port: workload policy, then namespace, then mesh, then
    /// PERMISSIVE, the way Istio resolves it. Port 0 (no policy names it) gives the mode of
    /// the workload's ports that no port-level setting names.
    pub fn mode_for(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        port: u32,
    ) -> MtlsMode {
        for p in self.applicable(namespace, labels) {
            let m = p.ports.get(&port).copied().unwrap_or(p.mode);
            if m != MtlsMode::Unset {
                return m;
            }
        }
        MtlsMode::Permissive
    }

    /// The ports that a port-level setting of a policy applying to the workload names
    /// (`portLevelMtls`): each may have a mode of its own, whether a Service declares the
    /// port or not.
    pub fn port_level_ports(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> std::collections::BTreeSet<u32> {
        self.applicable(namespace, labels)
            .flat_map(|p| p.ports.keys().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_beats_namespace_beats_mesh_default_permissive() {
        let mut p = MtlsPolicies::default();
        assert_eq!(
            p.mode_for("foo", &BTreeMap::new(), 80),
            MtlsMode::Permissive
        );
        p.policies.push(MtlsPolicy {
            namespace: ROOT_NAMESPACE.into(),
            selector: BTreeMap::new(),
            mode: MtlsMode::Strict,
            ports: BTreeMap::new(),
        });
        assert_eq!(p.mode_for("foo", &BTreeMap::new(), 80), MtlsMode::Strict);
        p.policies.push(MtlsPolicy {
            namespace: "foo".into(),
            selector: BTreeMap::new(),
            mode: MtlsMode::Permissive,
            ports: BTreeMap::new(),
        });
        assert_eq!(
            p.mode_for("foo", &BTreeMap::new(), 80),
            MtlsMode::Permissive
        );
        let labels: BTreeMap<String, String> = [("app".to_string(), "x".to_string())].into();
        p.policies.push(MtlsPolicy {
            namespace: "foo".into(),
            selector: labels.clone(),
            mode: MtlsMode::Unset,
            ports: [(80, MtlsMode::Strict)].into(),
        });
        assert_eq!(p.mode_for("foo", &labels, 80), MtlsMode::Strict);
        assert_eq!(p.mode_for("foo", &labels, 81), MtlsMode::Permissive);
    }
}
