//! What the lab's kubelet makes of a Pod's spec before its containers start: the volumes
//! (emptyDir, configMap, secret, downwardAPI, and projected ones with service-account
//! tokens) written as files under the pod's folder, and each container's environment
//! (values, downward-API fields, ConfigMap and Secret keys, `$(VAR)` references), as a
//! kubelet makes them. A volume kind the lab cannot provide (hostPath, a claim, CSI) makes
//! the pod fail with its name, never a container started without it.

use crate::container::{self, ContainerExec, Mount};
use crate::error::{io, LabError};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, ObjectFieldSelector, Pod, Secret,
    Volume,
};
use kube::api::Api;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A file of a volume: its path in the volume, content and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile {
    /// Relative to the volume's root.
    pub path: String,
    /// Content.
    pub data: Vec<u8>,
    /// Permission bits (Kubernetes' `defaultMode` 0644 unless the spec says otherwise).
    pub mode: u32,
}

/// A service-account token projected into a volume, renewed at 80% of its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedToken {
    /// The file (absolute, once the pod's folder is known).
    pub file: PathBuf,
    /// Its audience (the API server's own when empty).
    pub audience: Option<String>,
    /// Its life in seconds.
    pub ttl_secs: i64,
}

/// A volume made ready: its files (an emptyDir has none and is writable by all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    /// The volume's name.
    pub name: String,
    /// Its files.
    pub files: Vec<VolumeFile>,
    /// An emptyDir (mode 0777, as Kubernetes makes it).
    pub empty_dir: bool,
    /// The tokens among its files: (path in the volume, audience, life).
    pub tokens: Vec<(String, Option<String>, i64)>,
}

/// Where the pod's volumes live: `WORKDIR/volumes/NAME`.
pub fn volume_dir(workdir: &Path, name: &str) -> PathBuf {
    workdir.join("volumes").join(name)
}

/// The value of a downward-API field of `pod` (running at `ip` on a node at `host_ip`).
pub fn field(pod: &Pod, ip: &str, host_ip: &str, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let selected = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref().and_then(|m| m.get(key)).cloned()
    };
    let bracketed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['").or_else(|| r.strip_prefix("[\"")))
            .and_then(|r| r.strip_suffix("']").or_else(|| r.strip_suffix("\"]")))
            .map(str::to_string)
    };
    Some(match path {
        "metadata.name" => m.name.clone()?,
        "metadata.namespace" => m.namespace.clone()?,
        "metadata.uid" => m.uid.clone()?,
        "metadata.labels" => render_map(m.labels.as_ref()),
        "metadata.annotations" => render_map(m.annotations.as_ref()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone())?,
        "status.podIP" | "status.podIPs" => ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        _ => {
            if let Some(k) = bracketed("metadata.labels") {
                selected(&m.labels, &k).unwrap_or_default()
            } else if let Some(k) = bracketed("metadata.annotations") {
                selected(&m.annotations, &k).unwrap_or_default()
            } else {
                return None;
            }
        }
    })
}

/// A map as the downward API writes it: `key="value"` lines, sorted by key.
fn render_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect()
}

fn not_supported(volume: &str, kind: &str) -> LabError {
    LabError::Invalid(format!(
        "volume {volume}: {kind} volumes are not supported by the lab's kubelet (emptyDir, configMap, secret, downwardAPI and projected are)"
    ))
}

/// A field selector's value, or an error naming the field.
fn field_of(
    pod: &Pod,
    ip: &str,
    host_ip: &str,
    f: &ObjectFieldSelector,
    what: &str,
) -> Result<String, LabError> {
    field(pod, ip, host_ip, &f.field_path).ok_or_else(|| {
        LabError::Invalid(format!(
            "{what}: fieldRef {} is not supported by the lab's kubelet",
            f.field_path
        ))
    })
}

