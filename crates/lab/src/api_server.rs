//! The API side of the lab: each cluster's Kubernetes API server as the lab plays it.
//!
//! Objects are JSON files in the cluster's registry directory (`Kind.name.yaml`, under a
//! folder per namespace; cluster-scoped objects at the top), written atomically so that the
//! control plane watching the directory never reads half a file. Everything that writes,
//! deletes or lists objects goes through [`ApiServer`], so that a real API server can take
//! its place. Like a real one, it hands out ClusterIPs ([`assign_cluster_ip`]).

use crate::error::{io, LabError};
use crate::state::{ClusterState, PodState};
use crate::topology::Cidr;
use isthmus_api::kube::{
    Container, ContainerPort, Namespace, Pod, PodPhase, PodSpec, PodStatus, Service,
};
use isthmus_api::ObjectMeta;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The registry directory of `cluster` in the lab's state directory.
pub fn registry_dir(state_dir: &Path, cluster: &str) -> PathBuf {
    state_dir.join("registry").join(cluster)
}

/// The file an object is stored in.
pub fn object_file(kind: &str, name: &str) -> String {
    format!("{kind}.{name}.yaml")
}

/// An object as the API server returns it: its fields plus `apiVersion` and `kind`.
pub fn encode(
    api_version: &str,
    kind: &str,
    object: &impl serde::Serialize,
) -> Result<String, LabError> {
    let mut v = serde_json::to_value(object)
        .map_err(|e| LabError::Invalid(format!("encoding {kind}: {e}")))?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), api_version.into());
        m.insert("kind".into(), kind.into());
    }
    serde_json::to_string_pretty(&v).map_err(|e| LabError::Invalid(format!("encoding {kind}: {e}")))
}

/// The ClusterIP of a headless Service.
const HEADLESS: &str = "None";

/// Gives the Service `namespace/name` of `cluster` its ClusterIP: the one it already has,
/// else the next free address of `service_cidr`.
pub fn assign_cluster_ip(
    cluster: &mut ClusterState,
    service_cidr: Cidr,
    namespace: &str,
    name: &str,
) -> Result<String, LabError> {
    let key = format!("{namespace}/{name}");
    if let Some(ip) = cluster.cluster_ips.get(&key) {
        return Ok(ip.clone());
    }
    cluster.last_service += 1;
    let ip = service_cidr
        .host(cluster.last_service)
        .ok_or_else(|| LabError::Invalid(format!("{}: service CIDR is full", cluster.name)))?;
    cluster.cluster_ips.insert(key, ip.to_string());
    Ok(ip.to_string())
}

/// Frees the ClusterIP of the Service `namespace/name` of `cluster` (the Service was
/// deleted). The address is not handed out again: the next Service takes a new one.
pub fn release_cluster_ip(cluster: &mut ClusterState, namespace: &str, name: &str) {
    cluster.cluster_ips.remove(&format!("{namespace}/{name}"));
}

/// The Pod object of a running pod: its labels, service account, image and `ports`, and
/// its IP in the status, phase `Running`.
pub fn pod_object(pod: &PodState, ports: &[u32]) -> Result<Pod, LabError> {
    Ok(Pod {
        metadata: ObjectMeta {
            name: pod.name.as_str().into(),
            namespace: pod.namespace.as_str().into(),
            labels: Arc::new(pod.labels.clone().into()),
            ..Default::default()
        },
        spec: Arc::new(PodSpec {
            service_account_name: pod.service_account.as_str().into(),
            containers: vec![Container {
                name: "app".into(),
                image: pod.image.clone().unwrap_or_default(),
                ports: ports
                    .iter()
                    .map(|p| ContainerPort {
                        name: None,
                        container_port: *p,
                    })
                    .collect(),
                env: Vec::new(),
            }]
            .into(),
            // A StatefulSet's pod: `NAME-N.SERVICE.NS.svc.cluster.local` in DNS.
            dns_name: pod.subdomain.as_deref().map(|subdomain| {
                Box::new(isthmus_api::kube::PodDnsName {
                    hostname: pod.name.as_str().into(),
                    subdomain: subdomain.into(),
                })
            }),
            ..Default::default()
        }),
        status: PodStatus::new(
            Some(pod.ip.parse().map_err(|_| {
                LabError::Invalid(format!(
                    "pod {}: `{}` is not an IP address",
                    pod.name, pod.ip
                ))
            })?),
            Some(PodPhase::Running),
            None,
        ),
    })
}

