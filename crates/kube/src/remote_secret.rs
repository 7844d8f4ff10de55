//! `isthmus create-remote-secret`: what another cluster's control plane needs to read this
//! cluster, made the way `istioctl create-remote-secret` makes it.
//!
//! In the cluster to be read it creates (server-side apply, so that running it again is
//! harmless) a ServiceAccount, a ClusterRole holding only the read rights a control plane
//! uses in a remote cluster (derived from [`remote_kinds`] and [`remote_config_kinds`], so
//! that the two cannot drift apart, plus TokenReview for the CA and the root certificate
//! ConfigMap it writes), its binding, and a token for the ServiceAccount: a
//! long-lived service-account token Secret filled by kube-controller-manager (istioctl's
//! way), or a token from the TokenRequest API with an expiry. It returns the credential
//! Secret in Istio's format: label `istio/multiCluster=true`, annotation
//! `networking.istio.io/cluster`, one key named after the cluster whose value is a
//! kubeconfig with the API server, its CA and the token.
//!
//! Rotation: [`RemoteSecretOptions::rotate`] deletes the token Secret first (which revokes
//! its token) and makes a new one; the new credential Secret applied in the reading cluster
//! replaces the old one live.

use crate::kinds::{remote_config_kinds, remote_kinds, watched_kinds, WatchedKind};
use base64::Engine;
use k8s_openapi::api::authentication::v1::TokenRequestSpec;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The ServiceAccount istioctl creates for remote secrets.
pub const READER_SERVICE_ACCOUNT: &str = "istio-reader-service-account";
/// The label of credential Secrets.
pub const MULTICLUSTER_LABEL: &str = "istio/multiCluster";
/// The annotation naming the cluster a credential Secret reaches.
pub const CLUSTER_ANNOTATION: &str = "networking.istio.io/cluster";
/// The field manager of what this creates.
const MANAGER: &str = "isthmus-create-remote-secret";

/// Where the token in the kubeconfig comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// A `kubernetes.io/service-account-token` Secret, filled by kube-controller-manager's
    /// token controller: does not expire; revoked by deleting the Secret (as istioctl).
    Secret,
    /// The TokenRequest API: expires after the duration (the API server may shorten it);
    /// the credential must be made again before then.
    Request(Duration),
}

/// What `create-remote-secret` makes.
#[derive(Debug, Clone)]
pub struct RemoteSecretOptions {
    /// The cluster's name as the reading control plane knows it (its cluster id).
    pub name: String,
    /// The namespace of the ServiceAccount here and of the Secret there (`istio-system`).
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: String,
    /// The API server address written into the kubeconfig; the user's kubeconfig's when
    /// `None` (give the address the other cluster reaches, when they differ).
    pub server: Option<String>,
    /// The token's source.
    pub token: TokenSource,
    /// Delete the token Secret first, revoking the old token.
    pub rotate: bool,
    /// How long to wait for kube-controller-manager to fill the token Secret.
    pub wait: Duration,
}

impl RemoteSecretOptions {
    /// Istio's defaults for cluster `name`.
    pub fn new(name: impl Into<String>) -> RemoteSecretOptions {
        RemoteSecretOptions {
            name: name.into(),
            namespace: "istio-system".into(),
            service_account: READER_SERVICE_ACCOUNT.into(),
            server: None,
            token: TokenSource::Secret,
            rotate: false,
            wait: Duration::from_secs(30),
        }
    }

    /// The token Secret's name (istioctl's).
    pub fn token_secret(&self) -> String {
        format!("{}-istio-remote-secret-token", self.service_account)
    }

    /// The ClusterRole's and its binding's name (Istio's reader role, per namespace).
    pub fn cluster_role(&self) -> String {
        format!("istio-reader-clusterrole-{}", self.namespace)
    }
}

