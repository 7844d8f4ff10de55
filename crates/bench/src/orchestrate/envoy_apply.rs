//! `isthmus bench envoy`: what applying the generated configuration costs a real Envoy. For
//! each mesh size, a control plane and one sidecar agent with its Envoy run in a network
//! namespace of their own (created and removed here; nothing touches the host's interfaces);
//! the time from starting the agent until Envoy is LIVE with every cluster warm and its
//! listeners in place is measured, with and without an Istio `Sidecar` that limits the proxy
//! to its own namespace's services, and scoped on demand (the control plane's `--scoping
//! on-demand`, the agent answering DNS): then also the first lookup of a service's name,
//! which the agent holds until Envoy has that service's configuration (the extra latency a
//! first call pays), and the same lookup again.

use super::write_scoping_sidecar;
use crate::error::BenchError;
use crate::generate::{self, Shape};
use crate::svg;
use isthmus_agent::AgentConfig;
use isthmus_control_plane::ControlPlaneConfig;
use isthmus_lab::{netns, process};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `bench envoy` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyOptions {
    /// The `isthmus` binary: the control plane, the agent and `lab http-get` in the namespace.
    pub exe: PathBuf,
    /// Service counts (one cluster).
    pub services: Vec<u32>,
    /// Endpoints per service.
    pub endpoints: u32,
    /// Envoy binary (default: `envoy` on PATH, then .venv/bin/envoy).
    pub envoy: Option<PathBuf>,
    /// Working directory.
    pub work: PathBuf,
    /// Where to write the charts (`envoy-apply.svg`, `envoy-memory.svg`), if anywhere.
    pub out: Option<PathBuf>,
}

/// What a sidecar is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every service.
    Unscoped,
    /// An Istio `Sidecar` limiting it to its namespace (`./*`, 100 services).
    Sidecar,
    /// On demand: what its pod resolved.
    OnDemand,
}

impl Scope {
    fn label(self) -> &'static str {
        match self {
            Scope::Unscoped => "none",
            Scope::Sidecar => "Sidecar `./*`",
            Scope::OnDemand => "on demand",
        }
    }
}

/// How many names the on-demand run resolves, one after the other.
const FIRST_LOOKUPS: u32 = 20;

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
struct Applied {
    services: u32,
    scope: Scope,
    ready: Duration,
    clusters: u64,
    listeners: u64,
    memory_mb: f64,
    /// On demand: the first lookup of each of [`FIRST_LOOKUPS`] names (held until Envoy has
    /// the service), then the same names again; and Envoy's memory after them.
    lookups: Option<Lookups>,
}