fn downward_files(
    pod: &Pod,
    ip: &str,
    host_ip: &str,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    volume: &str,
) -> Result<Vec<VolumeFile>, LabError> {
    items
        .iter()
        .map(|i| {
            let f = i.field_ref.as_ref().ok_or_else(|| {
                LabError::Invalid(format!(
                    "volume {volume}: item {}: only fieldRef is supported by the lab's kubelet",
                    i.path
                ))
            })?;
            Ok(VolumeFile {
                path: i.path.clone(),
                data: field_of(pod, ip, host_ip, f, &format!("volume {volume}"))?.into_bytes(),
                mode: i.mode.map(|m| m as u32).unwrap_or(default_mode),
            })
        })
        .collect()
}

/// The files of a ConfigMap's or Secret's keys: every key, or the listed items.
fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    what: &str,
) -> Result<Vec<VolumeFile>, LabError> {
    match items {
        None => Ok(data
            .iter()
            .map(|(k, v)| VolumeFile {
                path: k.clone(),
                data: v.clone(),
                mode: default_mode,
            })
            .collect()),
        Some(items) => items
            .iter()
            .map(|i| {
                let v = data
                    .get(&i.key)
                    .ok_or_else(|| LabError::Invalid(format!("{what} has no key {}", i.key)))?;
                Ok(VolumeFile {
                    path: i.path.clone(),
                    data: v.clone(),
                    mode: i.mode.map(|m| m as u32).unwrap_or(default_mode),
                })
            })
            .collect(),
    }
}

/// Reads the API objects a pod's volumes and environment name.
pub struct Fetch<'a> {
    /// The cluster's API server.
    pub client: &'a kube::Client,
    /// The pod's namespace.
    pub namespace: &'a str,
}

