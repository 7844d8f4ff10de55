//! The sidecar injection webhook (Istio's 15017): AdmissionReview v1 over HTTPS, answered
//! with the JSON patch of [`isthmus_kube::inject`], and what makes the API server trust it
//! and the injected proxies start:
//! - [`serve`] answers `POST /inject` (and `/inject/cluster/C/net/N` for a remote cluster's
//!   pods) with a certificate from the mesh CA for `istiod.istio-system.svc`;
//! - [`keep_ca_bundle`] writes the mesh root into the `MutatingWebhookConfiguration`'s
//!   `caBundle` and puts it back when an upgrade resets it, as istiod does;
//! - [`publish_root_cert`] puts the root into the `istio-ca-root-cert` ConfigMap of every
//!   namespace, which injected proxies mount to trust the control plane.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use isthmus_kube::inject::{self, InjectionConfig};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::sync::Arc;
use std::time::Duration;

/// The largest AdmissionReview body read (a pod with many containers is tens of KB).
const MAX_BODY: usize = 4 << 20;

/// The webhook's settings (`isthmus control-plane --injection-*`).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct InjectionFlags {
    /// Serve the sidecar injection webhook here over HTTPS (Istio's 0.0.0.0:15017).
    #[arg(long)]
    pub injection_listen: Option<std::net::SocketAddr>,
    /// The image injected proxies run (the Isthmus image).
    #[arg(long, default_value = "ghcr.io/isthmus-mesh/isthmus:0.1.0")]
    pub injection_image: String,
    /// Where injected proxies reach this control plane (xDS and CA).
    #[arg(long, default_value = "istiod.istio-system.svc:15012")]
    pub injection_control_plane: String,
    /// The MutatingWebhookConfiguration whose caBundle the control plane keeps set to the
    /// mesh root (with an API server).
    #[arg(long, default_value = "istio-sidecar-injector")]
    pub webhook_config: String,
    /// Injected sidecars' `--scope-idle` (with on-demand scoping): a service the pod has
    /// neither resolved nor carried traffic to for this many seconds leaves the sidecar; 0
    /// keeps every service a pod has used.
    #[arg(long, default_value_t = 0)]
    pub injection_scope_idle: u64,
}

impl Default for InjectionFlags {
    fn default() -> Self {
        InjectionFlags {
            injection_listen: None,
            injection_image: "ghcr.io/isthmus-mesh/isthmus:0.1.0".into(),
            injection_control_plane: "istiod.istio-system.svc:15012".into(),
            webhook_config: "istio-sidecar-injector".into(),
            injection_scope_idle: 0,
        }
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// One request: the review for `POST /inject...`, a plain error otherwise.
async fn handle(
    req: Request<hyper::body::Incoming>,
    config: Arc<InjectionConfig>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req.method() != Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an AdmissionReview to /inject\n",
        );
    }
    let for_pod = match config.for_path(&path) {
        Ok(c) => c,
        Err(e) => return reply(StatusCode::NOT_FOUND, format!("{e}\n")),
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("reading the request: {e}\n"),
            )
        }
    };
    match inject::review(&body, &for_pod) {
        Ok((answer, outcome)) => {
            match outcome {
                Ok(Some(pod)) => {
                    tracing::info!(pod = %pod, cluster = %for_pod.cluster, "sidecar injected")
                }
                Ok(None) => {}
                Err(refused @ inject::Skip::Unsupported(_)) => {
                    tracing::warn!(reason = %refused, "pod refused by sidecar injection")
                }
                Err(skip) => tracing::debug!(reason = %skip, "pod not injected"),
            }
            let mut r = reply(StatusCode::OK, answer.to_string());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "bad admission request");
            reply(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

/// Serves the webhook on `listener` with `cert_pem`/`key_pem` until the process ends; a
/// connection that fails its handshake or sends garbage is dropped and logged, the server
/// goes on.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cert_pem: &str,
    key_pem: &str,
    config: InjectionConfig,
) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("webhook certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("webhook key: {e}"))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("webhook certificate: {e}"))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let config = Arc::new(config);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "injection webhook: accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "injection webhook: TLS handshake");
                        return;
                    }
                    Err(_) => return,
                };
            let service = hyper::service::service_fn(move |req| {
                let config = config.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, config).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "injection webhook: connection");
            }
        });
    }
}

/// `config` with every webhook's caBundle set to `root_pem`, or `None` when all already hold
/// it.
pub fn with_ca_bundle(
    config: &MutatingWebhookConfiguration,
    root_pem: &str,
) -> Option<MutatingWebhookConfiguration> {
    let mut next = config.clone();
    let mut changed = false;
    for w in next.webhooks.iter_mut().flatten() {
        let has = w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice());
        if has != Some(root_pem.as_bytes()) {
            w.client_config.ca_bundle = Some(k8s_openapi::ByteString(root_pem.as_bytes().to_vec()));
            changed = true;
        }
    }
    changed.then_some(next)
}

/// Keeps the caBundle of MutatingWebhookConfiguration `name` equal to the mesh root: checks
/// every 15 s (the configuration may be installed after the control plane starts, and an
/// upgrade of the chart empties it again). A conflicting write is retried at the next check.
pub async fn keep_ca_bundle(client: kube::Client, name: String, root_pem: String) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let mut reported_missing = false;
    loop {
        match api.get_opt(&name).await {
            Ok(Some(config)) => {
                reported_missing = false;
                if let Some(next) = with_ca_bundle(&config, &root_pem) {
                    match api.replace(&name, &PostParams::default(), &next).await {
                        Ok(_) => tracing::info!(webhook = %name, "caBundle set to the mesh root"),
                        Err(e) => {
                            tracing::warn!(webhook = %name, error = %e, "cannot set the caBundle")
                        }
                    }
                }
            }
            Ok(None) => {
                if !reported_missing {
                    tracing::info!(webhook = %name, "no MutatingWebhookConfiguration yet; its caBundle is set when it appears");
                    reported_missing = true;
                }
            }
            Err(e) => {
                tracing::warn!(webhook = %name, error = %e, "cannot read the webhook configuration")
            }
        }
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
}

