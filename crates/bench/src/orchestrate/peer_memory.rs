//! `isthmus bench memory --peer istiod`: resident memory against the number of remote
//! clusters, Isthmus and istiod, both reading a real kube-apiserver. The API server holds one
//! cluster's mesh (services x pods and their EndpointSlices); each remote cluster is a
//! credential Secret in istio-system (label `istio/multiCluster=true`, one kubeconfig, as
//! `istioctl create-remote-secret` writes) naming that same API server under another cluster
//! id. Each control plane then reads the mesh once per cluster, with its own watches and
//! caches, which is what a remote cluster costs it; only the API server is shared.
//!
//! For each cluster count, each control plane is started fresh, its `/ready` awaited, and its
//! RSS read once it has settled (unchanged within 1 MB for 3 s, at least 5 s after ready, so
//! that remote clusters' first lists are in).

use super::istiod;
use super::{control_plane, mb, peer};
use crate::error::BenchError;
use crate::generate::Shape;
use crate::process;
use isthmus_kube::local::locate_istiod;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `bench memory --peer istiod` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMemoryOptions {
    /// The `isthmus` binary, started as the control plane.
    pub exe: PathBuf,
    /// istiod's `pilot-discovery` (default: found as [`locate_istiod`] finds it).
    pub istiod: Option<PathBuf>,
    /// The Kubernetes binaries (default: found as the lab finds them).
    pub kube_bin: Option<PathBuf>,
    /// Services per cluster.
    pub services: u32,
    /// Pods per service.
    pub endpoints: u32,
    /// Cluster counts (the control plane's own included).
    pub clusters: Vec<u32>,
    /// Working directory.
    pub work: PathBuf,
}

/// RSS of both at one cluster count, and the live heap each reports, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    clusters: u32,
    ours: u64,
    theirs: u64,
    /// `isthmus_heap_in_use_bytes`.
    ours_heap: u64,
    /// istiod's `go_memstats_heap_inuse_bytes`.
    theirs_heap: u64,
}

/// The value of metric `name` (no labels) on `addr`'s `/metrics`, or 0.
fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    isthmus_lab::http::get(addr, "/metrics")
        .ok()
        .and_then(|(_, body)| {
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Runs the measurement and prints the table.
pub fn run(opts: &PeerMemoryOptions) -> Result<(), BenchError> {
    if opts.clusters.is_empty() || opts.clusters.contains(&0) {
        return Err(BenchError::InvalidOptions(
            "--clusters: give counts of at least 1 (the control plane's own cluster)",
        ));
    }
    if opts.services == 0 || opts.endpoints == 0 {
        return Err(BenchError::InvalidOptions(
            "--services and --endpoints must each be at least 1",
        ));
    }
    tokio::runtime::Runtime::new()?.block_on(measure_all(opts))
}

/// The credential Secret naming `cluster` with `kubeconfig`, as istioctl writes it.
fn credential(cluster: &str, kubeconfig: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("istio-remote-secret-{cluster}"),
            "namespace": "istio-system",
            "labels": {"istio/multiCluster": "true"},
            "annotations": {"networking.istio.io/cluster": cluster},
        },
        "stringData": {cluster: kubeconfig},
    })
}

async fn measure_all(opts: &PeerMemoryOptions) -> Result<(), BenchError> {
    let istiod_bin =
        locate_istiod(opts.istiod.as_deref()).map_err(|e| BenchError::Measure(e.to_string()))?;
    let _ = std::fs::remove_dir_all(&opts.work);
    std::fs::create_dir_all(&opts.work)?;
    let shape = Shape {
        clusters: 1,
        services: opts.services,
        endpoints: opts.endpoints,
    };
    let per_cluster = shape.total_endpoints();
    let (cluster, client) =
        peer::api_server_with_mesh(opts.kube_bin.as_deref(), &opts.work, shape).await?;
    let kubeconfig_path = cluster.kubeconfig_path();
    let kubeconfig = cluster.kubeconfig(std::net::IpAddr::from([127, 0, 0, 1]));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "istio-system");
    let mut counts = opts.clusters.clone();
    counts.sort_unstable();
    counts.dedup();
    let mut linked = 1;
    let mut rows = Vec::new();
    for &c in &counts {
        while linked < c {
            linked += 1;
            let secret: Secret =
                serde_json::from_value(credential(&format!("cluster{linked}"), &kubeconfig))
                    .map_err(|e| BenchError::Measure(e.to_string()))?;
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .map_err(|e| BenchError::Measure(format!("credential secret: {e}")))?;
        }
        let work = opts.work.join(format!("isthmus-{c}"));
        std::fs::create_dir_all(&work)?;
        peer::settle(&cluster).await;
        let cp = control_plane::start_kube(&opts.exe, &kubeconfig_path, &work).await?;
        let ours = settled(cp.pid()).await?;
        let ours_heap = metric(cp.monitoring, "isthmus_heap_in_use_bytes");
        drop(cp);
        peer::settle(&cluster).await;
        let peer = istiod::start(
            &istiod_bin,
            &kubeconfig_path,
            "cluster1",
            &opts.work.join(format!("istiod-{c}")),
            &[],
        )
        .await?;
        let theirs = settled(peer.pid()).await?;
        let theirs_heap = metric(peer.monitoring, "go_memstats_heap_inuse_bytes");
        drop(peer);
        println!(
            "{c} clusters of {per_cluster} endpoints: Isthmus RSS {:.1} MB (heap in use {:.1} MB), istiod RSS {:.1} MB (Go heap in use {:.1} MB)",
            mb(ours),
            mb(ours_heap),
            mb(theirs),
            mb(theirs_heap)
        );
        rows.push(Row {
            clusters: c,
            ours,
            theirs,
            ours_heap,
            theirs_heap,
        });
    }
    drop(cluster);
    println!();
    for line in table(&rows, per_cluster) {
        println!("{line}");
    }
    Ok(())
}

