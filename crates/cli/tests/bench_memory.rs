//! `isthmus bench memory` on a tiny mesh: a real control plane started on an empty mesh (the
//! baseline) and on meshes of one and two clusters, with the table and the cost of a remote
//! cluster printed. A check on generated meshes once refused the empty baseline, and the
//! command failed on every run without anyone seeing it.

use std::process::Command;

#[test]
fn bench_memory_measures_the_baseline_and_a_remote_cluster() {
    let work = std::env::temp_dir().join(format!("isthmus-memory-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args([
            "bench",
            "memory",
            "--services",
            "20",
            "--endpoints",
            "2",
            "--clusters",
            "1,2",
            "--more-endpoints",
            "0",
            "--work",
        ])
        .arg(&work)
        .arg("--out")
        .arg(work.join("chart"))
        .output()
        .expect("run isthmus bench memory");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        out.status.success(),
        "bench memory failed:\n{stdout}\n{stderr}"
    );
    for seen in [
        "empty mesh: RSS ",
        "| 1 x 20 x 2 | 40 |",
        "| 2 x 20 x 2 | 80 |",
        "a remote cluster of 40 endpoints (20 services) adds ",
    ] {
        assert!(stdout.contains(seen), "missing `{seen}` in\n{stdout}");
    }
}
