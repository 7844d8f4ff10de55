//! `isthmus bench memory`: the control plane's resident memory against the size of the mesh
//! it serves, before any proxy connects: what one more remote cluster costs, and what one
//! more endpoint costs.

use crate::bench::start_control_plane;
use anyhow::{bail, Result};
use isthmus_bench::generate::{self, Shape};
use std::path::Path;
use std::time::Duration;

/// One measured mesh.
struct Row {
    services: u32,
    clusters: u32,
    endpoints: u64,
    /// Resident set once the first snapshot is built and the process has settled.
    rss: u64,
    /// Highest resident set while loading.
    peak: u64,
}

/// Loads meshes of `clusters` clusters x `services` services x `endpoints` endpoints (every
/// combination, plus an empty mesh) into a control plane each, and prints what each holds;
/// then the largest again with `more_endpoints` endpoints per service, when that is more.
pub(crate) async fn run(
    services: &[u32],
    clusters: &[u32],
    (endpoints, more_endpoints): (u32, u32),
    work: &Path,
    out: Option<&Path>,
) -> Result<()> {
    if services.is_empty() || clusters.is_empty() {
        bail!("--services and --clusters each need at least one value");
    }
    if clusters.contains(&0) {
        bail!("--clusters: a mesh has at least one cluster (the control plane's own)");
    }
    let empty = measure(
        Shape {
            clusters: 1,
            services: 0,
            endpoints,
        },
        work,
    )
    .await?;
    println!(
        "empty mesh: RSS {:.1} MB (the process itself)",
        mb(empty.rss)
    );
    let mut rows = Vec::new();
    for &s in services {
        for &c in clusters {
            let row = measure(
                Shape {
                    clusters: c,
                    services: s,
                    endpoints,
                },
                work,
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
        println!(
            "| {} x {} x {endpoints} | {} | {:.1} MB | {:.1} MB | {:.0} | {:.0} |",
            r.clusters,
            r.services,
            r.endpoints,
            mb(r.rss),
            mb(r.peak),
            r.rss as f64 / r.endpoints.max(1) as f64,
            r.rss.saturating_sub(empty.rss) as f64 / r.endpoints.max(1) as f64
        );
    }
    println!();
    for &s in services {
        let of: Vec<&Row> = rows.iter().filter(|r| r.services == s).collect();
        let (Some(first), Some(last)) = (
            of.iter().min_by_key(|r| r.clusters),
            of.iter().max_by_key(|r| r.clusters),
        ) else {
            continue;
        };
        if last.clusters > first.clusters {
            let added = last.clusters - first.clusters;
            let per_cluster = last.rss.saturating_sub(first.rss) as f64 / f64::from(added);
            println!(
                "a remote cluster of {} endpoints ({s} services) adds {:.1} MB ({:.0} bytes per endpoint; mean over {added} added)",
                u64::from(s) * u64::from(endpoints),
                per_cluster / 1e6,
                per_cluster / (f64::from(s) * f64::from(endpoints)).max(1.0)
            );
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
            Shape {
                clusters: base.clusters,
                services: base.services,
                endpoints: more_endpoints,
            },
            work,
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

    if let Some(out) = out {
        std::fs::create_dir_all(out)?;
        let series: Vec<isthmus_bench::svg::Series> = services
            .iter()
            .map(|&s| isthmus_bench::svg::Series {
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
        let chart = isthmus_bench::svg::line_chart(
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
async fn measure(shape: Shape, work: &Path) -> Result<Row> {
    let written = generate::write(&work.join("mesh"), shape)?;
    let cp = start_control_plane(&written, work).await?;
    // Ready means the first snapshot is built; give the allocator a moment to settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Some((rss, peak)) = isthmus_bench::process::memory(cp.pid()) else {
        bail!("cannot read /proc/{}/status", cp.pid());
    };
    Ok(Row {
        services: shape.services,
        clusters: shape.clusters,
        endpoints: u64::from(shape.clusters)
            * u64::from(shape.services)
            * u64::from(shape.endpoints),
        rss,
        peak,
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
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
}
