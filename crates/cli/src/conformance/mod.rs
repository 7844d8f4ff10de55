//! `isthmus conformance --peer istiod`: for each seed scenario, the lab is brought up on real
//! Kubernetes (`lab up --kubernetes`), the scenario's configuration applied
//! (`examples/*/conformance.yaml`), and the configuration Isthmus sends one of its sidecars
//! fetched; then istiod is started in the control plane's pod, reading the same API servers
//! (the same credential Secrets for other clusters), and asked for the same proxy's
//! configuration (the node id and metadata of the sidecar's own bootstrap). The two are
//! compared after normalising what legitimately differs ([`features`]), each difference is
//! judged ([`verdicts`]) and the report is written to docs/CONFORMANCE.md.
//!
//! Isthmus is asked over its TLS xDS port with a certificate of the sidecar's identity (from
//! the lab's CA); istiod over its plaintext port, bound to 127.0.0.1 inside the control plane's
//! pod. Both are asked by `isthmus conformance fetch`, run inside that pod's network namespace.

pub mod compare;
pub mod features;
pub mod fetch;
pub mod verdicts;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value as PbValue};
use isthmus_lab::state::{LabState, PodState};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The control plane compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// istiod (`pilot-discovery`, built by scripts/install-istiod.sh).
    Istiod,
}

/// `isthmus conformance`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConformanceArgs {
    #[command(subcommand)]
    step: Option<Step>,
    /// The control plane to compare with.
    #[arg(long, value_enum)]
    peer: Option<Peer>,
    /// Scenarios to compare (s1, s2, s3, s4).
    #[arg(long, value_delimiter = ',', default_value = "s1,s2,s3,s4")]
    scenarios: Vec<String>,
    /// Where to write the report.
    #[arg(long, default_value = "docs/CONFORMANCE.md")]
    out: PathBuf,
    /// istiod's pilot-discovery (default: $ISTIOD, then .kube-bin/istiod-*/ here or above).
    #[arg(long)]
    istiod: Option<PathBuf>,
    /// Working directory (lab state, fetched configurations, istiod's logs).
    #[arg(long, default_value = "/tmp/isthmus-conformance")]
    work: PathBuf,
    /// Judge again what the last run fetched into --work (no lab, no istiod): after the
    /// rules of `verdicts.rs` changed.
    #[arg(long)]
    reuse: bool,
}

#[derive(Subcommand, Debug)]
enum Step {
    /// Fetch one proxy's configuration from a control plane and write what is compared, as
    /// JSON (run by `conformance` inside the control plane's network namespace).
    #[command(hide = true)]
    Fetch {
        /// The control plane's xDS `host:port`.
        #[arg(long)]
        xds: String,
        /// The proxy's Envoy bootstrap (its `node` is used as is).
        #[arg(long)]
        bootstrap: PathBuf,
        /// TLS: root certificate, certificate chain and key files (plaintext without).
        #[arg(long, num_args = 3, value_names = ["ROOT", "CHAIN", "KEY"])]
        tls: Option<Vec<PathBuf>>,
        /// How long to keep trying to connect.
        #[arg(long, default_value_t = 180)]
        connect_for: u64,
        /// Where to write the result.
        #[arg(long)]
        out: PathBuf,
    },
}

/// One seed scenario: its lab, the file that applies its configuration, the control plane's
/// cluster and the sidecar compared.
struct Scenario {
    id: &'static str,
    title: &'static str,
    lab: &'static str,
    cluster: &'static str,
    namespace: &'static str,
    pod: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "s1",
        title: "S1 gateway-connected clusters, `*.global` names, subsets and a weighted split (seeds 000, 001)",
        lab: "examples/gateway-connected",
        cluster: "cluster1",
        namespace: "foo",
        pod: "sleep",
    },
    Scenario {
        id: "s2",
        title: "S2 replicated services, STATIC ServiceEntries to the remote gateway (seed 002)",
        lab: "examples/replicated-services",
        cluster: "cluster1",
        namespace: "ns1",
        pod: "foo",
    },
    Scenario {
        id: "s3",
        title: "S3 split-horizon EDS, one control plane, weights 1:3 (seed 003)",
        lab: "examples/split-horizon",
        cluster: "local",
        namespace: "sample",
        pod: "sleep",
    },
    Scenario {
        id: "s4",
        title: "S4 the `*.remote` suffix through egress and ingress gateways (seed 004)",
        lab: "examples/remote-suffix",
        cluster: "a",
        namespace: "default",
        pod: "productpage",
    },
];

