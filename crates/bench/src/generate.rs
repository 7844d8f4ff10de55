//! Synthetic meshes: C clusters x S services x E endpoints, written as the registry files a
//! control plane reads (multi-document YAML, 100 services per namespace, every cluster
//! running every service on its own network, joined by meshNetworks in cluster 1).

use std::path::{Path, PathBuf};

/// The size of a synthetic mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Clusters.
    pub clusters: u32,
    /// Services (each present in every cluster).
    pub services: u32,
    /// Endpoints (pods) per service per cluster.
    pub endpoints: u32,
}

impl Shape {
    /// Endpoints in the whole mesh: clusters x services x endpoints per service.
    pub fn total_endpoints(&self) -> u64 {
        u64::from(self.clusters) * u64::from(self.services) * u64::from(self.endpoints)
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    /// One directory per cluster: `(name, dir)`.
    pub registries: Vec<(String, PathBuf)>,
    /// Objects written.
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The IP of pod `n` (0-based) in the 10.0.0.0/8 block, skipping .0 and .255 octets.
pub fn pod_ip(n: u64) -> String {
    let n = n + 1;
    format!(
        "10.{}.{}.{}",
        (n / 62_000) % 250,
        (n / 250) % 248,
        n % 250 + 1
    )
}

fn service_ip(n: u64) -> String {
    format!(
        "172.{}.{}.{}",
        16 + (n / 62_500) % 16,
        (n / 250) % 250,
        n % 250 + 1
    )
}

/// Names of the generated services, for clients that pick one to change.
pub fn service_name(i: u32) -> (String, String) {
    (format!("svc-{i}"), format!("ns-{}", i / 100))
}

/// Writes the mesh under `out` (replacing what is there). A mesh needs at least one
/// cluster, one service and one endpoint per service: every bench measures those, and
/// `--clusters 0` is refused here rather than found missing later.
pub fn write(out: &Path, shape: Shape) -> std::io::Result<Written> {
    if shape.clusters == 0 || shape.services == 0 || shape.endpoints == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "a mesh of {} clusters x {} services x {} endpoints has nothing to measure: \
                 --clusters, --services and --endpoints must each be at least 1",
                shape.clusters, shape.services, shape.endpoints
            ),
        ));
    }
    write_shape(out, shape)
}

/// Writes a mesh of one cluster with nothing in it but its mesh config: the baseline that
/// `bench memory` measures the process itself on.
pub fn write_empty(out: &Path) -> std::io::Result<Written> {
    write_shape(
        out,
        Shape {
            clusters: 1,
            services: 0,
            endpoints: 1,
        },
    )
}

fn write_shape(out: &Path, shape: Shape) -> std::io::Result<Written> {
    let _ = std::fs::remove_dir_all(out);
    let mut registries = Vec::new();
    let mut objects = 0u64;
    let mut bytes = 0u64;
    for c in 1..=shape.clusters {
        let name = format!("cluster{c}");
        let dir = out.join(&name);
        std::fs::create_dir_all(dir.join("istio-system"))?;
        if c == 1 {
            let mut nets = String::from("networks:\n");
            for k in 1..=shape.clusters {
                nets.push_str(&format!(
                    "  network{k}:\n    endpoints:\n    - fromRegistry: cluster{k}\n    gateways:\n    - address: 198.18.1.{k}\n      port: 15443\n"
                ));
            }
            let indented: String = nets.lines().map(|l| format!("    {l}\n")).collect();
            let cm = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  meshNetworks: |\n{indented}"
            );
            bytes += cm.len() as u64;
            std::fs::write(dir.join("istio-system/mesh.yaml"), cm)?;
            objects += 1;
        }
        let namespaces = shape.services.div_ceil(100);
        for ns_i in 0..namespaces {
            let ns = format!("ns-{ns_i}");
            std::fs::create_dir_all(dir.join(&ns))?;
            // One file per Service with its pods: an edit touches one small file, as one
            // Kubernetes watch event carries one object.
            for s in ns_i * 100..((ns_i + 1) * 100).min(shape.services) {
                let (svc, _) = service_name(s);
                let mut text = String::new();
                text.push_str(&format!(
                    "apiVersion: v1\nkind: Service\nmetadata: {{name: {svc}}}\nspec:\n  clusterIP: {}\n  ports: [{{name: http, port: 8080}}]\n  selector: {{app: {svc}}}\n---\n",
                    service_ip(u64::from(s))
                ));
                objects += 1;
                for e in 0..shape.endpoints {
                    let n = u64::from(s) * u64::from(shape.endpoints) + u64::from(e);
                    text.push_str(&format!(
                        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {svc}-{e}, labels: {{app: {svc}}}}}\nspec: {{serviceAccountName: {svc}}}\nstatus: {{podIP: {}, phase: Running}}\n---\n",
                        pod_ip(n)
                    ));
                    objects += 1;
                }
                bytes += text.len() as u64;
                std::fs::write(dir.join(&ns).join(format!("{svc}.yaml")), text)?;
            }
        }
        registries.push((name, dir));
    }
    Ok(Written {
        registries,
        objects,
        bytes,
    })
}

