//! `isthmus bench envoy`: what applying the generated configuration costs a real Envoy. For
//! each mesh size, a control plane and one sidecar agent with its Envoy run in a network
//! namespace of their own (created and removed here; nothing touches the host's interfaces);
//! the time from starting the agent until Envoy is LIVE with every cluster warm and its
//! listeners in place is measured, with and without an Istio `Sidecar` that limits the proxy
//! to its own namespace's services.

use anyhow::{bail, Context, Result};
use isthmus_bench::generate::{self, Shape};
use isthmus_lab::{netns, process};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One measurement.
#[derive(Debug, Clone)]
struct Applied {
    services: u32,
    scoped: bool,
    ready: Duration,
    clusters: u64,
    listeners: u64,
    memory_mb: f64,
}

/// Removes the namespace and whatever runs in it, also on early return.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        for pid in process::in_namespace(&self.0) {
            process::stop(pid, Duration::from_secs(3));
        }
        let _ = netns::delete(&self.0);
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// GET inside the namespace, through `isthmus lab http-get`.
fn get(exe: &Path, ns: &str, addr: &str, path: &str) -> Option<String> {
    netns::exec(
        ns,
        &exe.display().to_string(),
        &["lab", "http-get", addr, path],
    )
    .ok()
}

fn stat(stats: &str, name: &str) -> Option<u64> {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .and_then(|v| v.trim().parse().ok())
}

