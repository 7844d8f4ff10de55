//! `isthmus bench xds --peer istiod`: the same synthetic mesh (services x pods in one cluster,
//! meshNetworks with a gateway) created once through a real kube-apiserver, then Isthmus and
//! istiod each started against it, one after the other on the same cores, and loaded by the
//! same simulated Envoys (state of the world and delta): time to ready, full push to N
//! proxies, control plane CPU, peak RSS, one pod change to every proxy, bytes per proxy, and
//! istiod's figure over ours.
//!
//! The load reaches Isthmus on its TLS xDS port (15012's role: a workload certificate is
//! required) and istiod on its plaintext port (15010's role); the table says so. Each control
//! plane is started fresh for every row, so that its CPU and peak memory are that row's, and
//! only once the API server is quiet ([`settle`]).

use super::istiod;
use super::{control_plane, kubernetes, mb};
use crate::error::BenchError;
use crate::generate::Shape;
use crate::stats::percentile;
use crate::{process, xds};
use isthmus_kube::local::{
    locate_binaries, locate_istio_crds, locate_istiod, LocalCluster, LocalOptions,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `bench xds --peer istiod` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerXdsOptions {
    /// The `isthmus` binary, started as the control plane.
    pub exe: PathBuf,
    /// istiod's `pilot-discovery` (default: found as [`locate_istiod`] finds it).
    pub istiod: Option<PathBuf>,
    /// The Kubernetes binaries (default: found as the lab finds them).
    pub kube_bin: Option<PathBuf>,
    /// Services.
    pub services: u32,
    /// Pods per service.
    pub endpoints: u32,
    /// Simulated proxy counts, one row set each.
    pub proxies: Vec<usize>,
    /// State of the world (`false`) and/or delta (`true`).
    pub modes: Vec<bool>,
    /// One-pod changes timed per row.
    pub changes: u32,
    /// Environment for istiod beyond its chart's (such as `PILOT_MAX_REQUESTS_PER_SECOND`).
    pub istiod_env: Vec<(String, String)>,
    /// Working directory.
    pub work: PathBuf,
}

/// What one control plane measured under one load.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerRow {
    /// Seconds from start to ready.
    pub ready_s: f64,
    /// RSS once ready and settled, MB.
    pub rss_ready_mb: f64,
    /// Seconds until every proxy held every type.
    pub full_s: f64,
    /// Proxies that held every type in time.
    pub proxies_full: usize,
    /// Control plane CPU seconds for the full push.
    pub push_cpu_s: f64,
    /// Peak RSS over the row, MB.
    pub peak_mb: f64,
    /// One pod change to every proxy: median, ms (each side's debounce included).
    pub change_p50_ms: f64,
    /// The same, 99th percentile.
    pub change_p99_ms: f64,
    /// Proxy updates that did not arrive within 60 s of a change.
    pub changes_missed: usize,
    /// KB received per proxy for the full push.
    pub kb_per_proxy: f64,
    /// Streams refused or ended and opened again during the full push.
    pub retried: u64,
}

/// A control plane under measurement.
struct Target {
    pid: u32,
    address: String,
    tls: Option<xds::LoadTls>,
    ready_s: f64,
}

/// Runs every row and prints the tables.
pub fn run(opts: &PeerXdsOptions) -> Result<(), BenchError> {
    if opts.services == 0 || opts.endpoints == 0 || opts.changes == 0 {
        return Err(BenchError::InvalidOptions(
            "--services, --endpoints and --changes must each be at least 1",
        ));
    }
    if opts.proxies.is_empty() || opts.proxies.contains(&0) || opts.modes.is_empty() {
        return Err(BenchError::InvalidOptions(
            "--proxies needs counts of at least 1, and --modes at least one of sotw, delta",
        ));
    }
    tokio::runtime::Runtime::new()?.block_on(measure_all(opts))
}

