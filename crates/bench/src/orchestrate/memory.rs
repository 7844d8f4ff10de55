//! `isthmus bench memory`: the control plane's resident memory against the size of the mesh
//! it serves, before any proxy connects: what one more remote cluster costs, and what one
//! more endpoint costs.

use super::{control_plane, mb};
use crate::error::BenchError;
use crate::generate::{self, Shape};
use crate::{process, svg};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `bench memory` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryOptions {
    /// The `isthmus` binary, started as the control plane.
    pub exe: PathBuf,
    /// Services per cluster (one series each).
    pub services: Vec<u32>,
    /// Cluster counts.
    pub clusters: Vec<u32>,
    /// Endpoints per service per cluster.
    pub endpoints: u32,
    /// Endpoints per service of one more mesh, the largest again (skipped unless more than
    /// `endpoints`).
    pub more_endpoints: u32,
    /// Working directory.
    pub work: PathBuf,
    /// Where to write the chart (`cp-memory-per-endpoint.svg`), if anywhere.
    pub out: Option<PathBuf>,
}

/// One measured mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    services: u32,
    clusters: u32,
    endpoints: u64,
    /// Resident set once the first snapshot is built and the process has settled.
    rss: u64,
    /// Highest resident set while loading.
    peak: u64,
}

/// Refuses options that measure nothing or a mesh without the control plane's own cluster.
fn check(opts: &MemoryOptions) -> Result<(), BenchError> {
    if opts.services.is_empty() || opts.clusters.is_empty() {
        return Err(BenchError::InvalidOptions(
            "--services and --clusters each need at least one value",
        ));
    }
    if opts.clusters.contains(&0) {
        return Err(BenchError::InvalidOptions(
            "--clusters: a mesh has at least one cluster (the control plane's own)",
        ));
    }
    if opts.endpoints == 0 || opts.services.contains(&0) {
        return Err(BenchError::InvalidOptions(
            "--services and --endpoints must each be at least 1",
        ));
    }
    Ok(())
}

/// Loads meshes of every cluster count x service count of `opts` (plus an empty mesh) into a
/// control plane each, and prints what each holds; then the largest again with
/// `more_endpoints` endpoints per service, when that is more.
pub fn run(opts: &MemoryOptions) -> Result<(), BenchError> {
    tokio::runtime::Runtime::new()?.block_on(measure_all(opts))
}

async fn measure_all(opts: &MemoryOptions) -> Result<(), BenchError> {
    check(opts)?;
    let (services, endpoints, more_endpoints) =
        (&opts.services, opts.endpoints, opts.more_endpoints);
    let baseline = generate::write_empty(&opts.work.join("mesh"))?;
    let empty = measure_written(
        &opts.exe,
        Shape {
            clusters: 1,
            services: 0,
            endpoints,
        },
        &baseline,
        &opts.work,
    )
    .await?;
    println!(
        "empty mesh: RSS {:.1} MB (the process itself)",
        mb(empty.rss)
    );
    let mut rows = Vec::new();
    for &s in services {
        for &c in &opts.clusters {
            let row = measure(
                &opts.exe,
                Shape {
                    clusters: c,
                    services: s,
                    endpoints,
                },
                &opts.work,
            )
            .await?;
            println!(
                "{c} clusters x {s} services x {endpoints} endpoints = {} endpoints: RSS {:.1} MB, peak while loading {:.1} MB",
                row.endpoints,
                mb(row.rss),
                mb(row.peak)
            );
            rows.push(row);
        }
    }

    println!();
    println!("| clusters x services x endpoints | endpoints | RSS | peak while loading | bytes per endpoint, the process included | bytes per endpoint above the empty process |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!("{}", table_row(r, endpoints, empty.rss));
    }
    println!();
    for &s in services {
        if let Some(line) = remote_cluster_cost(&rows, s, endpoints) {
            println!("{line}");
        }
    }
    // A slope needs two meshes of different sizes.
    if rows.iter().any(|r| r.endpoints != rows[0].endpoints) {
        let slope = slope(&rows);
        println!("least-squares slope over every mesh: {slope:.0} bytes of RSS per endpoint (with its share of a service: one service per {endpoints} endpoints)");
    }
    let largest = rows.iter().max_by_key(|r| r.endpoints);
    if let Some(base) = largest.filter(|_| more_endpoints > endpoints) {
        let more = measure(
            &opts.exe,
            Shape {
                clusters: base.clusters,
                services: base.services,
                endpoints: more_endpoints,
            },
            &opts.work,
        )
        .await?;
        let added = more.endpoints - base.endpoints;
        println!(
            "{} clusters x {} services x {more_endpoints} endpoints = {} endpoints: RSS {:.1} MB",
            base.clusters,
            base.services,
            more.endpoints,
            mb(more.rss)
        );
        println!(
            "one more endpoint of an existing service: {:.0} bytes of RSS ({added} endpoints added to the same services)",
            more.rss.saturating_sub(base.rss) as f64 / added as f64
        );
    }

    if let Some(out) = &opts.out {
        std::fs::create_dir_all(out)?;
        let series: Vec<svg::Series> = services
            .iter()
            .map(|&s| svg::Series {
                name: format!("{s} services per cluster"),
                points: std::iter::once((0.0, mb(empty.rss)))
                    .chain(
                        rows.iter()
                            .filter(|r| r.services == s)
                            .map(|r| (r.endpoints as f64, mb(r.rss))),
                    )
                    .collect(),
            })
            .collect();
        let chart = svg::line_chart(
            "Control plane RSS after loading, no proxies",
            "endpoints (10 per service, 1 to 5 clusters)",
            "MB",
            &series,
        );
        let file = out.join("cp-memory-per-endpoint.svg");
        std::fs::write(&file, chart)?;
        println!("chart written to {}", file.display());
    }
    Ok(())
}

