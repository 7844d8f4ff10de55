//! The agent's settings, as `isthmus agent` reads them from its flags and as the lab and the
//! benches build them: one struct, turned back into flags by one function
//! ([`AgentConfig::to_args`]), so that whoever starts an agent never writes its flags by
//! hand.

use isthmus_api::{Interception, NodeKind, RouterMode};
use std::ffi::OsString;
use std::path::PathBuf;

/// State of the world or delta xDS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum XdsMode {
    /// `GRPC`.
    #[default]
    Sotw,
    /// `DELTA_GRPC`.
    Delta,
}

impl XdsMode {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            XdsMode::Sotw => "sotw",
            XdsMode::Delta => "delta",
        }
    }
}

/// Reads `NAME=VALUE`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` must be NAME=VALUE"))
}

/// Agent settings: `isthmus agent`'s flags.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct AgentConfig {
    /// `sidecar` or `router`.
    #[arg(long, value_enum, default_value_t = NodeKind::Sidecar)]
    pub kind: NodeKind,
    /// Pod IP.
    #[arg(long)]
    pub ip: String,
    /// Pod name.
    #[arg(long)]
    pub pod: String,
    /// Namespace.
    #[arg(long)]
    pub namespace: String,
    /// Service account.
    #[arg(long, default_value = "default")]
    pub service_account: String,
    /// Trust domain.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Cluster id.
    #[arg(long)]
    pub cluster: String,
    /// Network.
    #[arg(long, default_value = "")]
    pub network: String,
    /// Control plane HOST:PORT.
    #[arg(long)]
    pub control_plane: String,
    /// File holding the credential.
    #[arg(long)]
    pub credential_file: PathBuf,
    /// Mesh root certificate.
    #[arg(long)]
    pub root_cert: PathBuf,
    /// Working directory.
    #[arg(long)]
    pub workdir: PathBuf,
    /// Envoy binary (default: `envoy` on PATH, then .venv/bin/envoy).
    #[arg(long)]
    pub envoy: Option<PathBuf>,
    /// REDIRECT (iptables capture) or NONE (listeners bind real addresses).
    #[arg(long, value_enum, default_value_t = Interception::Redirect)]
    pub interception: Interception,
    /// `sni-dnat` makes a router its network's east-west gateway.
    #[arg(long, value_enum)]
    pub router_mode: Option<RouterMode>,
    /// Pod label NAME=VALUE (used when the registry does not know the pod).
    #[arg(long = "label", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Extra node metadata NAME=VALUE, such as REQUESTED_NETWORK_VIEW=external for an
    /// egress gateway.
    #[arg(long = "metadata", value_parser = key_value)]
    pub metadata: Vec<(String, String)>,
    /// `sotw` or `delta` xDS.
    #[arg(long = "xds", value_enum, default_value_t = XdsMode::Sotw)]
    pub xds_mode: XdsMode,
    /// Certificate lifetime in seconds; renewed at half of it.
    #[arg(long, default_value_t = 86400)]
    pub cert_ttl: u64,
    /// Admin listener address (port 15000).
    #[arg(long, default_value = "127.0.0.1")]
    pub admin_address: String,
    /// Envoy log level.
    #[arg(long, default_value = "warning")]
    pub log_level: String,
    /// Istio's init step: install iptables capture (outbound -> 15001, inbound -> 15006) in
    /// this network namespace and run Envoy as uid 1337. Needs root.
    #[arg(long)]
    pub capture: bool,
    /// Istio's DNS capture: serve the pod's DNS on 127.0.0.1:15053 from the name table the
    /// control plane sends (and keep answering from it while the control plane is away),
    /// forwarding other names to the pod's resolvers; with --capture, the pod's port-53
    /// traffic to its resolvers is redirected there.
    #[arg(long)]
    pub dns_capture: bool,
    /// On-demand scoping (the control plane's `--scoping on-demand`): a name the pod has not
    /// resolved for this many seconds, whose services' clusters carry no connection, leaves
    /// the sidecar's scope again. 0 (the default): never.
    #[arg(long, default_value_t = 0, requires = "dns_capture")]
    pub scope_idle: u64,
    /// The workload's name in metrics (`source_workload`, `destination_workload`): its
    /// Deployment's or StatefulSet's name; by default read from the pod's name
    /// (`NAME-HASH-XXXXX`, `NAME-N`).
    #[arg(long, env = "ISTIO_META_WORKLOAD_NAME")]
    pub workload_name: Option<String>,
    /// Serve the proxy's metrics (`/stats/prometheus`) on this address's ports 15020
    /// (merged with the application's) and 15090; by default the pod IP. `none` serves
    /// neither.
    #[arg(long)]
    pub metrics_address: Option<String>,
    /// The application's own metrics, `PORT` or `PORT/PATH` on 127.0.0.1 (default path
    /// `/metrics`), merged into 15020's page as Istio's agent merges them (what the pod's
    /// `prometheus.io/port` and `prometheus.io/path` annotations say).
    #[arg(long)]
    pub app_metrics: Option<String>,
}

