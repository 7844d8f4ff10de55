//! `isthmus bench xds` and `isthmus bench sweep`: a control plane on a synthetic mesh with
//! N simulated Envoys connected: time to full config, bytes, the control plane's CPU and
//! memory, then endpoint changes; the sweep repeats that over mesh sizes and proxy counts and
//! draws the curves.

use super::{control_plane, write_scoping_sidecar};
use crate::error::BenchError;
use crate::generate::{self, Shape};
use crate::stats::{ms, percentile};
use crate::{process, svg, xds};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `bench xds` measures.
#[derive(Debug, Clone, PartialEq)]
pub struct XdsOptions {
    /// The `isthmus` binary, started as the control plane.
    pub exe: PathBuf,
    /// The synthetic mesh.
    pub shape: Shape,
    /// Simulated proxies.
    pub proxies: usize,
    /// Delta xDS instead of state of the world.
    pub delta: bool,
    /// Then one endpoint change per second for this many seconds (0: one change only).
    pub churn_seconds: u32,
    /// Add a Sidecar in ns-0 limiting the proxies to its own services.
    pub sidecar_scope: bool,
    /// Scope the proxies on demand (`--scoping on-demand`): each resolved
    /// [`ON_DEMAND_POPULAR`] services every proxy uses and [`ON_DEMAND_OWN`] of its own
    /// deployment's (10 proxies each).
    pub on_demand: bool,
    /// Working directory (mesh, certificates, logs).
    pub work: PathBuf,
}

/// What `bench sweep` measures.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepOptions {
    /// The `isthmus` binary, started as the control plane.
    pub exe: PathBuf,
    /// Service counts (one cluster, 10 endpoints each).
    pub services: Vec<u32>,
    /// Proxy counts.
    pub proxies: Vec<usize>,
    /// Where to write the charts.
    pub out: PathBuf,
    /// Working directory.
    pub work: PathBuf,
}

/// What one xDS run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct XdsResult {
    /// Seconds until the control plane was ready.
    pub ready_s: f64,
    /// Its RSS then, MB.
    pub rss_ready_mb: f64,
    /// Seconds until every proxy held the full config.
    pub full_s: f64,
    /// MB received per proxy.
    pub mb_per_proxy: f64,
    /// Control plane CPU seconds for the full push.
    pub push_cpu_s: f64,
    /// Control plane peak RSS after the full push, MB.
    pub rss_peak_mb: f64,
    /// Median time for one endpoint change to reach a proxy (after the debounce), ms.
    pub change_p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub change_p99_ms: f64,
    /// On demand: a first lookup's wait for the proxy's configuration, median, ms.
    pub first_lookup_p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub first_lookup_p99_ms: f64,
}

/// Runs `bench xds` and prints what it measured.
pub fn run(opts: &XdsOptions) -> Result<(), BenchError> {
    tokio::runtime::Runtime::new()?.block_on(measure(opts))?;
    Ok(())
}

/// Runs `bench xds` at every service count and proxy count of `opts`, prints a table and
/// draws `xds-full-push.svg` and `xds-memory.svg` into `opts.out`.
pub fn sweep(opts: &SweepOptions) -> Result<(), BenchError> {
    let rt = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();
    for &n in &opts.proxies {
        for &svc in &opts.services {
            println!("== {svc} services, {n} proxies");
            let run = XdsOptions {
                exe: opts.exe.clone(),
                shape: Shape {
                    clusters: 1,
                    services: svc,
                    endpoints: 10,
                },
                proxies: n,
                delta: false,
                churn_seconds: 0,
                sidecar_scope: false,
                on_demand: false,
                work: opts.work.clone(),
            };
            let r = rt.block_on(measure(&run))?;
            rows.push((svc, n, r));
        }
    }
    println!("\n| services | proxies | CP ready | RSS ready | full push | MB/proxy | push CPU | peak RSS | 1 change p50 / p99 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (svc, n, r) in &rows {
        println!("{}", sweep_row(*svc, *n, r));
    }
    std::fs::create_dir_all(&opts.out)?;
    let full = svg::line_chart(
        "Time until every proxy holds the full config",
        "services (x10 endpoints)",
        "seconds",
        &sweep_series(&opts.proxies, &rows, |r| r.full_s),
    );
    std::fs::write(opts.out.join("xds-full-push.svg"), full)?;
    let mem = svg::line_chart(
        "Control plane peak RSS",
        "services (x10 endpoints)",
        "MB",
        &sweep_series(&opts.proxies, &rows, |r| r.rss_peak_mb),
    );
    std::fs::write(opts.out.join("xds-memory.svg"), mem)?;
    println!("charts written to {}", opts.out.display());
    Ok(())
}

