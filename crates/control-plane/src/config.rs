//! The control plane's settings, as `isthmus control-plane` reads them from its flags and as
//! the lab and the benches build them: one struct, turned back into flags by one function
//! ([`ControlPlaneConfig::to_args`]), so that whoever starts a control plane never writes
//! its flags by hand.

pub use isthmus_dns::Template;
pub use isthmus_model::automation::ExportDefault;
pub use isthmus_model::VipRange;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Reads `NAME=VALUE`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` must be NAME=VALUE"))
}

/// Reads `CLUSTER=DIR`.
pub fn cluster_dir(s: &str) -> Result<(String, PathBuf), String> {
    key_value(s).map(|(c, d)| (c, PathBuf::from(d)))
}

/// Where a mesh's configuration comes from: this cluster, its network and the registries
/// (shared by `control-plane` and `proxy-config`).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct MeshSources {
    /// This cluster's name.
    #[arg(long)]
    pub cluster: String,
    /// This cluster's network.
    #[arg(long)]
    pub network: String,
    /// CLUSTER=DIR: a registry directory (repeat for other clusters). The local cluster's
    /// objects come from its directory, or from its API server (`control-plane
    /// --kubeconfig`).
    #[arg(long = "registry", value_parser = cluster_dir)]
    pub registries: Vec<(String, PathBuf)>,
    /// CLUSTER=NETWORK for other clusters (meshNetworks `fromRegistry` also sets it).
    #[arg(long = "cluster-network", value_parser = key_value)]
    pub cluster_networks: Vec<(String, String)>,
    /// Send sidecars' HTTP traffic for MESH_EXTERNAL services through this egress gateway
    /// service (such as istio-egressgateway.istio-system.svc.cluster.local), over mTLS.
    #[arg(long)]
    pub egress_gateway: Option<String>,
}

/// Control plane settings: `isthmus control-plane`'s flags.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ControlPlaneConfig {
    /// This cluster, its network and the registries.
    #[command(flatten)]
    pub sources: MeshSources,
    /// Watch the local cluster's Kubernetes API server through this kubeconfig (instead of
    /// a `--registry` directory for it).
    #[arg(long, conflicts_with = "in_cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use (its current context otherwise).
    #[arg(long, requires = "kubeconfig")]
    pub context: Option<String>,
    /// Watch the API server of the cluster this runs in, with the pod's service account
    /// (what Kubernetes mounts in /var/run/secrets/kubernetes.io/serviceaccount).
    #[arg(long)]
    pub in_cluster: bool,
    /// The `cacerts` directory (from `isthmus ca intermediate`).
    #[arg(long)]
    pub cacerts: PathBuf,
    /// Credential key file; created when missing.
    #[arg(long)]
    pub credential_key: PathBuf,
    /// xDS + CA address.
    #[arg(long, default_value = "0.0.0.0:15012")]
    pub listen: SocketAddr,
    /// Metrics and debug address.
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub monitoring: SocketAddr,
    /// Serve mesh DNS here (UDP and TCP), such as 0.0.0.0:53 or 127.0.0.1:15053.
    #[arg(long)]
    pub dns: Option<SocketAddr>,
    /// SUFFIX=IPV4: answer every name under SUFFIX with IPV4 (seed 004's `*.remote` template).
    #[arg(long = "dns-template")]
    pub dns_templates: Vec<isthmus_dns::Template>,
    /// Where mesh DNS forwards names the mesh does not own, as kube-dns forwards to the
    /// node's resolvers: IP or IP:PORT (port 53 by default), or `resolv.conf` for the
    /// nameservers of /etc/resolv.conf (the server's own address left out). Repeat to try
    /// several in order. Without it, such names are answered NXDOMAIN.
    #[arg(long = "dns-upstream", requires = "dns")]
    pub dns_upstream: Vec<DnsUpstream>,
    /// Range for VIPs of ServiceEntry hosts that have no `addresses`.
    #[arg(long, default_value = "240.240.0.0/16")]
    pub vip_range: isthmus_model::VipRange,
    /// CLUSTER=DIR: another cluster's registry, read to generate ServiceEntries for its
    /// services (NAME.NS.global, and NAME.NS.svc.cluster.local for replicated namespaces),
    /// one endpoint per cluster's east-west gateway weighted by its pod count.
    #[arg(long = "remote-registry", value_parser = cluster_dir)]
    pub remote_registries: Vec<(String, PathBuf)>,
    /// Whether a service is reachable from other clusters when it neither has the
    /// `isthmus.io/export` label nor the `networking.istio.io/exportTo` annotation.
    #[arg(long, value_enum, default_value_t = ExportDefault::Exported)]
    pub export_default: ExportDefault,
    /// The sidecar injection webhook.
    #[command(flatten)]
    pub injection: crate::injection::InjectionFlags,
    /// What sidecars are sent: `on-demand` (the default), only the services their workload
    /// resolved by name or called by address, for sidecars whose agent answers the pod's
    /// DNS (the others get everything); or `full`, every service they may see, as Istio
    /// without Sidecar resources. A Sidecar resource wins in both.
    #[arg(long, value_enum, default_value_t = ScopingMode::OnDemand)]
    pub scoping: ScopingMode,
    /// With `--scoping on-demand`: every service of a sidecar's own namespace from the start.
    #[arg(long)]
    pub scoping_namespace: bool,
}

