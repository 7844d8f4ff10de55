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
//! that remote clusters' first lists are in). Each count is measured `repeat` times (rounds:
//! the two control planes in turn, the other first every second round; the counts one after
//! another, fewest first), and the table gives each count's medians. One reading moves from
//! run to run: istiod's by several MB (when its collector last ran), Isthmus's by up to half
//! a MB (which pages of its code the kernel has mapped), a quarter of what one remote cluster
//! costs it. Besides the RSS, the table gives its anonymous part (`RssAnon`, the pages that are
//! no file's: what a remote cluster adds is there, and a program's code is not)
//! and the live heap each reports. istiod's heap profile at each reading is kept in that
//! round's working directory, to see by call site what a remote cluster costs it.

use super::istiod;
use super::{control_plane, mb, peer};
use crate::error::BenchError;
use crate::generate::Shape;
use crate::process;
use isthmus_kube::local::{locate_istiod, LocalCluster};
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
    /// How many times each count is measured (at least 1).
    pub repeat: u32,
    /// Working directory.
    pub work: PathBuf,
}

/// What one control plane holds at one cluster count, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reading {
    /// `VmRSS`.
    rss: u64,
    /// `RssAnon`.
    anonymous: u64,
    /// The live heap it reports: `isthmus_heap_in_use_bytes`, istiod's
    /// `go_memstats_heap_inuse_bytes`.
    heap: u64,
}

impl Reading {
    /// Each quantity's median over `readings` (of an even number, the mean of the middle
    /// two); zero for none.
    fn median(readings: &[Reading]) -> Reading {
        let of = |f: fn(&Reading) -> u64| {
            let mut v: Vec<u64> = readings.iter().map(f).collect();
            v.sort_unstable();
            match v.len() {
                0 => 0,
                n if n % 2 == 1 => v[n / 2],
                n => (v[n / 2 - 1] + v[n / 2]) / 2,
            }
        };
        Reading {
            rss: of(|r| r.rss),
            anonymous: of(|r| r.anonymous),
            heap: of(|r| r.heap),
        }
    }
}

/// Both control planes at one cluster count (each the median of its readings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    clusters: u32,
    ours: Reading,
    theirs: Reading,
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
    if opts.repeat == 0 {
        return Err(BenchError::InvalidOptions("--repeat must be at least 1"));
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
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 1..=opts.repeat {
            // In turn, and the other first every second round: whatever going first or
            // second does (the API server's caches, the machine's drift over a round) falls
            // on both sides.
            let (our, their) = if round % 2 == 1 {
                let our = measure_isthmus(opts, &cluster, &kubeconfig_path, c, round).await?;
                let their =
                    measure_istiod(opts, &cluster, &istiod_bin, &kubeconfig_path, c, round).await?;
                (our, their)
            } else {
                let their =
                    measure_istiod(opts, &cluster, &istiod_bin, &kubeconfig_path, c, round).await?;
                let our = measure_isthmus(opts, &cluster, &kubeconfig_path, c, round).await?;
                (our, their)
            };
            println!(
                "{c} clusters of {per_cluster} endpoints, round {round} of {}: Isthmus RSS {:.1} MB (anonymous {:.1} MB, heap in use {:.1} MB), istiod RSS {:.1} MB (anonymous {:.1} MB, Go heap in use {:.1} MB)",
                opts.repeat,
                mb(our.rss),
                mb(our.anonymous),
                mb(our.heap),
                mb(their.rss),
                mb(their.anonymous),
                mb(their.heap)
            );
            ours.push(our);
            theirs.push(their);
        }
        rows.push(Row {
            clusters: c,
            ours: Reading::median(&ours),
            theirs: Reading::median(&theirs),
        });
    }
    drop(cluster);
    println!();
    for line in table(&rows, per_cluster, opts.repeat) {
        println!("{line}");
    }
    println!(
        "istiod's heap profile at each reading: {}/istiod-CLUSTERS-ROUND/{ISTIOD_HEAP_PROFILE} (by call site: `go tool pprof -top -base ONE pilot-discovery OTHER`; the net growth is the difference of their own totals)",
        opts.work.display()
    );
    Ok(())
}

