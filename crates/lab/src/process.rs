//! Background processes of the lab: started inside a namespace, detached from the
//! terminal, recorded by pid so that `down` (or the next `up`) can stop them.

use crate::error::{io, LabError};
use std::path::Path;
use std::process::{Command, Stdio};

/// A command line from string slices.
pub fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// `EXE SUBCOMMAND FLAGS...` as [`spawn`] takes it, from a subcommand's flags as a typed
/// configuration's `to_args` gives them.
pub fn command_line(exe: &str, subcommand: &str, flags: Vec<std::ffi::OsString>) -> Vec<String> {
    [exe.to_string(), subcommand.to_string()]
        .into_iter()
        .chain(flags.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect()
}

/// Starts `args` inside `ns` in the background, output to `log`; returns the pid.
pub fn spawn(ns: &str, args: &[String], log: &Path) -> Result<u32, LabError> {
    spawn_behind(&["ip", "netns", "exec", ns], args, log)
}

/// Starts `args` in the background in network namespace `ns` only, output to `log`;
/// returns the pid. Unlike [`spawn`] (`ip netns exec`, which gives the process a mount
/// namespace of its own), it keeps the host's mounts: a process that itself creates network
/// namespaces (the node agent) must, or they would be invisible outside it.
pub fn spawn_in_net(ns: &str, args: &[String], log: &Path) -> Result<u32, LabError> {
    spawn_behind(
        &["nsenter", &format!("--net=/run/netns/{ns}"), "--"],
        args,
        log,
    )
}

/// Starts `prefix` then `args` in the background, output to `log`, in a process group of
/// its own (a Ctrl-C on the terminal that ran `lab up` does not reach it); returns the pid.
fn spawn_behind(prefix: &[&str], args: &[String], log: &Path) -> Result<u32, LabError> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log).map_err(io(log))?;
    let err = out.try_clone().map_err(io(log))?;
    let child = Command::new(prefix[0])
        .args(&prefix[1..])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Command {
            command: format!("{} {}", prefix.join(" "), shown(args)),
            stderr: e.to_string(),
        })?;
    Ok(child.id())
}

/// A command line for a message: a container's environment (`--env NAME=VALUE`, which may
/// hold a Secret's value) shows only its names.
fn shown(args: &[String]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    let mut env_next = false;
    for a in args {
        if env_next {
            let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
            out.push(format!("{name}=(hidden)"));
        } else {
            out.push(a.clone());
        }
        env_next = a == "--env";
    }
    out.join(" ")
}

/// Runs `args` in network namespace `ns` (as [`spawn`] does) and waits for it to finish,
/// output to `log`; an exit other than 0, or running longer than `timeout`, is an error
/// with the log's last lines.
pub fn run_to_completion(
    ns: &str,
    args: &[String],
    log: &Path,
    timeout: std::time::Duration,
) -> Result<(), LabError> {
    let out = std::fs::File::create(log).map_err(io(log))?;
    let err = out.try_clone().map_err(io(log))?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| LabError::Command {
            command: shown(args),
            stderr: e.to_string(),
        })?;
    let deadline = std::time::Instant::now() + timeout;
    let tail = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(8).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(LabError::Command {
                    command: shown(args),
                    stderr: format!("{status}\n{}", tail()),
                })
            }
            Ok(None) if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::Timeout(format!(
                    "{} still running after {}s\n{}",
                    shown(args),
                    timeout.as_secs(),
                    tail()
                )));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(e) => {
                return Err(LabError::Command {
                    command: shown(args),
                    stderr: e.to_string(),
                })
            }
        }
    }
}

/// True when `pid` is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid <= 1 {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: kill(2) takes plain integers and touches no memory.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Stops `pid`: SIGTERM, then SIGKILL after `grace`.
pub fn stop(pid: u32, grace: std::time::Duration) {
    if !alive(pid) {
        return;
    }
    signal(pid, libc::SIGTERM);
    let deadline = std::time::Instant::now() + grace;
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if alive(pid) {
        signal(pid, libc::SIGKILL);
    }
}

/// Pids of every process whose network namespace is `ns` (by inode), so that nothing the
/// lab started survives `down`, even a grandchild.
pub fn in_namespace(ns: &str) -> Vec<u32> {
    let Ok(target) = std::fs::metadata(format!("/run/netns/{ns}")) else {
        return Vec::new();
    };
    use std::os::unix::fs::MetadataExt;
    let ino = target.ino();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| m.ino() == ino)
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_environment_values_never_reach_a_message() {
        let args: Vec<String> = [
            "isthmus",
            "lab",
            "container-exec",
            "--env",
            "TOKEN=s3cr3t",
            "--",
            "isthmus",
            "--env-like",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let line = shown(&args);
        assert!(!line.contains("s3cr3t"), "{line}");
        assert!(
            line.contains("--env TOKEN=(hidden) -- isthmus --env-like"),
            "{line}"
        );
    }
}
