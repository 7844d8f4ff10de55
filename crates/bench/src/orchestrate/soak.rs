//! `isthmus bench soak`: a control plane under steady load for minutes, as production runs
//! it: N simulated proxies that reconnect as Envoy does, a stream of endpoint changes, a
//! control plane killed and restarted, and a remote cluster's registry that vanishes and
//! returns. It reports errors (proxies left without the latest configuration, streams that
//! broke while the control plane was up, a control plane that died on its own, memory that
//! grew more than 10%), which must be 0, the stream resets the restart caused, and the
//! memory of the control plane over time. Exits non-zero on any error.

use super::control_plane;
use super::mb;
use crate::error::BenchError;
use crate::generate::{self, Shape};
use crate::process;
use crate::xds::{self, Event};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `bench soak` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakOptions {
    /// The `isthmus` binary, started as the control plane.
    pub exe: PathBuf,
    /// Simulated proxies.
    pub proxies: usize,
    /// How long, in minutes.
    pub minutes: f64,
    /// Endpoint changes per second.
    pub changes_per_second: f64,
    /// Services per cluster (two clusters: the control plane's and a remote one).
    pub services: u32,
    /// Endpoints per service per cluster.
    pub endpoints: u32,
    /// Delta xDS instead of state of the world.
    pub delta: bool,
    /// Working directory.
    pub work: PathBuf,
}

/// When the soak's events happen, as fractions of its length: the restart early, so that
/// the memory baseline is the restarted process's, warmed up.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Plan {
    restart: Duration,
    baseline: Duration,
    vanish: Duration,
    back: Duration,
    end: Duration,
}

impl Plan {
    fn of(length: Duration) -> Plan {
        let at = |f: f64| length.mul_f64(f);
        let away = at(0.1).min(Duration::from_secs(30));
        Plan {
            restart: at(0.15),
            baseline: at(0.3),
            vanish: at(0.5),
            back: at(0.5) + away,
            end: length,
        }
    }
}

/// What the proxies did.
#[derive(Debug, Default)]
struct Proxies {
    /// Per proxy: the latest snapshot version it holds on its current stream (`None`
    /// between a reset and its next complete configuration).
    latest: Vec<Option<u64>>,
    resets: u64,
    /// Resets while the control plane was up and not restarting.
    unexpected: Vec<String>,
}

impl Proxies {
    fn new(n: usize) -> Proxies {
        Proxies {
            latest: vec![None; n],
            ..Default::default()
        }
    }

    /// Takes in `event`; a reset counts as expected while `restarting` says so.
    fn take(&mut self, event: Event, restarting: bool) {
        match event {
            Event::Full(i, v, _) => self.latest[i] = Some(v),
            Event::Endpoints(i, v, _) => {
                if let Some(l) = self.latest[i].as_mut() {
                    *l = (*l).max(v);
                }
            }
            Event::Reset(i, _, why) => {
                self.latest[i] = None;
                self.resets += 1;
                if !restarting {
                    self.unexpected.push(format!("proxy {i}: {why}"));
                }
            }
            Event::Failed(i) => {
                self.latest[i] = None;
                self.unexpected.push(format!("proxy {i}: failed for good"));
            }
        }
    }

    /// Proxies holding a complete configuration.
    fn connected(&self) -> usize {
        self.latest.iter().filter(|l| l.is_some()).count()
    }

    /// Proxies that hold the newest version any proxy holds, and that version.
    fn converged(&self) -> (usize, u64) {
        let newest = self.latest.iter().flatten().copied().max().unwrap_or(0);
        let n = self.latest.iter().filter(|l| **l == Some(newest)).count();
        (n, newest)
    }
}

/// Runs the soak and prints its report; an error when it saw any.
pub fn run(opts: &SoakOptions) -> Result<(), BenchError> {
    if opts.proxies == 0 || opts.minutes <= 0.0 || opts.changes_per_second <= 0.0 {
        return Err(BenchError::InvalidOptions(
            "--proxies, --minutes and --changes-per-second must be above 0",
        ));
    }
    tokio::runtime::Runtime::new()?.block_on(soak(opts))
}