/// Starts the API server with Istio's CRDs and the mesh of `shape` in it.
pub(super) async fn api_server_with_mesh(
    kube_bin: Option<&std::path::Path>,
    work: &std::path::Path,
    shape: Shape,
) -> Result<(LocalCluster, kube::Client), BenchError> {
    let bin = locate_binaries(kube_bin).map_err(|e| BenchError::Measure(e.to_string()))?;
    let crds = locate_istio_crds().map_err(|e| BenchError::Measure(e.to_string()))?;
    let mut options = LocalOptions::loopback(bin, work.join("kube"));
    options.service_cidr = "10.96.0.0/12".into();
    let cluster = tokio::task::block_in_place(|| LocalCluster::start(options))
        .map_err(|e| BenchError::Measure(e.to_string()))?;
    tokio::task::block_in_place(|| cluster.install_istio_crds(&crds))
        .map_err(|e| BenchError::Measure(format!("installing Istio's CRDs: {e}")))?;
    let client = cluster
        .client()
        .await
        .map_err(|e| BenchError::Measure(e.to_string()))?;
    let loaded = Instant::now();
    let requests =
        kubernetes::load(&client, shape).await? + kubernetes::load_slices(&client, shape).await?;
    println!(
        "API server: {} services x {} pods and their EndpointSlices created with {requests} requests in {:.1}s",
        shape.services,
        shape.endpoints,
        loaded.elapsed().as_secs_f64()
    );
    Ok((cluster, client))
}

async fn measure_all(opts: &PeerXdsOptions) -> Result<(), BenchError> {
    let istiod_bin =
        locate_istiod(opts.istiod.as_deref()).map_err(|e| BenchError::Measure(e.to_string()))?;
    let _ = std::fs::remove_dir_all(&opts.work);
    std::fs::create_dir_all(&opts.work)?;
    let shape = Shape {
        clusters: 1,
        services: opts.services,
        endpoints: opts.endpoints,
    };
    let (cluster, client) =
        api_server_with_mesh(opts.kube_bin.as_deref(), &opts.work, shape).await?;
    let kubeconfig = cluster.kubeconfig_path();
    // Changes come in pairs (a pod leaves, then returns), so that every row starts from the
    // same mesh.
    let changes = opts.changes.next_multiple_of(2);
    let mut tables = Vec::new();
    for &n in &opts.proxies {
        for &delta in &opts.modes {
            let mode = if delta { "delta" } else { "SotW" };
            let label = format!("{n} proxies, {mode}");
            println!("== {label}: Isthmus (xDS over TLS with a workload certificate)");
            let work = opts.work.join(format!("isthmus-{n}-{mode}"));
            std::fs::create_dir_all(&work)?;
            settle(&cluster).await;
            let cp = control_plane::start_kube(&opts.exe, &kubeconfig, &work).await?;
            let target = Target {
                pid: cp.pid(),
                address: format!("127.0.0.1:{}", cp.port),
                tls: Some(cp.load_tls()),
                ready_s: cp.ready_after.as_secs_f64(),
            };
            let ours = measure(&target, n, delta, changes, &client, shape).await?;
            drop(cp);
            release_load_memory().await;
            println!("== {label}: istiod (plaintext xDS, its port 15010)");
            let work = opts.work.join(format!("istiod-{n}-{mode}"));
            settle(&cluster).await;
            let peer = istiod::start(
                &istiod_bin,
                &kubeconfig,
                "cluster1",
                &work,
                &opts.istiod_env,
            )
            .await?;
            let target = Target {
                pid: peer.pid(),
                address: peer.grpc.to_string(),
                tls: None,
                ready_s: peer.ready_after.as_secs_f64(),
            };
            let theirs = measure(&target, n, delta, changes, &client, shape).await?;
            drop(peer);
            release_load_memory().await;
            tables.push(table(&label, shape, &ours, &theirs));
        }
    }
    drop(cluster);
    println!();
    for t in tables {
        for line in t {
            println!("{line}");
        }
        println!();
    }
    Ok(())
}

/// Gives back to the system what the simulated proxies of the last row held, once their
/// streams have ended with the control plane: each proxy buffers its responses whole (as
/// Envoy does), so 1,000 proxies at 10,000 services take several GB at the push's peak, and
/// glibc kept them mapped through the next row (5.2 GB of a 24 GB machine during istiod's
/// row after Isthmus's).
async fn release_load_memory() {
    tokio::time::sleep(Duration::from_secs(2)).await;
    isthmus_control_plane::memory::release_free_memory();
    if let Some((rss, _)) = process::memory(std::process::id()) {
        println!(
            "the simulated proxies' memory released: the bench holds {:.0} MB",
            mb(rss)
        );
    }
}

