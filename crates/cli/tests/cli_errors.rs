//! What a user meets at the command line: when the control plane cannot start, the cause
//! once, what to run, no colour codes in a file, and with `--log-format json` only JSON
//! lines; shell completion scripts that complete.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn isthmus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("ISTHMUS_LOG_FORMAT")
        .output()
        .expect("run isthmus")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("isthmus-cli-errors-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("registry")).expect("scratch");
    d
}

/// `isthmus control-plane`'s arguments, with a registry in `dir` and the CA in `cacerts`.
fn control_plane_args(dir: &Path, cacerts: &Path) -> Vec<String> {
    let registry = format!("c1={}", dir.join("registry").display());
    let cacerts = cacerts.display().to_string();
    let key = dir.join("credential.key").display().to_string();
    [
        "control-plane",
        "--cluster",
        "c1",
        "--network",
        "n1",
        "--registry",
        &registry,
        "--cacerts",
        &cacerts,
        "--credential-key",
        &key,
        "--listen",
        "127.0.0.1:0",
        "--monitoring",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec()
}

fn control_plane(dir: &Path, cacerts: &Path, extra: &[&str]) -> Output {
    let mut args = control_plane_args(dir, cacerts);
    args.extend(extra.iter().map(|a| a.to_string()));
    isthmus(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_missing_ca_is_one_plain_line_with_its_cause_once_and_what_to_run() {
    let dir = scratch("missing");
    let out = control_plane(&dir, &dir.join("no-such-cacerts"), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "{line}"
    );
    assert!(line.contains("ca-cert.pem"), "{line}");
    assert!(line.contains("isthmus ca intermediate --root"), "{line}");
    assert!(!err.contains('\u{1b}'), "colour codes in a pipe: {err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_key_of_another_ca_is_refused_at_start_and_json_logs_stay_json() {
    let dir = scratch("mismatch");
    let root = dir.join("root").display().to_string();
    assert!(isthmus(&["ca", "root", "--out", &root]).status.success());
    for c in ["c1", "c2"] {
        let out = dir.join(c).display().to_string();
        let made = isthmus(&[
            "ca",
            "intermediate",
            "--root",
            &root,
            "--cluster",
            c,
            "--out",
            &out,
        ]);
        assert!(made.status.success(), "{made:?}");
    }
    std::fs::copy(dir.join("c2/ca-key.pem"), dir.join("c1/ca-key.pem")).expect("swap key");
    let out = control_plane(&dir, &dir.join("c1"), &["--log-format", "json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = lines.last().expect("at least the error");
    assert_eq!(last["level"], "ERROR", "{err}");
    let msg = last["fields"]["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("ca-key.pem is not the private key of ca-cert.pem"),
        "{msg}"
    );
    assert!(msg.contains("isthmus ca intermediate"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completion_scripts_complete_the_subcommands_in_bash() {
    for shell in ["bash", "zsh", "fish"] {
        let out = isthmus(&["completion", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("proxy-config") && script.contains("lab"),
            "{shell}"
        );
    }
    // Bash itself completes `isthmus la` to `lab` with the script.
    let bash = format!(
        "source <({} completion bash); COMP_WORDS=(isthmus la); COMP_CWORD=1; _isthmus isthmus la isthmus; echo \"${{COMPREPLY[@]}}\"",
        env!("CARGO_BIN_EXE_isthmus")
    );
    let out = Command::new("bash")
        .args(["-c", &bash])
        .output()
        .expect("bash");
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(
        words.split_whitespace().any(|w| w == "lab"),
        "{words:?} {out:?}"
    );
}

#[test]
fn a_credential_key_made_on_the_spot_is_said_loudly() {
    let dir = scratch("credential");
    let key = dir.join("new/key");
    let issue = || {
        isthmus(&[
            "credential",
            "issue",
            "--key",
            &key.display().to_string(),
            "--namespace",
            "foo",
            "--service-account",
            "sleep",
        ])
    };
    let first = issue();
    assert!(first.status.success(), "{first:?}");
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(
        err.contains("made a new one") && err.contains("--credential-key"),
        "{err}"
    );
    assert!(key.exists());
    // With the key there, nothing to warn about.
    let second = issue();
    assert!(
        second.status.success() && second.stderr.is_empty(),
        "{second:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The control plane starts itself again with glibc's per-thread cache off (what a remote
/// cluster costs it in memory), keeping the user's other tunables, and leaves a cache count
/// the user set alone.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_control_plane_runs_with_glibcs_thread_cache_off_unless_the_user_set_it() {
    let dir = scratch("thread-cache");
    let args = control_plane_args(&dir, &dir.join("no-such-cacerts"));
    let started = |tunables: Option<&str>, restarted: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_isthmus"));
        command
            .args(&args)
            .env("RUST_LOG", "debug")
            .env_remove("ISTHMUS_LOG_FORMAT")
            .env_remove("GLIBC_TUNABLES");
        if let Some(t) = tunables {
            command.env("GLIBC_TUNABLES", t);
        }
        if restarted {
            command.env("ISTHMUS_RESTARTED_WITHOUT_THREAD_CACHE", "1");
        } else {
            command.env_remove("ISTHMUS_RESTARTED_WITHOUT_THREAD_CACHE");
        }
        let child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run isthmus");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait for isthmus");
        // It gets as far as the missing CA, in the process started again.
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("no-such-cacerts"), "{err}");
        (err, pid)
    };
    let off = "glibc's per-thread cache of freed blocks is off";
    let (err, pid) = started(None, false);
    assert!(err.contains(off), "{err}");
    // Started again in place: the process the test started is the one that runs.
    assert!(err.contains(&format!("pid={pid}")), "{err}");
    assert!(
        err.contains("tunables=glibc.malloc.tcache_count=0"),
        "{err}"
    );
    let (err, _) = started(Some("glibc.malloc.arena_max=2"), false);
    assert!(
        err.contains("tunables=glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"),
        "{err}"
    );
    let (err, _) = started(Some("glibc.malloc.tcache_count=3"), false);
    assert!(!err.contains(off), "{err}");
    // A process that is already such a restart never starts itself again, even if the
    // tunable did not reach it (a loader that drops GLIBC_TUNABLES would loop otherwise).
    let (err, _) = started(None, true);
    assert!(!err.contains(off), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