/// Isthmus's control plane started afresh on the API server (round `round` at `clusters`
/// clusters), and what it holds once settled.
async fn measure_isthmus(
    opts: &PeerMemoryOptions,
    cluster: &LocalCluster,
    kubeconfig: &std::path::Path,
    clusters: u32,
    round: u32,
) -> Result<Reading, BenchError> {
    let work = opts.work.join(format!("isthmus-{clusters}-{round}"));
    std::fs::create_dir_all(&work)?;
    peer::settle(cluster).await;
    let cp = control_plane::start_kube(&opts.exe, kubeconfig, &work).await?;
    let mut reading = settled(cp.pid()).await?;
    reading.heap = metric(cp.monitoring, "isthmus_heap_in_use_bytes");
    Ok(reading)
}

/// istiod started afresh on the API server (round `round` at `clusters` clusters), and what
/// it holds once settled.
async fn measure_istiod(
    opts: &PeerMemoryOptions,
    cluster: &LocalCluster,
    istiod_bin: &std::path::Path,
    kubeconfig: &std::path::Path,
    clusters: u32,
    round: u32,
) -> Result<Reading, BenchError> {
    peer::settle(cluster).await;
    let work = opts.work.join(format!("istiod-{clusters}-{round}"));
    let peer = istiod::start(istiod_bin, kubeconfig, "cluster1", &work, &[]).await?;
    let mut reading = settled(peer.pid()).await?;
    reading.heap = metric(peer.monitoring, "go_memstats_heap_inuse_bytes");
    save_heap_profile(peer.http, &work.join(ISTIOD_HEAP_PROFILE))?;
    Ok(reading)
}

/// The file in each istiod round's working directory that holds its heap profile at the
/// reading.
const ISTIOD_HEAP_PROFILE: &str = "heap.txt";

/// Saves istiod's heap profile (`/debug/pprof/heap?debug=1`, its text form) to `to`, so that
/// what one remote cluster costs it can be read by call site
/// (`go tool pprof -top -sample_index=inuse_space -base istiod-1-1/heap.txt pilot-discovery
/// istiod-5-1/heap.txt`; with `-base`, pprof's "total" adds up what grew and what shrank, so
/// the net growth is the difference of the two profiles' own totals).
fn save_heap_profile(http: std::net::SocketAddr, to: &std::path::Path) -> Result<(), BenchError> {
    let url = format!("http://{http}{ISTIOD_HEAP_PROFILE_PATH}");
    match isthmus_lab::http::get(http, ISTIOD_HEAP_PROFILE_PATH) {
        Ok((200, body)) => std::fs::write(to, body).map_err(|e| {
            BenchError::Measure(format!(
                "writing istiod's heap profile to {}: {e}",
                to.display()
            ))
        }),
        Ok((code, body)) => Err(BenchError::Measure(format!(
            "istiod's heap profile ({url}): HTTP {code}: {}",
            body.lines().next().unwrap_or_default()
        ))),
        Err(e) => Err(BenchError::Measure(format!(
            "istiod's heap profile ({url}): {e}"
        ))),
    }
}

/// Where istiod serves its heap profile, in text.
const ISTIOD_HEAP_PROFILE_PATH: &str = "/debug/pprof/heap?debug=1";