/// One cluster's API server: in file mode its objects are the files of its registry
/// directory; in Kubernetes mode it is the cluster's real API server, reached with kubectl.
#[derive(Debug, Clone)]
pub struct ApiServer {
    dir: PathBuf,
    kube: Option<KubeApi>,
}

/// A real API server: kubectl for it, and the Node that the lab's pods are bound to.
#[derive(Debug, Clone)]
struct KubeApi {
    kubectl: isthmus_kube::local::Kubectl,
    cluster: String,
    node: String,
}

impl KubeApi {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, LabError> {
        self.kubectl
            .run(args, stdin)
            .map_err(|stderr| LabError::Command {
                command: format!("kubectl {} (cluster {})", args.join(" "), self.cluster),
                stderr,
            })
    }

    /// Sets an object's status (as the controller or kubelet that owns it would).
    fn patch_status(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        status: serde_json::Value,
    ) -> Result<(), LabError> {
        let patch = serde_json::json!({ "status": status }).to_string();
        let args = [
            "patch",
            resource,
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ];
        self.run(&args, None).map(|_| ())
    }

    fn apply(&self, namespace: &str, text: &str) -> Result<(), LabError> {
        let mut args = vec!["apply", "-f", "-"];
        if !namespace.is_empty() {
            args.extend(["-n", namespace]);
        }
        self.run(&args, Some(text)).map(|_| ())
    }
}

impl ApiServer {
    /// The API server of `cluster`, keeping its objects under `state_dir`.
    pub fn new(state_dir: &Path, cluster: &str) -> ApiServer {
        ApiServer {
            dir: registry_dir(state_dir, cluster),
            kube: None,
        }
    }

    /// The API server of cluster number `ci` of a lab: the real one in Kubernetes mode.
    pub fn of(
        opts: &crate::options::LabOptions,
        state: &crate::state::LabState,
        ci: usize,
    ) -> Result<ApiServer, LabError> {
        let name = &state.clusters[ci].name;
        let mut api = ApiServer::new(&opts.state_dir, name);
        if crate::kubernetes::enabled(state) {
            api.kube = Some(KubeApi {
                kubectl: crate::kubernetes::kubectl(opts, state, ci)?,
                cluster: name.clone(),
                node: crate::kubernetes::node_name(name),
            });
        }
        Ok(api)
    }

    /// Whether it is a real API server.
    pub fn is_kube(&self) -> bool {
        self.kube.is_some()
    }

