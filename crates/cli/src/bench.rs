//! `isthmus bench ...`: benchmarks that print numbers (docs/BENCHMARKS.md records them).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use isthmus_bench::generate::{self, Shape};
use isthmus_bench::stats::{ms, percentile};
use isthmus_bench::xds;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The size of the synthetic mesh.
#[derive(Args, Debug, Clone)]
pub struct ShapeArgs {
    /// Clusters (cluster1 is the control plane's; the others are read as remote registries
    /// on their own networks).
    #[arg(long, default_value_t = 5)]
    clusters: u32,
    /// Services, each present in every cluster.
    #[arg(long, default_value_t = 2000)]
    services: u32,
    /// Endpoints per service per cluster.
    #[arg(long, default_value_t = 10)]
    endpoints: u32,
}

impl ShapeArgs {
    fn shape(&self) -> Shape {
        Shape {
            clusters: self.clusters,
            services: self.services,
            endpoints: self.endpoints,
        }
    }
}

/// Benchmarks.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Write a synthetic mesh (C clusters x S services x E endpoints) as registry files.
    Generate {
        #[command(flatten)]
        shape: ShapeArgs,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Start a control plane on a synthetic mesh and connect N simulated Envoys: time to
    /// full config, bytes, control plane CPU and memory, then one endpoint change.
    Xds {
        #[command(flatten)]
        shape: ShapeArgs,
        /// Simulated proxies.
        #[arg(long, default_value_t = 100)]
        proxies: usize,
        /// Delta xDS instead of state of the world.
        #[arg(long)]
        delta: bool,
        /// Then one endpoint change per second for this many seconds.
        #[arg(long, default_value_t = 0)]
        churn_seconds: u32,
        /// Add a Sidecar in the proxies' namespace (ns-0) limiting them to its own services
        /// (`egress.hosts: ./*`), as a platform team would.
        #[arg(long)]
        sidecar_scope: bool,
        /// Working directory (mesh, certificates, logs).
        #[arg(long, default_value = "/tmp/isthmus-bench")]
        work: PathBuf,
    },
    /// Run `xds` at several mesh sizes and proxy counts; print a table and draw the cost
    /// curves as SVG.
    Sweep {
        /// Service counts (one cluster, 10 endpoints each).
        #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000")]
        services: Vec<u32>,
        /// Proxy counts.
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        proxies: Vec<usize>,
        /// Where to write the charts (`xds-full-push.svg`, `xds-memory.svg`).
        #[arg(long, default_value = "docs/bench")]
        out: PathBuf,
        /// Working directory.
        #[arg(long, default_value = "/tmp/isthmus-bench-sweep")]
        work: PathBuf,
    },
    /// The control plane's memory against the mesh it serves, before any proxy connects:
    /// RSS per mesh size, what one more remote cluster adds, and bytes per endpoint.
    Memory {
        /// Services per cluster (one series each).
        #[arg(long, value_delimiter = ',', default_value = "400,2000")]
        services: Vec<u32>,
        /// Cluster counts.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3,5")]
        clusters: Vec<u32>,
        /// Endpoints per service per cluster.
        #[arg(long, default_value_t = 10)]
        endpoints: u32,
        /// Endpoints per service of one more mesh, the largest again with more endpoints
        /// in the same services: what one more endpoint costs without the services it
        /// would otherwise bring (0: skip).
        #[arg(long, default_value_t = 20)]
        more_endpoints: u32,
        /// Working directory.
        #[arg(long, default_value = "/tmp/isthmus-bench-memory")]
        work: PathBuf,
        /// Where to write the chart (`cp-memory-per-endpoint.svg`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// dnsperf against the mesh DNS and, with the same names, against unbound (one thread
    /// each): queries/s and latency, side by side.
    Dns {
        /// Names in the table.
        #[arg(long, default_value_t = 10000)]
        names: u32,
        /// Seconds per server.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// dnsperf clients.
        #[arg(long, default_value_t = 4)]
        clients: u32,
    },
    /// (inside a pod) N sequential GETs, timed; prints `p50 p90 p99` in microseconds.
    Http {
        /// IP:PORT to connect to.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// Host header.
        #[arg(long)]
        host: String,
        /// Path.
        #[arg(long, default_value = "/ip")]
        path: String,
        /// Requests.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// A new TCP connection for every request.
        #[arg(long)]
        new_connections: bool,
        /// Open loop instead: this many requests per second (prints p50 p90 p99 in
        /// microseconds, then completed requests per second and errors).
        #[arg(long)]
        rate: Option<f64>,
        /// Seconds of open-loop load.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Kept-alive connections for open-loop load.
        #[arg(long, default_value_t = 8)]
        connections: usize,
    },
    /// Data path in the lab: latency of sleep -> sidecar -> cluster2's gateway -> httpbin's
    /// sidecar -> httpbin against httpbin called directly inside its pod; kept-alive and
    /// new connections. Needs root; brings up and removes its own lab.
    Datapath {
        /// Requests per measurement.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// State directory for the lab.
        #[arg(long, default_value = "/tmp/isthmus-bench-datapath")]
        state: PathBuf,
    },
    /// Real Envoy applying the generated configuration: time until LIVE with every cluster
    /// warm, per service count, with and without Sidecar scoping. Needs root (runs in a
    /// network namespace of its own) and Envoy.
    Envoy {
        /// Service counts (one cluster).
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        services: Vec<u32>,
        /// Endpoints per service.
        #[arg(long, default_value_t = 2)]
        endpoints: u32,
        /// Envoy binary (default: `envoy` on PATH, then .venv/bin/envoy).
        #[arg(long, env = "ISTHMUS_ENVOY")]
        envoy: Option<PathBuf>,
        /// Working directory.
        #[arg(long, default_value = "/tmp/isthmus-bench-envoy")]
        work: PathBuf,
        /// Where to write the charts (`envoy-apply.svg`, `envoy-memory.svg`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Workload certificates signed per second beside raw ECDSA P-256 signatures.
    Ca {
        /// Certificates to sign.
        #[arg(long, default_value_t = 2000)]
        count: u32,
    },
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Generate { shape, out } => {
            let start = Instant::now();
            let w = generate::write(&out, shape.shape())?;
            println!(
                "wrote {} objects ({:.1} MB) for {} clusters in {:.2}s under {}",
                w.objects,
                w.bytes as f64 / 1e6,
                w.registries.len(),
                start.elapsed().as_secs_f64(),
                out.display()
            );
        }
        BenchCommand::Sweep {
            services,
            proxies,
            out,
            work,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            let mut rows = Vec::new();
            for &n in &proxies {
                for &svc in &services {
                    println!("== {svc} services, {n} proxies");
                    let shape = Shape {
                        clusters: 1,
                        services: svc,
                        endpoints: 10,
                    };
                    let r = rt.block_on(xds_bench(shape, n, false, 0, &work))?;
                    rows.push((svc, n, r));
                }
            }
            println!("\n| services | proxies | CP ready | RSS ready | full push | MB/proxy | push CPU | peak RSS | 1 change p50 / p99 |");
            println!("|---|---|---|---|---|---|---|---|---|");
            for (svc, n, r) in &rows {
                println!(
                    "| {svc} | {n} | {:.2} s | {:.0} MB | {:.2} s | {:.2} | {:.2} s | {:.0} MB | {:.0} / {:.0} ms |",
                    r.ready_s, r.rss_ready_mb, r.full_s, r.mb_per_proxy, r.push_cpu_s, r.rss_peak_mb, r.change_p50_ms, r.change_p99_ms
                );
            }
            std::fs::create_dir_all(&out)?;
            let series = |f: &dyn Fn(&XdsResult) -> f64| -> Vec<isthmus_bench::svg::Series> {
                proxies
                    .iter()
                    .map(|&n| isthmus_bench::svg::Series {
                        name: format!("{n} proxies"),
                        points: rows
                            .iter()
                            .filter(|(_, p, _)| *p == n)
                            .map(|(s, _, r)| (f64::from(*s), f(r)))
                            .collect(),
                    })
                    .collect()
            };
            let full = isthmus_bench::svg::line_chart(
                "Time until every proxy holds the full config",
                "services (x10 endpoints)",
                "seconds",
                &series(&|r| r.full_s),
            );
            std::fs::write(out.join("xds-full-push.svg"), full)?;
            let mem = isthmus_bench::svg::line_chart(
                "Control plane peak RSS",
                "services (x10 endpoints)",
                "MB",
                &series(&|r| r.rss_peak_mb),
            );
            std::fs::write(out.join("xds-memory.svg"), mem)?;
            println!("charts written to {}", out.display());
        }
        BenchCommand::Dns {
            names,
            seconds,
            clients,
        } => {
            let (ours, peer) =
                isthmus_bench::dns::run(names, seconds, clients).map_err(anyhow::Error::msg)?;
            println!("| server | queries/s | p50 | p99 | sent | lost |");
            println!("|---|---|---|---|---|---|");
            for (name, f) in [
                ("isthmus mesh DNS (UDP fast path)", &ours),
                ("unbound (local-data)", &peer),
            ] {
                println!(
                    "| {name} | {:.0} | {} | {} | {} | {} |",
                    f.qps,
                    ms(f.p50),
                    ms(f.p99),
                    f.sent,
                    f.lost
                );
            }
            println!(
                "ratio: {:.2}x the peer's rate",
                ours.qps / peer.qps.max(1.0)
            );
        }
        BenchCommand::Http {
            addr,
            host,
            path,
            requests: _,
            new_connections: _,
            rate: Some(rate),
            seconds,
            connections,
        } => {
            let mut r = isthmus_bench::http_latency::run_rate(
                addr,
                &host,
                &path,
                rate,
                seconds,
                connections,
            )
            .map_err(anyhow::Error::msg)?;
            let us = |d: Duration| d.as_micros();
            let throughput = r.throughput();
            println!(
                "{} {} {} {:.0} {}",
                us(percentile(&mut r.latencies, 50.0)),
                us(percentile(&mut r.latencies, 90.0)),
                us(percentile(&mut r.latencies, 99.0)),
                throughput,
                r.errors
            );
        }
        BenchCommand::Http {
            addr,
            host,
            path,
            requests,
            new_connections,
            rate: None,
            ..
        } => {
            let mut lat =
                isthmus_bench::http_latency::run(addr, &host, &path, requests, new_connections)
                    .map_err(anyhow::Error::msg)?;
            let us = |d: Duration| d.as_micros();
            println!(
                "{} {} {}",
                us(percentile(&mut lat, 50.0)),
                us(percentile(&mut lat, 90.0)),
                us(percentile(&mut lat, 99.0))
            );
        }
        BenchCommand::Datapath { requests, state } => datapath(requests, &state)?,
        BenchCommand::Memory {
            services,
            clusters,
            endpoints,
            more_endpoints,
            work,
            out,
        } => tokio::runtime::Runtime::new()?.block_on(crate::bench_memory::run(
            &services,
            &clusters,
            (endpoints, more_endpoints),
            &work,
            out.as_deref(),
        ))?,
        BenchCommand::Envoy {
            services,
            endpoints,
            envoy,
            work,
            out,
        } => crate::bench_envoy::run(&services, endpoints, &work, envoy, out.as_deref())?,
        BenchCommand::Ca { count } => {
            let r = isthmus_bench::ca::run(count).map_err(anyhow::Error::msg)?;
            println!(
                "CA: {} workload certificates in {:.2}s = {:.0} certificates/s",
                r.certificates,
                r.sign_time.as_secs_f64(),
                r.certs_per_sec()
            );
            println!(
                "ring ECDSA P-256: {} signatures in {:.2}s = {:.0} signatures/s",
                r.signatures,
                r.raw_time.as_secs_f64(),
                r.sigs_per_sec()
            );
            println!(
                "ratio: the CA signs at {:.0}% of the raw signature rate",
                100.0 * r.certs_per_sec() / r.sigs_per_sec()
            );
        }
        BenchCommand::Xds {
            shape,
            proxies,
            delta,
            churn_seconds,
            sidecar_scope,
            work,
        } => {
            SCOPED.store(sidecar_scope, std::sync::atomic::Ordering::Relaxed);
            tokio::runtime::Runtime::new()?.block_on(xds_bench(
                shape.shape(),
                proxies,
                delta,
                churn_seconds,
                &work,
            ))?;
        }
    }
    Ok(())
}

/// A control plane started by a benchmark on a synthetic mesh; killed when dropped.
pub(crate) struct BenchControlPlane {
    child: Killed,
    /// Its xDS port on 127.0.0.1.
    port: u16,
    /// The mesh root certificate (PEM) its proxies trust.
    root_pem: String,
    /// When it was started.
    started: Instant,
}

impl BenchControlPlane {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// Starts a control plane (cluster1's, on network1) reading every registry of `written`,
/// with a fresh CA under `work`, and waits until it reports ready (its first snapshot is
/// built).
pub(crate) async fn start_control_plane(
    written: &generate::Written,
    work: &Path,
) -> Result<BenchControlPlane> {
    let ca = work.join("ca");
    let _ = std::fs::remove_dir_all(&ca);
    isthmus_ca::create_root(&ca.join("root"))?;
    isthmus_ca::create_intermediate(&ca.join("root"), "cluster1", &ca.join("cluster1"))?;
    let root_pem = std::fs::read_to_string(ca.join("root/root-cert.pem"))?;
    let (port, mon) = (free_port()?, free_port()?);
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "control-plane",
        "--cluster",
        "cluster1",
        "--network",
        "network1",
    ]);
    for (name, dir) in &written.registries {
        cmd.arg("--registry")
            .arg(format!("{name}={}", dir.display()));
    }
    cmd.arg("--cacerts")
        .arg(ca.join("cluster1"))
        .arg("--credential-key")
        .arg(ca.join("key"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--monitoring")
        .arg(format!("127.0.0.1:{mon}"))
        .env(
            "RUST_LOG",
            "warn,isthmus_control_plane=info,isthmus_xds::cache=debug",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(
            work.join("control-plane.log"),
        )?));
    let started = Instant::now();
    let child = Killed(cmd.spawn().context("starting the control plane")?);
    let ready_deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok((200, _)) = isthmus_lab::http::get(format!("127.0.0.1:{mon}").parse()?, "/ready")
        {
            break;
        }
        if Instant::now() > ready_deadline {
            bail!(
                "the control plane did not become ready; see {}",
                work.join("control-plane.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(BenchControlPlane {
        child,
        port,
        root_pem,
        started,
    })
}

/// Whether `xds` adds the scoping Sidecar.
static SCOPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What one xDS run measured.
#[derive(Debug, Clone, Copy, Default)]
struct XdsResult {
    ready_s: f64,
    rss_ready_mb: f64,
    full_s: f64,
    mb_per_proxy: f64,
    push_cpu_s: f64,
    rss_peak_mb: f64,
    change_p50_ms: f64,
    change_p99_ms: f64,
}

async fn xds_bench(
    shape: Shape,
    proxies: usize,
    delta: bool,
    churn: u32,
    work: &Path,
) -> Result<XdsResult> {
    let mesh = work.join("mesh");
    let t = Instant::now();
    let written = generate::write(&mesh, shape)?;
    if SCOPED.load(std::sync::atomic::Ordering::Relaxed) {
        std::fs::write(
            written.registries[0].1.join("ns-0/sidecar.yaml"),
            "apiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nmetadata: {name: default, namespace: ns-0}\nspec:\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n",
        )?;
        println!("Sidecar in ns-0: proxies see only ns-0's services");
    }
    println!(
        "mesh: {} clusters x {} services x {} endpoints = {} endpoints, {} objects, {:.1} MB of YAML (written in {:.1}s)",
        shape.clusters,
        shape.services,
        shape.endpoints,
        u64::from(shape.clusters) * u64::from(shape.services) * u64::from(shape.endpoints),
        written.objects,
        written.bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let cp = start_control_plane(&written, work).await?;
    let (pid, port, root_pem, started) = (cp.pid(), cp.port, cp.root_pem.clone(), cp.started);
    let (cpu0, rss0) = isthmus_bench::process::usage(pid).unwrap_or_default();
    let mut result = XdsResult {
        ready_s: started.elapsed().as_secs_f64(),
        rss_ready_mb: rss0 as f64 / 1e6,
        ..Default::default()
    };
    let endpoints =
        u64::from(shape.clusters) * u64::from(shape.services) * u64::from(shape.endpoints);
    println!(
        "control plane ready in {:.2}s: CPU {:.2}s, peak RSS {:.1} MB ({:.0} bytes per endpoint)",
        started.elapsed().as_secs_f64(),
        cpu0,
        rss0 as f64 / 1e6,
        rss0 as f64 / endpoints.max(1) as f64
    );

    let start = Instant::now();
    let me = std::process::id();
    let (load_cpu0, _) = isthmus_bench::process::usage(me).unwrap_or_default();
    let mut load = xds::start(xds::LoadConfig {
        address: format!("127.0.0.1:{port}"),
        root_pem,
        proxies,
        delta,
        cluster: "cluster1".into(),
    });
    let (full, version) = xds::wait_full(&mut load, proxies, start, Duration::from_secs(900)).await;
    let mut got: Vec<Duration> = full.iter().flatten().copied().collect();
    let all = got.iter().max().copied().unwrap_or_default();
    let (cpu1, rss1) = isthmus_bench::process::usage(pid).unwrap_or_default();
    let (load_cpu1, _) = isthmus_bench::process::usage(me).unwrap_or_default();
    let bytes = load.bytes.load(std::sync::atomic::Ordering::Relaxed);
    result.full_s = all.as_secs_f64();
    result.mb_per_proxy = bytes as f64 / 1e6 / proxies.max(1) as f64;
    result.push_cpu_s = cpu1 - cpu0;
    result.rss_peak_mb = rss1 as f64 / 1e6;
    println!(
        "{} {} proxies: {} of {} hold the full config; all within {:.2}s (p50 {}, p99 {}); {:.1} MB received ({:.1} KB per proxy); control plane CPU {:.2}s, peak RSS {:.1} MB; the simulated proxies' CPU {:.2}s on the same cores",
        proxies,
        if delta { "delta" } else { "SotW" },
        got.len(),
        proxies,
        all.as_secs_f64(),
        ms(percentile(&mut got, 50.0)),
        ms(percentile(&mut got, 99.0)),
        bytes as f64 / 1e6,
        bytes as f64 / 1e3 / proxies.max(1) as f64,
        cpu1 - cpu0,
        rss1 as f64 / 1e6,
        load_cpu1 - load_cpu0
    );

    // One endpoint change, seen by every proxy. The control plane debounces file events for
    // 200 ms; that wait is reported apart.
    let debounce = Duration::from_millis(200);
    let rounds = churn.max(1);
    let mut all_lat = Vec::new();
    for g in 0..rounds {
        // Each change makes exactly one new snapshot version.
        let base = version + u64::from(g);
        let changed_at = Instant::now();
        generate::move_endpoint(&written.registries[0].1, g % shape.services, 0, g + 1)?;
        let lat = xds::wait_endpoints(
            &mut load,
            proxies,
            base,
            changed_at,
            Duration::from_secs(120),
        )
        .await;
        let mut got: Vec<Duration> = lat
            .iter()
            .flatten()
            .map(|d| d.saturating_sub(debounce))
            .collect();
        if g == 0 {
            result.change_p50_ms = percentile(&mut got, 50.0).as_secs_f64() * 1000.0;
            result.change_p99_ms = percentile(&mut got, 99.0).as_secs_f64() * 1000.0;
            println!(
                "one endpoint change: {} of {} proxies updated; p50 {}, p99 {}, max {} after the 200 ms debounce",
                got.len(),
                proxies,
                ms(percentile(&mut got, 50.0)),
                ms(percentile(&mut got, 99.0)),
                ms(got.iter().max().copied().unwrap_or_default())
            );
        }
        all_lat.extend(got);
        if churn > 0 {
            let next = changed_at + Duration::from_secs(1);
            tokio::time::sleep_until(next.into()).await;
        }
    }
    if churn > 0 {
        let (cpu2, rss2) = isthmus_bench::process::usage(pid).unwrap_or_default();
        println!(
            "churn, 1 change/s for {churn}s: p50 {}, p99 {} after debounce; control plane CPU {:.2}s for the churn ({:.0}% of a core), peak RSS {:.1} MB",
            ms(percentile(&mut all_lat, 50.0)),
            ms(percentile(&mut all_lat, 99.0)),
            cpu2 - cpu1,
            100.0 * (cpu2 - cpu1) / f64::from(churn),
            rss2 as f64 / 1e6
        );
    }
    Ok(result)
}

/// Runs `bench http` inside a pod and reads the `want` numbers it prints.
fn pod_numbers(
    lab: &isthmus_lab::Lab,
    (cluster, ns, pod): (&str, &str, &str),
    cmd: &[String],
    want: usize,
    label: &str,
) -> Result<Vec<f64>> {
    let out = lab.exec_output(cluster, ns, pod, cmd)?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let nums: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    if !out.status.success() || nums.len() != want {
        bail!("{label}: {text} {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(nums)
}

fn datapath(requests: usize, state: &Path) -> Result<()> {
    let opts = isthmus_lab::LabOptions {
        state_dir: state.to_path_buf(),
        prefix: "ibd".into(),
        exe: std::env::current_exe()?,
        envoy: None,
    };
    let dir = PathBuf::from("examples/gateway-connected");
    let mut quiet = |_: &str| {};
    let mut lab = isthmus_lab::Lab::up(&dir, opts.clone(), &mut quiet)?;
    let result = (|| -> Result<Vec<(String, [f64; 3])>> {
        lab.apply(
            "cluster1",
            &dir.join("seed/httpbin-bar.yaml"),
            "foo",
            &mut quiet,
        )?;
        std::thread::sleep(Duration::from_secs(2));
        let exe = std::env::current_exe()?.display().to_string();
        let mut rows = Vec::new();
        for (label, cluster, ns, pod, addr, host, new) in [
            (
                "direct, kept-alive (inside httpbin's pod, 127.0.0.1:80)",
                "cluster2",
                "bar",
                "httpbin",
                "127.0.0.1:80",
                "httpbin",
                false,
            ),
            (
                "mesh, kept-alive (sleep -> sidecar -> gateway -> sidecar -> httpbin)",
                "cluster1",
                "foo",
                "sleep",
                "127.255.0.2:8000",
                "httpbin.bar.global:8000",
                false,
            ),
            (
                "direct, new connection each",
                "cluster2",
                "bar",
                "httpbin",
                "127.0.0.1:80",
                "httpbin",
                true,
            ),
            (
                "mesh, new connection each",
                "cluster1",
                "foo",
                "sleep",
                "127.255.0.2:8000",
                "httpbin.bar.global:8000",
                true,
            ),
        ] {
            let mut cmd = vec![
                exe.clone(),
                "bench".into(),
                "http".into(),
                "--addr".into(),
                addr.into(),
                "--host".into(),
                host.into(),
                "--requests".into(),
                requests.to_string(),
            ];
            if new {
                cmd.push("--new-connections".into());
            }
            // Warm up (connections, TLS sessions), then measure.
            let mut warm = cmd.clone();
            warm[8] = "50".into();
            lab.exec_output(cluster, ns, pod, &warm)?;
            let nums = pod_numbers(&lab, (cluster, ns, pod), &cmd, 3, label)?;
            rows.push((
                label.to_string(),
                [nums[0] / 1000.0, nums[1] / 1000.0, nums[2] / 1000.0],
            ));
        }
        // Open loop at fixed rates, kept-alive connections.
        let mut rated = Vec::new();
        for rate in [200u32, 1000, 3000] {
            for (label, cluster, ns, pod, addr, host) in [
                (
                    "direct",
                    "cluster2",
                    "bar",
                    "httpbin",
                    "127.0.0.1:80",
                    "httpbin",
                ),
                (
                    "mesh",
                    "cluster1",
                    "foo",
                    "sleep",
                    "127.255.0.2:8000",
                    "httpbin.bar.global:8000",
                ),
            ] {
                let cmd: Vec<String> = [
                    exe.as_str(),
                    "bench",
                    "http",
                    "--addr",
                    addr,
                    "--host",
                    host,
                    "--rate",
                    &rate.to_string(),
                    "--seconds",
                    "5",
                ]
                .iter()
                .map(|x| x.to_string())
                .collect();
                let nums = pod_numbers(
                    &lab,
                    (cluster, ns, pod),
                    &cmd,
                    5,
                    &format!("{label} at {rate}/s"),
                )?;
                rated.push((rate, label, nums));
            }
        }
        println!("| offered rate | path | completed/s | p50 | p90 | p99 | errors |");
        println!("|---|---|---|---|---|---|---|");
        for (rate, label, n) in &rated {
            println!(
                "| {rate}/s | {label} | {:.0} | {:.3} ms | {:.3} ms | {:.3} ms | {} |",
                n[3],
                n[0] / 1000.0,
                n[1] / 1000.0,
                n[2] / 1000.0,
                n[4]
            );
        }
        Ok(rows)
    })();
    isthmus_lab::Lab::down(&opts, &mut quiet)?;
    let rows = result?;
    println!("| path | p50 | p90 | p99 |");
    println!("|---|---|---|---|");
    for (label, [p50, p90, p99]) in &rows {
        println!("| {label} | {p50:.3} ms | {p90:.3} ms | {p99:.3} ms |");
    }
    if rows.len() == 4 {
        println!(
            "added by the mesh: {:.3} ms p90 kept-alive, {:.3} ms p90 with a new connection",
            rows[1].1[1] - rows[0].1[1],
            rows[3].1[1] - rows[2].1[1]
        );
    }
    let _ = lab.state.clusters.len();
    Ok(())
}
