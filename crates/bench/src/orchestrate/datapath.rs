//! `isthmus bench datapath`: the data path in the lab. Latency of sleep -> sidecar ->
//! cluster2's gateway -> httpbin's sidecar -> httpbin against httpbin called directly inside
//! its pod, kept-alive and with new connections, then open-loop load at fixed rates; each
//! measurement is `isthmus bench http` run inside a pod.

use crate::error::BenchError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `bench datapath` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathOptions {
    /// The `isthmus` binary: the lab's processes and `bench http` inside the pods.
    pub exe: PathBuf,
    /// Requests per measurement.
    pub requests: usize,
    /// State directory for the lab.
    pub state: PathBuf,
}

/// The lab it brings up (relative to the working directory, like the docs run it).
const LAB_DIR: &str = "examples/gateway-connected";

/// Requests of the warm-up before each closed-loop measurement.
const WARM_UP_REQUESTS: usize = 50;

/// Where each closed-loop measurement runs: label, cluster, namespace, pod, address, Host
/// header, and whether every request opens a new connection.
type Closed = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
);

const CLOSED_LOOP: [Closed; 4] = [
    (
        "direct, kept-alive (inside httpbin's pod, 127.0.0.1:80)",
        "cluster2",
        "bar",
        "httpbin",
        "127.0.0.1:80",
        "httpbin",
        false,
    ),
    (
        "mesh, kept-alive (sleep -> sidecar -> gateway -> sidecar -> httpbin)",
        "cluster1",
        "foo",
        "sleep",
        "127.255.0.2:8000",
        "httpbin.bar.global:8000",
        false,
    ),
    (
        "direct, new connection each",
        "cluster2",
        "bar",
        "httpbin",
        "127.0.0.1:80",
        "httpbin",
        true,
    ),
    (
        "mesh, new connection each",
        "cluster1",
        "foo",
        "sleep",
        "127.255.0.2:8000",
        "httpbin.bar.global:8000",
        true,
    ),
];

/// The same two paths for the open-loop load: label, cluster, namespace, pod, address, Host.
const OPEN_LOOP: [(&str, &str, &str, &str, &str, &str); 2] = [
    (
        "direct",
        "cluster2",
        "bar",
        "httpbin",
        "127.0.0.1:80",
        "httpbin",
    ),
    (
        "mesh",
        "cluster1",
        "foo",
        "sleep",
        "127.255.0.2:8000",
        "httpbin.bar.global:8000",
    ),
];

/// Offered rates of the open-loop load, requests per second.
const RATES: [u32; 3] = [200, 1000, 3000];

/// `isthmus bench http` for `requests` sequential GETs (prints p50 p90 p99 in µs).
fn closed_loop_command(
    exe: &str,
    addr: &str,
    host: &str,
    requests: usize,
    new_connections: bool,
) -> Vec<String> {
    let mut cmd = vec![
        exe.to_string(),
        "bench".into(),
        "http".into(),
        "--addr".into(),
        addr.into(),
        "--host".into(),
        host.into(),
        "--requests".into(),
        requests.to_string(),
    ];
    if new_connections {
        cmd.push("--new-connections".into());
    }
    cmd
}

