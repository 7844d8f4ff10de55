//! The pod agent, Istio's pilot-agent: it makes a key and CSR, gets the workload
//! certificate from the control plane's CA with its credential, serves the certificate and
//! root to Envoy over SDS on a unix socket, writes Envoy's bootstrap, runs Envoy (restarting
//! it if it dies, stopping it with itself) and rotates the certificate before it expires
//! without restarting Envoy.

pub mod bootstrap;
pub mod caclient;
pub mod capture;
pub mod config;
pub mod envoy;
pub mod names;
pub mod run;
pub mod scope;
pub mod sds;
pub mod stats;
pub mod telemetry;

pub use config::{AgentConfig, XdsMode};
pub use run::{run, AgentError};