/// The credential could not be made. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum RemoteSecretError {
    /// A name that cannot be a Secret key or name.
    #[error("--name {0:?}: a cluster name must be a DNS label (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)")]
    BadName(String),
    /// The kubeconfig could not be read.
    #[error("kubeconfig {origin}: {reason}")]
    Kubeconfig {
        /// The file (or "the default kubeconfig").
        origin: String,
        /// Why.
        reason: String,
    },
    /// The API server's certificate authority is not known.
    #[error("the kubeconfig gives no certificate authority for {0}: the other cluster could not verify this API server (give certificate-authority-data)")]
    NoCa(String),
    /// `--server` is not a URL.
    #[error("--server {0:?}: not an https:// URL")]
    BadServer(String),
    /// A call to the API server failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The TokenRequest API refused.
    #[error("token for {0}: {1}")]
    Token(String, #[source] crate::token::TokenError),
    /// The TokenRequest API answered without a token.
    #[error("the TokenRequest for ServiceAccount {0} was answered without a token")]
    EmptyToken(String),
    /// kube-controller-manager did not fill the token Secret.
    #[error("Secret {0} got no token within {1:?}: is kube-controller-manager running (its token controller needs --service-account-private-key-file)? Or use --token-source request")]
    NoToken(String, Duration),
}

/// A made credential.
#[derive(Clone)]
pub struct RemoteSecret {
    /// The cluster's name (the Secret's key).
    pub cluster: String,
    /// The Secret's namespace.
    pub namespace: String,
    /// The kubeconfig (holds the token).
    pub kubeconfig: String,
    /// When the token expires (seconds since the epoch), for TokenRequest tokens.
    pub expires: Option<i64>,
}