/// Waits until etcd and kube-apiserver are quiet (together under 5% of a core for three
/// seconds in a row, at most two minutes), so that neither control plane starts against
/// work left over from creating the mesh or from the other's watches. A guard: in the runs
/// recorded in docs/BENCHMARKS.md the API server was always quiet within the minimum 3 s.
pub(super) async fn settle(cluster: &LocalCluster) {
    let pids: Vec<u32> = cluster.pids().into_iter().map(|(_, pid)| pid).collect();
    let cpu = || -> f64 {
        pids.iter()
            .filter_map(|p| process::usage(*p).map(|(cpu, _)| cpu))
            .sum()
    };
    let started = Instant::now();
    let mut quiet = 0;
    let mut last = cpu();
    while quiet < 3 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu();
        quiet = if now - last < 0.05 { quiet + 1 } else { 0 };
        last = now;
    }
    println!(
        "API server settled in {:.0}s{}",
        started.elapsed().as_secs_f64(),
        if quiet < 3 {
            " (still busy after 120 s)"
        } else {
            ""
        }
    );
}

/// Measures one running control plane: settled memory, a full push to `proxies`, then
/// `changes` one-pod changes timed from the API request to every proxy's endpoint update.
async fn measure(
    target: &Target,
    proxies: usize,
    delta: bool,
    changes: u32,
    client: &kube::Client,
    shape: Shape,
) -> Result<PeerRow, BenchError> {
    let pid = target.pid;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut row = PeerRow {
        ready_s: target.ready_s,
        rss_ready_mb: mb(process::memory(pid).map(|(now, _)| now).unwrap_or_default()),
        ..Default::default()
    };
    let (cpu0, _) = process::usage(pid).unwrap_or_default();
    let start = Instant::now();
    let mut load = xds::start(xds::LoadConfig {
        address: target.address.clone(),
        tls: target.tls.clone(),
        proxies,
        delta,
        cluster: "cluster1".into(),
        // As Envoy: a stream refused (istiod limits new streams per second and refuses those
        // that would wait longer than a second) is opened again after a backoff.
        reconnect: true,
        wanted: None,
    });
    let (full, mut version) =
        xds::wait_full(&mut load, proxies, start, Duration::from_secs(900)).await;
    row.proxies_full = full.iter().flatten().count();
    row.full_s = full
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default()
        .as_secs_f64();
    let (cpu1, _) = process::usage(pid).unwrap_or_default();
    row.push_cpu_s = cpu1 - cpu0;
    row.kb_per_proxy =
        load.bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e3 / proxies.max(1) as f64;
    println!(
        "ready in {:.2}s, RSS {:.1} MB; {} of {proxies} proxies hold every type within {:.2}s ({} streams refused and opened again); push CPU {:.2}s; {:.1} KB per proxy",
        row.ready_s, row.rss_ready_mb, row.proxies_full, row.full_s, row.retried, row.push_cpu_s, row.kb_per_proxy
    );
    // Let pushes that follow the connections (istiod pushes again once a proxy's first
    // requests are in) settle before changes are timed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut lat = Vec::new();
    let mut per_change = Vec::new();
    for g in 0..changes {
        while let Ok(e) = load.events.try_recv() {
            if let xds::Event::Endpoints(_, v, _) | xds::Event::Full(_, v, _) = e {
                version = version.max(v);
            }
        }
        let changed_at = Instant::now();
        kubernetes::flip_pod_and_slice(client.clone(), shape, g).await?;
        let answered = changed_at.elapsed();
        let got = xds::wait_endpoints(
            &mut load,
            proxies,
            version,
            changed_at,
            Duration::from_secs(60),
        )
        .await;
        row.changes_missed += got.iter().filter(|d| d.is_none()).count();
        let mut this: Vec<Duration> = got.iter().flatten().copied().collect();
        let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e3);
        per_change.push(
            match (this.iter().min().copied(), this.iter().max().copied()) {
                (Some(first), Some(last)) => format!(
                    "{}/{}/{}/{}",
                    ms(answered),
                    ms(first),
                    ms(percentile(&mut this, 50.0)),
                    ms(last)
                ),
                _ => format!("{}/-/-/- (no proxy updated)", ms(answered)),
            },
        );
        lat.extend(this);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    row.change_p50_ms = percentile(&mut lat, 50.0).as_secs_f64() * 1e3;
    row.change_p99_ms = percentile(&mut lat, 99.0).as_secs_f64() * 1e3;
    row.peak_mb = mb(process::memory(pid)
        .map(|(_, peak)| peak)
        .unwrap_or_default());
    println!(
        "one pod change to every proxy: p50 {:.0} ms, p99 {:.0} ms ({changes} changes, {} updates missed); peak RSS {:.1} MB",
        row.change_p50_ms, row.change_p99_ms, row.changes_missed, row.peak_mb
    );
    println!(
        "each change, ms from the API request: answered / first proxy / p50 / last proxy: {}",
        per_change.join(" ")
    );
    Ok(row)
}