fn run_one(
    exe: &Path,
    envoy: &Path,
    services: u32,
    endpoints: u32,
    scoped: bool,
    work: &Path,
) -> Result<Applied> {
    let ns = Namespace(format!("isb-envoy-{}", std::process::id()));
    let _ = netns::delete(&ns.0);
    netns::add(&ns.0)?;
    netns::up(&ns.0, "lo")?;
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work)?;
    let written = generate::write(
        &work.join("mesh"),
        Shape {
            clusters: 1,
            services,
            endpoints,
        },
    )?;
    let registry = &written.registries[0].1;
    if scoped {
        std::fs::write(
            registry.join("ns-0/sidecar.yaml"),
            "apiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nmetadata: {name: default, namespace: ns-0}\nspec:\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n",
        )?;
    }
    let ca = work.join("ca");
    isthmus_ca::create_root(&ca.join("root"))?;
    isthmus_ca::create_intermediate(&ca.join("root"), "cluster1", &ca.join("cluster1"))?;
    let key = isthmus_ca::CredentialKey::load_or_create(&ca.join("key"))?;
    std::fs::write(work.join("load.cred"), key.issue("ns-0", "load", 3600))?;
    let exe_s = exe.display().to_string();
    process::spawn(
        &ns.0,
        &s(&[
            &exe_s,
            "control-plane",
            "--cluster",
            "cluster1",
            "--network",
            "network1",
            "--registry",
            &format!("cluster1={}", registry.display()),
            "--cacerts",
            &ca.join("cluster1").display().to_string(),
            "--credential-key",
            &ca.join("key").display().to_string(),
            "--listen",
            "127.0.0.1:15012",
            "--monitoring",
            "127.0.0.1:15014",
        ]),
        &work.join("control-plane.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while get(exe, &ns.0, "127.0.0.1:15014", "/ready").is_none() {
        if Instant::now() > deadline {
            bail!(
                "the control plane did not become ready; see {}",
                work.join("control-plane.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    process::spawn(
        &ns.0,
        &s(&[
            &exe_s,
            "agent",
            "--kind",
            "sidecar",
            "--ip",
            "127.0.0.1",
            "--pod",
            "load-0",
            "--namespace",
            "ns-0",
            "--service-account",
            "load",
            "--cluster",
            "cluster1",
            "--network",
            "network1",
            "--control-plane",
            "127.0.0.1:15012",
            "--credential-file",
            &work.join("load.cred").display().to_string(),
            "--root-cert",
            &ca.join("cluster1/root-cert.pem").display().to_string(),
            "--workdir",
            &work.join("agent").display().to_string(),
            "--envoy",
            &envoy.display().to_string(),
            "--interception",
            "REDIRECT",
            "--admin-address",
            "127.0.0.1",
            "--xds",
            "sotw",
        ]),
        &work.join("agent.log"),
    )?;
    let filter = "/stats?filter=^(cluster_manager\\.(active_clusters|warming_clusters|cds\\.update_success)|listener_manager\\.(lds\\.update_success|total_listeners_active)|server\\.(state|memory_allocated))$";
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(stats) = get(exe, &ns.0, "127.0.0.1:15000", filter) {
            let v = |n: &str| stat(&stats, n);
            let done = v("cluster_manager.cds.update_success").unwrap_or(0) >= 1
                && v("listener_manager.lds.update_success").unwrap_or(0) >= 1
                && v("cluster_manager.warming_clusters") == Some(0)
                && v("server.state") == Some(0);
            if done {
                return Ok(Applied {
                    services,
                    scoped,
                    ready: started.elapsed(),
                    clusters: v("cluster_manager.active_clusters").unwrap_or(0),
                    listeners: v("listener_manager.total_listeners_active").unwrap_or(0),
                    memory_mb: v("server.memory_allocated").unwrap_or(0) as f64 / 1e6,
                });
            }
        }
        if Instant::now() > deadline {
            bail!(
                "Envoy did not apply its configuration within 600 s; see {} and {}",
                work.join("agent.log").display(),
                work.join("agent").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the measurements, prints a table and, with `out`, draws `envoy-apply.svg` (time to
/// LIVE against the number of services, scoped and not) there.
pub fn run(
    services: &[u32],
    endpoints: u32,
    work: &Path,
    envoy: Option<PathBuf>,
    out: Option<&Path>,
) -> Result<()> {
    netns::preflight().context("bench envoy needs root and iproute2 (network namespaces)")?;
    let envoy = isthmus_lab::lab::locate_envoy(envoy.as_deref())?;
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for &n in services {
        for scoped in [false, true] {
            println!(
                "{n} services x {endpoints} endpoints, {}: starting the control plane and one sidecar ...",
                if scoped { "Sidecar-scoped to ns-0 (100 services)" } else { "unscoped" }
            );
            let r = run_one(&exe, &envoy, n, endpoints, scoped, work)?;
            println!(
                "  Envoy LIVE with its configuration {:.2}s after the agent started: {} clusters, {} listeners, {:.1} MB allocated ({:.2} ms per cluster)",
                r.ready.as_secs_f64(),
                r.clusters,
                r.listeners,
                r.memory_mb,
                r.ready.as_secs_f64() * 1e3 / r.clusters.max(1) as f64
            );
            rows.push(r);
        }
    }
    println!(
        "\n| services | scope | clusters | time to LIVE with config | per cluster | Envoy memory |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} s | {:.2} ms | {:.1} MB |",
            r.services,
            if r.scoped { "Sidecar `./*`" } else { "none" },
            r.clusters,
            r.ready.as_secs_f64(),
            r.ready.as_secs_f64() * 1e3 / r.clusters.max(1) as f64,
            r.memory_mb
        );
    }
    if let Some(dir) = out {
        let series = |scoped: bool, f: &dyn Fn(&Applied) -> f64| isthmus_bench::svg::Series {
            name: if scoped {
                "Sidecar-scoped".into()
            } else {
                "unscoped".into()
            },
            points: rows
                .iter()
                .filter(|r| r.scoped == scoped)
                .map(|r| (f64::from(r.services), f(r)))
                .collect(),
        };
        std::fs::create_dir_all(dir)?;
        let time = isthmus_bench::svg::line_chart(
            "Real Envoy: time until LIVE with the configuration",
            "services in the mesh",
            "seconds",
            &[
                series(false, &|r| r.ready.as_secs_f64()),
                series(true, &|r| r.ready.as_secs_f64()),
            ],
        );
        std::fs::write(dir.join("envoy-apply.svg"), time)?;
        let mem = isthmus_bench::svg::line_chart(
            "Real Envoy: memory allocated",
            "services in the mesh",
            "MB",
            &[
                series(false, &|r| r.memory_mb),
                series(true, &|r| r.memory_mb),
            ],
        );
        std::fs::write(dir.join("envoy-memory.svg"), mem)?;
        println!("charts written to {}", dir.display());
    }
    Ok(())
}