impl std::fmt::Debug for RemoteSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the kubeconfig: it holds the token.
        f.debug_struct("RemoteSecret")
            .field("cluster", &self.cluster)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RemoteSecret {
    /// The Secret's name (istioctl's).
    pub fn name(&self) -> String {
        format!("istio-remote-secret-{}", self.cluster)
    }

    /// The Secret as YAML, ready for `kubectl apply -f -` in the reading cluster.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from(
            "# Made by `isthmus create-remote-secret`: it holds a token, keep it secret.\n",
        );
        out.push_str("apiVersion: v1\nkind: Secret\nmetadata:\n");
        out.push_str(&format!(
            "  annotations:\n    {CLUSTER_ANNOTATION}: {}\n",
            quote(&self.cluster)
        ));
        out.push_str(&format!("  labels:\n    {MULTICLUSTER_LABEL}: \"true\"\n"));
        out.push_str(&format!(
            "  name: {}\n  namespace: {}\n",
            quote(&self.name()),
            quote(&self.namespace)
        ));
        out.push_str(&format!("stringData:\n  {}: |\n", quote(&self.cluster)));
        for line in self.kubeconfig.lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// A YAML scalar for `s`: a JSON string (always a valid YAML double-quoted scalar).
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Whether `s` is a DNS label (RFC 1123: what Kubernetes names and keys may be).
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The client configuration of a kubeconfig file and context (the default kubeconfig,
/// `KUBECONFIG` or `~/.kube/config`, when `path` is `None`).
pub async fn load_config(
    path: Option<&PathBuf>,
    context: Option<&str>,
) -> Result<kube::Config, RemoteSecretError> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    match path {
        Some(p) => {
            let origin = p.display().to_string();
            let file = kube::config::Kubeconfig::read_from(p).map_err(|e| {
                RemoteSecretError::Kubeconfig {
                    origin: origin.clone(),
                    reason: crate::access::error_kind(&e),
                }
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| RemoteSecretError::Kubeconfig {
                    origin,
                    reason: crate::access::error_kind(&e),
                })
        }
        None => kube::Config::from_kubeconfig(&options).await.map_err(|e| {
            RemoteSecretError::Kubeconfig {
                origin: "the default (KUBECONFIG or ~/.kube/config)".into(),
                reason: crate::access::error_kind(&e),
            }
        }),
    }
}

/// A client for the cluster of a kubeconfig file and context (see [`load_config`]).
pub async fn connect(
    path: Option<&PathBuf>,
    context: Option<&str>,
) -> Result<kube::Client, RemoteSecretError> {
    let config = load_config(path, context).await?;
    crate::access::connect(config).map_err(|source| RemoteSecretError::Api {
        what: "client".into(),
        source,
    })
}

/// The rules of a control plane's reader in its own cluster: a ClusterRole (everything
/// watched cluster-wide, and the CA's TokenReviews) and Roles (namespace: what is watched
/// only there, the Secrets and mesh config of `istio-system`).
pub fn reader_rules() -> (Vec<PolicyRule>, BTreeMap<String, Vec<PolicyRule>>) {
    rules(watched_kinds(), Vec::new())
}

/// The rules of the reader `isthmus create-remote-secret` makes in a cluster that another
/// control plane reads as remote: get/list/watch of [`remote_kinds`], list (to count them) of
/// [`remote_config_kinds`], the CA's TokenReviews and the root certificate ConfigMap. No
/// Secret nor the mesh config: a remote cluster's are not read.
pub fn remote_reader_rules() -> (Vec<PolicyRule>, BTreeMap<String, Vec<PolicyRule>>) {
    rules(remote_kinds(), remote_config_kinds())
}

/// The rules for watching `watched` and listing `listed`.
fn rules(
    watched: Vec<WatchedKind>,
    listed: Vec<WatchedKind>,
) -> (Vec<PolicyRule>, BTreeMap<String, Vec<PolicyRule>>) {
    let read = || vec!["get".to_string(), "list".into(), "watch".into()];
    let rule = |k: &WatchedKind| PolicyRule {
        api_groups: Some(vec![k.api.group.clone()]),
        resources: Some(vec![k.api.plural.clone()]),
        // A field selector on the name is a watch of that one object, which RBAC can
        // restrict by name.
        resource_names: k
            .fields
            .and_then(|f| f.strip_prefix("metadata.name="))
            .map(|n| vec![n.to_string()]),
        verbs: read(),
        ..Default::default()
    };
    let mut cluster: Vec<PolicyRule> = Vec::new();
    let mut namespaced: BTreeMap<String, Vec<PolicyRule>> = BTreeMap::new();
    for k in watched {
        match k.namespace {
            Some(ns) => namespaced.entry(ns.to_string()).or_default().push(rule(&k)),
            None => {
                // One rule per API group, its resources together.
                let r = rule(&k);
                match cluster
                    .iter_mut()
                    .find(|c| c.api_groups == r.api_groups && c.resource_names.is_none())
                {
                    Some(c) => c
                        .resources
                        .get_or_insert_with(Vec::new)
                        .push(k.api.plural.clone()),
                    None => cluster.push(r),
                }
            }
        }
    }
    // Counted, not watched: one rule per API group, `list` only.
    for k in listed {
        match cluster.iter_mut().find(|c| {
            c.api_groups.as_deref() == Some(&[k.api.group.clone()][..]) && c.verbs == ["list"]
        }) {
            Some(c) => c
                .resources
                .get_or_insert_with(Vec::new)
                .push(k.api.plural.clone()),
            None => cluster.push(PolicyRule {
                api_groups: Some(vec![k.api.group.clone()]),
                resources: Some(vec![k.api.plural.clone()]),
                verbs: vec!["list".into()],
                ..Default::default()
            }),
        }
    }
    cluster.push(PolicyRule {
        api_groups: Some(vec!["authentication.k8s.io".into()]),
        resources: Some(vec!["tokenreviews".into()]),
        verbs: vec!["create".into()],
        ..Default::default()
    });
    // The one thing a control plane writes in a cluster it serves: the mesh root in each
    // namespace's `istio-ca-root-cert` ConfigMap, which injected proxies mount (as istiod
    // keeps it in the clusters it serves).
    cluster.push(PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["configmaps".into()]),
        resource_names: Some(vec![crate::inject::ROOT_CERT_CONFIGMAP.into()]),
        verbs: vec!["get".into(), "update".into(), "patch".into()],
        ..Default::default()
    });
    cluster.push(PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["configmaps".into()]),
        verbs: vec!["create".into()],
        ..Default::default()
    });
    (cluster, namespaced)
}

/// PEM of DER certificates.
fn pem(certs: &[Vec<u8>]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for der in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = b64.encode(der);
        for chunk in text.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// A Namespace object named `name`.
fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A reference to the RBAC role of `kind` (`Role` or `ClusterRole`) named `name`.
fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some([("app".to_string(), "istio-reader".to_string())].into()),
        ..Default::default()
    }
}

async fn apply<K>(api: &Api<K>, name: &str, object: &K) -> Result<(), RemoteSecretError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
    .map_err(|source| RemoteSecretError::Api {
        what: format!("apply {} {name}", K::kind(&Default::default())),
        source,
    })
}