/// The RSS of `pid` once it has settled: at least 5 s, then until it moved less than 1 MB
/// over 3 s (at most 120 s).
async fn settled(pid: u32) -> Result<u64, BenchError> {
    let start = Instant::now();
    let mut window: Vec<u64> = Vec::new();
    loop {
        let Some((rss, _)) = process::memory(pid) else {
            return Err(BenchError::ProcStatus(pid));
        };
        window.push(rss);
        if window.len() > 6 {
            window.remove(0);
        }
        let spread = window.iter().max().unwrap_or(&0) - window.iter().min().unwrap_or(&0);
        let waited = start.elapsed();
        if (waited >= Duration::from_secs(5) && window.len() == 6 && spread < 1_000_000)
            || waited > Duration::from_secs(120)
        {
            return Ok(rss);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The table, then what one remote cluster costs each (from the fewest clusters to the
/// most) and the ratio, in RSS and in live heap.
fn table(rows: &[Row], per_cluster: u64) -> Vec<String> {
    let mut out = vec![
        format!("| clusters of {per_cluster} endpoints | Isthmus RSS | istiod RSS | istiod / Isthmus | Isthmus heap in use | istiod Go heap in use | istiod / Isthmus |"),
        "|---|---|---|---|---|---|---|".into(),
    ];
    let ratio = |ours: f64, theirs: f64| {
        if ours > 0.0 {
            format!("{:.1}x", theirs / ours)
        } else {
            "-".into()
        }
    };
    for r in rows {
        out.push(format!(
            "| {} | {:.1} MB | {:.1} MB | {} | {:.1} MB | {:.1} MB | {} |",
            r.clusters,
            mb(r.ours),
            mb(r.theirs),
            ratio(r.ours as f64, r.theirs as f64),
            mb(r.ours_heap),
            mb(r.theirs_heap),
            ratio(r.ours_heap as f64, r.theirs_heap as f64),
        ));
    }
    let first = rows.iter().min_by_key(|r| r.clusters);
    let last = rows.iter().max_by_key(|r| r.clusters);
    if let (Some(a), Some(b)) = (first, last) {
        if b.clusters > a.clusters {
            let added = f64::from(b.clusters - a.clusters);
            let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / added;
            let (ours, theirs) = (per(a.ours, b.ours), per(a.theirs, b.theirs));
            let (ours_heap, theirs_heap) = (
                per(a.ours_heap, b.ours_heap),
                per(a.theirs_heap, b.theirs_heap),
            );
            out.push(format!(
                "| per remote cluster (mean over {added} added) | {:.1} MB | {:.1} MB | {} | {:.1} MB | {:.1} MB | {} |",
                ours / 1e6,
                theirs / 1e6,
                ratio(ours, theirs),
                ours_heap / 1e6,
                theirs_heap / 1e6,
                ratio(ours_heap, theirs_heap),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_is_the_one_istioctl_writes() {
        let s = credential("cluster3", "apiVersion: v1\n");
        assert_eq!(s["metadata"]["namespace"], "istio-system");
        assert_eq!(s["metadata"]["labels"]["istio/multiCluster"], "true");
        assert_eq!(
            s["metadata"]["annotations"]["networking.istio.io/cluster"],
            "cluster3"
        );
        assert_eq!(s["stringData"]["cluster3"], "apiVersion: v1\n");
        let _: Secret = serde_json::from_value(s).expect("a Secret");
    }

    #[test]
    fn a_remote_cluster_costs_the_mean_over_those_added() {
        let rows = [
            Row {
                clusters: 1,
                ours: 50_000_000,
                theirs: 150_000_000,
                ours_heap: 10_000_000,
                theirs_heap: 60_000_000,
            },
            Row {
                clusters: 3,
                ours: 54_000_000,
                theirs: 510_000_000,
                ours_heap: 12_000_000,
                theirs_heap: 100_000_000,
            },
        ];
        let t = table(&rows, 4000);
        assert!(t[0].starts_with("| clusters of 4000 endpoints | Isthmus RSS | istiod RSS |"));
        assert_eq!(
            t[2],
            "| 1 | 50.0 MB | 150.0 MB | 3.0x | 10.0 MB | 60.0 MB | 6.0x |"
        );
        assert_eq!(
            t[4],
            "| per remote cluster (mean over 2 added) | 2.0 MB | 180.0 MB | 90.0x | 1.0 MB | 20.0 MB | 20.0x |"
        );
        assert_eq!(table(&rows[..1], 4000).len(), 3, "one count: no slope");
    }
}
