//! How a control plane reaches an API server: a kubeconfig file (`--kubeconfig`), a
//! kubeconfig held in another cluster's credential Secret, or the credentials Kubernetes
//! mounts into a pod. Errors never carry the kubeconfig's content (it holds a token).

use std::path::PathBuf;

/// Where an API server's address and credentials come from.
#[derive(Clone)]
pub enum Access {
    /// A kubeconfig file, with an optional context (its current context otherwise).
    File {
        /// The file.
        path: PathBuf,
        /// The context; the file's current context when `None`.
        context: Option<String>,
    },
    /// A kubeconfig's text, as a credential Secret holds it; `origin` names the Secret and
    /// key in messages.
    Text {
        /// The kubeconfig.
        text: String,
        /// Where it came from, such as `istio-system/istio-remote-secret-cluster2 key cluster2`.
        origin: String,
    },
    /// The service account Kubernetes mounts into a pod.
    InCluster,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the text: it holds a bearer token or a private key.
        f.write_str(&self.describe())
    }
}

impl PartialEq for Access {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Access::File { path, context },
                Access::File {
                    path: p2,
                    context: c2,
                },
            ) => path == p2 && context == c2,
            (Access::Text { text, .. }, Access::Text { text: t2, .. }) => text == t2,
            (Access::InCluster, Access::InCluster) => true,
            _ => false,
        }
    }
}

/// An API server could not be reached with the given access.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The kubeconfig could not be read or is invalid.
    #[error("kubeconfig {origin}: {reason}")]
    Kubeconfig {
        /// The file, or the Secret and key.
        origin: String,
        /// Why (never the content).
        reason: String,
    },
    /// Not running in a pod, or its service account is not mounted.
    #[error("in-cluster credentials: {0}")]
    InCluster(String),
    /// The client could not be built (TLS settings).
    #[error("client for {origin}: {reason}")]
    Client {
        /// The access.
        origin: String,
        /// Why.
        reason: String,
    },
}

impl Access {
    /// Says where the access comes from, without any secret.
    pub fn describe(&self) -> String {
        match self {
            Access::File {
                path,
                context: None,
            } => format!("kubeconfig {}", path.display()),
            Access::File {
                path,
                context: Some(c),
            } => format!("kubeconfig {} context {c}", path.display()),
            Access::Text { origin, .. } => format!("kubeconfig in {origin}"),
            Access::InCluster => "in-cluster service account".to_string(),
        }
    }

    /// Whether a Secret value is a kubeconfig (rather than the file registry's
    /// `registry: DIR`): a YAML or JSON mapping with `clusters`.
    pub fn is_kubeconfig(text: &str) -> bool {
        isthmus_api::yaml::from_str::<serde_json::Value>(text)
            .ok()
            .is_some_and(|v| v.get("clusters").is_some())
    }

    /// A client for the API server.
    pub async fn client(&self) -> Result<kube::Client, AccessError> {
        let options = |context: &Option<String>| kube::config::KubeConfigOptions {
            context: context.clone(),
            ..Default::default()
        };
        let config = match self {
            Access::File { path, context } => {
                let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    AccessError::Kubeconfig {
                        origin: path.display().to_string(),
                        // The parser's message can quote the file, token included.
                        reason: error_kind(&e),
                    }
                })?;
                kube::Config::from_custom_kubeconfig(file, &options(context))
                    .await
                    .map_err(|e| AccessError::Kubeconfig {
                        origin: path.display().to_string(),
                        reason: e.to_string(),
                    })?
            }
            Access::Text { text, origin } => {
                let file = kube::config::Kubeconfig::from_yaml(text).map_err(|e| {
                    AccessError::Kubeconfig {
                        origin: origin.clone(),
                        // The parser's message can quote the document: say only where.
                        reason: format!("not a valid kubeconfig ({})", error_kind(&e)),
                    }
                })?;
                refuse_unsafe(&file).map_err(|reason| AccessError::Kubeconfig {
                    origin: origin.clone(),
                    reason,
                })?;
                kube::Config::from_custom_kubeconfig(file, &options(&None))
                    .await
                    .map_err(|e| AccessError::Kubeconfig {
                        origin: origin.clone(),
                        reason: error_kind(&e),
                    })?
            }
            Access::InCluster => {
                kube::Config::incluster().map_err(|e| AccessError::InCluster(e.to_string()))?
            }
        };
        connect(config).map_err(|e| AccessError::Client {
            origin: self.describe(),
            reason: e.to_string(),
        })
    }
}

/// A client for `config`'s API server. Over TLS it speaks HTTP/2 only, as client-go does: all
/// requests and watches to the server share one connection (kube-rs's own client speaks
/// HTTP/1.1, one connection per open watch: 26 per cluster, each with its own TLS session
/// and buffers, about a third of what a remote cluster cost). client-go's switch
/// `DISABLE_HTTP2` (any value) falls back to kube-rs's HTTP/1.1 client, as does a proxy or a
/// plain-HTTP server (which would need HTTP/2 without TLS).
pub(crate) fn connect(config: kube::Config) -> Result<kube::Client, kube::Error> {
    let https = config.cluster_url.scheme_str() == Some("https");
    if !https || config.proxy_url.is_some() || std::env::var_os("DISABLE_HTTP2").is_some() {
        return kube::Client::try_from(config);
    }
    connect_http2(config)
}

