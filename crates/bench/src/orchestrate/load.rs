//! `isthmus bench load`: one large configuration read by a control plane: how fast it starts
//! (MB of YAML per second to its first snapshot), its memory once loaded and at the peak,
//! how its monitoring port answers while it reads and while it rebuilds, and the memory it
//! returns once the configuration is deleted. Endpoints are Pods or ServiceEntries, so that
//! one kind's cost per endpoint can be held against the other's; `--preload` runs the
//! control plane with another allocator (`LD_PRELOAD` of jemalloc or mimalloc) to compare
//! them on the same load.

use super::control_plane::{self, ResponseTimes};
use super::mb;
use crate::error::BenchError;
use crate::generate::{self, Shape};
use crate::process;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How the endpoints are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointKind {
    /// A Pod per endpoint beside its Service (about 150 bytes of YAML each).
    Pods,
    /// ServiceEntries with their endpoints in line (about 25 bytes of YAML each).
    #[default]
    ServiceEntries,
}

/// What `bench load` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The `isthmus` binary, started as the control plane.
    pub exe: PathBuf,
    /// Services (or ServiceEntries).
    pub services: u32,
    /// Endpoints per service.
    pub endpoints: u32,
    /// Pods or ServiceEntries.
    pub kind: EndpointKind,
    /// A shared library preloaded into the control plane (another allocator).
    pub preload: Option<PathBuf>,
    /// Working directory.
    pub work: PathBuf,
}

/// Writes the configuration, starts a control plane on it and reports.
pub fn run(opts: &LoadOptions) -> Result<(), BenchError> {
    tokio::runtime::Runtime::new()?.block_on(measure(opts))
}

fn written(opts: &LoadOptions) -> Result<generate::Written, BenchError> {
    let dir = opts.work.join("mesh");
    Ok(match opts.kind {
        EndpointKind::ServiceEntries => {
            generate::write_service_entries(&dir, opts.services, opts.endpoints)?
        }
        EndpointKind::Pods => generate::write(
            &dir,
            Shape {
                clusters: 1,
                services: opts.services,
                endpoints: opts.endpoints,
            },
        )?,
    })
}

/// How many snapshots the control plane's log says it built.
fn snapshots_built(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| t.matches("pushing new snapshot").count())
        .unwrap_or(0)
}

async fn measure(opts: &LoadOptions) -> Result<(), BenchError> {
    if let Some(lib) = &opts.preload {
        if !lib.is_file() {
            return Err(BenchError::InvalidOptions(
                "--preload: no such file (apt: libjemalloc2, libmimalloc2.0)",
            ));
        }
    }
    let env: Vec<(String, String)> = opts
        .preload
        .iter()
        .map(|p| ("LD_PRELOAD".to_string(), p.display().to_string()))
        .collect();
    let started = Instant::now();
    let w = written(opts)?;
    let endpoints = u64::from(opts.services) * u64::from(opts.endpoints);
    println!(
        "wrote {} objects, {endpoints} endpoints as {:?}, {:.1} MB of YAML in {:.1} s",
        w.objects,
        opts.kind,
        mb(w.bytes),
        started.elapsed().as_secs_f64()
    );
    let cp = control_plane::start_with_env(&opts.exe, &w, &opts.work, &env).await?;
    let ready = cp.ready_after.as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss, peak) = process::memory(cp.pid()).ok_or(BenchError::ProcStatus(cp.pid()))?;
    let l = cp.loading_answers;
    println!(
        "ready after {ready:.2} s: {:.1} MB/s of YAML; RSS {:.1} MB ({:.0} B per endpoint), peak {:.1} MB",
        mb(w.bytes) / ready,
        mb(rss),
        rss as f64 / endpoints as f64,
        mb(peak)
    );
    println!(
        "monitoring port while reading: {} polls answered (slowest {:.1} ms), {} not answered",
        l.answered,
        l.slowest.as_secs_f64() * 1e3,
        l.unanswered
    );

    // Delete the configuration and watch the rebuild: the port keeps answering, and the
    // memory the configuration held goes back.
    let before = snapshots_built(&cp.log);
    for (_, dir) in &w.registries {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "istio-system") {
                std::fs::remove_dir_all(&path)?;
            }
        }
    }
    let deleted = Instant::now();
    let mut rebuilding = ResponseTimes::default();
    let deadline = deleted + Duration::from_secs(600);
    while snapshots_built(&cp.log) == before {
        if Instant::now() > deadline {
            return Err(BenchError::ControlPlaneNotReady {
                log: cp.log.clone(),
            });
        }
        let asked = Instant::now();
        let answered = isthmus_lab::http::get(cp.monitoring, "/metrics").is_ok();
        rebuilding.record(asked.elapsed(), answered);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rebuilt = deleted.elapsed().as_secs_f64();
    // The control plane gives freed memory back 2 s after a rebuild.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (after, _) = process::memory(cp.pid()).ok_or(BenchError::ProcStatus(cp.pid()))?;
    println!(
        "configuration deleted: rebuilt in {rebuilt:.2} s; RSS {:.1} MB; monitoring port meanwhile: {} polls answered (slowest {:.1} ms), {} not answered",
        mb(after),
        rebuilding.answered,
        rebuilding.slowest.as_secs_f64() * 1e3,
        rebuilding.unanswered
    );
    println!();
    println!("| endpoints as | endpoints | YAML | ready | MB/s | RSS | B/endpoint | peak | slowest monitoring answer, loading / rebuilding | RSS after delete | allocator |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {:?} | {endpoints} | {:.1} MB | {ready:.2} s | {:.1} | {:.1} MB | {:.0} | {:.1} MB | {:.1} / {:.1} ms | {:.1} MB | {} |",
        opts.kind,
        mb(w.bytes),
        mb(w.bytes) / ready,
        mb(rss),
        rss as f64 / endpoints as f64,
        mb(peak),
        l.slowest.as_secs_f64() * 1e3,
        rebuilding.slowest.as_secs_f64() * 1e3,
        mb(after),
        opts.preload
            .as_ref()
            .and_then(|p| p.file_name())
            .map_or("glibc".into(), |n| n.to_string_lossy().into_owned())
    );
    Ok(())
}