/// Starts a control plane on a mesh of `shape`, waits for its first snapshot, and reads its
/// memory once it has settled.
async fn measure(exe: &Path, shape: Shape, work: &Path) -> Result<Row, BenchError> {
    let written = generate::write(&work.join("mesh"), shape)?;
    measure_written(exe, shape, &written, work).await
}

/// Starts a control plane on `written` (a mesh of `shape`) and reads its memory as
/// [`measure`] does.
async fn measure_written(
    exe: &Path,
    shape: Shape,
    written: &generate::Written,
    work: &Path,
) -> Result<Row, BenchError> {
    let cp = control_plane::start(exe, written, work).await?;
    // Ready means the first snapshot is built; give the allocator a moment to settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Some((rss, peak)) = process::memory(cp.pid()) else {
        return Err(BenchError::ProcStatus(cp.pid()));
    };
    Ok(Row {
        services: shape.services,
        clusters: shape.clusters,
        endpoints: shape.total_endpoints(),
        rss,
        peak,
    })
}

/// One row of the table: the mesh, its RSS and its bytes per endpoint, with and without the
/// empty process's `empty_rss`.
fn table_row(r: &Row, endpoints: u32, empty_rss: u64) -> String {
    format!(
        "| {} x {} x {endpoints} | {} | {:.1} MB | {:.1} MB | {:.0} | {:.0} |",
        r.clusters,
        r.services,
        r.endpoints,
        mb(r.rss),
        mb(r.peak),
        r.rss as f64 / r.endpoints.max(1) as f64,
        r.rss.saturating_sub(empty_rss) as f64 / r.endpoints.max(1) as f64
    )
}

/// What one more remote cluster of `services` services adds: the mean over the clusters
/// added between the fewest and the most clusters measured; `None` with one cluster count.
fn remote_cluster_cost(rows: &[Row], services: u32, endpoints: u32) -> Option<String> {
    let of: Vec<&Row> = rows.iter().filter(|r| r.services == services).collect();
    let first = of.iter().min_by_key(|r| r.clusters)?;
    let last = of.iter().max_by_key(|r| r.clusters)?;
    if last.clusters <= first.clusters {
        return None;
    }
    let added = last.clusters - first.clusters;
    let per_cluster = last.rss.saturating_sub(first.rss) as f64 / f64::from(added);
    Some(format!(
        "a remote cluster of {} endpoints ({services} services) adds {:.1} MB ({:.0} bytes per endpoint; mean over {added} added)",
        u64::from(services) * u64::from(endpoints),
        per_cluster / 1e6,
        per_cluster / (f64::from(services) * f64::from(endpoints)).max(1.0)
    ))
}

