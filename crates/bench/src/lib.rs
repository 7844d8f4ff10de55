//! Benchmarks that print numbers (never timed assertions): a generator of synthetic
//! meshes written as registry files, an xDS load client that plays N Envoys against a real
//! control plane process (state of the world or delta, ACKing like Envoy), and the CA's
//! signing rate beside the raw ECDSA P-256 rate. [`orchestrate`] runs whole benchmarks as
//! `isthmus bench ...` does (starting control planes, Envoys or a lab from the `isthmus`
//! binary it is given) and prints their reports; the CLI only parses flags into its options.

pub mod ca;
pub mod dns;
pub mod error;
pub mod generate;
pub mod http_latency;
pub mod orchestrate;
pub mod process;
pub mod stats;
pub mod svg;
pub mod xds;

pub use error::BenchError;
pub use orchestrate::{run, Benchmark};
