//! `isthmus bench ...`: benchmarks that print numbers (docs/BENCHMARKS.md records them).
//! Only the flags live here; `isthmus_bench::orchestrate` runs the benchmarks.

use anyhow::Result;
use clap::{Args, Subcommand};
use isthmus_bench::generate::Shape;
use isthmus_bench::orchestrate::{
    ca::CaOptions,
    datapath::DatapathOptions,
    dns::DnsOptions,
    envoy_apply::EnvoyOptions,
    generate::GenerateOptions,
    http::HttpOptions,
    kubernetes::KubernetesOptions,
    load::{EndpointKind, LoadOptions},
    memory::MemoryOptions,
    peer::PeerXdsOptions,
    peer_memory::PeerMemoryOptions,
    soak::SoakOptions,
    xds::{SweepOptions, XdsOptions},
};
use isthmus_bench::Benchmark;
use std::path::PathBuf;

/// How `bench load` writes endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadKind {
    /// ServiceEntries with their endpoints in line.
    ServiceEntries,
    /// A Pod per endpoint beside its Service.
    Pods,
}

/// The size of the synthetic mesh.
#[derive(Args, Debug, Clone)]
pub struct ShapeArgs {
    /// Clusters (cluster1 is the control plane's; the others are read as remote registries
    /// on their own networks) [default: 5; with --peer: 1, the API server's].
    #[arg(long)]
    clusters: Option<u32>,
    /// Services, each present in every cluster.
    #[arg(long, default_value_t = 2000)]
    services: u32,
    /// Endpoints per service per cluster.
    #[arg(long, default_value_t = 10)]
    endpoints: u32,
}

impl ShapeArgs {
    fn shape(&self) -> Shape {
        Shape {
            clusters: self.clusters.unwrap_or(5),
            services: self.services,
            endpoints: self.endpoints,
        }
    }
}

/// The control plane Isthmus is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// istiod (`pilot-discovery`, built by scripts/install-istiod.sh), reading the same
    /// kube-apiserver.
    Istiod,
}

/// An xDS protocol variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XdsMode {
    /// State of the world.
    Sotw,
    /// Delta (incremental).
    Delta,
}