/// `--scoping`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopingMode {
    /// Every service a sidecar may see.
    Full,
    /// Only what the sidecar's workload resolved by name or called by address.
    #[default]
    OnDemand,
}

impl ScopingMode {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopingMode::Full => "full",
            ScopingMode::OnDemand => "on-demand",
        }
    }
}

impl ControlPlaneConfig {
    /// Settings for `cluster` on `network` reading `registry`, with its CA files, every
    /// optional flag at its default.
    pub fn new(
        cluster: impl Into<String>,
        network: impl Into<String>,
        registry: impl Into<PathBuf>,
        cacerts: impl Into<PathBuf>,
        credential_key: impl Into<PathBuf>,
    ) -> ControlPlaneConfig {
        let cluster = cluster.into();
        ControlPlaneConfig {
            sources: MeshSources {
                registries: vec![(cluster.clone(), registry.into())],
                cluster,
                network: network.into(),
                cluster_networks: Vec::new(),
                egress_gateway: None,
            },
            kubeconfig: None,
            context: None,
            in_cluster: false,
            cacerts: cacerts.into(),
            credential_key: credential_key.into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 15012)),
            monitoring: SocketAddr::from(([127, 0, 0, 1], 15014)),
            dns: None,
            dns_templates: Vec::new(),
            dns_upstream: Vec::new(),
            vip_range: isthmus_model::VipRange::default(),
            remote_registries: Vec::new(),
            export_default: ExportDefault::Exported,
            injection: crate::injection::InjectionFlags::default(),
            scoping: ScopingMode::OnDemand,
            scoping_namespace: false,
        }
    }

    /// The local cluster's API server, when its objects come from one (`--kubeconfig` or
    /// `--in-cluster`).
    pub fn local_api_server(&self) -> Option<isthmus_kube::Access> {
        if self.in_cluster {
            return Some(isthmus_kube::Access::InCluster);
        }
        self.kubeconfig
            .as_ref()
            .map(|path| isthmus_kube::Access::File {
                path: path.clone(),
                context: self.context.clone(),
            })
    }

    /// The flags that make `isthmus control-plane` read exactly these settings (after the
    /// subcommand name).
    pub fn to_args(&self) -> Vec<OsString> {
        let ControlPlaneConfig {
            sources:
                MeshSources {
                    cluster,
                    network,
                    registries,
                    cluster_networks,
                    egress_gateway,
                },
            kubeconfig,
            context,
            in_cluster,
            cacerts,
            credential_key,
            listen,
            monitoring,
            dns,
            dns_templates,
            dns_upstream,
            vip_range,
            remote_registries,
            export_default,
            injection:
                crate::injection::InjectionFlags {
                    injection_listen,
                    injection_image,
                    injection_control_plane,
                    webhook_config,
                    injection_scope_idle,
                },
            scoping,
            scoping_namespace,
        } = self;
        let mut a: Vec<OsString> = Vec::new();
        let mut flag = |name: &str, value: OsString| {
            a.push(name.into());
            a.push(value);
        };
        let pair = |k: &str, v: &std::path::Path| {
            let mut s = OsString::from(format!("{k}="));
            s.push(v);
            s
        };
        flag("--cluster", cluster.into());
        flag("--network", network.into());
        for (c, d) in registries {
            flag("--registry", pair(c, d));
        }
        for (c, n) in cluster_networks {
            flag("--cluster-network", format!("{c}={n}").into());
        }
        if let Some(g) = egress_gateway {
            flag("--egress-gateway", g.into());
        }
        if let Some(k) = kubeconfig {
            flag("--kubeconfig", k.into());
        }
        if let Some(c) = context {
            flag("--context", c.into());
        }
        flag("--cacerts", cacerts.into());
        flag("--credential-key", credential_key.into());
        flag("--listen", listen.to_string().into());
        flag("--monitoring", monitoring.to_string().into());
        if let Some(d) = dns {
            flag("--dns", d.to_string().into());
        }
        for t in dns_templates {
            flag(
                "--dns-template",
                format!("{}={}", t.suffix, t.address).into(),
            );
        }
        for u in dns_upstream {
            flag("--dns-upstream", u.to_string().into());
        }
        flag(
            "--vip-range",
            format!("{}/{}", vip_range.base, vip_range.prefix).into(),
        );
        for (c, d) in remote_registries {
            flag("--remote-registry", pair(c, d));
        }
        flag("--export-default", export_default.as_str().into());
        if let Some(addr) = injection_listen {
            flag("--injection-listen", addr.to_string().into());
        }
        flag("--injection-image", injection_image.into());
        flag("--injection-control-plane", injection_control_plane.into());
        flag("--webhook-config", webhook_config.into());
        flag(
            "--injection-scope-idle",
            injection_scope_idle.to_string().into(),
        );
        flag("--scoping", scoping.as_str().into());
        if *in_cluster {
            a.push("--in-cluster".into());
        }
        if *scoping_namespace {
            a.push("--scoping-namespace".into());
        }
        a
    }
}

