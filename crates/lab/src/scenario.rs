//! Scenarios: a YAML list of steps (apply, delete, exec, Envoy statistics, waits) with
//! expected results, run against the lab; any failed expectation fails the run.

use crate::error::{io, LabError};
use crate::lab::Lab;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// Title.
    pub name: String,
    /// The lab folder it runs in, relative to the scenario file.
    pub lab: PathBuf,
    /// Signing keys and tokens made when the scenario starts (`${JWKS_KEY}`, `${JWT_NAME}` in
    /// the files it applies and the commands it runs).
    #[serde(default)]
    pub jwt: crate::jwt::JwtSpec,
    /// Steps, in order.
    pub steps: Vec<Step>,
}

/// A pod reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodRef {
    /// Cluster.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Pod, Deployment or app name.
    pub pod: String,
}

/// A file to apply or delete.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// Cluster.
    pub cluster: String,
    /// File, relative to the scenario file.
    pub file: PathBuf,
    /// Default namespace.
    #[serde(default = "default_ns")]
    pub namespace: String,
}

fn default_ns() -> String {
    "default".into()
}

/// An Envoy statistic of a pod.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatRef {
    /// The pod.
    #[serde(flatten)]
    pub pod: PodRef,
    /// Statistic name, as `/stats` prints it.
    pub stat: String,
}

/// What a step expects.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    /// Exit code of a command.
    pub exit_code: Option<i32>,
    /// The command must fail (any non-zero exit).
    #[serde(default)]
    pub fails: bool,
    /// Every string must appear in stdout.
    #[serde(default)]
    pub stdout_contains: Vec<String>,
    /// No string may appear in stdout.
    #[serde(default)]
    pub stdout_lacks: Vec<String>,
    /// A statistic at least this.
    pub at_least: Option<u64>,
    /// A statistic exactly this.
    pub equals: Option<u64>,
    /// A statistic at most this.
    pub at_most: Option<u64>,
    /// The first number stdout prints lies in this range (both ends included), such as a
    /// count of answers within a binomial bound.
    pub stdout_number_between: Option<[u64; 2]>,
}

/// One step.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// What it shows.
    pub name: String,
    /// Apply a file.
    pub apply: Option<FileRef>,
    /// Delete what a file names.
    pub delete: Option<FileRef>,
    /// Run a command in a pod (`${podIP:CLUSTER/NS/POD}` is replaced by that pod's IP,
    /// `${labDir}` by the lab's state folder, which holds each cluster's CA in `ca/`).
    pub exec: Option<ExecStep>,
    /// Read an Envoy statistic.
    pub envoy_stat: Option<StatRef>,
    /// GET a path of a pod's Envoy admin (`/clusters`, `/config_dump`); the expectations
    /// on stdout apply to the body.
    pub envoy_admin: Option<AdminRef>,
    /// Read a log file of a pod (`agent.log` holds Envoy's access log); the expectations on
    /// stdout apply to it.
    pub pod_log: Option<LogRef>,
    /// Stop a mesh component (`control-plane`, `gateway`, `egress-gateway`), keeping its pod.
    pub stop: Option<ComponentRef>,
    /// Start a stopped mesh component again; the step passes when every proxy is ready.
    pub start: Option<ComponentRef>,
    /// Stop and start a mesh component.
    pub restart: Option<ComponentRef>,
    /// Start a VM on the cluster's VM subnet (`${podIP:CLUSTER/NS/NAME}` gives its address
    /// in later steps and in the files they apply).
    pub vm: Option<crate::vm::VmSpec>,
    /// Stop a VM.
    pub delete_vm: Option<PodRef>,
    /// Expectations.
    #[serde(default)]
    pub expect: Expect,
    /// Retry until the expectations hold, for up to this many seconds.
    #[serde(default)]
    pub within_seconds: u64,
}

/// A mesh component of a cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentRef {
    /// Cluster.
    pub cluster: String,
    /// `control-plane`, `gateway` or `egress-gateway`.
    pub component: String,
}

/// A log file of a pod.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRef {
    /// The pod.
    #[serde(flatten)]
    pub pod: PodRef,
    /// File in the pod's directory: `agent.log` (agent and Envoy) or `app.log`.
    pub file: String,
}

/// A path of a pod's Envoy admin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRef {
    /// The pod.
    #[serde(flatten)]
    pub pod: PodRef,
    /// Path, such as `/clusters`.
    pub path: String,
}

