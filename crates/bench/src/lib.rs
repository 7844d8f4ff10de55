//! Benchmarks that print numbers (never timed assertions): a generator of synthetic
//! meshes written as registry files, an xDS load client that plays N Envoys against a real
//! control plane process (state of the world or delta, ACKing like Envoy), and the CA's
//! signing rate beside the raw ECDSA P-256 rate. `isthmus bench ...` runs them.

pub mod ca;
pub mod dns;
pub mod generate;
pub mod http_latency;
pub mod process;
pub mod stats;
pub mod svg;
pub mod xds;
