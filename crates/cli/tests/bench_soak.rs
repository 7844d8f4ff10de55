//! `isthmus bench soak`, short: a real control plane, simulated proxies that reconnect, a
//! stream of endpoint changes, the control plane killed and restarted, a remote registry
//! that vanishes and returns. The soak itself checks that no proxy is left behind and no
//! stream broke while the control plane was up; this test checks that it ran all of it and
//! reported no error (the ten-minute run is in docs/BENCHMARKS.md).

use std::process::Command;

#[test]
fn a_short_soak_with_a_restart_and_a_vanishing_registry_has_no_errors() {
    let work = std::env::temp_dir().join(format!("isthmus-soak-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args([
            "bench",
            "soak",
            "--minutes",
            "0.5",
            "--proxies",
            "40",
            "--services",
            "20",
            "--endpoints",
            "2",
            "--work",
        ])
        .arg(&work)
        .output()
        .expect("run isthmus bench soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&work);
    assert!(out.status.success(), "soak failed:\n{stdout}\n{stderr}");
    for seen in [
        "control plane killed and started again",
        "cluster2's registry vanished",
        "cluster2's registry is back",
        "| **errors** | **0** |",
        "| proxies holding the newest configuration",
    ] {
        assert!(stdout.contains(seen), "missing `{seen}` in\n{stdout}");
    }
    // The restart broke every stream, and every proxy came back.
    let resets = stdout
        .lines()
        .find(|l| l.starts_with("| stream resets"))
        .and_then(|l| l.trim_end_matches(" |").rsplit("| ").next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("a resets row");
    assert!(
        resets >= 40,
        "every proxy reconnected after the restart: {resets}\n{stdout}"
    );
}