/// Creates the reader's ServiceAccount, roles, bindings and token in the cluster `config`
/// reaches, and returns the credential Secret for another cluster. `progress` is told each
/// step.
pub async fn create(
    config: kube::Config,
    opts: &RemoteSecretOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<RemoteSecret, RemoteSecretError> {
    if !is_dns_label(&opts.name) {
        return Err(RemoteSecretError::BadName(opts.name.clone()));
    }
    let server = match &opts.server {
        Some(s) if s.starts_with("https://") && !s.contains(char::is_whitespace) => s.clone(),
        Some(s) => return Err(RemoteSecretError::BadServer(s.clone())),
        None => config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string(),
    };
    let kubeconfig_ca = config.root_cert.clone().filter(|c| !c.is_empty());
    let client = crate::access::connect(config).map_err(|source| RemoteSecretError::Api {
        what: "client".into(),
        source,
    })?;
    let ns = opts.namespace.as_str();
    let sa = opts.service_account.as_str();
    progress(&format!("namespace {ns}"));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    apply(&namespaces, ns, &namespace(ns)).await?;
    progress(&format!("ServiceAccount {ns}/{sa}"));
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    apply(
        &accounts,
        sa,
        &ServiceAccount {
            metadata: meta(sa, Some(ns)),
            ..Default::default()
        },
    )
    .await?;
    let subject = || {
        vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa.to_string(),
            namespace: Some(ns.to_string()),
            ..Default::default()
        }]
    };
    let (cluster_rules, namespaced_rules) = remote_reader_rules();
    let role_name = opts.cluster_role();
    progress(&format!(
        "ClusterRole and ClusterRoleBinding {role_name}: get/list/watch of what a control plane watches in a remote cluster, list of its Istio kinds, create TokenReviews"
    ));
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    apply(
        &cluster_roles,
        &role_name,
        &ClusterRole {
            metadata: meta(&role_name, None),
            rules: Some(cluster_rules),
            ..Default::default()
        },
    )
    .await?;
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    apply(
        &bindings,
        &role_name,
        &ClusterRoleBinding {
            metadata: meta(&role_name, None),
            role_ref: role_ref("ClusterRole", &role_name),
            subjects: Some(subject()),
        },
    )
    .await?;
    // A reader made by an earlier version could read istio-system's Secrets: that Role goes.
    for stale_ns in reader_rules().1.into_keys() {
        if namespaced_rules.contains_key(&stale_ns) {
            continue;
        }
        let name = format!("istio-reader-{ns}");
        let gone = |r: Result<(), kube::Error>| match r {
            Ok(()) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(RemoteSecretError::Api {
                what: format!("delete {stale_ns}/{name}"),
                source,
            }),
        };
        let role_bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &stale_ns);
        gone(
            role_bindings
                .delete(&name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
        let roles: Api<Role> = Api::namespaced(client.clone(), &stale_ns);
        gone(
            roles
                .delete(&name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
    }
    for (role_ns, rules) in namespaced_rules {
        let name = format!("istio-reader-{ns}");
        progress(&format!("Role and RoleBinding {role_ns}/{name}"));
        if role_ns != ns {
            apply(&namespaces, &role_ns, &namespace(&role_ns)).await?;
        }
        let roles: Api<Role> = Api::namespaced(client.clone(), &role_ns);
        apply(
            &roles,
            &name,
            &Role {
                metadata: meta(&name, Some(&role_ns)),
                rules: Some(rules),
            },
        )
        .await?;
        let role_bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &role_ns);
        apply(
            &role_bindings,
            &name,
            &RoleBinding {
                metadata: meta(&name, Some(&role_ns)),
                role_ref: role_ref("Role", &name),
                subjects: Some(subject()),
            },
        )
        .await?;
    }
    let (token, secret_ca, expires) = match opts.token {
        TokenSource::Secret => {
            let (token, ca) = token_secret(&client, opts, progress).await?;
            (token, ca, None)
        }
        TokenSource::Request(ttl) => {
            progress(&format!(
                "token for {ns}/{sa} from the TokenRequest API, valid {}s",
                ttl.as_secs()
            ));
            let spec = TokenRequestSpec {
                audiences: None,
                expiration_seconds: Some(ttl.as_secs().min(i64::MAX as u64) as i64),
                ..Default::default()
            };
            let issued = crate::token::request_token(&client, ns, sa, spec)
                .await
                .map_err(|e| RemoteSecretError::Token(format!("ServiceAccount {ns}/{sa}"), e))?;
            let expires = issued.expires;
            let token = Some(issued.token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| RemoteSecretError::EmptyToken(format!("{ns}/{sa}")))?;
            (token, None, expires)
        }
    };
    let ca_pem = match (kubeconfig_ca, secret_ca) {
        (Some(certs), _) => pem(&certs),
        (None, Some(ca)) => ca,
        (None, None) => return Err(RemoteSecretError::NoCa(server)),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let name = quote(&opts.name);
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\ncurrent-context: {name}\nusers:\n- name: {name}\n  user:\n    token: {}\n",
        quote(&server),
        b64.encode(ca_pem.as_bytes()),
        quote(&token),
    );
    Ok(RemoteSecret {
        cluster: opts.name.clone(),
        namespace: opts.namespace.clone(),
        kubeconfig,
        expires,
    })
}

/// The token (and CA) of the reader's service-account token Secret, made (again, when
/// rotating) and waited for.
async fn token_secret(
    client: &kube::Client,
    opts: &RemoteSecretOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<(String, Option<String>), RemoteSecretError> {
    let ns = opts.namespace.as_str();
    let name = opts.token_secret();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    if opts.rotate {
        progress(&format!(
            "rotating: deleting Secret {ns}/{name} (its token stops working)"
        ));
        match secrets.delete(&name, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(RemoteSecretError::Api {
                    what: format!("delete Secret {ns}/{name}"),
                    source,
                })
            }
        }
        // A deleted Secret may linger while its finalizers run: a new token needs a new object.
        let deadline = tokio::time::Instant::now() + opts.wait;
        while matches!(secrets.get_opt(&name).await, Ok(Some(_))) {
            if tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    progress(&format!(
        "Secret {ns}/{name} of type kubernetes.io/service-account-token (kube-controller-manager fills in the token)"
    ));
    let mut m = meta(&name, Some(ns));
    m.annotations = Some(
        [(
            "kubernetes.io/service-account.name".to_string(),
            opts.service_account.clone(),
        )]
        .into(),
    );
    let wanted = Secret {
        metadata: m,
        type_: Some("kubernetes.io/service-account-token".into()),
        ..Default::default()
    };
    match secrets.create(&PostParams::default(), &wanted).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(source) => {
            return Err(RemoteSecretError::Api {
                what: format!("create Secret {ns}/{name}"),
                source,
            })
        }
    }
    let deadline = tokio::time::Instant::now() + opts.wait;
    loop {
        let got = secrets
            .get(&name)
            .await
            .map_err(|source| RemoteSecretError::Api {
                what: format!("get Secret {ns}/{name}"),
                source,
            })?;
        let data = got.data.unwrap_or_default();
        let text = |k: &str| {
            data.get(k)
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .filter(|t| !t.is_empty())
        };
        if let Some(token) = text("token") {
            return Ok((token, text("ca.crt")));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(RemoteSecretError::NoToken(
                format!("{ns}/{name}"),
                opts.wait,
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inject_root() -> String {
        crate::inject::ROOT_CERT_CONFIGMAP.to_string()
    }

    /// Whether `r` is about `plural` of API group `group`.
    fn covers(r: &PolicyRule, group: &str, plural: &str) -> bool {
        r.api_groups
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|g| g == group)
            && r.resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|p| p == plural)
    }

    #[test]
    fn a_remote_reader_reads_services_and_endpoints_counts_istio_kinds_and_no_secret() {
        let (cluster, namespaced) = remote_reader_rules();
        assert!(namespaced.is_empty(), "{namespaced:?}");
        let verbs = |group: &str, plural: &str| -> Vec<String> {
            cluster
                .iter()
                .filter(|r| covers(r, group, plural))
                .flat_map(|r| r.verbs.clone())
                .collect()
        };
        for k in remote_kinds() {
            assert_eq!(
                verbs(&k.api.group, &k.api.plural),
                ["get", "list", "watch"],
                "{}",
                k.kind()
            );
        }
        for k in remote_config_kinds() {
            assert_eq!(verbs(&k.api.group, &k.api.plural), ["list"], "{}", k.kind());
        }
        assert!(verbs("", "secrets").is_empty());
        assert!(verbs("authentication.k8s.io", "tokenreviews").contains(&"create".to_string()));
        // The one write: the root certificate ConfigMap (by name; create cannot be).
        let cm = verbs("", "configmaps");
        assert!(
            cm.contains(&"update".to_string()) && !cm.contains(&"watch".to_string()),
            "{cm:?}"
        );
    }

    #[test]
    fn the_reader_may_read_what_is_watched_and_write_only_the_root_configmap() {
        let (cluster, namespaced) = reader_rules();
        let allows = |rules: &[PolicyRule], group: &str, plural: &str, verb: &str| {
            rules
                .iter()
                .any(|r| covers(r, group, plural) && r.verbs.iter().any(|v| v == verb))
        };
        for k in watched_kinds() {
            let rules = match k.namespace {
                Some(ns) => namespaced[ns].as_slice(),
                None => cluster.as_slice(),
            };
            for verb in ["get", "list", "watch"] {
                assert!(
                    allows(rules, &k.api.group, &k.api.plural, verb),
                    "{} {verb}",
                    k.kind()
                );
            }
        }
        // Secrets only in istio-system, the mesh ConfigMap only by name; the one write is
        // the root certificate ConfigMap, by name (and create, which RBAC cannot restrict
        // by name).
        assert!(!allows(&cluster, "", "secrets", "get"));
        let root_cm = |r: &PolicyRule| {
            r.resources.as_deref() == Some(&["configmaps".to_string()][..])
                && r.resource_names
                    .as_ref()
                    .is_none_or(|n| *n == [inject_root()])
        };
        for r in cluster
            .iter()
            .filter(|r| r.resources.as_deref() == Some(&["configmaps".to_string()][..]))
        {
            assert!(root_cm(r), "{r:?}");
            match &r.resource_names {
                Some(_) => assert_eq!(r.verbs, ["get", "update", "patch"]),
                None => assert_eq!(r.verbs, ["create"], "no reading every ConfigMap"),
            }
        }
        let cm = namespaced["istio-system"]
            .iter()
            .find(|r| r.resources.as_deref() == Some(&["configmaps".to_string()][..]))
            .expect("configmaps rule");
        assert_eq!(
            cm.resource_names.as_deref(),
            Some(&["istio".to_string()][..])
        );
        for r in cluster.iter().chain(namespaced.values().flatten()) {
            for v in &r.verbs {
                let tokenreview = r.resources.as_deref() == Some(&["tokenreviews".to_string()][..]);
                assert!(
                    ["get", "list", "watch"].contains(&v.as_str())
                        || (tokenreview && v == "create")
                        || root_cm(r),
                    "{r:?}"
                );
            }
        }
    }

    #[test]
    fn the_secret_is_istios_format_and_its_debug_form_hides_the_token() {
        let s = RemoteSecret {
            cluster: "cluster2".into(),
            namespace: "istio-system".into(),
            kubeconfig: "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: \"sekret\"\n"
                .into(),
            expires: None,
        };
        let yaml = s.to_yaml();
        let v: serde_json::Value = serde_saphyr::from_str(&yaml).expect("valid YAML");
        assert_eq!(v["metadata"]["name"], "istio-remote-secret-cluster2");
        assert_eq!(v["metadata"]["namespace"], "istio-system");
        assert_eq!(v["metadata"]["labels"]["istio/multiCluster"], "true");
        assert_eq!(
            v["metadata"]["annotations"]["networking.istio.io/cluster"],
            "cluster2"
        );
        assert_eq!(
            v["stringData"]["cluster2"].as_str(),
            Some(s.kubeconfig.as_str())
        );
        assert!(!format!("{s:?}").contains("sekret"));
    }

    #[test]
    fn names_that_cannot_be_a_secret_key_are_refused() {
        for bad in ["", "Cluster2", "-c", "c-", "a_b", &"c".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        for good in ["cluster2", "c", "east-1"] {
            assert!(is_dns_label(good), "{good}");
        }
    }

    #[test]
    fn pem_wraps_at_64_columns() {
        let p = pem(&[vec![0u8; 100]]);
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last().copied(), Some("-----END CERTIFICATE-----"));
    }
}