impl AgentConfig {
    /// A sidecar's settings with every optional flag at its default.
    pub fn new(
        pod: impl Into<String>,
        namespace: impl Into<String>,
        ip: impl Into<String>,
        cluster: impl Into<String>,
        control_plane: impl Into<String>,
        workdir: impl Into<PathBuf>,
    ) -> AgentConfig {
        let workdir = workdir.into();
        AgentConfig {
            kind: NodeKind::Sidecar,
            ip: ip.into(),
            pod: pod.into(),
            namespace: namespace.into(),
            service_account: "default".into(),
            trust_domain: "cluster.local".into(),
            cluster: cluster.into(),
            network: String::new(),
            control_plane: control_plane.into(),
            credential_file: workdir.join("credential"),
            root_cert: workdir.join("root-cert.pem"),
            workdir,
            envoy: None,
            interception: Interception::Redirect,
            router_mode: None,
            labels: Vec::new(),
            metadata: Vec::new(),
            xds_mode: XdsMode::Sotw,
            cert_ttl: 86400,
            admin_address: "127.0.0.1".into(),
            log_level: "warning".into(),
            capture: false,
            dns_capture: false,
            scope_idle: 0,
            workload_name: None,
            metrics_address: None,
            app_metrics: None,
        }
    }

    /// The flags that make `isthmus agent` read exactly these settings (after the
    /// subcommand name).
    pub fn to_args(&self) -> Vec<OsString> {
        let AgentConfig {
            kind,
            ip,
            pod,
            namespace,
            service_account,
            trust_domain,
            cluster,
            network,
            control_plane,
            credential_file,
            root_cert,
            workdir,
            envoy,
            interception,
            router_mode,
            labels,
            metadata,
            xds_mode,
            cert_ttl,
            admin_address,
            log_level,
            capture,
            dns_capture,
            scope_idle,
            workload_name,
            metrics_address,
            app_metrics,
        } = self;
        let mut a = Args::default();
        a.flag("--kind", kind.as_str());
        a.flag("--ip", ip);
        a.flag("--pod", pod);
        a.flag("--namespace", namespace);
        a.flag("--service-account", service_account);
        a.flag("--trust-domain", trust_domain);
        a.flag("--cluster", cluster);
        a.flag("--network", network);
        a.flag("--control-plane", control_plane);
        a.flag("--credential-file", credential_file);
        a.flag("--root-cert", root_cert);
        a.flag("--workdir", workdir);
        if let Some(e) = envoy {
            a.flag("--envoy", e);
        }
        a.flag("--interception", interception.as_str());
        if let Some(m) = router_mode {
            a.flag("--router-mode", m.as_str());
        }
        for (k, v) in labels {
            a.flag("--label", format!("{k}={v}"));
        }
        for (k, v) in metadata {
            a.flag("--metadata", format!("{k}={v}"));
        }
        a.flag("--xds", xds_mode.as_str());
        a.flag("--cert-ttl", cert_ttl.to_string());
        a.flag("--admin-address", admin_address);
        a.flag("--log-level", log_level);
        if *dns_capture {
            a.0.push("--dns-capture".into());
        }
        if *scope_idle > 0 {
            a.flag("--scope-idle", scope_idle.to_string());
        }
        if let Some(w) = workload_name {
            a.flag("--workload-name", w);
        }
        if let Some(m) = metrics_address {
            a.flag("--metrics-address", m);
        }
        if let Some(m) = app_metrics {
            a.flag("--app-metrics", m);
        }
        if *capture {
            a.0.push("--capture".into());
        }
        a.0
    }
}

/// Flags being written.
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, name: &str, value: impl Into<OsString>) {
        self.0.push(name.into());
        self.0.push(value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: AgentConfig,
    }

    fn parse(args: Vec<OsString>) -> AgentConfig {
        let mut all = vec![OsString::from("agent")];
        all.extend(args);
        Cli::try_parse_from(all).expect("flags parse").config
    }

    #[test]
    fn flags_read_back_as_the_same_settings() {
        let plain = AgentConfig::new(
            "sleep-0",
            "foo",
            "10.0.0.5",
            "cluster1",
            "10.0.0.1:15012",
            "/w/sleep",
        );
        assert_eq!(parse(plain.to_args()), plain);
        let gateway = AgentConfig {
            kind: NodeKind::Router,
            network: "network1".into(),
            envoy: Some("/opt/envoy".into()),
            interception: Interception::None,
            router_mode: Some(RouterMode::SniDnat),
            labels: vec![("istio".into(), "eastwestgateway".into())],
            metadata: vec![("REQUESTED_NETWORK_VIEW".into(), "external".into())],
            xds_mode: XdsMode::Delta,
            cert_ttl: 60,
            capture: true,
            dns_capture: true,
            scope_idle: 600,
            ..plain.clone()
        };
        assert_eq!(parse(gateway.to_args()), gateway);
        let args: Vec<String> = gateway
            .to_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).expect(flag);
            args[i + 1].clone()
        };
        assert_eq!(after("--kind"), "router");
        assert_eq!(after("--interception"), "NONE");
        assert_eq!(after("--router-mode"), "sni-dnat");
        assert_eq!(after("--xds"), "delta");
        assert_eq!(after("--scope-idle"), "600");
    }

    #[test]
    fn the_defaults_are_those_of_the_flags() {
        let parsed = parse(
            [
                "--ip",
                "10.0.0.5",
                "--pod",
                "p",
                "--namespace",
                "n",
                "--cluster",
                "c",
                "--control-plane",
                "h:1",
                "--credential-file",
                "/w/credential",
                "--root-cert",
                "/w/root-cert.pem",
                "--workdir",
                "/w",
            ]
            .map(OsString::from)
            .to_vec(),
        );
        assert_eq!(
            parsed,
            AgentConfig::new("p", "n", "10.0.0.5", "c", "h:1", "/w")
        );
        assert!(Cli::try_parse_from(["agent", "--interception", "TPROXY"]).is_err());
    }
}
