//! The lab's network, built from the topology: a WAN namespace with a bridge, a router
//! namespace per cluster (pod bridge, WAN leg, NAT to the WAN), and a namespace per pod
//! with its address from the cluster's pod CIDR (the part a CNI plugin plays).

use crate::error::{io, LabError};
use crate::kube_proxy;
use crate::netns;
use crate::state::{ClusterState, LabState, PodRole, PodState};
use crate::topology::{Cidr, Topology, WAN};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The WAN namespace of the lab whose namespaces start with `prefix`.
pub fn wan_netns(prefix: &str) -> String {
    format!("{prefix}-wan")
}

/// The namespace of pod `namespace/name` of `cluster`.
pub fn pod_netns_name(prefix: &str, cluster: &str, namespace: &str, name: &str) -> String {
    format!("{prefix}-{cluster}-{namespace}-{name}")
}

/// Where pod `namespace/name` of `cluster` keeps its logs and agent files.
pub fn pod_workdir(state_dir: &Path, cluster: &str, namespace: &str, name: &str) -> PathBuf {
    state_dir
        .join("pods")
        .join(cluster)
        .join(namespace)
        .join(name)
}

/// The next pod address of `cluster` (whose pods are in `pod_cidr`).
///
/// Control planes and gateways take the same low addresses in every cluster (real
/// overlap); application pods start at a per-cluster offset (`.11` in the first cluster,
/// `.31` in the second, ...) so that another cluster's pod address does not happen to
/// exist locally, which would make the isolation check pass or fail by accident.
pub fn pod_address(
    cluster: &mut ClusterState,
    pod_cidr: Cidr,
    role: &PodRole,
) -> Result<Ipv4Addr, LabError> {
    let app_base = 10 + 20 * cluster.index as u32;
    if *role == PodRole::App && cluster.last_pod < app_base {
        cluster.last_pod = app_base;
    }
    cluster.last_pod += 1;
    pod_cidr.host(cluster.last_pod).ok_or_else(|| {
        LabError::Invalid(format!(
            "{}: pod CIDR {} is full",
            cluster.name,
            String::from(pod_cidr)
        ))
    })
}