/// The TLS sessions the HTTP/2 client keeps to resume a connection to its API server with.
const RESUMABLE_SESSIONS: usize = 4;

/// [`connect`]'s HTTP/2 client: kube-rs's layers (base URI, 429/503/504 retry, credentials,
/// extra headers) over one connection ([`crate::http2`]).
fn connect_http2(config: kube::Config) -> Result<kube::Client, kube::Error> {
    use kube::client::ConfigExt;
    use tower::ServiceBuilder;

    let url = &config.cluster_url;
    let host = url.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_u16().unwrap_or(443);
    let name = config
        .tls_server_name
        .as_deref()
        .unwrap_or(host)
        .to_string();
    let server_name = rustls_pki_types::ServerName::try_from(name)
        .map_err(|e| kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e)))?;
    let mut tls = config.rustls_client_config()?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    // One server, over one connection: a few sessions to resume a reconnect with, not the
    // default cache of 256 (25 KB allocated up front, per cluster read).
    tls.resumption = rustls::client::Resumption::in_memory_sessions(RESUMABLE_SESSIONS);
    let target = crate::http2::Target {
        authority: if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        },
        server_name,
        tls: std::sync::Arc::new(tls),
        connect_timeout: config.connect_timeout,
    };
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .service(crate::http2::OneConnection::new(target));
    Ok(kube::Client::new(service, config.default_namespace))
}

/// Refuses what a kubeconfig from a Secret must not make the control plane do, as Istio's
/// remote-secret sanitizing does: run a command (`exec`), call an auth provider, or read
/// files of the control plane's own (a token, certificate or key path: its own
/// service-account token could be sent to a server the Secret names).
fn refuse_unsafe(file: &kube::config::Kubeconfig) -> Result<(), String> {
    for user in &file.auth_infos {
        let Some(a) = &user.auth_info else { continue };
        let what = if a.exec.is_some() {
            Some("exec")
        } else if a.auth_provider.is_some() {
            Some("auth-provider")
        } else if a.token_file.is_some() {
            Some("tokenFile")
        } else if a.client_certificate.is_some() || a.client_key.is_some() {
            Some("client-certificate/client-key file paths")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(format!(
                "user `{}` uses {what}, which a control plane does not run or read from a Secret; give the credential inline (token, client-certificate-data, client-key-data)",
                user.name
            ));
        }
    }
    for cluster in &file.clusters {
        if cluster
            .cluster
            .as_ref()
            .is_some_and(|c| c.certificate_authority.is_some())
        {
            return Err(format!(
                "cluster `{}` names a certificate-authority file, which a control plane does not read from a Secret; give certificate-authority-data",
                cluster.name
            ));
        }
    }
    Ok(())
}

/// The first line of an error's message, cut before anything that looks like quoted input.
pub(crate) fn error_kind(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid");
    match first.find(['`', '"']) {
        Some(i) => first[..i].trim_end().trim_end_matches(':').to_string(),
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_kubeconfig_from_a_registry_directory() {
        assert!(Access::is_kubeconfig(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\nusers:\n- name: u\n"
        ));
        assert!(!Access::is_kubeconfig(
            "registry: /var/lib/isthmus/cluster2"
        ));
    }

    #[test]
    fn never_shows_the_text() {
        let a = Access::Text {
            text: "users:\n- user: {token: sekret-token-123}\n".into(),
            origin: "istio-system/remote key c2".into(),
        };
        assert!(!format!("{a:?}").contains("sekret"));
        assert!(!a.describe().contains("sekret"));
    }

    #[test]
    fn json_kubeconfigs_are_kubeconfigs_too() {
        assert!(Access::is_kubeconfig(
            r#"{"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [{"name": "u", "user": {"token": "t"}}]}"#
        ));
        assert!(!Access::is_kubeconfig("/var/lib/isthmus/cluster2"));
    }

    #[tokio::test]
    async fn a_secrets_kubeconfig_may_not_run_commands_or_read_files() {
        let head = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://198.18.0.9:6443\", certificate-authority-data: AA==}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user:\n";
        for (user, refused) in [
            ("    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, id]}\n", "exec"),
            ("    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n", "tokenFile"),
            ("    client-certificate: /etc/cert.pem\n    client-key: /etc/key.pem\n", "file paths"),
        ] {
            let a = Access::Text {
                text: format!("{head}{user}"),
                origin: "istio-system/s key c".into(),
            };
            let Err(e) = a.client().await else {
                panic!("{refused} was accepted")
            };
            assert!(e.to_string().contains(refused), "{e}");
        }
    }

    #[tokio::test]
    async fn a_broken_kubeconfig_is_reported_without_its_content() {
        let a = Access::Text {
            text: "clusters: [oops\nusers:\n- user: {token: sekret-token-123}\n".into(),
            origin: "istio-system/remote key c2".into(),
        };
        let Err(e) = a.client().await else {
            panic!("a broken kubeconfig gave a client")
        };
        let msg = e.to_string();
        assert!(msg.contains("istio-system/remote key c2"), "{msg}");
        assert!(!msg.contains("sekret"), "{msg}");
    }
}