/// Runs `isthmus conformance`.
pub fn run(args: ConformanceArgs) -> Result<()> {
    if let Some(Step::Fetch {
        xds,
        bootstrap,
        tls,
        connect_for,
        out,
    }) = args.step
    {
        return fetch_to_file(&xds, &bootstrap, tls.as_deref(), connect_for, &out);
    }
    if args.peer.is_none() {
        bail!("give the control plane to compare with: `isthmus conformance --peer istiod`");
    }
    let chosen: Vec<&Scenario> = args
        .scenarios
        .iter()
        .map(|id| {
            SCENARIOS
                .iter()
                .find(|s| s.id == id.as_str())
                .with_context(|| {
                    format!(
                        "--scenarios: no scenario {id:?}; known: {}",
                        SCENARIOS
                            .iter()
                            .map(|s| s.id)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
        })
        .collect::<Result<_>>()?;
    let istiod = isthmus_kube::local::locate_istiod(args.istiod.as_deref())?;
    let exe = std::env::current_exe().context("finding the isthmus binary")?;
    std::fs::create_dir_all(&args.work)
        .with_context(|| format!("creating {}", args.work.display()))?;
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    for s in chosen {
        let dir = args.work.join(s.id);
        let failure = dir.join("not-compared.txt");
        let judged = if args.reuse && failure.is_file() {
            Err(anyhow::anyhow!(
                "{}",
                std::fs::read_to_string(&failure).unwrap_or_default()
            ))
        } else if args.reuse {
            let read = |f: &str| read_features(&dir.join(f));
            read("isthmus.json").and_then(|ours| {
                Ok(compare::judge(
                    s.id,
                    compare::differences(&ours, &read("istiod.json")?),
                ))
            })
        } else {
            eprintln!("== {}: bringing up {} on Kubernetes", s.id, s.lab);
            compare_scenario(&exe, &istiod, s, &args.work)
        };
        // A scenario that cannot be compared is reported, and the others still are.
        match judged {
            Ok(j) => sections.push((s, Ok(j))),
            Err(e) => {
                eprintln!("== {}: not compared: {e:#}", s.id);
                // The end of the error says why (a lab's output comes before it).
                let why = format!("{e:#}");
                let lines: Vec<&str> = why.lines().collect();
                let tail = lines[lines.len().saturating_sub(3)..].join(" ");
                if !args.reuse {
                    let _ = std::fs::write(&failure, &tail);
                }
                failed.push(s.id);
                sections.push((s, Err(tail)));
            }
        }
    }
    let report = report(&sections, &istiod);
    std::fs::write(&args.out, report).with_context(|| format!("writing {}", args.out.display()))?;
    let unexplained: usize = sections
        .iter()
        .filter_map(|(_, j)| j.as_ref().ok())
        .map(|j| j.iter().filter(|j| j.verdict.is_none()).count())
        .sum();
    eprintln!(
        "report written to {} ({unexplained} differences no rule explains)",
        args.out.display()
    );
    if !failed.is_empty() {
        bail!("not compared: {} (the report says why)", failed.join(", "));
    }
    Ok(())
}

/// Reads the `node` of an Envoy bootstrap (JSON).
fn node_of(bootstrap: &Path) -> Result<Node> {
    let text = std::fs::read_to_string(bootstrap)
        .with_context(|| format!("reading {}", bootstrap.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", bootstrap.display()))?;
    let node = &v["node"];
    let id = node["id"]
        .as_str()
        .with_context(|| format!("{}: node.id is missing", bootstrap.display()))?;
    let fields = node["metadata"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), metadata_value(k, v)?)))
        .collect();
    Ok(Node {
        id: id.to_string(),
        cluster: node["cluster"].as_str().unwrap_or_default().to_string(),
        metadata: Some(Struct { fields }),
        ..Default::default()
    })
}

/// Metadata maps that istio-agent sends as a struct of strings (Isthmus's agent writes them as
/// a JSON string in the bootstrap; both control planes are asked as istio-proxy asks).
const MAP_METADATA: [&str; 2] = ["LABELS", "ANNOTATIONS"];

/// A bootstrap metadata value as the node carries it: strings as strings, maps (and the JSON
/// text of [`MAP_METADATA`]) as a struct of strings; anything else is left out.
fn metadata_value(key: &str, v: &serde_json::Value) -> Option<PbValue> {
    let text = |s: &str| PbValue {
        kind: Some(Kind::StringValue(s.to_string())),
    };
    let map = |m: &serde_json::Map<String, serde_json::Value>| PbValue {
        kind: Some(Kind::StructValue(Struct {
            fields: m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), text(v.as_str()?))))
                .collect(),
        })),
    };
    match v {
        serde_json::Value::String(s) if MAP_METADATA.contains(&key) => {
            match serde_json::from_str::<serde_json::Value>(s) {
                Ok(serde_json::Value::Object(m)) => Some(map(&m)),
                _ => Some(text(s)),
            }
        }
        serde_json::Value::String(s) => Some(text(s)),
        serde_json::Value::Object(m) => Some(map(m)),
        _ => None,
    }
}