/// The `istio-ca-root-cert` ConfigMap for `namespace`.
pub fn root_cert_configmap(namespace: &str, root_pem: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": inject::ROOT_CERT_CONFIGMAP,
            "namespace": namespace,
            "labels": {"istio.io/config": "true"},
        },
        "data": {inject::ROOT_CERT_KEY: root_pem},
    })
}

/// Puts the mesh root into every namespace's `istio-ca-root-cert` ConfigMap (server-side
/// apply, field manager `isthmus`), for each namespace as it appears and again every 5
/// minutes (a deleted ConfigMap comes back).
pub async fn publish_root_cert(client: kube::Client, root_pem: String) {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let params = PatchParams::apply("isthmus").force();
    let apply = |ns: String| {
        let client = client.clone();
        let params = params.clone();
        let body = root_cert_configmap(&ns, &root_pem);
        async move {
            let api: Api<ConfigMap> = Api::namespaced(client, &ns);
            if let Err(e) = api
                .patch(inject::ROOT_CERT_CONFIGMAP, &params, &Patch::Apply(&body))
                .await
            {
                tracing::warn!(namespace = %ns, error = %e, "cannot write istio-ca-root-cert");
            }
        }
    };
    let mut resync = tokio::time::interval(Duration::from_secs(300));
    let mut events = watcher(namespaces.clone(), watcher::Config::default()).boxed();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n))) => {
                    if n.metadata.deletion_timestamp.is_none() {
                        if let Some(name) = n.metadata.name {
                            apply(name).await;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "namespace watch (root certificate)");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return,
            },
            _ = resync.tick() => {
                if let Ok(list) = namespaces.list(&Default::default()).await {
                    for n in list.items {
                        if let Some(name) = n.metadata.name {
                            apply(name).await;
                        }
                    }
                }
            }
        }
    }
}

/// The root published into the other clusters this control plane reads through an API
/// server (a remote cluster has no control plane of its own to do it; for another primary it
/// writes the same root): one task per cluster, replaced when its credential changes and
/// stopped when the cluster leaves.
pub struct RemoteRootPublishers {
    root: String,
    tasks: std::collections::BTreeMap<String, (crate::clusters::Link, tokio::task::JoinHandle<()>)>,
}

impl RemoteRootPublishers {
    /// No publisher yet, for the mesh root `root_pem`.
    pub fn new(root_pem: String) -> Self {
        RemoteRootPublishers {
            root: root_pem,
            tasks: Default::default(),
        }
    }

    /// Brings the publishers in line with `registries` (the local cluster, `local`, has its
    /// own publisher).
    pub fn sync(&mut self, registries: &[crate::clusters::ClusterRegistry], local: &str) {
        let wanted: std::collections::BTreeMap<String, (crate::clusters::Link, kube::Client)> =
            registries
                .iter()
                .filter(|r| r.cluster() != local)
                .filter_map(|r| {
                    let client = r.kube_client()?.0.clone();
                    Some((r.cluster().to_string(), (r.link(), client)))
                })
                .collect();
        self.tasks.retain(|cluster, (link, task)| {
            let keep = wanted.get(cluster).is_some_and(|(l, _)| l == link);
            if !keep {
                task.abort();
            }
            keep
        });
        for (cluster, (link, client)) in wanted {
            if self.tasks.contains_key(&cluster) {
                continue;
            }
            tracing::info!(%cluster, "publishing istio-ca-root-cert into the cluster's namespaces");
            let task = tokio::spawn(publish_root_cert(client, self.root.clone()));
            self.tasks.insert(cluster, (link, task));
        }
    }
}

impl Drop for RemoteRootPublishers {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_webhooks_without_the_root_are_changed() {
        let root = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        use base64::Engine;
        let bundle = base64::engine::general_purpose::STANDARD.encode(root);
        let config: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "istio-sidecar-injector"},
            "webhooks": [
                {"name": "a.sidecar-injector.istio.io", "clientConfig": {"service": {"name": "istiod", "namespace": "istio-system"}},
                 "admissionReviewVersions": ["v1"], "sideEffects": "None"},
                {"name": "b.sidecar-injector.istio.io", "clientConfig": {"caBundle": bundle, "service": {"name": "istiod", "namespace": "istio-system"}},
                 "admissionReviewVersions": ["v1"], "sideEffects": "None"},
            ]
        }))
        .expect("configuration");
        let next = with_ca_bundle(&config, root).expect("one webhook lacks the root");
        for w in next.webhooks.iter().flatten() {
            assert_eq!(
                w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()),
                Some(root.as_bytes())
            );
        }
        assert!(
            with_ca_bundle(&next, root).is_none(),
            "nothing left to change"
        );
    }

    #[test]
    fn the_root_configmap_is_istios() {
        let cm = root_cert_configmap("sample", "ROOT");
        assert_eq!(cm["metadata"]["name"], "istio-ca-root-cert");
        assert_eq!(cm["metadata"]["namespace"], "sample");
        assert_eq!(cm["data"]["root-cert.pem"], "ROOT");
    }
}