/// Builds the WAN and every cluster's router: the pod bridge with the gateway address
/// `.1`, a leg on the WAN, forwarding, NAT to the WAN and kube-proxy's chain.
pub fn build(state: &LabState, progress: &mut dyn FnMut(&str)) -> Result<(), LabError> {
    let wan = wan_netns(&state.prefix);
    netns::add(&wan)?;
    netns::bridge(&wan, "wan")?;
    for c in &state.clusters {
        let spec = state.topology.cluster(&c.name)?;
        let rt = &c.router_netns;
        netns::add(rt)?;
        netns::bridge(rt, "pods")?;
        let gw = spec
            .pod_cidr
            .host(1)
            .ok_or_else(|| LabError::Invalid(format!("{}: pod CIDR too small", c.name)))?;
        netns::addr(rt, "pods", &format!("{gw}/{}", spec.pod_cidr.prefix))?;
        let leg = format!("r{}", c.index);
        netns::veth(rt, "wan0", &wan, &leg)?;
        netns::attach(&wan, &leg, "wan")?;
        netns::addr(
            rt,
            "wan0",
            &format!("{}/{}", Topology::router_wan(c.index), WAN.prefix),
        )?;
        netns::exec(rt, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        // Pods reach the WAN from behind their router, as from behind a cloud NAT:
        // replies come back to the router, never to an address of another cluster.
        netns::masquerade(rt, &String::from(spec.pod_cidr), "wan0")?;
        // kube-proxy's part: ClusterIPs are DNAT-ed to pods by the router (the lab's
        // node), and hairpinned connections are masqueraded so replies come back
        // through it.
        kube_proxy::install(rt)?;
        progress(&format!(
            "{}: router {} (pods {} via {gw}, WAN {})",
            c.name,
            rt,
            String::from(spec.pod_cidr),
            Topology::router_wan(c.index)
        ));
    }
    Ok(())
}

/// Creates the namespace of pod `namespace/name` in cluster number `ci`, with its address
/// and its working directory; returns its state (no processes yet).
pub fn pod_netns(
    state_dir: &Path,
    state: &mut LabState,
    ci: usize,
    namespace: &str,
    name: &str,
    role: PodRole,
) -> Result<PodState, LabError> {
    let spec = &state.topology.clusters[ci];
    let c = &mut state.clusters[ci];
    let ip = pod_address(c, spec.pod_cidr, &role)?;
    let veth = format!("p{}", c.last_pod);
    pod_netns_at(state_dir, state, ci, namespace, name, role, ip, &veth)
}

/// [`pod_netns`] at a given address, with `veth` as the name of its link in the router.
#[allow(clippy::too_many_arguments)]
pub fn pod_netns_at(
    state_dir: &Path,
    state: &LabState,
    ci: usize,
    namespace: &str,
    name: &str,
    role: PodRole,
    ip: Ipv4Addr,
    veth: &str,
) -> Result<PodState, LabError> {
    let spec = &state.topology.clusters[ci];
    let c = &state.clusters[ci];
    let ns = pod_netns_name(&state.prefix, &c.name, namespace, name);
    let rt = c.router_netns.clone();
    let gw = spec
        .pod_cidr
        .host(1)
        .map(|g| g.to_string())
        .unwrap_or_default();
    netns::add(&ns)?;
    netns::veth(&ns, "eth0", &rt, veth)?;
    netns::attach(&rt, veth, "pods")?;
    netns::addr(&ns, "eth0", &format!("{ip}/{}", spec.pod_cidr.prefix))?;
    netns::default_route(&ns, &gw)?;
    let workdir = pod_workdir(state_dir, &c.name, namespace, name);
    std::fs::create_dir_all(&workdir).map_err(io(&workdir))?;
    use std::os::unix::fs::PermissionsExt;
    for d in [state_dir, &workdir] {
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
    }
    Ok(PodState {
        namespace: namespace.to_string(),
        name: name.to_string(),
        deployment: None,
        subdomain: None,
        role,
        ip: ip.to_string(),
        public_ip: None,
        netns: ns,
        labels: BTreeMap::new(),
        service_account: "default".into(),
        image: None,
        proxy: false,
        pids: Vec::new(),
        workdir,
        from_node: false,
        stopped: false,
    })
}

/// Gives the pod namespace `pod_netns` of cluster number `ci` a leg on the WAN with the
/// cluster's public gateway address ([`Topology::gateway_wan`]); returns that address.
pub fn attach_to_wan(prefix: &str, ci: usize, pod_netns: &str) -> Result<Ipv4Addr, LabError> {
    let public = Topology::gateway_wan(ci);
    attach_to_wan_at(prefix, pod_netns, &format!("g{ci}"), public)?;
    Ok(public)
}

/// The routing table that answers from a load balancer address given to a running pod.
const LOAD_BALANCER_TABLE: &str = "15443";

/// Gives the running pod namespace `pod_netns` of cluster number `ci` the cluster's public
/// address as a cloud load balancer would: what arrives at that address reaches the pod and
/// is answered from it, and nothing else changes. The address has no route of its own in
/// the pod's main table (only a rule for replies from it), so connections the pod already
/// has through its cluster's NAT (its control plane's, for one) keep their path; a WAN
/// route in the main table moved them onto the new leg, where they went dark.
pub fn attach_load_balancer(
    prefix: &str,
    ci: usize,
    pod_netns: &str,
) -> Result<Ipv4Addr, LabError> {
    let public = Topology::gateway_wan(ci);
    let wan = wan_netns(prefix);
    let leg = format!("g{ci}");
    netns::veth(pod_netns, "wan0", &wan, &leg)?;
    netns::attach(&wan, &leg, "wan")?;
    let public_text = public.to_string();
    let ip = |args: &[&str]| {
        let mut all = vec!["-n", pod_netns];
        all.extend_from_slice(args);
        netns::run("ip", &all).map(|_| ())
    };
    ip(&[
        "addr",
        "add",
        &format!("{public}/{}", WAN.prefix),
        "dev",
        "wan0",
        "noprefixroute",
    ])?;
    ip(&[
        "route",
        "add",
        &format!("{}/{}", WAN.addr, WAN.prefix),
        "dev",
        "wan0",
        "src",
        &public_text,
        "table",
        LOAD_BALANCER_TABLE,
    ])?;
    ip(&[
        "rule",
        "add",
        "from",
        &public_text,
        "lookup",
        LOAD_BALANCER_TABLE,
    ])?;
    Ok(public)
}

/// Gives `pod_netns` a leg `wan0` on the WAN with address `public` (`leg`: the name of
/// its end in the WAN namespace).
pub fn attach_to_wan_at(
    prefix: &str,
    pod_netns: &str,
    leg: &str,
    public: Ipv4Addr,
) -> Result<(), LabError> {
    let wan = wan_netns(prefix);
    netns::veth(pod_netns, "wan0", &wan, leg)?;
    netns::attach(&wan, leg, "wan")?;
    netns::addr(pod_netns, "wan0", &format!("{public}/{}", WAN.prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::testing;

    #[test]
    fn system_pods_overlap_and_app_pods_start_at_a_per_cluster_offset() {
        let mut s = testing::lab(testing::TWO_CLUSTERS);
        let cidr = s.topology.clusters[0].pod_cidr;
        let mut next = |ci: usize, role: PodRole| {
            pod_address(&mut s.clusters[ci], cidr, &role)
                .expect("address")
                .to_string()
        };
        // Both clusters: control plane .2, gateway .3, the same addresses.
        for ci in [0, 1] {
            assert_eq!(next(ci, PodRole::ControlPlane), "10.10.0.2");
            assert_eq!(next(ci, PodRole::Gateway), "10.10.0.3");
        }
        assert_eq!(next(0, PodRole::App), "10.10.0.11");
        assert_eq!(next(0, PodRole::App), "10.10.0.12");
        assert_eq!(next(1, PodRole::App), "10.10.0.31");
        // A gateway added after apps continues after them rather than going back.
        assert_eq!(next(1, PodRole::Gateway), "10.10.0.32");
        assert_eq!(s.clusters[1].last_pod, 32);
    }

    #[test]
    fn a_full_pod_cidr_is_an_error_naming_cluster_and_cidr() {
        let mut s = testing::lab(testing::TWO_CLUSTERS);
        let small = Cidr::try_from("10.1.0.0/28".to_string()).expect("cidr");
        let c = &mut s.clusters[0];
        assert_eq!(
            pod_address(c, small, &PodRole::App)
                .expect("the first app address")
                .to_string(),
            "10.1.0.11"
        );
        c.last_pod = 14;
        let err = pod_address(c, small, &PodRole::App).expect_err("full");
        assert_eq!(err.to_string(), "cluster1: pod CIDR 10.1.0.0/28 is full");
    }

    #[test]
    fn names_and_paths_of_a_pod() {
        assert_eq!(wan_netns("isthmus"), "isthmus-wan");
        assert_eq!(
            pod_netns_name("isthmus", "cluster2", "foo", "sleep-0"),
            "isthmus-cluster2-foo-sleep-0"
        );
        assert_eq!(
            pod_workdir(Path::new("/var/lab"), "cluster2", "foo", "sleep-0"),
            Path::new("/var/lab/pods/cluster2/foo/sleep-0")
        );
    }
}