/// `conformance fetch`: fetches and writes the features as JSON.
fn fetch_to_file(
    xds: &str,
    bootstrap: &Path,
    tls: Option<&[PathBuf]>,
    connect_for: u64,
    out: &Path,
) -> Result<()> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let tls = match tls {
        Some([root, chain, key]) => Some((read(root)?, read(chain)?, read(key)?)),
        Some(_) => bail!("--tls takes three files: root, chain, key"),
        None => None,
    };
    let opts = fetch::FetchOptions {
        address: xds.to_string(),
        tls,
        server_name: isthmus_ca::CONTROL_PLANE_DNS.to_string(),
        node: node_of(bootstrap)?,
        connect_for: Duration::from_secs(connect_for),
        quiet: Duration::from_secs(3),
    };
    let fetched = tokio::runtime::Runtime::new()?
        .block_on(fetch::fetch(&opts, Duration::from_secs(connect_for + 120)))?;
    let f = features::of(&fetched);
    std::fs::write(out, serde_json::to_string_pretty(&f)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Runs `isthmus lab ARGS` for the lab in `state`, failing with its output.
fn lab(exe: &Path, state: &Path, prefix: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(exe)
        .arg("lab")
        .args(args)
        .env("ISTHMUS_LAB_STATE", state)
        .env("ISTHMUS_LAB_PREFIX", prefix)
        .output()
        .with_context(|| format!("running {} lab", exe.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("`isthmus lab {}` failed:\n{text}", args.join(" "));
    }
    Ok(text)
}

/// Tears the lab down when dropped (also on an early return).
struct LabGuard<'a> {
    exe: &'a Path,
    state: PathBuf,
    prefix: String,
}

impl Drop for LabGuard<'_> {
    fn drop(&mut self) {
        let _ = lab(self.exe, &self.state, &self.prefix, &["down"]);
    }
}