/// Benchmarks.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Write a synthetic mesh (C clusters x S services x E endpoints) as registry files.
    Generate {
        #[command(flatten)]
        shape: ShapeArgs,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Start a control plane on a synthetic mesh and connect N simulated Envoys: time to
    /// full config, bytes, control plane CPU and memory, then one endpoint change. With
    /// `--peer istiod`: the mesh (one cluster) is created through a real kube-apiserver and
    /// Isthmus and istiod are measured one after the other against it, with the same load,
    /// for every proxy count and mode, with istiod's figure over ours.
    Xds {
        #[command(flatten)]
        shape: ShapeArgs,
        /// Simulated proxies; with --peer, several counts (such as 100,1000).
        #[arg(long, value_delimiter = ',', default_value = "100")]
        proxies: Vec<usize>,
        /// Delta xDS instead of state of the world.
        #[arg(long, conflicts_with = "peer")]
        delta: bool,
        /// Then one endpoint change per second for this many seconds.
        #[arg(long, default_value_t = 0, conflicts_with = "peer")]
        churn_seconds: u32,
        /// Add a Sidecar in the proxies' namespace (ns-0) limiting them to its own services
        /// (`egress.hosts: ./*`), as a platform team would.
        #[arg(long, conflicts_with = "peer")]
        sidecar_scope: bool,
        /// Scope the proxies on demand (`control-plane --scoping on-demand`): each proxy's
        /// agent says it resolved 3 services every proxy uses and 5 of its deployment's.
        #[arg(long, conflicts_with_all = ["peer", "sidecar_scope"])]
        on_demand: bool,
        /// Measure against this control plane too, in the same run.
        #[arg(long, value_enum)]
        peer: Option<Peer>,
        /// With --peer: the xDS variants to measure.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "sotw,delta",
            requires = "peer"
        )]
        modes: Vec<XdsMode>,
        /// With --peer: one-pod changes timed per row.
        #[arg(long, default_value_t = 10, requires = "peer")]
        changes: u32,
        /// With --peer: istiod's pilot-discovery (default: $ISTIOD, then
        /// .kube-bin/istiod-*/ here or above).
        #[arg(long, requires = "peer")]
        istiod: Option<PathBuf>,
        /// With --peer: the Kubernetes binaries (default: $KUBE_BIN, then .kube-bin/*/ here
        /// or above).
        #[arg(long, requires = "peer")]
        kube_bin: Option<PathBuf>,
        /// With --peer: an environment variable for istiod, `NAME=VALUE` (repeatable), such as
        /// PILOT_MAX_REQUESTS_PER_SECOND=1000 to lift its limit on new streams.
        #[arg(long, requires = "peer", value_parser = env_pair)]
        istiod_env: Vec<(String, String)>,
        /// Working directory (mesh, certificates, logs).
        #[arg(long, default_value = "/tmp/isthmus-bench")]
        work: PathBuf,
    },
    /// Run `xds` at several mesh sizes and proxy counts; print a table and draw the cost
    /// curves as SVG.
    Sweep {
        /// Service counts (one cluster, 10 endpoints each).
        #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000")]
        services: Vec<u32>,
        /// Proxy counts.
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        proxies: Vec<usize>,
        /// Where to write the charts (`xds-full-push.svg`, `xds-memory.svg`).
        #[arg(long, default_value = "docs/bench")]
        out: PathBuf,
        /// Working directory.
        #[arg(long, default_value = "/tmp/isthmus-bench-sweep")]
        work: PathBuf,
    },
    /// The control plane's memory against the mesh it serves, before any proxy connects:
    /// RSS per mesh size, what one more remote cluster adds, and bytes per endpoint. With
    /// `--peer istiod`: one cluster's mesh in a real kube-apiserver, remote clusters as
    /// credential Secrets naming it again, Isthmus's and istiod's RSS, its anonymous part and
    /// live heap per cluster count (medians of --repeat fresh starts, about 80 s each).
    Memory {
        /// Services per cluster (one series each) [default: 400,2000; with --peer: 400].
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<u32>>,
        /// Cluster counts.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3,5")]
        clusters: Vec<u32>,
        /// Endpoints per service per cluster.
        #[arg(long, default_value_t = 10)]
        endpoints: u32,
        /// Endpoints per service of one more mesh, the largest again with more endpoints
        /// in the same services: what one more endpoint costs without the services it
        /// would otherwise bring (0: skip).
        #[arg(long, default_value_t = 20, conflicts_with = "peer")]
        more_endpoints: u32,
        /// Working directory.
        #[arg(long, default_value = "/tmp/isthmus-bench-memory")]
        work: PathBuf,
        /// Where to write the chart (`cp-memory-per-endpoint.svg`).
        #[arg(long, conflicts_with = "peer")]
        out: Option<PathBuf>,
        /// Measure against this control plane too, in the same run (one --services value).
        #[arg(long, value_enum)]
        peer: Option<Peer>,
        /// With --peer: istiod's pilot-discovery (default: $ISTIOD, then
        /// .kube-bin/istiod-*/ here or above).
        #[arg(long, requires = "peer")]
        istiod: Option<PathBuf>,
        /// With --peer: the Kubernetes binaries (default: $KUBE_BIN, then .kube-bin/*/ here
        /// or above).
        #[arg(long, requires = "peer")]
        kube_bin: Option<PathBuf>,
        /// With --peer: how many times each cluster count is measured (each control plane
        /// started afresh every time); the table gives each count's median.
        #[arg(long, default_value_t = 3, requires = "peer", value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
    },
    /// One large configuration read by a control plane: start-up speed (MB of YAML per
    /// second), RSS and peak, bytes per endpoint, how the monitoring port answers while it
    /// reads and rebuilds, and the RSS once the configuration is deleted. The default is
    /// Istio's big-ServiceEntry case: 2,000 entries of 1,000 endpoints (50 MB).
    Load {
        /// Services (ServiceEntries, or Services with Pods).
        #[arg(long, default_value_t = 2000)]
        services: u32,
        /// Endpoints per service.
        #[arg(long, default_value_t = 1000)]
        endpoints: u32,
        /// How endpoints are written.
        #[arg(long, value_enum, default_value_t = LoadKind::ServiceEntries)]
        kind: LoadKind,
        /// A library preloaded into the control plane: another allocator to compare, such
        /// as /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 (apt: libjemalloc2).
        #[arg(long)]
        preload: Option<PathBuf>,
        /// The `isthmus` binary to start as the control plane (default: this one), to hold
        /// one build against another on the same load.
        #[arg(long)]
        control_plane_binary: Option<PathBuf>,
        /// Working directory.
        #[arg(long, default_value = "/tmp/isthmus-bench-load")]
        work: PathBuf,
    },
    /// A control plane under load for minutes: simulated proxies that reconnect as Envoy
    /// does, endpoint changes every few hundred milliseconds, a control plane killed and
    /// restarted, and a remote cluster's registry that vanishes and returns. Reports errors
    /// (must be 0: exits 1 otherwise), stream resets and memory at start and end.
    Soak {
        /// Simulated proxies.
        #[arg(long, default_value_t = 1000)]
        proxies: usize,
        /// Length in minutes.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Endpoint changes per second.
        #[arg(long, default_value_t = 5.0)]
        changes_per_second: f64,
        /// Services per cluster (two clusters).
        #[arg(long, default_value_t = 200)]
        services: u32,
        /// Endpoints per service per cluster.
        #[arg(long, default_value_t = 5)]
        endpoints: u32,
        /// Delta xDS instead of state of the world.
        #[arg(long)]
        delta: bool,
        /// Working directory.
        #[arg(long, default_value = "/tmp/isthmus-bench-soak")]
        work: PathBuf,
    },
    /// dnsperf against the mesh DNS and, with the same names, against unbound (one thread
    /// each): queries/s and latency, side by side.
    Dns {
        /// Names in the table.
        #[arg(long, default_value_t = 10000)]
        names: u32,
        /// Seconds per server.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// dnsperf clients.
        #[arg(long, default_value_t = 4)]
        clients: u32,
    },
    /// (inside a pod) N sequential GETs, timed; prints `p50 p90 p99` in microseconds.
    Http {
        /// IP:PORT to connect to.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// Host header.
        #[arg(long)]
        host: String,
        /// Path.
        #[arg(long, default_value = "/ip")]
        path: String,
        /// A further request header, `Name: value` (repeat for more).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Requests.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// A new TCP connection for every request.
        #[arg(long)]
        new_connections: bool,
        /// Open loop instead: this many requests per second (prints p50 p90 p99 in
        /// microseconds, then completed requests per second and errors).
        #[arg(long)]
        rate: Option<f64>,
        /// Seconds of open-loop load.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Kept-alive connections for open-loop load.
        #[arg(long, default_value_t = 8)]
        connections: usize,
    },
    /// Data path in the lab: latency of sleep -> sidecar -> cluster2's gateway -> httpbin's
    /// sidecar -> httpbin against httpbin called directly inside its pod; kept-alive and
    /// new connections. Needs root; brings up and removes its own lab.
    Datapath {
        /// Requests per measurement.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// State directory for the lab.
        #[arg(long, default_value = "/tmp/isthmus-bench-datapath")]
        state: PathBuf,
    },
    /// Real Envoy applying the generated configuration: time until LIVE with every cluster
    /// warm, per service count, with and without Sidecar scoping. Needs root (runs in a
    /// network namespace of its own) and Envoy.
    Envoy {
        /// Service counts (one cluster).
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        services: Vec<u32>,
        /// Endpoints per service.
        #[arg(long, default_value_t = 2)]
        endpoints: u32,
        /// Envoy binary (default: `envoy` on PATH, then .venv/bin/envoy).
        #[arg(long, env = "ISTHMUS_ENVOY")]
        envoy: Option<PathBuf>,
        /// Working directory.
        #[arg(long, default_value = "/tmp/isthmus-bench-envoy")]
        work: PathBuf,
        /// Where to write the charts (`envoy-apply.svg`, `envoy-memory.svg`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The same mesh (one cluster, services x pods, meshNetworks) served from registry
    /// files and from a real kube-apiserver (objects created through the API), one control
    /// plane after the other with the same simulated Envoys: time to ready, memory per
    /// endpoint, full push, one pod change p50/p99. Needs the binaries of
    /// scripts/install-kubernetes.sh.
    Kubernetes {
        /// Services.
        #[arg(long, default_value_t = 2000)]
        services: u32,
        /// Pods per service.
        #[arg(long, default_value_t = 10)]
        endpoints: u32,
        /// Simulated proxies (state of the world).
        #[arg(long, default_value_t = 100)]
        proxies: usize,
        /// One-pod changes to time.
        #[arg(long, default_value_t = 20)]
        changes: u32,
        /// The Kubernetes binaries (default: $KUBE_BIN, then .kube-bin/*/ here or above).
        #[arg(long)]
        kube_bin: Option<PathBuf>,
        /// Working directory.
        #[arg(long, default_value = "/tmp/isthmus-bench-kubernetes")]
        work: PathBuf,
    },
    /// Workload certificates signed per second beside raw ECDSA P-256 signatures.
    Ca {
        /// Certificates to sign.
        #[arg(long, default_value_t = 2000)]
        count: u32,
    },
}

