//! The lab: a local multi-cluster mesh on one machine, built from network namespaces.
//!
//! Each pod is a network namespace with a veth to its cluster's bridge, which lives in the
//! cluster's router namespace; a WAN namespace joins the routers and the gateways' public
//! legs (198.18.0.0/15). Pods reach their own cluster's pods and WAN addresses, never
//! another cluster's pods, even when both clusters use the same pod CIDR. Real control
//! planes, agents, Envoys and the built-in demo apps run inside. The lab plays the
//! Kubernetes API server for the control planes: it writes the objects (Pods with their IPs,
//! Services with ClusterIPs, the Istio resources) into each cluster's registry directory.
//!
//! Modules by role, each using only those listed before it: `topology`, `state` and
//! `options` (what the lab is), `netns` and `process` (tools), `api_server` (the API side:
//! objects as registry files), `manifests` (reading a user's manifests), `kube_proxy`
//! (ClusterIPs), `network` (WAN, routers, pod namespaces and addresses), `kubelet` (pods,
//! agents, readiness), `vm` (VMs on a subnet of their own, joining through the agent),
//! `install` (the mesh's components), `lab` (orchestration) and `scenario` (the scenario
//! runner); `demo`, `bookinfo` and `http` are the demo apps.

pub mod api_server;
pub mod bookinfo;
pub mod container;
pub mod demo;
pub mod envoy_binary;
pub mod error;
pub mod grpc_echo;
pub mod http;
pub mod install;
pub mod jwt;
pub mod kube_proxy;
pub mod kubelet;
pub mod kubernetes;
pub mod lab;
pub mod manifests;
pub mod netns;
pub mod network;
pub mod node;
pub mod options;
pub mod pod_spec;
pub mod process;
pub mod scenario;
pub mod state;
pub mod topology;
pub mod vm;

pub use error::LabError;
pub use lab::{Lab, LabOptions};
pub use topology::Topology;