/// `isthmus bench http` at `rate` requests per second for 5 s (prints p50 p90 p99 in µs,
/// completed requests per second and errors).
fn open_loop_command(exe: &str, addr: &str, host: &str, rate: u32) -> Vec<String> {
    [
        exe,
        "bench",
        "http",
        "--addr",
        addr,
        "--host",
        host,
        "--rate",
        &rate.to_string(),
        "--seconds",
        "5",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

/// The numbers in `stdout`, if there are exactly `want` of them.
fn numbers(stdout: &str, want: usize) -> Option<Vec<f64>> {
    let nums: Vec<f64> = stdout
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums.len() == want).then_some(nums)
}

/// Runs `bench http` inside a pod and reads the `want` numbers it prints.
fn pod_numbers(
    lab: &isthmus_lab::Lab,
    (cluster, ns, pod): (&str, &str, &str),
    cmd: &[String],
    want: usize,
    label: &str,
) -> Result<Vec<f64>, BenchError> {
    let out = lab.exec_output(cluster, ns, pod, cmd)?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    match numbers(&text, want) {
        Some(nums) if out.status.success() => Ok(nums),
        _ => Err(BenchError::PodOutput {
            label: label.to_string(),
            stdout: text,
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }),
    }
}

/// One row of the open-loop table from `bench http --rate`'s five numbers.
fn rated_row(rate: u32, label: &str, n: &[f64]) -> String {
    format!(
        "| {rate}/s | {label} | {:.0} | {:.3} ms | {:.3} ms | {:.3} ms | {} |",
        n[3],
        n[0] / 1000.0,
        n[1] / 1000.0,
        n[2] / 1000.0,
        n[4]
    )
}

/// What the mesh adds at p90, kept-alive and with new connections, from the four
/// closed-loop rows (direct, mesh, direct, mesh); `None` unless all four were measured.
fn added_by_the_mesh(rows: &[(String, [f64; 3])]) -> Option<String> {
    (rows.len() >= 4).then(|| {
        format!(
            "added by the mesh: {:.3} ms p90 kept-alive, {:.3} ms p90 with a new connection",
            rows[1].1[1] - rows[0].1[1],
            rows[3].1[1] - rows[2].1[1]
        )
    })
}

/// A policy row: label, the file applied in cluster2's `bar`, request headers (with the
/// lab's `${JWT_...}` variables).
type PolicyRow = (&'static str, &'static str, Vec<&'static str>);

/// The policy rows, each measured on the mesh path with its file applied.
fn policy_rows() -> Vec<PolicyRow> {
    vec![
        (
            "mesh, kept-alive, AuthorizationPolicy (RBAC: ALLOW GET /ip from sleep's principal)",
            "extra/authz-allow-get-ip.yaml",
            vec![],
        ),
        (
            "mesh, kept-alive, RequestAuthentication (ES256 token verified) + AuthorizationPolicy",
            "extra/jwt-authn.yaml",
            vec!["Authorization: Bearer ${JWT_ALICE}"],
        ),
    ]
}

/// The key and token `extra/jwt-authn.yaml` and the JWT row use, made for this run.
fn jwt_variables() -> Result<Vec<(String, String)>, BenchError> {
    let spec = isthmus_lab::jwt::JwtSpec {
        keys: vec!["lab".into()],
        tokens: [(
            "ALICE".to_string(),
            isthmus_lab::jwt::TokenSpec {
                key: "lab".into(),
                issuer: "isthmus-lab".into(),
                subject: "alice".into(),
                audience: None,
                claims: Default::default(),
            },
        )]
        .into_iter()
        .collect(),
    };
    isthmus_lab::jwt::variables(&spec).map_err(|e| BenchError::Measure(e.to_string()))
}

fn substitute(text: &str, vars: &[(String, String)]) -> String {
    vars.iter().fold(text.to_string(), |t, (k, v)| {
        t.replace(&format!("${{{k}}}"), v)
    })
}

/// Waits (up to 30 s) until sleep's GET /headers of httpbin.bar.global answers `status`
/// without a token: the policy of the row is (or is no longer) in force in httpbin's sidecar.
fn wait_for_status(lab: &isthmus_lab::Lab, status: &str, label: &str) -> Result<(), BenchError> {
    let cmd: Vec<String> = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-m",
        "5",
        "http://httpbin.bar.global:8000/headers",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = lab.exec_output("cluster1", "foo", "sleep", &cmd)?;
        let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if got == status {
            // Connections accepted before the change drain on the old chain: let them go.
            std::thread::sleep(Duration::from_secs(1));
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(BenchError::PodOutput {
                label: format!("{label}: waiting for {status}"),
                stdout: got,
                stderr: String::from_utf8_lossy(&out.stderr).to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The measurements, with the lab up: closed-loop rows (label, p50 p90 p99 in ms); prints
/// the open-loop table on the way.
fn measure(
    lab: &mut isthmus_lab::Lab,
    dir: &Path,
    exe: &str,
    requests: usize,
    quiet: &mut dyn FnMut(&str),
) -> Result<Vec<(String, [f64; 3])>, BenchError> {
    lab.scenario_vars = jwt_variables()?;
    lab.apply("cluster1", &dir.join("seed/httpbin-bar.yaml"), "foo", quiet)?;
    std::thread::sleep(Duration::from_secs(2));
    let mut rows = Vec::new();
    for (label, cluster, ns, pod, addr, host, new) in CLOSED_LOOP {
        let cmd = closed_loop_command(exe, addr, host, requests, new);
        // Warm up (connections, TLS sessions), then measure.
        let warm = closed_loop_command(exe, addr, host, WARM_UP_REQUESTS, new);
        lab.exec_output(cluster, ns, pod, &warm)?;
        let nums = pod_numbers(lab, (cluster, ns, pod), &cmd, 3, label)?;
        rows.push((
            label.to_string(),
            [nums[0] / 1000.0, nums[1] / 1000.0, nums[2] / 1000.0],
        ));
    }
    // Open loop at fixed rates, kept-alive connections.
    let mut rated = Vec::new();
    for rate in RATES {
        for (label, cluster, ns, pod, addr, host) in OPEN_LOOP {
            let cmd = open_loop_command(exe, addr, host, rate);
            let nums = pod_numbers(
                lab,
                (cluster, ns, pod),
                &cmd,
                5,
                &format!("{label} at {rate}/s"),
            )?;
            rated.push((rate, label, nums));
        }
    }
    // Policy filters on the data path, each measured right after the same path without one.
    for (label, file, headers) in policy_rows() {
        let headers: Vec<String> = headers
            .iter()
            .map(|h| substitute(h, &lab.scenario_vars))
            .collect();
        let (_, cluster, ns, pod, addr, host, new) = CLOSED_LOOP[1];
        lab.exec_output(
            cluster,
            ns,
            pod,
            &closed_loop_command(exe, addr, host, WARM_UP_REQUESTS, new),
        )?;
        let before = pod_numbers(
            lab,
            (cluster, ns, pod),
            &closed_loop_command(exe, addr, host, requests, new),
            3,
            "mesh, kept-alive, no policy",
        )?;
        rows.push((
            "mesh, kept-alive, no policy (just before the next row)".to_string(),
            [before[0] / 1000.0, before[1] / 1000.0, before[2] / 1000.0],
        ));
        lab.apply("cluster2", &dir.join(file), "bar", quiet)?;
        wait_for_status(lab, "403", label)?;
        let mut warm = closed_loop_command(exe, addr, host, WARM_UP_REQUESTS, new);
        let mut cmd = closed_loop_command(exe, addr, host, requests, new);
        for h in &headers {
            for c in [&mut warm, &mut cmd] {
                c.push("--header".into());
                c.push(h.clone());
            }
        }
        lab.exec_output(cluster, ns, pod, &warm)?;
        let nums = pod_numbers(lab, (cluster, ns, pod), &cmd, 3, label)?;
        rows.push((
            label.to_string(),
            [nums[0] / 1000.0, nums[1] / 1000.0, nums[2] / 1000.0],
        ));
        lab.delete("cluster2", &dir.join(file), "bar", quiet)?;
        wait_for_status(lab, "200", &format!("{label} removed"))?;
    }
    println!("| offered rate | path | completed/s | p50 | p90 | p99 | errors |");
    println!("|---|---|---|---|---|---|---|");
    for (rate, label, n) in &rated {
        println!("{}", rated_row(*rate, label, n));
    }
    Ok(rows)
}

/// Brings up the gateway-connected lab under `opts.state`, measures, removes the lab (also
/// when a measurement failed) and prints the tables.
pub fn run(opts: &DatapathOptions) -> Result<(), BenchError> {
    let lab_opts = isthmus_lab::LabOptions {
        state_dir: opts.state.clone(),
        prefix: "ibd".into(),
        exe: opts.exe.clone(),
        envoy: None,
        kubernetes: false,
        scoping: None,
        scope_idle: 0,
        kube_bin: None,
        replace: false,
    };
    let dir = PathBuf::from(LAB_DIR);
    if !dir.join("topology.yaml").is_file() {
        return Err(BenchError::InvalidOptions(
            "bench datapath brings up examples/gateway-connected: run it from the repository's root",
        ));
    }
    let mut quiet = |_: &str| {};
    let mut lab = isthmus_lab::Lab::up(&dir, lab_opts.clone(), &mut quiet)?;
    let exe = opts.exe.display().to_string();
    let result = measure(&mut lab, &dir, &exe, opts.requests, &mut quiet);
    isthmus_lab::Lab::down(&lab_opts, &mut quiet)?;
    let rows = result?;
    println!("| path | p50 | p90 | p99 |");
    println!("|---|---|---|---|");
    for (label, [p50, p90, p99]) in &rows {
        println!("| {label} | {p50:.3} ms | {p90:.3} ms | {p99:.3} ms |");
    }
    if let Some(line) = added_by_the_mesh(&rows) {
        println!("{line}");
    }
    // Rows 4.. come in pairs: the mesh without a policy, then with one.
    for pair in rows[4.min(rows.len())..].chunks(2) {
        if let [(_, before), (label, with)] = pair {
            println!(
                "added by the policy, kept-alive: {:.3} ms p50, {:.3} ms p90 ({label})",
                with[0] - before[0],
                with[1] - before[1]
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loop_commands_differ_from_their_warm_up_only_in_requests() {
        let cmd = closed_loop_command("/bin/isthmus", "127.0.0.1:80", "httpbin", 1000, true);
        assert_eq!(
            cmd,
            [
                "/bin/isthmus",
                "bench",
                "http",
                "--addr",
                "127.0.0.1:80",
                "--host",
                "httpbin",
                "--requests",
                "1000",
                "--new-connections",
            ]
        );
        let warm = closed_loop_command("/bin/isthmus", "127.0.0.1:80", "httpbin", 50, true);
        let differ: Vec<usize> = (0..cmd.len()).filter(|&i| cmd[i] != warm[i]).collect();
        assert_eq!(differ, [8]);
        assert_eq!(warm[8], "50");
        let kept_alive = closed_loop_command("x", "a", "h", 10, false);
        assert_eq!(kept_alive.last().map(String::as_str), Some("10"));
    }

    #[test]
    fn open_loop_commands_run_five_seconds_at_the_rate() {
        assert_eq!(
            open_loop_command("/bin/isthmus", "127.255.0.2:8000", "h:8000", 3000).join(" "),
            "/bin/isthmus bench http --addr 127.255.0.2:8000 --host h:8000 --rate 3000 --seconds 5"
        );
    }

    #[test]
    fn numbers_must_be_exactly_as_many_as_wanted() {
        assert_eq!(
            numbers("812 955 1304\n", 3),
            Some(vec![812.0, 955.0, 1304.0])
        );
        assert_eq!(
            numbers("90 120 400 999.5 0", 5),
            Some(vec![90.0, 120.0, 400.0, 999.5, 0.0])
        );
        assert_eq!(numbers("812 955", 3), None);
        assert_eq!(numbers("error: connection refused", 3), None);
        assert_eq!(numbers("", 3), None);
    }

    #[test]
    fn rated_rows_print_microseconds_as_milliseconds() {
        assert_eq!(
            rated_row(1000, "mesh", &[812.0, 955.0, 1304.0, 999.6, 2.0]),
            "| 1000/s | mesh | 1000 | 0.812 ms | 0.955 ms | 1.304 ms | 2 |"
        );
    }

    #[test]
    fn the_mesh_adds_the_p90_difference() {
        let row = |p90: f64| (String::new(), [0.0, p90, 0.0]);
        let rows = [row(0.2), row(0.7), row(1.0), row(2.5)];
        assert_eq!(
            added_by_the_mesh(&rows).as_deref(),
            Some("added by the mesh: 0.500 ms p90 kept-alive, 1.500 ms p90 with a new connection")
        );
        assert_eq!(added_by_the_mesh(&rows[..3]), None);
    }
}