/// One row of the sweep's table.
fn sweep_row(services: u32, proxies: usize, r: &XdsResult) -> String {
    format!(
        "| {services} | {proxies} | {:.2} s | {:.0} MB | {:.2} s | {:.2} | {:.2} s | {:.0} MB | {:.0} / {:.0} ms |",
        r.ready_s, r.rss_ready_mb, r.full_s, r.mb_per_proxy, r.push_cpu_s, r.rss_peak_mb, r.change_p50_ms, r.change_p99_ms
    )
}

/// One line per proxy count: `f` of each run against its service count.
fn sweep_series(
    proxies: &[usize],
    rows: &[(u32, usize, XdsResult)],
    f: impl Fn(&XdsResult) -> f64,
) -> Vec<svg::Series> {
    proxies
        .iter()
        .map(|&n| svg::Series {
            name: format!("{n} proxies"),
            points: rows
                .iter()
                .filter(|(_, p, _)| *p == n)
                .map(|(s, _, r)| (f64::from(*s), f(r)))
                .collect(),
        })
        .collect()
}

/// On demand: one proxy of every deployment (100 of 1,000) resolves a name it had not, all at once,
/// each answered once its (simulated, ACKing) Envoy holds the service: the extra latency of
/// a first call, while 1,000 proxies are connected.
async fn first_lookups(
    agents: &mut xds::Agents,
    services: u32,
    proxies: usize,
    result: &mut XdsResult,
) -> Result<(), BenchError> {
    let who: Vec<usize> = (0..proxies).step_by(10).collect();
    let lookups = who.into_iter().map(|i| {
        let (svc, ns) = generate::service_name((i as u32 * 31 + 5) % services.max(1));
        (i, format!("{svc}.{ns}.svc.cluster.local"))
    });
    let lookups: Vec<(usize, String)> = lookups.collect();
    let got = agents.resolve_all(&lookups, Duration::from_secs(10)).await;
    let mut lat = Vec::new();
    for ((i, name), d) in lookups.iter().zip(got) {
        match d {
            Some(d) => lat.push(d),
            None => {
                return Err(BenchError::Measure(format!(
                    "proxy {i}: {name} not in force within 10 s"
                )))
            }
        }
    }
    result.first_lookup_p50_ms = percentile(&mut lat, 50.0).as_secs_f64() * 1e3;
    result.first_lookup_p99_ms = percentile(&mut lat, 99.0).as_secs_f64() * 1e3;
    println!(
        "first lookup of a new name by {} proxies at once: held p50 {}, p99 {} until each proxy's Envoy held the service",
        lat.len(),
        ms(percentile(&mut lat, 50.0)),
        ms(percentile(&mut lat, 99.0))
    );
    Ok(())
}

/// Services every on-demand proxy resolved (svc-0, svc-1, ...: the mesh's shared
/// dependencies, and the ones the endpoint changes move).
pub const ON_DEMAND_POPULAR: u32 = 3;
/// Services each deployment's proxies resolved besides the popular ones.
pub const ON_DEMAND_OWN: u32 = 5;

/// The names each of `proxies` resolved in a mesh of `services`: the popular ones, and
/// [`ON_DEMAND_OWN`] spread over the mesh per deployment of 10 proxies.
fn wanted_names(services: u32, proxies: usize) -> Vec<Vec<String>> {
    let name = |s: u32| {
        let (svc, ns) = generate::service_name(s % services.max(1));
        format!("{svc}.{ns}.svc.cluster.local")
    };
    (0..proxies)
        .map(|i| {
            let deployment = (i / 10) as u32;
            (0..ON_DEMAND_POPULAR)
                .map(name)
                .chain(
                    (0..ON_DEMAND_OWN).map(|j| {
                        name(deployment.wrapping_mul(7919).wrapping_add(j * 104_729 + 17))
                    }),
                )
                .collect()
        })
        .collect()
}