/// Least-squares slope of RSS over endpoints.
fn slope(rows: &[Row]) -> f64 {
    let n = rows.len() as f64;
    if rows.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = rows.iter().fold((0.0, 0.0), |(x, y), r| {
        (x + r.endpoints as f64, y + r.rss as f64)
    });
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = rows.iter().fold((0.0, 0.0), |(num, den), r| {
        let dx = r.endpoints as f64 - mx;
        (num + dx * (r.rss as f64 - my), den + dx * dx)
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(endpoints: u64, rss: u64) -> Row {
        Row {
            services: 1,
            clusters: 1,
            endpoints,
            rss,
            peak: rss,
        }
    }

    fn options(services: Vec<u32>, clusters: Vec<u32>) -> MemoryOptions {
        MemoryOptions {
            exe: "/usr/bin/isthmus".into(),
            services,
            clusters,
            endpoints: 10,
            more_endpoints: 20,
            work: "/tmp/w".into(),
            out: None,
        }
    }

    #[test]
    fn slope_is_the_cost_of_one_more_endpoint() {
        // 10 MB of process plus 1,000 bytes per endpoint, with noise that cancels out.
        let rows = [
            row(0, 10_000_000),
            row(10_000, 20_000_000 + 5_000),
            row(20_000, 30_000_000 - 5_000),
            row(40_000, 50_000_000),
        ];
        let s = slope(&rows);
        assert!((s - 1000.0).abs() < 1.0, "{s}");
        assert_eq!(slope(&rows[..1]), 0.0);
        assert_eq!(slope(&[row(5, 1), row(5, 9)]), 0.0);
    }

    #[test]
    fn options_need_a_mesh_with_the_control_plane_s_cluster() {
        assert!(check(&options(vec![400], vec![1, 2])).is_ok());
        let err = check(&options(vec![], vec![1])).expect_err("no services");
        assert_eq!(
            err.to_string(),
            "--services and --clusters each need at least one value"
        );
        assert!(check(&options(vec![400], vec![])).is_err());
        let err = check(&options(vec![400], vec![1, 0])).expect_err("zero clusters");
        assert_eq!(
            err.to_string(),
            "--clusters: a mesh has at least one cluster (the control plane's own)"
        );
        // Refused before anything is started, not after the baseline was measured.
        let err = check(&options(vec![400, 0], vec![1])).expect_err("zero services");
        assert_eq!(
            err.to_string(),
            "--services and --endpoints must each be at least 1"
        );
        let mut none = options(vec![400], vec![1]);
        none.endpoints = 0;
        assert!(check(&none).is_err());
    }

    #[test]
    fn table_rows_count_bytes_per_endpoint_with_and_without_the_process() {
        let r = Row {
            services: 400,
            clusters: 2,
            endpoints: 8_000,
            rss: 20_000_000,
            peak: 25_500_000,
        };
        assert_eq!(
            table_row(&r, 10, 12_000_000),
            "| 2 x 400 x 10 | 8000 | 20.0 MB | 25.5 MB | 2500 | 1000 |"
        );
        // A mesh smaller than the empty process's noise costs nothing, not a negative.
        let small = Row {
            rss: 11_000_000,
            ..r
        };
        assert!(table_row(&small, 10, 12_000_000).ends_with("| 1375 | 0 |"));
    }

    #[test]
    fn a_remote_cluster_costs_the_mean_over_the_added_clusters() {
        let at = |clusters, rss| Row {
            services: 400,
            clusters,
            endpoints: u64::from(clusters) * 4_000,
            rss,
            peak: rss,
        };
        let rows = [at(1, 10_000_000), at(3, 18_000_000), at(2, 14_000_000)];
        assert_eq!(
            remote_cluster_cost(&rows, 400, 10).as_deref(),
            Some("a remote cluster of 4000 endpoints (400 services) adds 4.0 MB (1000 bytes per endpoint; mean over 2 added)")
        );
        // One cluster count, or a service count not measured: nothing to compare.
        assert_eq!(remote_cluster_cost(&rows[..1], 400, 10), None);
        assert_eq!(remote_cluster_cost(&rows, 2000, 10), None);
    }
}