/// `theirs / ours`, as the table prints it ("-" when ours is 0).
fn ratio(ours: f64, theirs: f64) -> String {
    if ours > 0.0 {
        format!("{:.1}x", theirs / ours)
    } else {
        "-".into()
    }
}

/// The markdown table of one row set: one line per figure, Isthmus, istiod and the ratio.
fn table(label: &str, shape: Shape, ours: &PeerRow, theirs: &PeerRow) -> Vec<String> {
    let mut out = vec![
        format!(
            "| {} services x {} pods, {label} | Isthmus (TLS xDS) | istiod (plaintext 15010) | istiod / Isthmus |",
            shape.services, shape.endpoints
        ),
        "|---|---|---|---|".into(),
    ];
    let mut line = |name: &str, f: &dyn Fn(&PeerRow) -> f64, unit: &str, digits: usize| {
        out.push(format!(
            "| {name} | {:.*} {unit} | {:.*} {unit} | {} |",
            digits,
            f(ours),
            digits,
            f(theirs),
            ratio(f(ours), f(theirs))
        ));
    };
    line("time to ready", &|r| r.ready_s, "s", 2);
    line("RSS when ready", &|r| r.rss_ready_mb, "MB", 0);
    line("full push to every proxy", &|r| r.full_s, "s", 2);
    line("control plane CPU for the push", &|r| r.push_cpu_s, "s", 2);
    line("peak RSS", &|r| r.peak_mb, "MB", 0);
    line("one pod change, p50", &|r| r.change_p50_ms, "ms", 0);
    line("one pod change, p99", &|r| r.change_p99_ms, "ms", 0);
    line("KB received per proxy", &|r| r.kb_per_proxy, "KB", 0);
    out.push(format!(
        "| proxies complete / streams retried / updates missed | {} / {} / {} | {} / {} / {} | |",
        ours.proxies_full,
        ours.retried,
        ours.changes_missed,
        theirs.proxies_full,
        theirs.retried,
        theirs.changes_missed
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_divides_istiod_by_isthmus() {
        let ours = PeerRow {
            ready_s: 1.0,
            rss_ready_mb: 40.0,
            full_s: 2.0,
            proxies_full: 100,
            push_cpu_s: 1.5,
            peak_mb: 50.0,
            change_p50_ms: 110.0,
            change_p99_ms: 150.0,
            changes_missed: 0,
            kb_per_proxy: 300.0,
            retried: 0,
        };
        let theirs = PeerRow {
            ready_s: 3.0,
            rss_ready_mb: 400.0,
            full_s: 8.0,
            proxies_full: 99,
            push_cpu_s: 6.0,
            peak_mb: 900.0,
            change_p50_ms: 220.0,
            change_p99_ms: 600.0,
            changes_missed: 2,
            kb_per_proxy: 900.0,
            retried: 40,
        };
        let shape = Shape {
            clusters: 1,
            services: 1000,
            endpoints: 10,
        };
        let t = table("100 proxies, SotW", shape, &ours, &theirs);
        assert_eq!(
            t[0],
            "| 1000 services x 10 pods, 100 proxies, SotW | Isthmus (TLS xDS) | istiod (plaintext 15010) | istiod / Isthmus |"
        );
        assert_eq!(t[2], "| time to ready | 1.00 s | 3.00 s | 3.0x |");
        assert_eq!(
            t[4],
            "| full push to every proxy | 2.00 s | 8.00 s | 4.0x |"
        );
        assert_eq!(t[6], "| peak RSS | 50 MB | 900 MB | 18.0x |");
        assert_eq!(t[8], "| one pod change, p99 | 150 ms | 600 ms | 4.0x |");
        assert_eq!(
            t.last().map(String::as_str),
            Some("| proxies complete / streams retried / updates missed | 100 / 0 / 0 | 99 / 40 / 2 | |")
        );
    }

    #[test]
    fn a_zero_of_ours_is_not_divided_by() {
        assert_eq!(ratio(0.0, 5.0), "-");
        assert_eq!(ratio(2.0, 5.0), "2.5x");
    }
}
