//! Whole benchmarks as `isthmus bench ...` runs them: each module takes a plain options
//! struct (the CLI fills it from its flags), runs the measurement (starting control planes,
//! Envoys or a lab where it needs them, from the `isthmus` binary named in the options) and
//! prints the report on stdout.

pub mod ca;
pub mod control_plane;
pub mod datapath;
pub mod dns;
pub mod envoy_apply;
pub mod generate;
pub mod http;
pub mod istiod;
pub mod kubernetes;
pub mod load;
pub mod memory;
pub mod peer;
pub mod peer_memory;
pub mod soak;
pub mod xds;

use crate::error::BenchError;
use std::path::Path;

/// One `isthmus bench` subcommand with its options.
#[derive(Debug, Clone, PartialEq)]
pub enum Benchmark {
    /// Write a synthetic mesh as registry files.
    Generate(generate::GenerateOptions),
    /// A control plane on a synthetic mesh against N simulated Envoys.
    Xds(xds::XdsOptions),
    /// `Xds` against istiod on the same API server.
    XdsPeer(peer::PeerXdsOptions),
    /// `Xds` at several mesh sizes and proxy counts, with charts.
    Sweep(xds::SweepOptions),
    /// The control plane's memory against the mesh it serves.
    Memory(memory::MemoryOptions),
    /// `Memory` against istiod, remote clusters read from the same API server.
    MemoryPeer(peer_memory::PeerMemoryOptions),
    /// One large configuration: start-up speed, memory, monitoring while loading.
    Load(load::LoadOptions),
    /// Minutes of load with changes, a restart and a vanishing registry.
    Soak(soak::SoakOptions),
    /// dnsperf against the mesh DNS and unbound.
    Dns(dns::DnsOptions),
    /// Timed GETs (inside a pod).
    Http(http::HttpOptions),
    /// The data path in the lab.
    Datapath(datapath::DatapathOptions),
    /// A real Envoy applying the generated configuration.
    Envoy(envoy_apply::EnvoyOptions),
    /// CA signing rate.
    Ca(ca::CaOptions),
    /// The same mesh from files and from a real API server.
    Kubernetes(kubernetes::KubernetesOptions),
}

/// Runs `benchmark`, printing its report on stdout.
pub fn run(benchmark: &Benchmark) -> Result<(), BenchError> {
    match benchmark {
        Benchmark::Generate(o) => generate::run(o),
        Benchmark::Xds(o) => xds::run(o),
        Benchmark::XdsPeer(o) => peer::run(o),
        Benchmark::Sweep(o) => xds::sweep(o),
        Benchmark::Memory(o) => memory::run(o),
        Benchmark::MemoryPeer(o) => peer_memory::run(o),
        Benchmark::Load(o) => load::run(o),
        Benchmark::Soak(o) => soak::run(o),
        Benchmark::Dns(o) => dns::run(o),
        Benchmark::Http(o) => http::run(o),
        Benchmark::Datapath(o) => datapath::run(o),
        Benchmark::Envoy(o) => envoy_apply::run(o),
        Benchmark::Ca(o) => ca::run(o),
        Benchmark::Kubernetes(o) => kubernetes::run(o),
    }
}

/// The Istio `Sidecar` that limits ns-0's proxies to their own namespace's services (and
/// istio-system's), as a platform team would.
const SCOPING_SIDECAR: &str = "apiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nmetadata: {name: default, namespace: ns-0}\nspec:\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n";

/// Writes [`SCOPING_SIDECAR`] into the generated `registry` (as `ns-0/sidecar.yaml`).
fn write_scoping_sidecar(registry: &Path) -> std::io::Result<()> {
    std::fs::write(registry.join("ns-0/sidecar.yaml"), SCOPING_SIDECAR)
}

/// Megabytes (10^6 bytes), as the reports print memory.
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scoping_sidecar_limits_ns_0_to_its_own_services() {
        let dir = std::env::temp_dir().join(format!("isthmus-bench-scope-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ns-0")).expect("temp dir");
        write_scoping_sidecar(&dir).expect("write");
        let yaml = std::fs::read_to_string(dir.join("ns-0/sidecar.yaml")).expect("read");
        assert!(yaml.contains("kind: Sidecar"), "{yaml}");
        assert!(yaml.contains("namespace: ns-0"), "{yaml}");
        assert!(
            yaml.contains("hosts: [\"./*\", \"istio-system/*\"]"),
            "{yaml}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        // Without the generated namespace there is nowhere to put it.
        assert!(write_scoping_sidecar(&dir).is_err());
    }

    #[test]
    fn megabytes_are_decimal() {
        assert_eq!(mb(2_500_000), 2.5);
        assert_eq!(mb(0), 0.0);
    }
}