/// Kills a child process when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `isthmus conformance fetch` inside network namespace `netns`.
fn fetch_in(
    exe: &Path,
    netns: &str,
    xds: &str,
    bootstrap: &Path,
    tls: Option<[&Path; 3]>,
    out: &Path,
) -> Result<features::Features> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .arg(exe)
        .args(["conformance", "fetch", "--xds", xds, "--bootstrap"])
        .arg(bootstrap)
        .arg("--out")
        .arg(out);
    if let Some(files) = tls {
        cmd.arg("--tls").args(files);
    }
    let o = cmd.output().context("running ip netns exec")?;
    if !o.status.success() {
        bail!(
            "fetching from {xds} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    read_features(out)
}

/// Features written by `conformance fetch`.
fn read_features(file: &Path) -> Result<features::Features> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading {} (run without --reuse first)", file.display()))?;
    let raw: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, serde_json::Value>,
    > = serde_json::from_str(&text).with_context(|| format!("reading {}", file.display()))?;
    Ok(features::KINDS
        .iter()
        .map(|k| (*k, raw.get(*k).cloned().unwrap_or_default()))
        .collect())
}

/// Brings the scenario's lab up, applies its configuration, fetches from both control planes
/// and judges the differences.
fn compare_scenario(
    exe: &Path,
    istiod: &Path,
    s: &Scenario,
    work: &Path,
) -> Result<Vec<compare::Judged>> {
    let dir = work.join(s.id);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let state_dir = dir.join("lab");
    let prefix = format!("cf{}", s.id);
    let guard = LabGuard {
        exe,
        state: state_dir.clone(),
        prefix: prefix.clone(),
    };
    // Full scoping on both sides: istiod sends a sidecar without a Sidecar resource every
    // service, and so does Isthmus with `--scoping full`; on demand, what Isthmus sends
    // depends on what the pod has used, which the comparison's proxies never do.
    lab(
        exe,
        &state_dir,
        &prefix,
        &["up", "--kubernetes", "--scoping", "full", s.lab],
    )?;
    eprintln!("== {}: applying {}/conformance.yaml", s.id, s.lab);
    lab(
        exe,
        &state_dir,
        &prefix,
        &[
            "run",
            "--kubernetes",
            &format!("{}/conformance.yaml", s.lab),
        ],
    )?;
    let mut state = LabState::load(&state_dir)?.context("the lab wrote no state")?;
    // On Kubernetes, the application pods are the node agents' (as `Lab::load` reads them).
    for c in &mut state.clusters {
        c.pods.retain(|p| !p.from_node);
        c.pods
            .extend(isthmus_lab::node::read_pods(&state_dir, &c.name));
    }
    let cluster = state
        .clusters
        .iter()
        .find(|c| c.name == s.cluster)
        .with_context(|| format!("the lab has no cluster {}", s.cluster))?;
    let find = |ns: &str, prefix: &str, proxy: bool| -> Result<&PodState> {
        cluster
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.name.starts_with(prefix) && (!proxy || p.proxy))
            .with_context(|| format!("cluster {} has no pod {ns}/{prefix}*", s.cluster))
    };
    let pod = find(s.namespace, s.pod, true)?;
    let cp = find("istio-system", "istiod", false)?;
    // The agent's bootstrap: in its work folder, or in the `istio-envoy` volume of a pod
    // the injector gave a sidecar (Kubernetes mode).
    let bootstrap = [
        "agent/envoy-bootstrap.json",
        "volumes/istio-envoy/envoy-bootstrap.json",
    ]
    .iter()
    .map(|f| pod.workdir.join(f))
    .find(|f| f.is_file())
    .with_context(|| {
        format!(
            "{}/{}: no Envoy bootstrap in {}",
            pod.namespace,
            pod.name,
            pod.workdir.display()
        )
    })?;
    let node = node_of(&bootstrap)?;
    let cluster_id = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get("CLUSTER_ID"))
        .and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| s.cluster.to_string());

    // Isthmus, over TLS with a certificate of the sidecar's identity.
    let ca = state_dir.join("ca");
    let authority = isthmus_ca::Authority::load(&ca.join(&cluster.ca_cluster))?;
    let identity = format!(
        "spiffe://{}/ns/{}/sa/{}",
        state.topology.trust_domain, pod.namespace, pod.service_account
    );
    let (chain, key) = authority.issue_workload(&identity, Duration::from_secs(3600))?;
    let (chain_file, key_file) = (dir.join("chain.pem"), dir.join("key.pem"));
    std::fs::write(&chain_file, chain)?;
    // The private key is readable by its owner only.
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_file)
            .and_then(|mut f| f.write_all(key.as_bytes()))
            .with_context(|| format!("writing {}", key_file.display()))?;
    }
    let root = ca.join("root/root-cert.pem");
    let xds = cluster
        .control_plane_addr
        .clone()
        .with_context(|| format!("cluster {} runs no control plane", s.cluster))?;
    eprintln!(
        "== {}: fetching {}/{}'s configuration from Isthmus at {xds}",
        s.id, pod.namespace, pod.name
    );
    let ours = fetch_in(
        exe,
        &cp.netns,
        &xds,
        &bootstrap,
        Some([&root, &chain_file, &key_file]),
        &dir.join("isthmus.json"),
    )?;

    // istiod reads other clusters with the credential Secrets the scenario applied. Their
    // reader account has the rights Isthmus uses (`isthmus create-remote-secret`); istiod
    // lists more (Secrets and CRDs cluster-wide) and would wait for them forever. For the
    // comparison, that account may read everything in those clusters.
    for other in state.clusters.iter().filter(|c| c.name != s.cluster) {
        let _ = lab(
            exe,
            &state_dir,
            &prefix,
            &[
                "kubectl",
                &other.name,
                "--",
                "create",
                "clusterrolebinding",
                "conformance-istiod-reader",
                "--clusterrole=cluster-admin",
                "--serviceaccount=istio-system:istio-reader-service-account",
            ],
        );
    }

    // istiod, in the control plane's pod, on ports Isthmus does not use.
    let istiod_dir = dir.join("istiod");
    std::fs::create_dir_all(&istiod_dir)?;
    let kubeconfig = isthmus_lab::kubernetes::kubeconfig(&state_dir, s.cluster);
    let ports = [25010, 28080, 25017, 25012, 25014, 29876];
    let log = std::fs::File::create(istiod_dir.join("istiod.log"))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &cp.netns])
        .arg(istiod)
        .args(isthmus_bench::orchestrate::istiod::arguments(
            &kubeconfig,
            &cluster_id,
            ports,
        ))
        .envs(isthmus_bench::orchestrate::istiod::environment(&cluster_id))
        .current_dir(&istiod_dir)
        .stdout(log.try_clone()?)
        .stderr(log);
    let _peer = Killed(cmd.spawn().context("starting istiod")?);
    eprintln!(
        "== {}: fetching the same proxy's configuration from istiod",
        s.id
    );
    let theirs = fetch_in(
        exe,
        &cp.netns,
        &format!("127.0.0.1:{}", ports[0]),
        &bootstrap,
        None,
        &dir.join("istiod.json"),
    )
    .with_context(|| format!("istiod's log: {}", istiod_dir.join("istiod.log").display()))?;
    drop(guard);
    Ok(compare::judge(s.id, compare::differences(&ours, &theirs)))
}