/// The allocator's bytes in use, as the control plane's `/metrics` says (its live memory,
/// without what the allocator keeps free); 0 when it cannot say.
fn heap(cp: &control_plane::BenchControlPlane) -> u64 {
    isthmus_lab::http::get(cp.monitoring, "/metrics")
        .ok()
        .and_then(|(_, body)| {
            body.lines()
                .find_map(|l| l.strip_prefix("isthmus_heap_in_use_bytes "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn rss(pid: u32) -> Result<u64, BenchError> {
    process::memory(pid)
        .map(|(rss, _)| rss)
        .ok_or(BenchError::ProcStatus(pid))
}

async fn soak(opts: &SoakOptions) -> Result<(), BenchError> {
    let shape = Shape {
        clusters: 2,
        services: opts.services,
        endpoints: opts.endpoints,
    };
    let w = generate::write(&opts.work.join("mesh"), shape)?;
    let cluster1 = w.registries[0].1.clone();
    let cluster2 = w.registries[1].1.clone();
    let gone = cluster2.with_extension("gone");
    let mut cp = control_plane::start(&opts.exe, &w, &opts.work).await?;
    let mut load = xds::start(xds::LoadConfig {
        address: format!("127.0.0.1:{}", cp.port),
        tls: Some(cp.load_tls()),
        proxies: opts.proxies,
        delta: opts.delta,
        cluster: "cluster1".into(),
        reconnect: true,
        wanted: None,
    });
    let mut proxies = Proxies::new(opts.proxies);
    let deadline = Instant::now() + Duration::from_secs(300);
    while proxies.connected() < opts.proxies && Instant::now() < deadline {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(1), load.events.recv()).await
        {
            proxies.take(e, false);
        }
    }
    if proxies.connected() < opts.proxies {
        println!(
            "only {} of {} proxies got their configuration in 300 s",
            proxies.connected(),
            opts.proxies
        );
        return Err(BenchError::SoakErrors(1));
    }
    let length = Duration::from_secs_f64(opts.minutes * 60.0);
    let plan = Plan::of(length);
    let rss_start = rss(cp.pid())?;
    println!(
        "{} proxies ({}) hold the mesh of 2 x {} x {}; soaking {:.1} min: {} changes/s, control plane restart at {:.0} s, cluster2's registry away {:.0}-{:.0} s; control plane RSS {:.1} MB",
        opts.proxies,
        if opts.delta { "delta" } else { "SotW" },
        opts.services,
        opts.endpoints,
        opts.minutes,
        opts.changes_per_second,
        plan.restart.as_secs_f64(),
        plan.vanish.as_secs_f64(),
        plan.back.as_secs_f64(),
        mb(rss_start)
    );
    let tick = Duration::from_secs_f64(1.0 / opts.changes_per_second);
    let t0 = Instant::now();
    let mut next_change = t0;
    let mut changes = 0u64;
    let mut restarting_until: Option<Instant> = None;
    let (mut restarted, mut vanished, mut returned) = (false, false, false);
    let mut rss_before_restart = 0;
    let mut rss_baseline = None;
    let mut heap_baseline = 0;
    let mut died = 0u64;
    let mut restart_took = Duration::ZERO;
    let mut last_report = t0;
    let mut last_sample = t0;
    // (seconds into the soak, RSS, heap in use) every 5 s: one reading of a resident set
    // that saws by a few MB between rebuilds and trims says little; medians of windows do.
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let mut away_said = String::new();
    while t0.elapsed() < plan.end {
        let now = Instant::now();
        let restarting = restarting_until.is_some_and(|u| now < u);
        while let Ok(e) = load.events.try_recv() {
            proxies.take(e, restarting);
        }
        if now >= next_change {
            let s = (changes % u64::from(opts.services)) as u32;
            let e = ((changes / u64::from(opts.services)) % u64::from(opts.endpoints)) as u32;
            generate::move_endpoint(&cluster1, s, e, (changes + 1) as u32)?;
            changes += 1;
            next_change += tick;
        }
        let at = t0.elapsed();
        if !restarted && at >= plan.restart {
            restarted = true;
            rss_before_restart = rss(cp.pid())?;
            // Resets from the kill until every proxy had time to reconnect are expected
            // (the events of the restart are read after it, inside that window).
            restart_took = cp.restart().await?;
            restarting_until = Some(Instant::now() + Duration::from_secs(5));
            println!(
                "{:.0} s: control plane killed and started again, ready after {:.2} s",
                at.as_secs_f64(),
                restart_took.as_secs_f64()
            );
        }
        if restarted && rss_baseline.is_none() && at >= plan.baseline {
            rss_baseline = Some(rss(cp.pid())?);
            heap_baseline = heap(&cp);
        }
        if !vanished && at >= plan.vanish {
            vanished = true;
            std::fs::rename(&cluster2, &gone)?;
            println!("{:.0} s: cluster2's registry vanished", at.as_secs_f64());
        }
        if vanished && !returned && at >= plan.back {
            returned = true;
            away_said = isthmus_lab::http::get(cp.monitoring, "/debug/diagnostics")
                .map(|(_, body)| body)
                .unwrap_or_default();
            std::fs::rename(&gone, &cluster2)?;
            println!("{:.0} s: cluster2's registry is back", at.as_secs_f64());
        }
        if !cp.running() {
            died += 1;
            println!(
                "{:.0} s: the control plane exited on its own; starting it again",
                at.as_secs_f64()
            );
            cp.restart().await?;
            restarting_until = Some(Instant::now() + Duration::from_secs(5));
        }
        if last_sample.elapsed() >= Duration::from_secs(5) {
            last_sample = Instant::now();
            samples.push((at.as_secs_f64(), rss(cp.pid())?, heap(&cp)));
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            println!(
                "{:.0} s: {changes} changes, {} of {} proxies connected, {} resets, RSS {:.1} MB, heap in use {:.1} MB",
                at.as_secs_f64(),
                proxies.connected(),
                opts.proxies,
                proxies.resets,
                mb(rss(cp.pid())?),
                mb(heap(&cp))
            );
        }
        let wait = next_change
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        if let Ok(Some(e)) = tokio::time::timeout(wait, load.events.recv()).await {
            let restarting = restarting_until.is_some_and(|u| Instant::now() < u);
            proxies.take(e, restarting);
        }
    }
    // No more changes: every proxy must come to hold the newest configuration.
    let settle = Instant::now() + Duration::from_secs(30);
    loop {
        while let Ok(e) = load.events.try_recv() {
            proxies.take(e, false);
        }
        let (n, _) = proxies.converged();
        if n == opts.proxies || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (converged, newest) = proxies.converged();
    // The control plane must have read cluster2 again: no problem about it is left.
    let diagnostics = isthmus_lab::http::get(cp.monitoring, "/debug/diagnostics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let not_back = u64::from(diagnostics.contains("cluster2"));
    let rss_end = rss(cp.pid())?;
    let heap_end = heap(&cp);
    let baseline = rss_baseline.unwrap_or(rss_start);
    let growth = (rss_end as f64 / baseline as f64 - 1.0) * 100.0;
    let heap_growth = (heap_end as f64 / heap_baseline.max(1) as f64 - 1.0) * 100.0;
    let windows = Windows::of(&plan, &samples);
    let stale = opts.proxies - converged;
    let grew = u64::from(windows.rss_growth() > 10.0);
    let errors = stale as u64 + proxies.unexpected.len() as u64 + died + grew + not_back;
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| length, proxies, changes | {:.1} min, {}, {changes} ({:.1}/s) |",
        opts.minutes,
        opts.proxies,
        changes as f64 / plan.end.as_secs_f64()
    );
    println!(
        "| control plane restart: ready after | {:.2} s |",
        restart_took.as_secs_f64()
    );
    println!(
        "| stream resets (all caused by the restart: {}) | {} |",
        proxies.unexpected.is_empty(),
        proxies.resets
    );
    println!(
        "| streams broken while the control plane was up | {} |",
        proxies.unexpected.len()
    );
    println!("| proxies holding the newest configuration (version {newest}) at the end | {converged} of {} |", opts.proxies);
    println!("| control plane exits on its own | {died} |");
    println!(
        "| cluster2's registry while away, as `/debug/diagnostics` said | {} |",
        away_said
            .lines()
            .find(|l| l.contains("cluster2"))
            .unwrap_or("(nothing about cluster2)")
            .replace('|', "/")
    );
    println!(
        "| cluster2's registry read again after it returned | {} |",
        not_back == 0
    );
    println!(
        "| control plane RSS: start / before restart / after restart, warm / end | {:.1} / {:.1} / {:.1} / {:.1} MB |",
        mb(rss_start),
        mb(rss_before_restart),
        mb(baseline),
        mb(rss_end)
    );
    println!("| RSS growth, one reading at the end against one when warm | {growth:+.1}% |");
    println!(
        "| RSS, median of {} readings when warm ({:.0}-{:.0} s) / of {} at the end ({:.0}-{:.0} s) | {:.1} / {:.1} MB |",
        windows.warm.len(),
        windows.warm_span.0,
        windows.warm_span.1,
        windows.end.len(),
        windows.end_span.0,
        windows.end_span.1,
        mb(median(windows.warm.iter().map(|s| s.1))),
        mb(median(windows.end.iter().map(|s| s.1)))
    );
    println!(
        "| **RSS growth, end against warm, medians (at most 10%)** | **{:+.1}%** |",
        windows.rss_growth()
    );
    println!(
        "| RSS growth within the end window (last against first reading) | {:+.1}% |",
        windows.end_drift()
    );
    println!(
        "| heap in use (live memory): warm after restart / end, growth | {:.1} / {:.1} MB, {heap_growth:+.1}% |",
        mb(heap_baseline),
        mb(heap_end)
    );
    println!(
        "| responses received | {} |",
        load.responses.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!("| **errors** | **{errors}** |");
    if not_back > 0 {
        println!("still reported after cluster2 returned:\n{diagnostics}");
    }
    for u in proxies.unexpected.iter().take(10) {
        println!("unexpected reset: {u}");
    }
    if errors > 0 {
        return Err(BenchError::SoakErrors(errors));
    }
    Ok(())
}

/// The median of `values` (0 for none).
fn median(values: impl Iterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The memory readings of the warm window (from the baseline until cluster2 vanishes: the
/// restarted control plane, warmed up, under churn) and of the end window (the last fifth
/// of the soak, after every event).
struct Windows<'a> {
    warm: Vec<&'a (f64, u64, u64)>,
    warm_span: (f64, f64),
    end: Vec<&'a (f64, u64, u64)>,
    end_span: (f64, f64),
}

impl<'a> Windows<'a> {
    fn of(plan: &Plan, samples: &'a [(f64, u64, u64)]) -> Windows<'a> {
        let warm_span = (plan.baseline.as_secs_f64(), plan.vanish.as_secs_f64());
        let end_span = (plan.end.as_secs_f64() * 0.8, plan.end.as_secs_f64());
        let within = |span: (f64, f64)| {
            samples
                .iter()
                .filter(|s| s.0 >= span.0 && s.0 < span.1)
                .collect::<Vec<_>>()
        };
        Windows {
            warm: within(warm_span),
            warm_span,
            end: within(end_span),
            end_span,
        }
    }

    /// Median RSS at the end against median RSS when warm, in percent.
    fn rss_growth(&self) -> f64 {
        let warm = median(self.warm.iter().map(|s| s.1)).max(1) as f64;
        let end = median(self.end.iter().map(|s| s.1)) as f64;
        (end / warm - 1.0) * 100.0
    }

    /// The last reading of the end window against its first, in percent: growth still
    /// going on when the soak stopped.
    fn end_drift(&self) -> f64 {
        match (self.end.first(), self.end.last()) {
            (Some(a), Some(b)) => (b.1 as f64 / a.1.max(1) as f64 - 1.0) * 100.0,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_restarts_early_and_takes_the_registry_away_for_at_most_30_s() {
        let p = Plan::of(Duration::from_secs(600));
        assert_eq!(p.restart, Duration::from_secs(90));
        assert_eq!(p.baseline, Duration::from_secs(180));
        assert_eq!(p.vanish, Duration::from_secs(300));
        assert_eq!(p.back, Duration::from_secs(330));
        let short = Plan::of(Duration::from_secs(40));
        assert_eq!(short.back - short.vanish, Duration::from_secs(4));
        assert!(short.restart < short.baseline && short.baseline < short.vanish);
    }

    #[test]
    fn memory_growth_compares_medians_of_the_warm_and_end_windows() {
        let plan = Plan::of(Duration::from_secs(100));
        // Warm (30-50 s): a saw of 100 and 110; end (80-100 s): 108 and 112.
        let samples: Vec<(f64, u64, u64)> = (0..20)
            .map(|i| {
                let t = f64::from(i) * 5.0;
                let rss = match t {
                    t if t < 30.0 => 90,
                    t if t < 50.0 => {
                        if i % 2 == 0 {
                            100
                        } else {
                            110
                        }
                    }
                    t if t < 80.0 => 130,
                    _ => {
                        if i % 2 == 0 {
                            108
                        } else {
                            112
                        }
                    }
                };
                (t, rss, 0)
            })
            .collect();
        let w = Windows::of(&plan, &samples);
        assert_eq!(w.warm.len(), 4);
        assert_eq!(w.end.len(), 4);
        assert_eq!(median(w.warm.iter().map(|s| s.1)), 110);
        assert_eq!(median(w.end.iter().map(|s| s.1)), 112);
        assert!((w.rss_growth() - 100.0 * (112.0 / 110.0 - 1.0)).abs() < 1e-9);
        assert!(w.end_drift() > 0.0);
        assert_eq!(median(std::iter::empty()), 0);
    }

    #[test]
    fn resets_count_against_the_soak_only_while_the_control_plane_is_up() {
        let mut p = Proxies::new(3);
        let t = Instant::now();
        for i in 0..3 {
            p.take(Event::Full(i, 4, t), false);
        }
        p.take(Event::Endpoints(0, 6, t), false);
        p.take(Event::Endpoints(1, 6, t), false);
        assert_eq!(p.converged(), (2, 6), "proxy 2 is behind");
        p.take(Event::Reset(2, t, "restart".into()), true);
        assert_eq!(p.connected(), 2);
        assert!(p.unexpected.is_empty());
        p.take(Event::Reset(1, t, "broken".into()), false);
        assert_eq!(p.unexpected, ["proxy 1: broken"]);
        assert_eq!(p.resets, 2);
        // Endpoints on a stream that has not been complete yet do not count.
        p.take(Event::Endpoints(2, 9, t), false);
        assert_eq!(p.latest[2], None);
    }
}
