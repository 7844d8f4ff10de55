//! Mesh DNS, the part of the lab that plays kube-dns and of the mesh that Istio 1.1 gave to
//! CoreDNS's `istiocoredns` plugin: it answers
//!
//! * `NAME.NAMESPACE.svc.cluster.local` for Kubernetes services (their ClusterIP),
//! * ServiceEntry hosts with their `addresses` (`httpbin.bar.global` -> `127.255.0.2`) and,
//!   for hosts without one, the address the mesh model allocated,
//! * template suffixes (seed 004's CoreDNS `template` for `*.remote`),
//!
//! from the control plane's mesh snapshot. The same table goes to every agent over xDS
//! ([`nds`]); an agent answers its pod's DNS from it and forwards the rest to the pod's
//! resolvers ([`proxy`]).
//!
//! The control plane's server forwards names it does not hold to its upstream resolvers, as
//! kube-dns forwards to the node's (`--dns-upstream`); without upstreams it answers them
//! NXDOMAIN. A known name asked for another type (AAAA) is an empty NOERROR answer.

pub mod demand;
pub mod fast;
mod handler;
pub mod nds;
pub mod proxy;
mod table;

pub use handler::{serve, serve_on, DnsError, MeshDns, TTL_SECS};
pub use table::{Answer, NameTable, Template, TemplateError};