/// The report.
/// What one scenario gave: its judged differences, or why it could not be compared.
type Section<'a> = (&'a Scenario, Result<Vec<compare::Judged>, String>);

fn report(sections: &[Section<'_>], istiod: &Path) -> String {
    let mut out = String::new();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let version = istiod
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("istiod-")
                .to_string()
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "# Conformance: what Isthmus and istiod send the same sidecar\n"
    );
    let _ = writeln!(
        out,
        "Written by `isthmus conformance --peer istiod` on {date}, against istiod built from istio.io/istio {version} (scripts/install-istiod.sh), on the lab's real Kubernetes (`lab up --kubernetes`)."
    );
    let _ = writeln!(
        out,
        "For each seed scenario the lab applies `examples/*/conformance.yaml`; the configuration Isthmus sends one sidecar is fetched (its own node id and metadata, over TLS with its identity); istiod is then started in the same control plane pod, reading the same API servers, and asked for the same node (plaintext, port 15010's role). What is compared, and what is normalised away, is in `crates/cli/src/conformance/features.rs`; each difference's verdict comes from `crates/cli/src/conformance/verdicts.rs`.\n"
    );
    let _ = writeln!(out, "| scenario | differences | Isthmus right | istiod right (our bugs) | equivalent | unexplained |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for (s, judged) in sections {
        let Ok(judged) = judged else {
            let _ = writeln!(out, "| {} | not compared | | | | |", s.id.to_uppercase());
            continue;
        };
        let count = |r: Option<verdicts::Right>| {
            judged
                .iter()
                .filter(|j| j.verdict.map(|v| v.right) == r)
                .count()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            s.id.to_uppercase(),
            judged.len(),
            count(Some(verdicts::Right::Isthmus)),
            count(Some(verdicts::Right::Istiod)),
            count(Some(verdicts::Right::Equivalent)),
            count(None)
        );
    }
    for (s, judged) in sections {
        let _ = writeln!(out, "\n## {}\n", s.title);
        let _ = writeln!(
            out,
            "Proxy: `{}/{}` in cluster `{}`.\n",
            s.namespace, s.pod, s.cluster
        );
        let judged = match judged {
            Ok(j) => j,
            Err(why) => {
                let _ = writeln!(out, "Not compared: {}", why.replace('\n', " "));
                continue;
            }
        };
        if judged.is_empty() {
            let _ = writeln!(out, "No differences.");
            continue;
        }
        let _ = writeln!(
            out,
            "| kind | resource | field | Isthmus | istiod | right | why |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for j in judged {
            let d = &j.difference;
            let (right, why) = j
                .verdict
                .map_or(("unexplained", "not yet investigated"), |v| {
                    (v.right.label(), v.why)
                });
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} | {} |",
                d.kind,
                // A `|` ends a table cell even between backticks unless escaped.
                d.name.replace('|', "\\|"),
                d.field.as_deref().unwrap_or("sent by one side"),
                compare::short(d.isthmus.as_ref()),
                compare::short(d.istiod.as_ref()),
                right,
                why
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_is_the_bootstrap_s_with_labels_as_istio_agent_sends_them() {
        let dir = std::env::temp_dir().join(format!("isthmus-conformance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("bootstrap.json");
        std::fs::write(
            &file,
            r#"{"node": {"id": "sidecar~10.10.0.11~sleep-1.foo~foo.svc.cluster.local", "cluster": "sleep.foo",
                "metadata": {"CLUSTER_ID": "cluster1", "LABELS": "{\"app\":\"sleep\"}", "ANNOTATIONS": {"a": "b"}, "N": 3}}}"#,
        )
        .expect("write");
        let node = node_of(&file).expect("a node");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            node.id,
            "sidecar~10.10.0.11~sleep-1.foo~foo.svc.cluster.local"
        );
        let fields = node.metadata.expect("metadata").fields;
        assert_eq!(
            fields["CLUSTER_ID"].kind,
            Some(Kind::StringValue("cluster1".into()))
        );
        let Some(Kind::StructValue(labels)) = &fields["LABELS"].kind else {
            panic!("LABELS is not a struct: {:?}", fields["LABELS"]);
        };
        assert_eq!(
            labels.fields["app"].kind,
            Some(Kind::StringValue("sleep".into()))
        );
        assert!(matches!(
            fields["ANNOTATIONS"].kind,
            Some(Kind::StructValue(_))
        ));
        assert!(
            !fields.contains_key("N"),
            "numbers are not metadata either side reads"
        );
    }
}