/// Writes one cluster whose `services` x `endpoints` endpoints are ServiceEntries instead
/// of Pods (one entry per service in a file of its own, the endpoints in line, as the
/// ServiceEntries that mirror another registry are written): the YAML is about 25 bytes
/// per endpoint.
pub fn write_service_entries(
    out: &Path,
    services: u32,
    endpoints: u32,
) -> std::io::Result<Written> {
    if services == 0 || endpoints == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--services and --endpoints must each be at least 1",
        ));
    }
    let _ = std::fs::remove_dir_all(out);
    let dir = out.join("cluster1");
    std::fs::create_dir_all(dir.join("istio-system"))?;
    let mut objects = 0u64;
    let mut bytes = 0u64;
    for s in 0..services {
        let (svc, ns) = service_name(s);
        std::fs::create_dir_all(dir.join(&ns))?;
        let mut text = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {svc}\nspec:\n  hosts: [{svc}.{ns}.example]\n  addresses: [{}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{name: http, number: 8080, protocol: HTTP}}\n  endpoints:\n",
            service_ip(u64::from(s))
        );
        for e in 0..endpoints {
            let n = u64::from(s) * u64::from(endpoints) + u64::from(e);
            text.push_str(&format!("  - address: {}\n", pod_ip(n)));
        }
        objects += 1;
        bytes += text.len() as u64;
        std::fs::write(dir.join(&ns).join(format!("{svc}.yaml")), text)?;
    }
    Ok(Written {
        registries: vec![("cluster1".to_string(), dir)],
        objects,
        bytes,
    })
}

/// Moves endpoint `e` of service `s` in cluster 1 to a new address: the one-endpoint change
/// the convergence benchmark measures. Returns the file it rewrote.
pub fn move_endpoint(dir: &Path, s: u32, e: u32, generation: u32) -> std::io::Result<PathBuf> {
    let (svc, ns) = service_name(s);
    let file = dir.join(&ns).join(format!("{svc}.yaml"));
    let text = std::fs::read_to_string(&file)?;
    let marker = format!("metadata: {{name: {svc}-{e}, labels: {{app: {svc}}}}}\n");
    let start = text.find(&marker).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{svc}-{e} not in {}", file.display()),
        )
    })?;
    let status = text[start..]
        .find("status: {podIP: ")
        .map(|i| start + i + "status: {podIP: ".len())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no podIP"))?;
    let end = status
        + text[status..]
            .find(',')
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no podIP end"))?;
    let new_ip = format!(
        "10.251.{}.{}",
        (generation / 250) % 250,
        generation % 250 + 1
    );
    let updated = format!("{}{new_ip}{}", &text[..status], &text[end..]);
    let tmp = file.with_extension("yaml.tmp");
    std::fs::write(&tmp, updated)?;
    std::fs::rename(&tmp, &file)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_entries_are_written_as_the_loader_reads_them() {
        let dir = std::env::temp_dir().join(format!("isthmus-gen-se-{}", std::process::id()));
        let w = write_service_entries(&dir, 3, 4).expect("write");
        assert_eq!(w.objects, 3);
        let loaded = isthmus_api::load::load_dir(&w.registries[0].1);
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        assert_eq!(loaded.resources.len(), 3);
        let Some(isthmus_api::Object::ServiceEntry(se)) =
            loaded.resources.first().map(|r| &r.object)
        else {
            panic!("a ServiceEntry");
        };
        assert_eq!(se.spec.endpoints.len(), 4);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(write_service_entries(&dir, 0, 4).is_err());
    }

    #[test]
    fn an_empty_mesh_is_refused_before_anything_is_written() {
        let out = std::env::temp_dir().join(format!("isthmus-gen-empty-{}", std::process::id()));
        for shape in [
            Shape {
                clusters: 0,
                services: 10,
                endpoints: 10,
            },
            Shape {
                clusters: 1,
                services: 0,
                endpoints: 10,
            },
            Shape {
                clusters: 1,
                services: 10,
                endpoints: 0,
            },
        ] {
            let err = write(&out, shape).expect_err("refused");
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("at least 1"), "{err}");
            assert!(!out.exists(), "nothing written");
        }
    }

    #[test]
    fn the_empty_baseline_is_one_cluster_with_only_its_mesh_config() {
        let out = std::env::temp_dir().join(format!("isthmus-gen-base-{}", std::process::id()));
        let w = write_empty(&out).expect("written");
        assert_eq!(w.registries.len(), 1);
        assert_eq!(w.objects, 1, "the mesh config alone");
        assert!(out.join("cluster1/istio-system/mesh.yaml").is_file());
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn total_endpoints_does_not_overflow_u32() {
        let shape = Shape {
            clusters: 5,
            services: 100_000,
            endpoints: 10_000,
        };
        assert_eq!(shape.total_endpoints(), 5_000_000_000);
        let empty = Shape {
            clusters: 1,
            services: 0,
            endpoints: 10,
        };
        assert_eq!(empty.total_endpoints(), 0);
    }

    #[test]
    fn writes_and_moves_an_endpoint() {
        let dir = std::env::temp_dir().join(format!("isthmus-bench-gen-{}", std::process::id()));
        let w = write(
            &dir,
            Shape {
                clusters: 2,
                services: 150,
                endpoints: 3,
            },
        )
        .expect("write");
        assert_eq!(w.registries.len(), 2);
        // 150 services + 450 pods per cluster, plus the mesh config.
        assert_eq!(w.objects, 2 * (150 + 450) + 1);
        let f = move_endpoint(&w.registries[0].1, 120, 2, 7).expect("move");
        let text = std::fs::read_to_string(f).expect("read");
        assert!(text.contains("name: svc-120-2, labels: {app: svc-120}}\nspec: {serviceAccountName: svc-120}\nstatus: {podIP: 10.251.0.8, phase: Running}"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