/// A command in a pod.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecStep {
    /// The pod.
    #[serde(flatten)]
    pub pod: PodRef,
    /// argv.
    pub command: Vec<String>,
}

impl Scenario {
    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<(Scenario, PathBuf), LabError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let s: Scenario = isthmus_api::yaml::from_str(&text)
            .map_err(|e| LabError::Invalid(format!("{}: {e}", path.display())))?;
        for (i, step) in s.steps.iter().enumerate() {
            let actions = [
                step.apply.is_some(),
                step.delete.is_some(),
                step.exec.is_some(),
                step.envoy_stat.is_some(),
                step.envoy_admin.is_some(),
                step.pod_log.is_some(),
                step.stop.is_some(),
                step.start.is_some(),
                step.restart.is_some(),
                step.vm.is_some(),
                step.delete_vm.is_some(),
            ];
            if actions.iter().filter(|a| **a).count() != 1 {
                return Err(LabError::Invalid(format!(
                    "{}: steps[{i}] `{}`: give exactly one of apply, delete, exec, envoyStat, envoyAdmin, podLog, stop, start, restart, vm, deleteVm",
                    path.display(),
                    step.name
                )));
            }
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((s, base))
    }
}

fn substitute(lab: &Lab, arg: &str) -> Result<String, LabError> {
    let mut out = arg
        .replace("${isthmus}", &lab.options().exe_arg())
        .replace("${labDir}", &lab.options().state_dir.display().to_string());
    for (name, value) in &lab.scenario_vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    while let Some(start) = out.find("${podIP:") {
        let end = out[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or_else(|| LabError::Invalid(format!("unterminated ${{podIP:...}} in `{arg}`")))?;
        let spec = &out[start + 8..end];
        let parts: Vec<&str> = spec.split('/').collect();
        let [c, ns, pod] = parts.as_slice() else {
            return Err(LabError::Invalid(format!(
                "`${{podIP:{spec}}}` must be CLUSTER/NAMESPACE/POD"
            )));
        };
        let ip = lab.state.pod(c, ns, pod)?.ip.clone();
        out.replace_range(start..=end, &ip);
    }
    Ok(out)
}

/// Runs one step once; `Ok(detail)` when its expectations hold, `Err(why)` otherwise.
fn attempt(lab: &mut Lab, base: &Path, step: &Step) -> Result<Result<String, String>, LabError> {
    let e = &step.expect;
    let mut quiet = |_: &str| {};
    if let Some(f) = &step.apply {
        lab.apply(&f.cluster, &base.join(&f.file), &f.namespace, &mut quiet)?;
        return Ok(Ok(format!("applied {} in {}", f.file.display(), f.cluster)));
    }
    if let Some(v) = &step.vm {
        let ip = lab.add_vm(v, &mut quiet)?;
        return Ok(Ok(format!(
            "VM {}/{} at {ip}, sidecar ready",
            v.namespace, v.name
        )));
    }
    if let Some(v) = &step.delete_vm {
        lab.delete_vm(&v.cluster, &v.namespace, &v.pod, &mut quiet)?;
        return Ok(Ok(format!("VM {}/{} deleted", v.namespace, v.pod)));
    }
    if let Some(c) = &step.stop {
        lab.stop_component(&c.cluster, c.component.parse()?, &mut quiet)?;
        return Ok(Ok(format!("{} of {} stopped", c.component, c.cluster)));
    }
    if let Some(c) = &step.start {
        let took = lab.start_component(&c.cluster, c.component.parse()?, &mut quiet)?;
        return Ok(Ok(format!(
            "{} of {} started; it and every proxy answer ready after {:.1} s",
            c.component,
            c.cluster,
            took.as_secs_f64()
        )));
    }
    if let Some(c) = &step.restart {
        let took = lab.restart_component(&c.cluster, c.component.parse()?, &mut quiet)?;
        return Ok(Ok(format!(
            "{} of {} restarted; it and every proxy answer ready after {:.1} s",
            c.component,
            c.cluster,
            took.as_secs_f64()
        )));
    }
    if let Some(f) = &step.delete {
        lab.delete(&f.cluster, &base.join(&f.file), &f.namespace, &mut quiet)?;
        return Ok(Ok(format!("deleted {} in {}", f.file.display(), f.cluster)));
    }
    if let Some(x) = &step.exec {
        let cmd: Vec<String> = x
            .command
            .iter()
            .map(|a| substitute(lab, a))
            .collect::<Result<_, _>>()?;
        let out = lab.exec_output(&x.pod.cluster, &x.pod.namespace, &x.pod.pod, &cmd)?;
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let shown = || {
            let t = stdout.trim();
            let t = if t.len() > 300 { &t[..300] } else { t };
            format!("exit {code}, stdout: {t} stderr: {}", stderr.trim())
        };
        if let Some(want) = e.exit_code {
            if code != want {
                return Ok(Err(format!("expected exit {want}; {}", shown())));
            }
        }
        if e.fails && code == 0 {
            return Ok(Err(format!("expected the command to fail; {}", shown())));
        }
        for s in &e.stdout_contains {
            if !stdout.contains(s.as_str()) {
                return Ok(Err(format!("stdout lacks `{s}`; {}", shown())));
            }
        }
        for s in &e.stdout_lacks {
            if stdout.contains(s.as_str()) {
                return Ok(Err(format!("stdout has `{s}`; {}", shown())));
            }
        }
        if let Some([lo, hi]) = e.stdout_number_between {
            let n: Option<f64> = stdout.split_whitespace().find_map(|w| w.parse().ok());
            match n {
                Some(n) if n >= lo as f64 && n <= hi as f64 => {
                    return Ok(Ok(format!("{n} (expected {lo}..={hi})")))
                }
                Some(n) => return Ok(Err(format!("{n} is outside {lo}..={hi}; {}", shown()))),
                None => return Ok(Err(format!("no number in stdout; {}", shown()))),
            }
        }
        let first = stdout
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        return Ok(Ok(if e.fails {
            format!("failed as expected (exit {code})")
        } else {
            format!("exit {code}: {first}")
        }));
    }
    if let Some(st) = &step.envoy_stat {
        let v = lab.envoy_stat(&st.pod.cluster, &st.pod.namespace, &st.pod.pod, &st.stat)?;
        if let Some(min) = e.at_least {
            if v < min {
                return Ok(Err(format!("{} = {v}, expected at least {min}", st.stat)));
            }
        }
        if let Some(want) = e.equals {
            if v != want {
                return Ok(Err(format!("{} = {v}, expected {want}", st.stat)));
            }
        }
        if let Some(max) = e.at_most {
            if v > max {
                return Ok(Err(format!("{} = {v}, expected at most {max}", st.stat)));
            }
        }
        return Ok(Ok(format!("{} = {v}", st.stat)));
    }
    if let Some(l) = &step.pod_log {
        let p = lab
            .state
            .pod(&l.pod.cluster, &l.pod.namespace, &l.pod.pod)?
            .clone();
        let file = p.workdir.join(&l.file);
        let body = std::fs::read_to_string(&file).map_err(io(&file))?;
        for s in &e.stdout_contains {
            if !body.contains(s.as_str()) {
                return Ok(Err(format!("{} of {} lacks `{s}`", l.file, p.name)));
            }
        }
        for s in &e.stdout_lacks {
            if let Some(line) = body.lines().find(|x| x.contains(s.as_str())) {
                return Ok(Err(format!("{} of {} has `{s}`: {line}", l.file, p.name)));
            }
        }
        return Ok(Ok(format!("{} of {} as expected", l.file, p.name)));
    }
    if let Some(a) = &step.envoy_admin {
        let p = lab
            .state
            .pod(&a.pod.cluster, &a.pod.namespace, &a.pod.pod)?
            .clone();
        // Envoy answers 404 for a config_dump resource type it holds none of yet: a failed
        // attempt, retried within the step's time.
        let body = match lab.pod_http(&p, 15000, &a.path) {
            Ok(b) => b,
            Err(err) => return Ok(Err(format!("{} of {}: {err}", a.path, p.name))),
        };
        for s in &e.stdout_contains {
            if !body.contains(s.as_str()) {
                return Ok(Err(format!("{} of {} lacks `{s}`", a.path, p.name)));
            }
        }
        for s in &e.stdout_lacks {
            if let Some(line) = body.lines().find(|l| l.contains(s.as_str())) {
                return Ok(Err(format!("{} of {} has `{s}`: {line}", a.path, p.name)));
            }
        }
        return Ok(Ok(format!("{} of {} as expected", a.path, p.name)));
    }
    Ok(Err("the step does nothing".into()))
}

/// The Envoy counters that say where a failed call stopped: connections that could not be
/// made, reset, or found no healthy endpoint, and 5xx answers, per cluster.
const FAILURE_STATS: &str = "/stats?usedonly&filter=upstream_cx_connect_fail%7Cupstream_cx_none_healthy%7Cupstream_rq_5xx%7Cupstream_rq_503%7Cupstream_reset%7Cupstream_cx_destroy_remote_with_active_rq%7Cno_route%7Cno_cluster";

/// After a failed `exec` step: what the calling pod's Envoy counted as failures (its nonzero
/// [`FAILURE_STATS`]), so that a call that failed says whether it found no endpoint, could not
/// connect, was reset on the far side or answered 5xx. Empty when the pod has no Envoy or
/// nothing was counted.
fn caller_envoy_failures(lab: &Lab, pod: &PodRef) -> Vec<String> {
    let Ok(p) = lab.state.pod(&pod.cluster, &pod.namespace, &pod.pod) else {
        return Vec::new();
    };
    match lab.pod_http(p, 15000, FAILURE_STATS) {
        Ok(body) => failure_counters(&body, &format!("{}'s Envoy", p.name)),
        Err(_) => Vec::new(),
    }
}

/// The nonzero counters of an Envoy `/stats` answer (at most 20), each after `who`.
fn failure_counters(stats: &str, who: &str) -> Vec<String> {
    crate::lab::nonzero_counters(stats)
        .map(|(name, n)| format!("{who}: {name} = {n}"))
        .take(20)
        .collect()
}

/// Runs every step, printing `[i/n] name: result`, then checks that no proxy of the lab
/// rejected a configuration update (a NACK means the control plane sent Envoy something it
/// refused, whatever the steps saw); returns the number of failed steps plus one if a
/// proxy rejected an update.
pub fn run(
    lab: &mut Lab,
    scenario: &Scenario,
    base: &Path,
    out: &mut dyn FnMut(&str),
) -> Result<usize, LabError> {
    out(&format!("scenario: {}", scenario.name));
    lab.scenario_vars = crate::jwt::variables(&scenario.jwt)
        .map_err(|e| LabError::Invalid(format!("scenario `{}`: {e}", scenario.name)))?;
    if !scenario.jwt.keys.is_empty() {
        out(&format!(
            "made {} signing key(s) and {} token(s) for this run",
            scenario.jwt.keys.len(),
            scenario.jwt.tokens.len()
        ));
    }
    let n = scenario.steps.len();
    let mut failures = 0;
    for (i, step) in scenario.steps.iter().enumerate() {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(step.within_seconds);
        let result = loop {
            let r = attempt(lab, base, step)?;
            if r.is_ok() || Instant::now() >= deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let took = started.elapsed().as_secs_f64();
        match result {
            Ok(detail) => out(&format!(
                "[{}/{n}] {}: ok ({detail}; {took:.1}s)",
                i + 1,
                step.name
            )),
            Err(why) => {
                failures += 1;
                out(&format!("[{}/{n}] {}: FAILED: {why}", i + 1, step.name));
                if let Some(x) = &step.exec {
                    for line in caller_envoy_failures(lab, &x.pod) {
                        out(&format!("  {line}"));
                    }
                }
            }
        }
    }
    out(&format!(
        "{}: {} of {n} steps passed",
        scenario.name,
        n - failures
    ));
    let (rejected, asked) = lab.rejected_updates();
    if rejected.is_empty() {
        out(&format!(
            "no NACK: all {asked} proxies accepted every configuration update"
        ));
        Ok(failures)
    } else {
        for (who, what) in &rejected {
            out(&format!("NACK FAILED: {who}: {what}"));
        }
        Ok(failures + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_call_shows_the_counters_that_moved() {
        let stats = "cluster.PassthroughCluster.upstream_cx_connect_fail: 0\n\
                     cluster.outbound|8000||httpbin-alt.bar.global.upstream_rq_503: 7\n\
                     cluster.outbound|8000||httpbin-alt.bar.global.upstream_rq_5xx: 7\n\
                     http.outbound_0.0.0.0_8000.no_route: 0\n\
                     not a counter\n";
        assert_eq!(
            failure_counters(stats, "sleep's Envoy"),
            vec![
                "sleep's Envoy: cluster.outbound|8000||httpbin-alt.bar.global.upstream_rq_503 = 7",
                "sleep's Envoy: cluster.outbound|8000||httpbin-alt.bar.global.upstream_rq_5xx = 7",
            ]
        );
        let many: String = (0..30)
            .map(|i| format!("c{i}.upstream_rq_5xx: 1\n"))
            .collect();
        assert_eq!(failure_counters(&many, "x").len(), 20, "at most 20 lines");
    }
}