/// `NAME=VALUE`.
fn env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// A combination of flags that cannot be measured (clap checks the rest).
fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> Result<()> {
    isthmus_bench::run(&cmd.into_benchmark(std::env::current_exe)?)?;
    Ok(())
}

impl BenchCommand {
    /// The benchmark and its options; `exe` names the `isthmus` binary, asked only by the
    /// benchmarks that start it (control planes, agents, the lab, `bench http` in pods).
    fn into_benchmark(
        self,
        exe: impl FnOnce() -> std::io::Result<PathBuf>,
    ) -> std::io::Result<Benchmark> {
        Ok(match self {
            BenchCommand::Generate { shape, out } => Benchmark::Generate(GenerateOptions {
                shape: shape.shape(),
                out,
            }),
            BenchCommand::Xds {
                shape,
                proxies,
                peer: Some(Peer::Istiod),
                modes,
                changes,
                istiod,
                kube_bin,
                istiod_env,
                work,
                ..
            } => {
                if shape.clusters.is_some_and(|c| c != 1) {
                    return Err(invalid(
                        "--peer istiod measures one cluster (the API server's): leave --clusters out or give 1",
                    ));
                }
                Benchmark::XdsPeer(PeerXdsOptions {
                    exe: exe()?,
                    istiod,
                    kube_bin,
                    services: shape.services,
                    endpoints: shape.endpoints,
                    proxies,
                    modes: modes.iter().map(|m| *m == XdsMode::Delta).collect(),
                    changes,
                    istiod_env,
                    work,
                })
            }
            BenchCommand::Xds {
                shape,
                proxies,
                delta,
                churn_seconds,
                sidecar_scope,
                on_demand,
                work,
                ..
            } => {
                let [proxies] = proxies[..] else {
                    return Err(invalid(
                        "several --proxies counts are measured with --peer; without it give one (bench sweep runs several)",
                    ));
                };
                Benchmark::Xds(XdsOptions {
                    exe: exe()?,
                    shape: shape.shape(),
                    proxies,
                    delta,
                    churn_seconds,
                    sidecar_scope,
                    on_demand,
                    work,
                })
            }
            BenchCommand::Sweep {
                services,
                proxies,
                out,
                work,
            } => Benchmark::Sweep(SweepOptions {
                exe: exe()?,
                services,
                proxies,
                out,
                work,
            }),
            BenchCommand::Kubernetes {
                services,
                endpoints,
                proxies,
                changes,
                kube_bin,
                work,
            } => Benchmark::Kubernetes(KubernetesOptions {
                exe: exe()?,
                kube_bin,
                services,
                endpoints,
                proxies,
                changes,
                work,
            }),
            BenchCommand::Memory {
                services,
                clusters,
                endpoints,
                work,
                peer: Some(Peer::Istiod),
                istiod,
                kube_bin,
                repeat,
                ..
            } => {
                let services = services.unwrap_or_else(|| vec![400]);
                let [services] = services[..] else {
                    return Err(invalid(
                        "--peer istiod measures one mesh per cluster: give one --services value",
                    ));
                };
                Benchmark::MemoryPeer(PeerMemoryOptions {
                    exe: exe()?,
                    istiod,
                    kube_bin,
                    services,
                    endpoints,
                    clusters,
                    repeat,
                    work,
                })
            }
            BenchCommand::Memory {
                services,
                clusters,
                endpoints,
                more_endpoints,
                work,
                out,
                ..
            } => Benchmark::Memory(MemoryOptions {
                exe: exe()?,
                services: services.unwrap_or_else(|| vec![400, 2000]),
                clusters,
                endpoints,
                more_endpoints,
                work,
                out,
            }),
            BenchCommand::Dns {
                names,
                seconds,
                clients,
            } => Benchmark::Dns(DnsOptions {
                names,
                seconds,
                clients,
            }),
            BenchCommand::Http {
                addr,
                host,
                path,
                headers,
                requests,
                new_connections,
                rate,
                seconds,
                connections,
            } => Benchmark::Http(HttpOptions {
                addr,
                host,
                path,
                headers,
                requests,
                new_connections,
                rate,
                seconds,
                connections,
            }),
            BenchCommand::Datapath { requests, state } => Benchmark::Datapath(DatapathOptions {
                exe: exe()?,
                requests,
                state,
            }),
            BenchCommand::Envoy {
                services,
                endpoints,
                envoy,
                work,
                out,
            } => Benchmark::Envoy(EnvoyOptions {
                exe: exe()?,
                services,
                endpoints,
                envoy,
                work,
                out,
            }),
            BenchCommand::Ca { count } => Benchmark::Ca(CaOptions { count }),
            BenchCommand::Load {
                services,
                endpoints,
                kind,
                preload,
                control_plane_binary,
                work,
            } => Benchmark::Load(LoadOptions {
                exe: match control_plane_binary {
                    Some(b) => b,
                    None => exe()?,
                },
                services,
                endpoints,
                kind: match kind {
                    LoadKind::ServiceEntries => EndpointKind::ServiceEntries,
                    LoadKind::Pods => EndpointKind::Pods,
                },
                preload,
                work,
            }),
            BenchCommand::Soak {
                proxies,
                minutes,
                changes_per_second,
                services,
                endpoints,
                delta,
                work,
            } => Benchmark::Soak(SoakOptions {
                exe: exe()?,
                proxies,
                minutes,
                changes_per_second,
                services,
                endpoints,
                delta,
                work,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `isthmus bench ...` as the binary parses it.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        bench: BenchCommand,
    }

    fn bench(args: &[&str]) -> Benchmark {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .expect("valid flags");
        cli.bench
            .into_benchmark(|| Ok(PathBuf::from("/opt/isthmus")))
            .expect("options")
    }

    /// The error of flags that parse but cannot be measured, or clap's.
    fn refused(args: &[&str]) -> String {
        match Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())) {
            Err(e) => format!("{:?}", e.kind()),
            Ok(cli) => cli
                .bench
                .into_benchmark(|| Ok(PathBuf::from("/opt/isthmus")))
                .expect_err("refused")
                .to_string(),
        }
    }

    #[test]
    fn xds_against_istiod_takes_proxy_counts_and_modes() {
        let Benchmark::XdsPeer(o) = bench(&[
            "xds",
            "--peer",
            "istiod",
            "--services",
            "1000",
            "--proxies",
            "100,1000",
            "--modes",
            "delta",
            "--changes",
            "6",
            "--istiod",
            "/i/pilot-discovery",
            "--istiod-env",
            "PILOT_MAX_REQUESTS_PER_SECOND=1000",
        ]) else {
            panic!("not the peer benchmark");
        };
        assert_eq!(
            o,
            PeerXdsOptions {
                exe: "/opt/isthmus".into(),
                istiod: Some("/i/pilot-discovery".into()),
                kube_bin: None,
                services: 1000,
                endpoints: 10,
                proxies: vec![100, 1000],
                modes: vec![true],
                changes: 6,
                istiod_env: vec![("PILOT_MAX_REQUESTS_PER_SECOND".into(), "1000".into())],
                work: "/tmp/isthmus-bench".into(),
            }
        );
        let Benchmark::XdsPeer(o) = bench(&["xds", "--peer", "istiod", "--clusters", "1"]) else {
            panic!("not the peer benchmark");
        };
        assert_eq!(o.modes, [false, true], "both modes by default");
        assert!(refused(&["xds", "--peer", "istiod", "--clusters", "3"]).contains("one cluster"));
        assert!(refused(&["xds", "--proxies", "10,100"]).contains("with --peer"));
        assert_eq!(
            refused(&["xds", "--peer", "istiod", "--delta"]),
            "ArgumentConflict"
        );
        assert_eq!(
            refused(&["xds", "--modes", "sotw"]),
            "MissingRequiredArgument"
        );
    }

    #[test]
    fn memory_against_istiod_measures_one_mesh_per_cluster() {
        let Benchmark::MemoryPeer(o) =
            bench(&["memory", "--peer", "istiod", "--clusters", "1,2,5"])
        else {
            panic!("not the peer benchmark");
        };
        assert_eq!(
            (o.services, o.endpoints, o.clusters, o.repeat),
            (400, 10, vec![1, 2, 5], 3)
        );
        let Benchmark::MemoryPeer(o) = bench(&["memory", "--peer", "istiod", "--repeat", "1"])
        else {
            panic!("not the peer benchmark");
        };
        assert_eq!(o.repeat, 1);
        assert_eq!(
            refused(&["memory", "--peer", "istiod", "--repeat", "0"]),
            "ValueValidation"
        );
        assert_eq!(
            refused(&["memory", "--repeat", "2"]),
            "MissingRequiredArgument"
        );
        assert!(
            refused(&["memory", "--peer", "istiod", "--services", "400,2000"])
                .contains("one --services value")
        );
        let Benchmark::Memory(o) = bench(&["memory"]) else {
            panic!("memory");
        };
        assert_eq!(o.services, [400, 2000]);
    }

    #[test]
    fn soak_defaults_to_the_issue_s_ten_minutes_of_1000_proxies() {
        let Benchmark::Soak(o) = bench(&["soak"]) else {
            panic!("soak");
        };
        assert_eq!(
            (o.proxies, o.minutes, o.changes_per_second, o.delta),
            (1000, 10.0, 5.0, false)
        );
        let Benchmark::Soak(o) = bench(&["soak", "--minutes", "0.5", "--proxies", "20", "--delta"])
        else {
            panic!("soak");
        };
        assert_eq!((o.proxies, o.minutes, o.delta), (20, 0.5, true));
    }

    #[test]
    fn load_defaults_to_istio_s_big_service_entry_case() {
        assert_eq!(
            bench(&["load"]),
            Benchmark::Load(LoadOptions {
                exe: "/opt/isthmus".into(),
                services: 2000,
                endpoints: 1000,
                kind: EndpointKind::ServiceEntries,
                preload: None,
                work: "/tmp/isthmus-bench-load".into(),
            })
        );
        let Benchmark::Load(o) = bench(&["load", "--kind", "pods", "--preload", "/j.so"]) else {
            panic!("load");
        };
        assert_eq!(
            (o.kind, o.preload),
            (EndpointKind::Pods, Some("/j.so".into()))
        );
    }

    #[test]
    fn xds_passes_the_sidecar_scope_and_the_binary() {
        assert_eq!(
            bench(&["xds"]),
            Benchmark::Xds(XdsOptions {
                exe: "/opt/isthmus".into(),
                shape: Shape {
                    clusters: 5,
                    services: 2000,
                    endpoints: 10
                },
                proxies: 100,
                delta: false,
                churn_seconds: 0,
                sidecar_scope: false,
                on_demand: false,
                work: "/tmp/isthmus-bench".into(),
            })
        );
        let Benchmark::Xds(o) = bench(&[
            "xds",
            "--clusters",
            "1",
            "--services",
            "20",
            "--endpoints",
            "2",
            "--proxies",
            "3",
            "--delta",
            "--churn-seconds",
            "4",
            "--sidecar-scope",
            "--work",
            "/w",
        ]) else {
            panic!("not xds");
        };
        assert_eq!(
            (
                o.shape,
                o.proxies,
                o.delta,
                o.churn_seconds,
                o.sidecar_scope
            ),
            (
                Shape {
                    clusters: 1,
                    services: 20,
                    endpoints: 2
                },
                3,
                true,
                4,
                true
            )
        );
        assert_eq!(o.work, PathBuf::from("/w"));
    }

    #[test]
    fn lists_are_comma_separated() {
        assert_eq!(
            bench(&["sweep"]),
            Benchmark::Sweep(SweepOptions {
                exe: "/opt/isthmus".into(),
                services: vec![250, 500, 1000, 2000],
                proxies: vec![10, 100],
                out: "docs/bench".into(),
                work: "/tmp/isthmus-bench-sweep".into(),
            })
        );
        assert_eq!(
            bench(&[
                "memory",
                "--services",
                "40,200",
                "--clusters",
                "1,3",
                "--out",
                "o"
            ]),
            Benchmark::Memory(MemoryOptions {
                exe: "/opt/isthmus".into(),
                services: vec![40, 200],
                clusters: vec![1, 3],
                endpoints: 10,
                more_endpoints: 20,
                work: "/tmp/isthmus-bench-memory".into(),
                out: Some("o".into()),
            })
        );
        let Benchmark::Envoy(o) = bench(&["envoy", "--services", "10,20", "--envoy", "/e"]) else {
            panic!("not envoy");
        };
        assert_eq!(o.services, [10, 20]);
        assert_eq!(o.envoy, Some(PathBuf::from("/e")));
        assert_eq!(o.exe, PathBuf::from("/opt/isthmus"));
    }

    #[test]
    fn http_keeps_open_and_closed_loop_flags() {
        assert_eq!(
            bench(&["http", "--addr", "127.0.0.1:80", "--host", "httpbin"]),
            Benchmark::Http(HttpOptions {
                addr: "127.0.0.1:80".parse().expect("addr"),
                host: "httpbin".into(),
                path: "/ip".into(),
                headers: Vec::new(),
                requests: 1000,
                new_connections: false,
                rate: None,
                seconds: 5.0,
                connections: 8,
            })
        );
        let Benchmark::Http(o) = bench(&[
            "http",
            "--addr",
            "10.0.0.1:8000",
            "--host",
            "h",
            "--rate",
            "300",
            "--seconds",
            "2",
        ]) else {
            panic!("not http");
        };
        assert_eq!((o.rate, o.seconds), (Some(300.0), 2.0));
    }

    #[test]
    fn benches_that_start_no_process_do_not_ask_for_the_binary() {
        let no_exe = || Err(std::io::Error::other("no /proc"));
        for args in [
            &["ca", "--count", "7"][..],
            &["dns"],
            &["generate", "--out", "/m"],
            &["http", "--addr", "127.0.0.1:80", "--host", "h"],
        ] {
            let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
                .expect("valid flags");
            assert!(cli.bench.into_benchmark(no_exe).is_ok(), "{args:?}");
        }
        let cli = Cli::try_parse_from(["bench", "datapath"]).expect("valid flags");
        assert!(cli.bench.into_benchmark(no_exe).is_err());
        assert_eq!(
            bench(&["ca", "--count", "7"]),
            Benchmark::Ca(CaOptions { count: 7 })
        );
        assert_eq!(
            bench(&["dns"]),
            Benchmark::Dns(DnsOptions {
                names: 10000,
                seconds: 10,
                clients: 4
            })
        );
    }
}