/// What `pid` holds once it has settled: at least 5 s, then until its RSS moved less than
/// 1 MB over 3 s (at most 120 s). The heap is left to the caller.
async fn settled(pid: u32) -> Result<Reading, BenchError> {
    let start = Instant::now();
    let mut window: Vec<u64> = Vec::new();
    loop {
        let Some(resident) = process::resident(pid) else {
            return Err(BenchError::ProcStatus(pid));
        };
        let rss = resident.rss;
        window.push(rss);
        if window.len() > 6 {
            window.remove(0);
        }
        let spread = window.iter().max().unwrap_or(&0) - window.iter().min().unwrap_or(&0);
        let waited = start.elapsed();
        if (waited >= Duration::from_secs(5) && window.len() == 6 && spread < 1_000_000)
            || waited > Duration::from_secs(120)
        {
            let anonymous = resident.anonymous.ok_or_else(|| {
                BenchError::Measure(format!(
                    "/proc/{pid}/status has no RssAnon line (Linux 4.5 and later give it)"
                ))
            })?;
            return Ok(Reading {
                rss,
                anonymous,
                heap: 0,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The table (each count's medians over `repeat` rounds), then what one remote cluster costs
/// each (from the fewest clusters to the most) and the ratio, in RSS, in its anonymous part
/// and in live heap. A cost that came out negative (a control plane that held less with more
/// clusters) is printed as it is, with no ratio.
fn table(rows: &[Row], per_cluster: u64, repeat: u32) -> Vec<String> {
    let of = if repeat > 1 {
        format!(" (medians of {repeat})")
    } else {
        String::new()
    };
    let mut out = vec![
        format!("| clusters of {per_cluster} endpoints{of} | Isthmus RSS | istiod RSS | istiod / Isthmus | Isthmus anonymous | istiod anonymous | istiod / Isthmus | Isthmus heap in use | istiod Go heap in use | istiod / Isthmus |"),
        "|---|---|---|---|---|---|---|---|---|---|".into(),
    ];
    let ratio = |ours: f64, theirs: f64| {
        if ours > 0.0 {
            format!("{:.1}x", theirs / ours)
        } else {
            "-".into()
        }
    };
    let cells = |ours: [f64; 3], theirs: [f64; 3]| {
        (0..3)
            .map(|i| {
                format!(
                    "{:.1} MB | {:.1} MB | {}",
                    ours[i] / 1e6,
                    theirs[i] / 1e6,
                    ratio(ours[i], theirs[i])
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let parts = |r: &Reading| [r.rss as f64, r.anonymous as f64, r.heap as f64];
    for r in rows {
        out.push(format!(
            "| {} | {} |",
            r.clusters,
            cells(parts(&r.ours), parts(&r.theirs))
        ));
    }
    let first = rows.iter().min_by_key(|r| r.clusters);
    let last = rows.iter().max_by_key(|r| r.clusters);
    if let (Some(a), Some(b)) = (first, last) {
        if b.clusters > a.clusters {
            let added = f64::from(b.clusters - a.clusters);
            let per = |x: &Reading, y: &Reading| {
                let (x, y) = (parts(x), parts(y));
                [0, 1, 2].map(|i| (y[i] - x[i]) / added)
            };
            out.push(format!(
                "| per remote cluster (mean over {added} added) | {} |",
                cells(per(&a.ours, &b.ours), per(&a.theirs, &b.theirs))
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

    /// A one-request HTTP server on loopback that answers `status` with `body`; returns its
    /// address and the request it got.
    fn answering(
        status: &str,
        body: &'static str,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let status = status.to_string();
        let served = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut request = vec![0; 1024];
            let n = conn.read(&mut request).expect("request");
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).expect("answer");
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        (addr, served)
    }

    #[test]
    fn istiods_heap_profile_is_saved_as_it_answers() {
        let dir = std::env::temp_dir().join(format!("isthmus-heap-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let to = dir.join(ISTIOD_HEAP_PROFILE);
        let profile = "heap profile: 1: 2 [3: 4] @ heap/1048576\n";
        let (addr, served) = answering("200 OK", profile);
        save_heap_profile(addr, &to).expect("saved");
        let request = served.join().expect("server");
        assert!(
            request.starts_with("GET /debug/pprof/heap?debug=1 HTTP/1.1"),
            "{request}"
        );
        assert_eq!(std::fs::read_to_string(&to).expect("file"), profile);

        // An answer that is not the profile is an error naming the address, the status and
        // what istiod said, and leaves no file behind.
        std::fs::remove_file(&to).expect("removed");
        let (addr, served) = answering("404 Not Found", "404 page not found\n");
        let err = save_heap_profile(addr, &to)
            .expect_err("refused")
            .to_string();
        served.join().expect("server");
        assert!(
            err.contains(&format!("http://{addr}/debug/pprof/heap?debug=1")),
            "{err}"
        );
        assert!(err.contains("HTTP 404: 404 page not found"), "{err}");
        assert!(!to.exists());

        // Nothing listening: the error names where it asked.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a port");
        let err = save_heap_profile(closed, &to)
            .expect_err("no server")
            .to_string();
        assert!(
            err.contains(&format!("http://{closed}/debug/pprof/heap")),
            "{err}"
        );
        assert!(!to.exists());

        // A file that cannot be written is named.
        let (addr, served) = answering("200 OK", profile);
        let nowhere = dir.join("missing").join(ISTIOD_HEAP_PROFILE);
        let err = save_heap_profile(addr, &nowhere)
            .expect_err("unwritable")
            .to_string();
        served.join().expect("server");
        assert!(err.contains(&nowhere.display().to_string()), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn reading(rss: u64, anonymous: u64, heap: u64) -> Reading {
        Reading {
            rss,
            anonymous,
            heap,
        }
    }

    #[test]
    fn each_quantity_is_its_own_median() {
        // Each quantity sorts in another order: the median is no single reading's.
        let r = [reading(30, 2, 7), reading(10, 3, 8), reading(20, 1, 9)];
        assert_eq!(Reading::median(&r), reading(20, 2, 8));
        assert_eq!(
            Reading::median(&r[..2]),
            reading(20, 2, 7),
            "each quantity's middle two's mean"
        );
        assert_eq!(Reading::median(&r[..1]), r[0]);
        assert_eq!(Reading::median(&[]), Reading::default());
    }

    #[test]
    fn a_remote_cluster_costs_the_mean_over_those_added() {
        let rows = [
            Row {
                clusters: 1,
                ours: reading(50_000_000, 40_000_000, 10_000_000),
                theirs: reading(150_000_000, 120_000_000, 60_000_000),
            },
            Row {
                clusters: 3,
                ours: reading(54_000_000, 43_000_000, 12_000_000),
                theirs: reading(510_000_000, 480_000_000, 100_000_000),
            },
        ];
        let t = table(&rows, 4000, 3);
        assert!(t[0].starts_with(
            "| clusters of 4000 endpoints (medians of 3) | Isthmus RSS | istiod RSS | istiod / Isthmus | Isthmus anonymous |"
        ));
        assert_eq!(
            t[2],
            "| 1 | 50.0 MB | 150.0 MB | 3.0x | 40.0 MB | 120.0 MB | 3.0x | 10.0 MB | 60.0 MB | 6.0x |"
        );
        assert_eq!(
            t[4],
            "| per remote cluster (mean over 2 added) | 2.0 MB | 180.0 MB | 90.0x | 1.5 MB | 180.0 MB | 120.0x | 1.0 MB | 20.0 MB | 20.0x |"
        );
        assert_eq!(table(&rows[..1], 4000, 3).len(), 3, "one count: no slope");
        assert!(
            table(&rows, 4000, 1)[0].starts_with("| clusters of 4000 endpoints | "),
            "one round: no medians"
        );
        let mut shrank = rows;
        shrank[1].ours.heap = 9_000_000;
        assert!(
            table(&shrank, 4000, 3)[4].ends_with("| -0.5 MB | 20.0 MB | - |"),
            "a control plane that held less with more clusters: as measured, and no ratio"
        );
    }
}