/// First and repeated lookups through the agent's DNS, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
struct Lookups {
    first: Vec<f64>,
    again: Vec<f64>,
    clusters_after: u64,
    memory_mb_after: f64,
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

/// GET inside the namespace, through `isthmus lab http-get`.
fn get(exe: &Path, ns: &str, addr: &str, path: &str) -> Option<String> {
    netns::exec(
        ns,
        &exe.display().to_string(),
        &["lab", "http-get", addr, path],
    )
    .ok()
}

/// The value of counter or gauge `name` in Envoy's `/stats` text.
fn stat(stats: &str, name: &str) -> Option<u64> {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .and_then(|v| v.trim().parse().ok())
}

/// The Envoy stats [`applied`] reads.
const STATS_FILTER: &str = "/stats?filter=^(cluster_manager\\.(active_clusters|warming_clusters|cds\\.update_success)|listener_manager\\.(lds\\.update_success|total_listeners_active)|server\\.(state|memory_allocated))$";

/// Whether Envoy's `/stats` say it has applied its configuration (CDS and LDS accepted, no
/// cluster warming, server LIVE); then its active clusters, active listeners and MB
/// allocated.
fn applied(stats: &str) -> Option<(u64, u64, f64)> {
    let v = |n: &str| stat(stats, n);
    let done = v("cluster_manager.cds.update_success").unwrap_or(0) >= 1
        && v("listener_manager.lds.update_success").unwrap_or(0) >= 1
        && v("cluster_manager.warming_clusters") == Some(0)
        && v("server.state") == Some(0);
    done.then(|| {
        (
            v("cluster_manager.active_clusters").unwrap_or(0),
            v("listener_manager.total_listeners_active").unwrap_or(0),
            v("server.memory_allocated").unwrap_or(0) as f64 / 1e6,
        )
    })
}

fn run_one(
    exe: &Path,
    envoy: &Path,
    services: u32,
    endpoints: u32,
    scope: Scope,
    work: &Path,
) -> Result<Applied, BenchError> {
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
    if scope == Scope::Sidecar {
        write_scoping_sidecar(registry)?;
    }
    let ca = work.join("ca");
    isthmus_ca::create_root(&ca.join("root"))?;
    isthmus_ca::create_intermediate(&ca.join("root"), "cluster1", &ca.join("cluster1"))?;
    let key = isthmus_ca::CredentialKey::load_or_create(&ca.join("key"))?;
    std::fs::write(work.join("load.cred"), key.issue("ns-0", "load", 3600))?;
    let exe_s = exe.display().to_string();
    let mut control_plane = ControlPlaneConfig::new(
        "cluster1",
        "network1",
        registry,
        ca.join("cluster1"),
        ca.join("key"),
    );
    control_plane.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 15012));
    control_plane.monitoring = std::net::SocketAddr::from(([127, 0, 0, 1], 15014));
    control_plane.scoping = if scope == Scope::OnDemand {
        isthmus_control_plane::config::ScopingMode::OnDemand
    } else {
        isthmus_control_plane::config::ScopingMode::Full
    };
    process::spawn(
        &ns.0,
        &process::command_line(&exe_s, "control-plane", control_plane.to_args()),
        &work.join("control-plane.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while get(exe, &ns.0, "127.0.0.1:15014", "/ready").is_none() {
        if Instant::now() > deadline {
            return Err(BenchError::ControlPlaneNotReady {
                log: work.join("control-plane.log"),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let mut agent = AgentConfig::new(
        "load-0",
        "ns-0",
        "127.0.0.1",
        "cluster1",
        "127.0.0.1:15012",
        work.join("agent"),
    );
    agent.service_account = "load".into();
    agent.network = "network1".into();
    agent.credential_file = work.join("load.cred");
    agent.root_cert = ca.join("cluster1/root-cert.pem");
    agent.envoy = Some(envoy.to_path_buf());
    // On demand, the agent answers DNS on 127.0.0.1:15053 (no capture: the bench asks it
    // there) and says what was resolved.
    agent.dns_capture = scope == Scope::OnDemand;
    process::spawn(
        &ns.0,
        &process::command_line(&exe_s, "agent", agent.to_args()),
        &work.join("agent.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(stats) = get(exe, &ns.0, "127.0.0.1:15000", STATS_FILTER) {
            if let Some((clusters, listeners, memory_mb)) = applied(&stats) {
                let ready = started.elapsed();
                let lookups = if scope == Scope::OnDemand {
                    Some(first_lookups(exe, &ns.0, services)?)
                } else {
                    None
                };
                return Ok(Applied {
                    services,
                    scope,
                    ready,
                    clusters,
                    listeners,
                    memory_mb,
                    lookups,
                });
            }
        }
        if Instant::now() > deadline {
            return Err(BenchError::EnvoyNotApplied {
                agent_log: work.join("agent.log"),
                agent_dir: work.join("agent"),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Resolves [`FIRST_LOOKUPS`] services' names through the agent's DNS, each once (held until
/// Envoy holds the service), then each again; then reads Envoy's clusters and memory.
fn first_lookups(exe: &Path, ns: &str, services: u32) -> Result<Lookups, BenchError> {
    let lookup = |name: &str| -> Result<f64, BenchError> {
        let out = netns::exec(
            ns,
            &exe.display().to_string(),
            &["lab", "dns-get", "127.0.0.1:15053", name],
        )
        .map_err(|e| BenchError::Measure(format!("looking up {name}: {e}")))?;
        let (ips, ms) = out.trim().rsplit_once(' ').unwrap_or(("", ""));
        if ips.is_empty() {
            return Err(BenchError::Measure(format!(
                "{name}: no address in `{out}`"
            )));
        }
        ms.parse()
            .map_err(|_| BenchError::Measure(format!("{name}: unreadable `{out}`")))
    };
    // Spread over the mesh, in other namespaces than the sidecar's.
    let names: Vec<String> = (0..FIRST_LOOKUPS)
        .map(|i| {
            let (svc, svc_ns) = generate::service_name((i * 97 + 150) % services.max(1));
            format!("{svc}.{svc_ns}.svc.cluster.local")
        })
        .collect();
    let first = names
        .iter()
        .map(|n| lookup(n))
        .collect::<Result<Vec<_>, _>>()?;
    let again = names
        .iter()
        .map(|n| lookup(n))
        .collect::<Result<Vec<_>, _>>()?;
    let stats = get(exe, ns, "127.0.0.1:15000", STATS_FILTER).unwrap_or_default();
    let (clusters_after, _, memory_mb_after) = applied(&stats).unwrap_or_default();
    Ok(Lookups {
        first,
        again,
        clusters_after,
        memory_mb_after,
    })
}

/// The `p`th percentile of `v` (nearest rank).
fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(i.saturating_sub(1)).copied().unwrap_or_default()
}

/// One row of the table.
fn table_row(r: &Applied) -> String {
    let lookups = match &r.lookups {
        None => "| - | - | - |".to_string(),
        Some(l) => format!(
            "| {:.1} / {:.1} ms | {:.1} / {:.1} ms | {} clusters, {:.1} MB |",
            percentile(&l.first, 50.0),
            percentile(&l.first, 99.0),
            percentile(&l.again, 50.0),
            percentile(&l.again, 99.0),
            l.clusters_after,
            l.memory_mb_after
        ),
    };
    format!(
        "| {} | {} | {} | {:.2} s | {:.2} ms | {:.1} MB {lookups}",
        r.services,
        r.scope.label(),
        r.clusters,
        r.ready.as_secs_f64(),
        r.ready.as_secs_f64() * 1e3 / r.clusters.max(1) as f64,
        r.memory_mb
    )
}

/// Runs the measurements, prints a table and, with `out`, draws `envoy-apply.svg` (time to
/// LIVE against the number of services, scoped and not) and `envoy-memory.svg` there.
pub fn run(opts: &EnvoyOptions) -> Result<(), BenchError> {
    netns::preflight().map_err(BenchError::EnvoyPreflight)?;
    let envoy = isthmus_lab::lab::locate_envoy(opts.envoy.as_deref())?;
    let (exe, endpoints, work) = (&opts.exe, opts.endpoints, &opts.work);
    let mut rows = Vec::new();
    for &n in &opts.services {
        for scope in [Scope::Unscoped, Scope::Sidecar, Scope::OnDemand] {
            println!(
                "{n} services x {endpoints} endpoints, {}: starting the control plane and one sidecar ...",
                match scope {
                    Scope::Unscoped => "unscoped",
                    Scope::Sidecar => "Sidecar-scoped to ns-0 (100 services)",
                    Scope::OnDemand => "scoped on demand",
                }
            );
            let r = run_one(exe, &envoy, n, endpoints, scope, work)?;
            println!(
                "  Envoy LIVE with its configuration {:.2}s after the agent started: {} clusters, {} listeners, {:.1} MB allocated ({:.2} ms per cluster)",
                r.ready.as_secs_f64(),
                r.clusters,
                r.listeners,
                r.memory_mb,
                r.ready.as_secs_f64() * 1e3 / r.clusters.max(1) as f64
            );
            if let Some(l) = &r.lookups {
                println!(
                    "  {FIRST_LOOKUPS} names resolved through the agent: first lookup (held until Envoy has the service) p50 {:.1} ms, p99 {:.1} ms; again p50 {:.1} ms; then {} clusters, {:.1} MB",
                    percentile(&l.first, 50.0),
                    percentile(&l.first, 99.0),
                    percentile(&l.again, 50.0),
                    l.clusters_after,
                    l.memory_mb_after
                );
            }
            rows.push(r);
        }
    }
    println!(
        "\n| services | scope | clusters | time to LIVE with config | per cluster | Envoy memory | first lookup p50 / p99 | again p50 / p99 | after {FIRST_LOOKUPS} lookups |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{}", table_row(r));
    }
    if let Some(dir) = &opts.out {
        let series = |scope: Scope, f: &dyn Fn(&Applied) -> f64| svg::Series {
            name: match scope {
                Scope::Unscoped => "unscoped".into(),
                Scope::Sidecar => "Sidecar-scoped".into(),
                Scope::OnDemand => "on demand".into(),
            },
            points: rows
                .iter()
                .filter(|r| r.scope == scope)
                .map(|r| (f64::from(r.services), f(r)))
                .collect(),
        };
        std::fs::create_dir_all(dir)?;
        let time = svg::line_chart(
            "Real Envoy: time until LIVE with the configuration",
            "services in the mesh",
            "seconds",
            &[
                series(Scope::Unscoped, &|r| r.ready.as_secs_f64()),
                series(Scope::Sidecar, &|r| r.ready.as_secs_f64()),
                series(Scope::OnDemand, &|r| r.ready.as_secs_f64()),
            ],
        );
        std::fs::write(dir.join("envoy-apply.svg"), time)?;
        let mem = svg::line_chart(
            "Real Envoy: memory allocated",
            "services in the mesh",
            "MB",
            &[
                series(Scope::Unscoped, &|r| r.memory_mb),
                series(Scope::Sidecar, &|r| r.memory_mb),
                series(Scope::OnDemand, &|r| r.memory_mb),
            ],
        );
        std::fs::write(dir.join("envoy-memory.svg"), mem)?;
        println!("charts written to {}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "cluster_manager.active_clusters: 2012\n\
        cluster_manager.cds.update_success: 1\n\
        cluster_manager.warming_clusters: 0\n\
        listener_manager.lds.update_success: 2\n\
        listener_manager.total_listeners_active: 4\n\
        server.memory_allocated: 123456789\n\
        server.state: 0\n";

    #[test]
    fn stats_are_read_by_exact_name() {
        assert_eq!(stat(LIVE, "cluster_manager.active_clusters"), Some(2012));
        assert_eq!(stat(LIVE, "server.state"), Some(0));
        // A prefix of a name is not the name.
        assert_eq!(stat(LIVE, "cluster_manager.active"), None);
        assert_eq!(stat(LIVE, "server.uptime"), None);
        assert_eq!(stat("server.state: starting\n", "server.state"), None);
    }

    #[test]
    fn applied_once_live_with_nothing_warming() {
        assert_eq!(applied(LIVE), Some((2012, 4, 123.456789)));
        let warming = LIVE.replace("warming_clusters: 0", "warming_clusters: 3");
        assert_eq!(applied(&warming), None);
        // server.state 2 is PRE_INITIALIZING.
        assert_eq!(
            applied(&LIVE.replace("server.state: 0", "server.state: 2")),
            None
        );
        let no_lds = LIVE.replace("lds.update_success: 2", "lds.update_success: 0");
        assert_eq!(applied(&no_lds), None);
        assert_eq!(applied(""), None);
    }

    #[test]
    fn table_rows_give_the_time_per_cluster() {
        let r = Applied {
            services: 1000,
            scope: Scope::Sidecar,
            ready: Duration::from_millis(1500),
            clusters: 300,
            listeners: 4,
            memory_mb: 42.26,
            lookups: None,
        };
        assert_eq!(
            table_row(&r),
            "| 1000 | Sidecar `./*` | 300 | 1.50 s | 5.00 ms | 42.3 MB | - | - | - |"
        );
        let unscoped = Applied {
            scope: Scope::Unscoped,
            clusters: 0,
            ..r.clone()
        };
        assert_eq!(
            table_row(&unscoped),
            "| 1000 | none | 0 | 1.50 s | 1500.00 ms | 42.3 MB | - | - | - |"
        );
        let on_demand = Applied {
            scope: Scope::OnDemand,
            clusters: 4,
            lookups: Some(Lookups {
                first: vec![20.0, 10.0, 30.0, 40.0],
                again: vec![0.5, 0.25, 0.5, 0.75],
                clusters_after: 24,
                memory_mb_after: 12.04,
            }),
            ..r
        };
        assert_eq!(
            table_row(&on_demand),
            "| 1000 | on demand | 4 | 1.50 s | 375.00 ms | 42.3 MB | 20.0 / 40.0 ms | 0.5 / 0.8 ms | 24 clusters, 12.0 MB |"
        );
    }
}
