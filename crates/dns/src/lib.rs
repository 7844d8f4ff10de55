//! Mesh DNS, the part of the lab that plays kube-dns and of the mesh that Istio 1.1 gave to
//! CoreDNS's `istiocoredns` plugin: it answers
//!
//! * `NAME.NAMESPACE.svc.cluster.local` for Kubernetes services (their ClusterIP),
//! * ServiceEntry hosts with their `addresses` (`httpbin.bar.global` -> `127.255.0.2`) and,
//!   for hosts without one, the address the mesh model allocated,
//! * template suffixes (seed 004's CoreDNS `template` for `*.remote`),
//!
//! from the control plane's mesh snapshot, and forwards nothing. Unknown names are
//! NXDOMAIN; a known name asked for another type (AAAA) is an empty NOERROR answer.

pub mod fast;
mod handler;
mod table;

pub use handler::{serve, serve_on, DnsError, MeshDns, TTL_SECS};
pub use table::{Answer, NameTable, Template, TemplateError};
