//! Running Envoy as a child that cannot outlive the agent.

use std::path::Path;
use std::process::Stdio;
use tokio::process::{Child, Command};

/// Starts Envoy with `bootstrap`. Envoy is killed when the agent exits, even by a signal
/// the agent cannot catch.
/// With `run_as`, Envoy runs as that uid and gid (1337 under capture, so that its own
/// traffic is not captured again).
/// `peer` is what Envoy tells its peers who it is (`CLUSTER;NAMESPACE;WORKLOAD`, in
/// [`isthmus_api::telemetry::PEER_ENV`]); its stdout (the telemetry lines) is piped to the
/// agent.
pub fn start(
    envoy: &Path,
    bootstrap: &Path,
    log_level: &str,
    run_as: Option<u32>,
    peer: &str,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(envoy);
    if let Some(id) = run_as {
        cmd.uid(id).gid(id);
    }
    cmd.arg("-c")
        .arg(bootstrap)
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg(log_level)
        .arg("--drain-time-s")
        .arg("1")
        .env(isthmus_api::telemetry::PEER_ENV, peer)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Finds Envoy: the given path, else `envoy` on PATH, else the project's `.venv/bin/envoy`.
pub fn locate(given: Option<&Path>) -> Option<std::path::PathBuf> {
    if let Some(p) = given {
        return p.exists().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let c = dir.join("envoy");
        if c.is_file() {
            return Some(c);
        }
    }
    let venv = Path::new(".venv/bin/envoy");
    venv.is_file().then(|| venv.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_path_is_used_only_when_it_exists() {
        let missing = Path::new("/nonexistent/bin/envoy");
        assert_eq!(locate(Some(missing)), None);
        let here = std::env::current_exe().expect("test binary");
        assert_eq!(locate(Some(&here)), Some(here.clone()));
    }
}