/// One `--dns-upstream`: a resolver's address, or the nameservers of /etc/resolv.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsUpstream {
    /// A resolver.
    Address(SocketAddr),
    /// The nameservers /etc/resolv.conf names when the server starts.
    ResolvConf,
}

impl std::str::FromStr for DnsUpstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "resolv.conf" {
            return Ok(DnsUpstream::ResolvConf);
        }
        if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            return Ok(DnsUpstream::Address(SocketAddr::new(ip, 53)));
        }
        s.parse::<SocketAddr>()
            .map(DnsUpstream::Address)
            .map_err(|_| format!("`{s}` is not IP, IP:PORT or `resolv.conf`"))
    }
}

impl std::fmt::Display for DnsUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsUpstream::Address(a) => write!(f, "{a}"),
            DnsUpstream::ResolvConf => f.write_str("resolv.conf"),
        }
    }
}

impl ControlPlaneConfig {
    /// The resolvers mesh DNS listening on `own` forwards to, in order: `--dns-upstream`
    /// with `resolv.conf` expanded, never `own` itself (which would loop).
    pub fn dns_upstreams(&self, own: SocketAddr) -> Vec<SocketAddr> {
        let resolv_conf = || {
            std::fs::read_to_string("/etc/resolv.conf")
                .map(|t| isthmus_dns::proxy::read_resolv_conf(&t).0)
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "cannot read /etc/resolv.conf for --dns-upstream resolv.conf");
                    Vec::new()
                })
        };
        let mut out: Vec<SocketAddr> = Vec::new();
        for u in &self.dns_upstream {
            let found = match u {
                DnsUpstream::Address(a) => vec![*a],
                DnsUpstream::ResolvConf => resolv_conf(),
            };
            for a in found {
                let loops = a == own
                    || (own.ip().is_unspecified()
                        && a.port() == own.port()
                        && a.ip().is_loopback());
                if loops {
                    tracing::warn!(upstream = %a, "mesh DNS does not forward to itself");
                } else if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn dns_upstreams_read_as_addresses_and_never_loop() {
        let mut c = ControlPlaneConfig::new("c", "n", "/r", "/ca", "/key");
        c.dns = Some("0.0.0.0:53".parse().expect("addr"));
        c.dns_upstream = ["10.0.0.10", "10.0.0.11:5353", "127.0.0.1", "10.0.0.10:53"]
            .iter()
            .map(|s| s.parse().expect("upstream"))
            .collect();
        let own = c.dns.expect("dns");
        let want: Vec<SocketAddr> = ["10.0.0.10:53", "10.0.0.11:5353"]
            .iter()
            .map(|s| s.parse().expect("addr"))
            .collect();
        assert_eq!(c.dns_upstreams(own), want);
        assert_eq!(
            "resolv.conf".parse::<DnsUpstream>(),
            Ok(DnsUpstream::ResolvConf)
        );
        let e = "dns.example"
            .parse::<DnsUpstream>()
            .expect_err("a name is refused");
        assert!(e.contains("not IP, IP:PORT or `resolv.conf`"), "{e}");
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ControlPlaneConfig,
    }

    fn parse(args: Vec<OsString>) -> ControlPlaneConfig {
        let mut all = vec![OsString::from("control-plane")];
        all.extend(args);
        Cli::try_parse_from(all).expect("flags parse").config
    }

    #[test]
    fn flags_read_back_as_the_same_settings() {
        let plain = ControlPlaneConfig::new(
            "cluster1",
            "network1",
            "/lab/reg/cluster1",
            "/lab/ca/cluster1",
            "/lab/key",
        );
        assert_eq!(parse(plain.to_args()), plain);
        let mut full = plain.clone();
        full.sources
            .registries
            .push(("cluster2".into(), "/lab/reg/cluster2".into()));
        full.sources.cluster_networks = vec![("cluster2".into(), "network2".into())];
        full.sources.egress_gateway =
            Some("istio-egressgateway.istio-system.svc.cluster.local".into());
        full.listen = "10.0.0.1:15012".parse().expect("addr");
        full.monitoring = "10.0.0.1:15014".parse().expect("addr");
        full.dns = Some("10.0.0.1:53".parse().expect("addr"));
        full.dns_templates = vec!["remote=198.18.255.1".parse().expect("template")];
        full.dns_upstream = vec![
            "10.0.0.10:53".parse().expect("upstream"),
            DnsUpstream::ResolvConf,
        ];
        full.vip_range = "240.241.0.0/16".parse().expect("range");
        full.remote_registries = vec![("cluster2".into(), "/lab/reg/cluster2".into())];
        full.export_default = ExportDefault::Hidden;
        full.injection.injection_listen = Some("0.0.0.0:15017".parse().expect("addr"));
        full.injection.injection_image = "registry.local/isthmus:dev".into();
        full.injection.injection_control_plane = "10.0.0.1:15012".into();
        full.injection.webhook_config = "injector".into();
        full.injection.injection_scope_idle = 600;
        full.scoping = ScopingMode::Full;
        full.scoping_namespace = true;
        assert_eq!(parse(full.to_args()), full);
        let mut kube = plain.clone();
        kube.sources.registries.clear();
        kube.kubeconfig = Some("/lab/kube/cluster1/kubeconfig".into());
        kube.context = Some("admin".into());
        assert_eq!(parse(kube.to_args()), kube);
        let mut in_pod = plain.clone();
        in_pod.in_cluster = true;
        assert_eq!(parse(in_pod.to_args()), in_pod);
    }

    #[test]
    fn the_defaults_are_those_of_the_flags() {
        let parsed = parse(
            [
                "--cluster",
                "c",
                "--network",
                "n",
                "--registry",
                "c=/r",
                "--cacerts",
                "/ca",
                "--credential-key",
                "/k",
            ]
            .map(OsString::from)
            .to_vec(),
        );
        assert_eq!(parsed, ControlPlaneConfig::new("c", "n", "/r", "/ca", "/k"));
        assert!(Cli::try_parse_from(["cp", "--export-default", "some"]).is_err());
    }
}