impl Fetch<'_> {
    /// Object `name` of kind `K` in the pod's namespace; the error names it, never its data.
    async fn get<K>(&self, kind: &str, name: &str) -> Result<Option<K>, LabError>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), self.namespace);
        api.get_opt(name)
            .await
            .map_err(|e| LabError::Invalid(format!("{kind} {}/{name}: {e}", self.namespace)))
    }

    async fn config_map(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, LabError> {
        Ok(self.get::<ConfigMap>("ConfigMap", name).await?.map(|cm| {
            let text = cm.data.unwrap_or_default().into_iter();
            let binary = cm.binary_data.unwrap_or_default().into_iter();
            text.map(|(k, v)| (k, v.into_bytes()))
                .chain(binary.map(|(k, v)| (k, v.0)))
                .collect()
        }))
    }

    async fn secret(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, LabError> {
        Ok(self.get::<Secret>("Secret", name).await?.map(|s| {
            let data = s.data.unwrap_or_default().into_iter();
            let text = s.string_data.unwrap_or_default().into_iter();
            data.map(|(k, v)| (k, v.0))
                .chain(text.map(|(k, v)| (k, v.into_bytes())))
                .collect()
        }))
    }

    /// A ConfigMap's or Secret's data, or the error a kubelet reports while it is missing
    /// (the pod is tried again); `None` when optional and missing.
    async fn source(
        &self,
        kind: &str,
        name: &str,
        optional: Option<bool>,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, LabError> {
        let data = if kind == "Secret" {
            self.secret(name).await?
        } else {
            self.config_map(name).await?
        };
        match data {
            Some(d) => Ok(Some(d)),
            None if optional == Some(true) => Ok(None),
            None => Err(LabError::Invalid(format!(
                "{kind} {}/{name} not found (the pod starts once it exists)",
                self.namespace
            ))),
        }
    }

    /// Makes `pod`'s volumes (which runs at `ip`); tokens are requested bound to the pod.
    pub async fn volumes(
        &self,
        pod: &Pod,
        ip: &str,
        host_ip: &str,
    ) -> Result<Vec<PreparedVolume>, LabError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut out = Vec::new();
        for v in spec.volumes.iter().flatten() {
            out.push(self.volume(pod, v, ip, host_ip).await?);
        }
        Ok(out)
    }

    async fn volume(
        &self,
        pod: &Pod,
        v: &Volume,
        ip: &str,
        host_ip: &str,
    ) -> Result<PreparedVolume, LabError> {
        let mut p = PreparedVolume {
            name: v.name.clone(),
            files: Vec::new(),
            empty_dir: false,
            tokens: Vec::new(),
        };
        let what = |kind: &str, name: &str| format!("volume {}: {kind} {name}", v.name);
        if v.empty_dir.is_some() {
            p.empty_dir = true;
        } else if let Some(cm) = &v.config_map {
            let mode = cm.default_mode.map(|m| m as u32).unwrap_or(0o644);
            if let Some(data) = self.source("ConfigMap", &cm.name, cm.optional).await? {
                p.files = key_files(&data, cm.items.as_ref(), mode, &what("ConfigMap", &cm.name))?;
            }
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let mode = s.default_mode.map(|m| m as u32).unwrap_or(0o644);
            if let Some(data) = self.source("Secret", &name, s.optional).await? {
                p.files = key_files(&data, s.items.as_ref(), mode, &what("Secret", &name))?;
            }
        } else if let Some(d) = &v.downward_api {
            let mode = d.default_mode.map(|m| m as u32).unwrap_or(0o644);
            p.files = downward_files(
                pod,
                ip,
                host_ip,
                d.items.as_deref().unwrap_or_default(),
                mode,
                &v.name,
            )?;
        } else if let Some(pr) = &v.projected {
            let mode = pr.default_mode.map(|m| m as u32).unwrap_or(0o644);
            for s in pr.sources.iter().flatten() {
                if let Some(t) = &s.service_account_token {
                    let ttl = t.expiration_seconds.unwrap_or(3600);
                    let token = self.token(pod, t.audience.clone(), ttl).await?;
                    p.files.push(VolumeFile {
                        path: t.path.clone(),
                        data: token.into_bytes(),
                        mode,
                    });
                    p.tokens.push((t.path.clone(), t.audience.clone(), ttl));
                } else if let Some(cm) = &s.config_map {
                    if let Some(data) = self.source("ConfigMap", &cm.name, cm.optional).await? {
                        p.files.extend(key_files(
                            &data,
                            cm.items.as_ref(),
                            mode,
                            &what("ConfigMap", &cm.name),
                        )?);
                    }
                } else if let Some(sec) = &s.secret {
                    if let Some(data) = self.source("Secret", &sec.name, sec.optional).await? {
                        p.files.extend(key_files(
                            &data,
                            sec.items.as_ref(),
                            mode,
                            &what("Secret", &sec.name),
                        )?);
                    }
                } else if let Some(d) = &s.downward_api {
                    p.files.extend(downward_files(
                        pod,
                        ip,
                        host_ip,
                        d.items.as_deref().unwrap_or_default(),
                        mode,
                        &v.name,
                    )?);
                } else {
                    return Err(not_supported(&v.name, "this projected source of"));
                }
            }
        } else {
            let kind = if v.host_path.is_some() {
                "hostPath"
            } else if v.persistent_volume_claim.is_some() {
                "persistentVolumeClaim"
            } else if v.csi.is_some() {
                "csi"
            } else if v.ephemeral.is_some() {
                "ephemeral"
            } else {
                "this kind of"
            };
            return Err(not_supported(&v.name, kind));
        }
        Ok(p)
    }

    /// A token of the pod's service account for `audience`, bound to the pod, as a kubelet
    /// projects one.
    pub async fn token(
        &self,
        pod: &Pod,
        audience: Option<String>,
        ttl_secs: i64,
    ) -> Result<String, LabError> {
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let spec = TokenRequestSpec {
            audiences: audience.clone().filter(|a| !a.is_empty()).map(|a| vec![a]),
            expiration_seconds: Some(ttl_secs),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        };
        isthmus_kube::token::request_token(self.client, self.namespace, &sa, spec)
            .await
            .map(|t| t.token)
            .map_err(|e| {
                LabError::Invalid(format!(
                    "a token for service account {}/{sa}: {e}",
                    self.namespace
                ))
            })
    }

    /// The ConfigMap and Secret values `containers`' environments name, by (kind, name, key).
    pub async fn env_sources(
        &self,
        containers: &[Container],
    ) -> Result<BTreeMap<(String, String, String), String>, LabError> {
        let mut out = BTreeMap::new();
        for c in containers {
            for e in c.env.iter().flatten() {
                let Some(from) = &e.value_from else { continue };
                let (kind, name, key, optional) = if let Some(r) = &from.config_map_key_ref {
                    ("ConfigMap", r.name.clone(), r.key.clone(), r.optional)
                } else if let Some(r) = &from.secret_key_ref {
                    ("Secret", r.name.clone(), r.key.clone(), r.optional)
                } else {
                    continue;
                };
                if let Some(data) = self.source(kind, &name, optional).await? {
                    match data.get(&key) {
                        Some(v) => {
                            out.insert(
                                (kind.to_string(), name, key),
                                String::from_utf8_lossy(v).to_string(),
                            );
                        }
                        None if optional == Some(true) => {}
                        None => {
                            return Err(LabError::Invalid(format!(
                                "container {}: env {}: {kind} {}/{name} has no key {key}",
                                c.name, e.name, self.namespace
                            )))
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Writes the prepared volumes under `workdir`; returns the tokens with their files.
pub fn write_volumes(
    workdir: &Path,
    volumes: &[PreparedVolume],
) -> Result<Vec<ProjectedToken>, LabError> {
    use std::os::unix::fs::PermissionsExt;
    let mut tokens = Vec::new();
    for v in volumes {
        let dir = volume_dir(workdir, &v.name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mode = if v.empty_dir { 0o777 } else { 0o755 };
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).map_err(io(&dir))?;
        for f in &v.files {
            if f.path.split('/').any(|s| s == "..") || f.path.starts_with('/') {
                return Err(LabError::Invalid(format!(
                    "volume {}: path {} leaves the volume",
                    v.name, f.path
                )));
            }
            let file = dir.join(&f.path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            write_file(&file, &f.data, f.mode)?;
        }
        for (path, audience, ttl) in &v.tokens {
            tokens.push(ProjectedToken {
                file: dir.join(path),
                audience: audience.clone(),
                ttl_secs: *ttl,
            });
        }
    }
    Ok(tokens)
}

/// Writes a file whole (through a temporary file, so a reader never sees half of it).
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("lab-tmp");
    std::fs::write(&tmp, data).map_err(io(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// What the kubelet knows when it makes a container's environment.
pub struct EnvContext<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Its address.
    pub ip: &'a str,
    /// Its node's address.
    pub host_ip: &'a str,
    /// Values from ConfigMaps and Secrets ([`Fetch::env_sources`]).
    pub sources: &'a BTreeMap<(String, String, String), String>,
    /// What every container gets first (PATH, KUBERNETES_SERVICE_HOST/PORT).
    pub base: &'a [(String, String)],
}

/// A container's environment, in order: the base, then its own (each value may refer to
/// earlier ones as `$(VAR)`).
pub fn environment(c: &Container, ctx: &EnvContext<'_>) -> Result<Vec<(String, String)>, LabError> {
    let mut env: Vec<(String, String)> = ctx.base.to_vec();
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field_of(
                        ctx.pod,
                        ctx.ip,
                        ctx.host_ip,
                        f,
                        &format!("container {}: env {}", c.name, e.name),
                    )?
                } else if let Some(r) = &from.config_map_key_ref {
                    ctx.sources
                        .get(&("ConfigMap".into(), r.name.clone(), r.key.clone()))
                        .cloned()
                        .unwrap_or_default()
                } else if let Some(r) = &from.secret_key_ref {
                    ctx.sources
                        .get(&("Secret".into(), r.name.clone(), r.key.clone()))
                        .cloned()
                        .unwrap_or_default()
                } else {
                    return Err(LabError::Invalid(format!(
                        "container {}: env {}: only fieldRef, configMapKeyRef and secretKeyRef are supported by the lab's kubelet",
                        c.name, e.name
                    )));
                }
            }
            (Some(v), None) => container::expand(v, &env),
            (None, None) => String::new(),
        };
        env.retain(|(k, _)| k != &e.name);
        env.push((e.name.clone(), value));
    }
    if c.env_from.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(LabError::Invalid(format!(
            "container {}: envFrom is not supported by the lab's kubelet",
            c.name
        )));
    }
    Ok(env)
}

/// How a container of the Isthmus image runs: the `isthmus` binary (`exe`) with its
/// arguments expanded from `env`, its mounts, its user (the image's 1337 unless the
/// security context says otherwise).
pub fn isthmus_exec(
    pod: &Pod,
    c: &Container,
    exe: &str,
    env: Vec<(String, String)>,
    workdir: &Path,
) -> Result<ContainerExec, LabError> {
    let mut argv = vec![exe.to_string()];
    match c.command.as_deref() {
        None | Some([]) => {}
        Some([first, rest @ ..]) if first == "isthmus" || first.ends_with("/isthmus") => {
            argv.extend(rest.iter().map(|a| container::expand(a, &env)));
        }
        Some([first, ..]) => {
            return Err(LabError::Invalid(format!(
                "container {}: command {first}: the lab runs only `isthmus` from the Isthmus image",
                c.name
            )))
        }
    }
    argv.extend(c.args.iter().flatten().map(|a| container::expand(a, &env)));
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    // The image's user (the Dockerfile's USER 1337:1337) unless the spec names one.
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user))
        .unwrap_or(1337);
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group))
        .unwrap_or(uid);
    let id = |v: i64| {
        u32::try_from(v).map_err(|_| {
            LabError::Invalid(format!(
                "container {}: user or group {v} is out of range",
                c.name
            ))
        })
    };
    let volumes: Vec<&str> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|v| v.iter().map(|v| v.name.as_str()).collect())
        .unwrap_or_default();
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        if !volumes.contains(&m.name.as_str()) {
            return Err(LabError::Invalid(format!(
                "container {}: volumeMount {} names no volume of the pod",
                c.name, m.name
            )));
        }
        let mut source = volume_dir(workdir, &m.name);
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.split('/').any(|s| s == "..") {
                return Err(LabError::Invalid(format!(
                    "container {}: volumeMount {}: subPath {sub} leaves the volume",
                    c.name, m.name
                )));
            }
            source = source.join(sub);
        }
        mounts.push(Mount {
            source,
            target: PathBuf::from(&m.mount_path),
            read_only: m.read_only == Some(true),
        });
    }
    // Parents before children.
    mounts.sort_by_key(|m| m.target.components().count());
    Ok(ContainerExec {
        mounts,
        uid: id(uid)?,
        gid: id(gid)?,
        env,
        argv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "sample", "uid": "u-1",
                         "labels": {"app": "web", "version": "v1"},
                         "annotations": {"a": "b"}},
            "spec": {
                "serviceAccountName": "web",
                "nodeName": "local-node",
                "securityContext": {"runAsUser": 2000},
                "volumes": [{"name": "istio-token", "projected": {"sources": []}},
                            {"name": "istio-envoy", "emptyDir": {}}],
                "containers": [{
                    "name": "istio-proxy", "image": "ghcr.io/isthmus-mesh/isthmus:0.1.0",
                    "args": ["agent", "--pod", "$(POD_NAME)", "--ip", "$(INSTANCE_IP)", "--x", "$$(POD_NAME)"],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "INSTANCE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                        {"name": "GREETING", "value": "hello $(POD_NAME)"},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                    ],
                    "securityContext": {"runAsUser": 1337},
                    "volumeMounts": [
                        {"name": "istio-token", "mountPath": "/var/run/secrets/tokens", "readOnly": true},
                        {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}
                    ]
                }]
            }
        }))
        .expect("pod")
    }

    #[test]
    fn downward_fields_are_a_kubelets() {
        let p = pod();
        let f = |path: &str| field(&p, "10.10.0.12", "10.10.0.1", path);
        assert_eq!(f("metadata.name").as_deref(), Some("web-0"));
        assert_eq!(f("status.podIP").as_deref(), Some("10.10.0.12"));
        assert_eq!(f("status.hostIP").as_deref(), Some("10.10.0.1"));
        assert_eq!(f("spec.serviceAccountName").as_deref(), Some("web"));
        assert_eq!(f("metadata.labels['version']").as_deref(), Some("v1"));
        assert_eq!(
            f("metadata.labels").as_deref(),
            Some("app=\"web\"\nversion=\"v1\"\n")
        );
        assert_eq!(f("spec.unknown"), None);
    }

    #[test]
    fn an_isthmus_container_runs_the_binary_with_its_environment_mounts_and_user() {
        let p = pod();
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let sources = BTreeMap::from([(
            ("Secret".to_string(), "s".to_string(), "k".to_string()),
            "t0k".to_string(),
        )]);
        let base = vec![("PATH".to_string(), "/usr/bin".to_string())];
        let ctx = EnvContext {
            pod: &p,
            ip: "10.10.0.12",
            host_ip: "10.10.0.1",
            sources: &sources,
            base: &base,
        };
        let env = environment(c, &ctx).expect("env");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/usr/bin"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("GREETING"), Some("hello web-0"));
        assert_eq!(get("TOKEN"), Some("t0k"));
        let exec = isthmus_exec(&p, c, "/bin/isthmus", env, Path::new("/state/pod")).expect("exec");
        assert_eq!(
            exec.argv,
            [
                "/bin/isthmus",
                "agent",
                "--pod",
                "web-0",
                "--ip",
                "10.10.0.12",
                "--x",
                "$(POD_NAME)"
            ]
        );
        assert_eq!(
            (exec.uid, exec.gid),
            (1337, 1337),
            "the container's user wins over the pod's"
        );
        assert_eq!(
            exec.mounts[0].source,
            Path::new("/state/pod/volumes/istio-envoy")
        );
        assert_eq!(exec.mounts[1].target, Path::new("/var/run/secrets/tokens"));
        assert!(exec.mounts[1].read_only);

        let mut other = c.clone();
        other.command = Some(vec!["sh".into(), "-c".into()]);
        assert!(isthmus_exec(&p, &other, "/bin/isthmus", Vec::new(), Path::new("/s")).is_err());
        other.command = Some(vec!["isthmus".into()]);
        other.security_context = None;
        let e =
            isthmus_exec(&p, &other, "/bin/isthmus", Vec::new(), Path::new("/s")).expect("exec");
        assert_eq!(e.uid, 2000, "the pod's user");
        other.volume_mounts = Some(vec![serde_json::from_value(
            json!({"name": "nope", "mountPath": "/x"}),
        )
        .expect("mount")]);
        assert!(isthmus_exec(&p, &other, "/bin/isthmus", Vec::new(), Path::new("/s")).is_err());
    }

    #[test]
    fn volumes_are_written_with_their_modes_and_never_outside() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("isthmus-pod-spec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let vols = vec![
            PreparedVolume {
                name: "istio-envoy".into(),
                files: vec![],
                empty_dir: true,
                tokens: vec![],
            },
            PreparedVolume {
                name: "istio-token".into(),
                files: vec![VolumeFile {
                    path: "istio-token".into(),
                    data: b"tok".to_vec(),
                    mode: 0o644,
                }],
                empty_dir: false,
                tokens: vec![("istio-token".into(), Some("istio-ca".into()), 43200)],
            },
        ];
        let tokens = write_volumes(&dir, &vols).expect("written");
        let token_file = dir.join("volumes/istio-token/istio-token");
        assert_eq!(
            tokens,
            [ProjectedToken {
                file: token_file.clone(),
                audience: Some("istio-ca".into()),
                ttl_secs: 43200
            }]
        );
        assert_eq!(std::fs::read(&token_file).expect("token"), b"tok");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&token_file), 0o644);
        assert_eq!(mode(&dir.join("volumes/istio-envoy")), 0o777);
        let escape = vec![PreparedVolume {
            name: "v".into(),
            files: vec![VolumeFile {
                path: "../../x".into(),
                data: vec![],
                mode: 0o644,
            }],
            empty_dir: false,
            tokens: vec![],
        }];
        assert!(write_volumes(&dir, &escape).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