/// One `bench xds` run: writes the mesh, starts the control plane, connects the simulated
/// proxies and changes endpoints, printing as it goes.
async fn measure(opts: &XdsOptions) -> Result<XdsResult, BenchError> {
    let (shape, proxies, delta, churn) = (opts.shape, opts.proxies, opts.delta, opts.churn_seconds);
    let mesh = opts.work.join("mesh");
    let t = Instant::now();
    let written = generate::write(&mesh, shape)?;
    if opts.sidecar_scope {
        write_scoping_sidecar(&written.registries[0].1)?;
        println!("Sidecar in ns-0: proxies see only ns-0's services");
    }
    println!(
        "mesh: {} clusters x {} services x {} endpoints = {} endpoints, {} objects, {:.1} MB of YAML (written in {:.1}s)",
        shape.clusters,
        shape.services,
        shape.endpoints,
        shape.total_endpoints(),
        written.objects,
        written.bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let cp = if opts.on_demand {
        println!(
            "on-demand scoping: each proxy resolved {ON_DEMAND_POPULAR} services all use and {ON_DEMAND_OWN} of its deployment's (10 proxies per deployment)"
        );
        control_plane::start_on_demand(&opts.exe, &written, &opts.work).await?
    } else {
        control_plane::start(&opts.exe, &written, &opts.work).await?
    };
    let (pid, port, started) = (cp.pid(), cp.port, cp.started);
    let (cpu0, rss0) = process::usage(pid).unwrap_or_default();
    let mut result = XdsResult {
        ready_s: started.elapsed().as_secs_f64(),
        rss_ready_mb: rss0 as f64 / 1e6,
        ..Default::default()
    };
    let endpoints = shape.total_endpoints();
    println!(
        "control plane ready in {:.2}s: CPU {:.2}s, peak RSS {:.1} MB ({:.0} bytes per endpoint)",
        started.elapsed().as_secs_f64(),
        cpu0,
        rss0 as f64 / 1e6,
        rss0 as f64 / endpoints.max(1) as f64
    );

    let load_config = xds::LoadConfig {
        address: format!("127.0.0.1:{port}"),
        tls: Some(cp.load_tls()),
        proxies,
        delta,
        cluster: "cluster1".into(),
        reconnect: false,
        wanted: opts
            .on_demand
            .then(|| std::sync::Arc::new(wanted_names(shape.services, proxies))),
    };
    let mut agents = None;
    if opts.on_demand {
        // Agents connect before their Envoys, in every mode (with DNS capture they follow
        // the name table); what is timed below is the Envoys' configuration.
        let t = Instant::now();
        agents = Some(
            xds::start_agents(&load_config)
                .await
                .map_err(|e| BenchError::Measure(format!("agents: {e}")))?,
        );
        println!(
            "{proxies} agents connected and named what their pods resolved in {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
    let (cpu0, _) = process::usage(pid).unwrap_or_default();
    let start = Instant::now();
    let me = std::process::id();
    let (load_cpu0, _) = process::usage(me).unwrap_or_default();
    let mut load = xds::start(load_config);
    let (full, version) = xds::wait_full(&mut load, proxies, start, Duration::from_secs(900)).await;
    let mut got: Vec<Duration> = full.iter().flatten().copied().collect();
    let all = got.iter().max().copied().unwrap_or_default();
    let (cpu1, rss1) = process::usage(pid).unwrap_or_default();
    let (load_cpu1, _) = process::usage(me).unwrap_or_default();
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
        // On demand, a change every proxy sees is one of the services every proxy uses.
        let moved = if opts.on_demand {
            g % ON_DEMAND_POPULAR.min(shape.services)
        } else {
            g % shape.services
        };
        generate::move_endpoint(&written.registries[0].1, moved, 0, g + 1)?;
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
    if let Some(agents) = agents.as_mut() {
        first_lookups(agents, shape.services, proxies, &mut result).await?;
    }
    if churn > 0 {
        let (cpu2, rss2) = process::usage(pid).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn result(full_s: f64, rss_peak_mb: f64) -> XdsResult {
        XdsResult {
            ready_s: 1.234,
            rss_ready_mb: 55.6,
            full_s,
            mb_per_proxy: 0.126,
            push_cpu_s: 2.0,
            rss_peak_mb,
            change_p50_ms: 12.4,
            change_p99_ms: 40.6,
            ..Default::default()
        }
    }

    #[test]
    fn sweep_rows_are_markdown_with_the_report_s_precision() {
        assert_eq!(
            sweep_row(2000, 100, &result(3.456, 80.4)),
            "| 2000 | 100 | 1.23 s | 56 MB | 3.46 s | 0.13 | 2.00 s | 80 MB | 12 / 41 ms |"
        );
    }

    #[test]
    fn sweep_series_have_one_line_per_proxy_count() {
        let rows = [
            (250, 10, result(0.5, 30.0)),
            (500, 10, result(1.0, 40.0)),
            (250, 100, result(2.0, 50.0)),
        ];
        let series = sweep_series(&[10, 100, 1000], &rows, |r| r.full_s);
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["10 proxies", "100 proxies", "1000 proxies"]);
        assert_eq!(series[0].points, [(250.0, 0.5), (500.0, 1.0)]);
        assert_eq!(series[1].points, [(250.0, 2.0)]);
        assert!(series[2].points.is_empty());
        let memory = sweep_series(&[100], &rows, |r| r.rss_peak_mb);
        assert_eq!(memory[0].points, [(250.0, 50.0)]);
    }
}