    /// The registry directory the control planes watch.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the (empty) registry directory.
    pub fn create(&self) -> Result<(), LabError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))
    }

    /// Stores an object's text (`namespace` "" for a cluster-scoped object), replacing
    /// the one of the same kind and name.
    pub fn put(&self, namespace: &str, kind: &str, name: &str, text: &str) -> Result<(), LabError> {
        if let Some(k) = &self.kube {
            // `kubectl apply`: the API server validates it (Istio's CRDs for Istio kinds)
            // and its message is the error.
            let _ = (kind, name);
            return k.apply(namespace, text);
        }
        let dir = if namespace.is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(namespace)
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let file = object_file(kind, name);
        let path = dir.join(&file);
        let tmp = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Deletes an object; false when there was none.
    pub fn delete(&self, namespace: &str, kind: &str, name: &str) -> Result<bool, LabError> {
        if let Some(k) = &self.kube {
            let mut args = vec!["delete", kind, name, "--ignore-not-found", "--wait=false"];
            if !namespace.is_empty() {
                args.extend(["-n", namespace]);
            }
            return Ok(!k.run(&args, None)?.trim().is_empty());
        }
        let path = self.dir.join(namespace).join(object_file(kind, name));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Stores a Namespace.
    pub fn put_namespace(&self, namespace: &Namespace) -> Result<(), LabError> {
        let text = encode("v1", "Namespace", namespace)?;
        self.put("", "Namespace", &namespace.metadata.name, &text)
    }

    /// Stores a Service with the ClusterIP of `cluster`'s allocation (see
    /// [`assign_cluster_ip`]), or none for a headless one (`None`); returns that ClusterIP.
    pub fn put_service(
        &self,
        cluster: &mut ClusterState,
        service_cidr: Cidr,
        mut svc: Service,
    ) -> Result<String, LabError> {
        if let Some(k) = &self.kube {
            return self.put_service_kube(k, cluster, svc);
        }
        // A headless Service keeps `None`: no ClusterIP, its name is its pods'.
        let ip = if svc.spec.cluster_ip.as_deref() == Some(HEADLESS) {
            HEADLESS.to_string()
        } else {
            assign_cluster_ip(
                cluster,
                service_cidr,
                &svc.metadata.namespace,
                &svc.metadata.name,
            )?
        };
        svc.spec.cluster_ip = Some(ip.clone());
        let text = encode("v1", "Service", &svc)?;
        self.put(
            &svc.metadata.namespace,
            "Service",
            &svc.metadata.name,
            &text,
        )?;
        Ok(ip)
    }

    /// A Service through the real API server: it allocates the ClusterIP (read back and
    /// recorded); a LoadBalancer's address goes into its status, as a cloud controller would
    /// put it.
    fn put_service_kube(
        &self,
        k: &KubeApi,
        cluster: &mut ClusterState,
        mut svc: Service,
    ) -> Result<String, LabError> {
        let ns = svc.metadata.namespace.to_string();
        let name = svc.metadata.name.to_string();
        let status = std::mem::take(&mut svc.status);
        if svc.spec.cluster_ip.as_deref() != Some(HEADLESS) {
            svc.spec.cluster_ip = None;
        }
        k.apply(&ns, &encode("v1", "Service", &svc)?)?;
        if !status.load_balancer.ingress.is_empty() {
            k.patch_status("service", &ns, &name, serde_json::json!(status))?;
        }
        let ip = k
            .run(
                &[
                    "get",
                    "service",
                    &name,
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.spec.clusterIP}",
                ],
                None,
            )?
            .trim()
            .to_string();
        cluster
            .cluster_ips
            .insert(format!("{ns}/{name}"), ip.clone());
        Ok(ip)
    }

    /// Stores the Pod object of a running pod (see [`pod_object`]). On a real API server it
    /// is bound to the cluster's Node and annotated as the lab's own (the node agent leaves
    /// it alone), with its service account created first, and its status reported running
    /// and ready at its address.
    pub fn put_pod(&self, pod: &PodState, ports: &[u32]) -> Result<(), LabError> {
        if let Some(k) = &self.kube {
            let object = pod_object(pod, ports)?;
            let mut v = serde_json::to_value(&object)
                .map_err(|e| LabError::Invalid(format!("encoding pod {}: {e}", pod.name)))?;
            let status = v.as_object_mut().and_then(|m| m.remove("status"));
            v["apiVersion"] = "v1".into();
            v["kind"] = "Pod".into();
            v["spec"]["nodeName"] = k.node.clone().into();
            v["metadata"]["annotations"] = serde_json::json!({ crate::node::LAB_MANAGED: "true" });
            if let Some(c) = v["spec"]["containers"].get_mut(0) {
                if c["image"].as_str().unwrap_or_default().is_empty() {
                    c["image"] = "isthmus".into();
                }
            }
            let sa = serde_json::json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": pod.service_account, "namespace": pod.namespace},
            });
            k.apply(&pod.namespace, &sa.to_string())?;
            k.apply(&pod.namespace, &v.to_string())?;
            let mut status = status.unwrap_or_default();
            status["podIPs"] = serde_json::json!([{ "ip": pod.ip }]);
            status["conditions"] = serde_json::json!([
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "Ready", "status": "True"},
            ]);
            k.patch_status("pod", &pod.namespace, &pod.name, status)?;
            return Ok(());
        }
        let text = encode("v1", "Pod", &pod_object(pod, ports)?)?;
        self.put(&pod.namespace, "Pod", &pod.name, &text)
    }

    /// Every stored Service, ordered by namespace and name; files that do not parse as a
    /// Service are left out.
    pub fn services(&self) -> Result<Vec<Service>, LabError> {
        let mut files: Vec<PathBuf> = Vec::new();
        if let Ok(dirs) = std::fs::read_dir(&self.dir) {
            for d in dirs.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
                if let Ok(entries) = std::fs::read_dir(d.path()) {
                    files.extend(
                        entries
                            .filter_map(|e| e.ok())
                            .map(|e| e.path())
                            .filter(|p| {
                                p.file_name()
                                    .and_then(|n| n.to_str())
                                    .is_some_and(|n| n.starts_with("Service."))
                            }),
                    );
                }
            }
        }
        files.sort();
        let mut services = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(io(&f))?;
            if let Ok(svc) = serde_json::from_str::<Service>(&text) {
                services.push(svc);
            }
        }
        Ok(services)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::testing;
    use isthmus_api::kube::{ServicePort, ServiceSpec};

    /// A fresh state directory for one test.
    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("isthmus-lab-api-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn service(namespace: &str, name: &str, port: u32) -> Service {
        Service {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: namespace.into(),
                ..Default::default()
            },
            spec: ServiceSpec {
                ports: vec![ServicePort {
                    name: "http".into(),
                    port,
                    ..Default::default()
                }],
                ..Default::default()
            },
            status: Default::default(),
        }
    }

    #[test]
    fn cluster_ips_start_at_ten_and_are_kept_per_service() {
        let mut s = testing::lab(testing::TWO_CLUSTERS);
        let cidr = s.topology.clusters[0].service_cidr;
        let c = &mut s.clusters[0];
        let a = assign_cluster_ip(c, cidr, "foo", "a").expect("a");
        let b = assign_cluster_ip(c, cidr, "foo", "b").expect("b");
        let other_ns = assign_cluster_ip(c, cidr, "bar", "a").expect("bar/a");
        assert_eq!(
            (a.as_str(), b.as_str(), other_ns.as_str()),
            ("10.96.0.10", "10.96.0.11", "10.96.0.12")
        );
        assert_eq!(assign_cluster_ip(c, cidr, "foo", "a").expect("again"), a);
        assert_eq!(c.last_service, 12);
        release_cluster_ip(c, "foo", "a");
        assert!(!c.cluster_ips.contains_key("foo/a"));
        assert_eq!(
            assign_cluster_ip(c, cidr, "foo", "a").expect("re-created"),
            "10.96.0.13",
            "a re-created Service takes a new address"
        );
        assert_eq!(
            c.cluster_ips.get("foo/b").map(String::as_str),
            Some("10.96.0.11")
        );
    }

    #[test]
    fn a_full_service_cidr_is_an_error_naming_the_cluster() {
        let mut s = testing::lab(testing::TWO_CLUSTERS);
        let small = Cidr::try_from("10.0.0.0/28".to_string()).expect("cidr");
        let c = &mut s.clusters[1];
        c.last_service = 13;
        assign_cluster_ip(c, small, "foo", "last").expect("the 14th host is the last");
        let err = assign_cluster_ip(c, small, "foo", "one-more").expect_err("full");
        assert_eq!(err.to_string(), "cluster2: service CIDR is full");
    }

    #[test]
    fn encoded_objects_carry_api_version_and_kind() {
        let text = encode("v1", "Service", &service("foo", "web", 80)).expect("encode");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Service");
        assert_eq!(v["metadata"]["name"], "web");
        assert!(text.contains("\n  \"metadata\""), "pretty-printed: {text}");
    }

    #[test]
    fn pod_objects_hold_ip_labels_account_and_ports() {
        let mut pod = testing::pod("foo", "web-0", "10.10.0.31", &[("app", "web")]);
        pod.service_account = "web-sa".into();
        pod.image = Some("docker.io/kennethreitz/httpbin".into());
        let p = pod_object(&pod, &[80, 8080]).expect("pod");
        assert_eq!(
            (&*p.metadata.namespace, &*p.metadata.name),
            ("foo", "web-0")
        );
        assert_eq!(
            p.metadata.labels.get("app").map(String::as_str),
            Some("web")
        );
        assert_eq!(&*p.spec.service_account_name, "web-sa");
        let c = &p.spec.containers[0];
        assert_eq!(c.name, "app");
        assert_eq!(c.image, "docker.io/kennethreitz/httpbin");
        let ports: Vec<u32> = c.ports.iter().map(|p| p.container_port).collect();
        assert_eq!(ports, [80, 8080]);
        assert_eq!(
            p.status.pod_ip().map(|ip| ip.to_string()).as_deref(),
            Some("10.10.0.31")
        );
        assert_eq!(p.status.phase, Some(PodPhase::Running));
        assert!(
            p.spec.dns_name.is_none(),
            "a Deployment's pod has no DNS name"
        );
        // A StatefulSet's pod is named in DNS under its Service.
        pod.subdomain = Some("web".into());
        let named = pod_object(&pod, &[80]).expect("pod");
        let dns = named
            .spec
            .dns_name
            .as_ref()
            .expect("a StatefulSet pod's DNS name");
        assert_eq!((&*dns.hostname, &*dns.subdomain), ("web-0", "web"));
        pod.ip = "not-an-ip".into();
        let err = pod_object(&pod, &[]).expect_err("bad ip");
        assert!(
            err.to_string().contains("`not-an-ip` is not an IP address"),
            "{err}"
        );
    }

    #[test]
    fn objects_are_files_by_namespace_kind_and_name() {
        let state_dir = scratch("files");
        let api = ApiServer::new(&state_dir, "cluster1");
        assert_eq!(api.dir(), state_dir.join("registry/cluster1"));
        let mut s = testing::lab(testing::TWO_CLUSTERS);
        let cidr = s.topology.clusters[0].service_cidr;
        let ip = api
            .put_service(&mut s.clusters[0], cidr, service("foo", "web", 80))
            .expect("put");
        assert_eq!(ip, "10.96.0.10");
        let file = state_dir.join("registry/cluster1/foo/Service.web.yaml");
        let stored: Service =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("stored")).expect("svc");
        assert_eq!(stored.spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        api.put("", "Namespace", "foo", "{}")
            .expect("cluster-scoped");
        assert!(state_dir
            .join("registry/cluster1/Namespace.foo.yaml")
            .is_file());
        let left: Vec<_> = std::fs::read_dir(state_dir.join("registry/cluster1/foo"))
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["Service.web.yaml"], "no temporary file is left");
        assert!(api.delete("foo", "Service", "web").expect("delete"));
        assert!(!file.exists());
        assert!(!api.delete("foo", "Service", "web").expect("again"));
        let _ = std::fs::remove_dir_all(&state_dir);
    }

    #[test]
    fn services_are_listed_in_order_skipping_what_does_not_parse() {
        let state_dir = scratch("list");
        let api = ApiServer::new(&state_dir, "c");
        let mut s = testing::lab(testing::TWO_CLUSTERS);
        let cidr = s.topology.clusters[0].service_cidr;
        for (ns, name) in [("foo", "web"), ("bar", "db"), ("foo", "api")] {
            api.put_service(&mut s.clusters[0], cidr, service(ns, name, 80))
                .expect("put");
        }
        api.put("foo", "Service", "broken", "not json")
            .expect("put");
        api.put("foo", "DestinationRule", "web", "{}").expect("put");
        let names: Vec<String> = api
            .services()
            .expect("list")
            .iter()
            .map(|s| format!("{}/{}", s.metadata.namespace, s.metadata.name))
            .collect();
        assert_eq!(names, ["bar/db", "foo/api", "foo/web"]);
        let _ = std::fs::remove_dir_all(&state_dir);
        assert!(ApiServer::new(&state_dir, "c")
            .services()
            .expect("none")
            .is_empty());
    }
}
