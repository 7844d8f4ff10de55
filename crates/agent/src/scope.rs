//! On-demand scoping as seen from Envoy:
//! - use without a lookup ([`learn_from_passthrough`]): an app that calls a mesh service by
//!   its address, without resolving its name, reaches Envoy's passthrough cluster (the
//!   service has no listener yet); the agent sees that address among the passthrough
//!   cluster's hosts and wants the names it stands for, so the next calls are mesh calls.
//! - letting go ([`release_idle`]): a name the pod has not resolved for `--scope-idle` and
//!   whose services' clusters carried no connection since the last look leaves the names
//!   the agent sends, and the control plane takes those services out of the sidecar. A name
//!   whose services the control plane did not name is kept: without them the agent cannot
//!   tell whether it is used.

use isthmus_dns::demand::Wants;
use isthmus_dns::NameTable;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Envoy's admin page listing every cluster's hosts (on an on-demand sidecar, a few).
const CLUSTERS: &str = "/clusters";

/// The cluster Envoy sends connections to when nothing in its configuration matches them.
const PASSTHROUGH: &str = "PassthroughCluster";

/// How often the passthrough cluster's hosts are read. Envoy keeps an original-destination
/// host for 5 s after its last connection, so nothing is missed at this pace.
pub const PASSTHROUGH_EVERY: Duration = Duration::from_millis(500);

/// The addresses the passthrough cluster connected to, from Envoy's `/clusters` text
/// (`PassthroughCluster::10.96.0.5:8080::cx_total::1`).
fn passthrough_addresses(clusters: &str) -> BTreeSet<Ipv4Addr> {
    clusters
        .lines()
        .filter_map(|line| line.strip_prefix(PASSTHROUGH)?.strip_prefix("::"))
        .filter_map(|rest| rest.split("::").next()?.parse::<SocketAddr>().ok())
        .filter_map(|addr| match addr.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// Each address of a name table with the names that stand for it.
type NamesByAddress = HashMap<Ipv4Addr, Vec<String>>;

/// The names that stand for each address of a name table (a service's VIP, a headless
/// service's pods).
fn names_by_address(table: &NameTable) -> NamesByAddress {
    let mut out = NamesByAddress::new();
    for (name, addrs) in table.entries() {
        for a in addrs {
            out.entry(*a).or_default().push(name.to_string());
        }
    }
    out
}

/// Every [`PASSTHROUGH_EVERY`], while the control plane scopes this sidecar: wants the
/// names of the mesh addresses Envoy passed through (calls by address to services not yet
/// in scope). The call that taught it went where Istio's sidecar would have sent it (the
/// passthrough cluster, to the address itself); the calls after it are mesh calls. The
/// table's addresses are indexed only when something passed through, once per table.
pub async fn learn_from_passthrough(
    wants: Arc<Wants>,
    tables: watch::Receiver<Option<Arc<NameTable>>>,
    admin: SocketAddr,
    every: Duration,
) {
    let mut index: Option<(Arc<NameTable>, NamesByAddress)> = None;
    loop {
        tokio::time::sleep(every).await;
        if !wants.scoped() {
            continue;
        }
        let Some(clusters) = crate::stats::fetch(admin, CLUSTERS).await else {
            continue;
        };
        let addresses = passthrough_addresses(&clusters);
        if addresses.is_empty() {
            continue;
        }
        let Some(table) = tables.borrow().clone() else {
            continue;
        };
        let by_address = match &index {
            Some((indexed, by)) if Arc::ptr_eq(indexed, &table) => by,
            _ => &index.insert((table.clone(), names_by_address(&table))).1,
        };
        for ip in addresses {
            for name in by_address.get(&ip).into_iter().flatten() {
                if wants.ask(name) {
                    tracing::info!(%ip, name, "a call by address to a service outside the sidecar's scope: wanting its name");
                }
            }
        }
    }
}

/// The Envoy stats read: each outbound cluster's connections and requests, open and ever.
const STATS: &str = "/stats?filter=^cluster\\.outbound\\|.*\\.upstream_(cx|rq)_(active|total)$";

/// What one service host's clusters carried, summed over its ports and subsets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Carried {
    cx_active: u64,
    cx_total: u64,
    rq_active: u64,
    rq_total: u64,
}

/// Per outbound cluster's service host, what it carried, from Envoy's `/stats` text.
fn carried(stats: &str) -> BTreeMap<String, Carried> {
    let mut out: BTreeMap<String, Carried> = BTreeMap::new();
    for line in stats.lines() {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("cluster.") else {
            continue;
        };
        let Some((cluster, stat)) = rest.rsplit_once(".upstream_") else {
            continue;
        };
        // outbound|PORT|SUBSET|HOST
        let Some(host) = cluster.split('|').nth(3) else {
            continue;
        };
        let e = out.entry(host.to_string()).or_default();
        match stat {
            "cx_active" => e.cx_active += value,
            "cx_total" => e.cx_total += value,
            "rq_active" => e.rq_active += value,
            "rq_total" => e.rq_total += value,
            _ => {}
        }
    }
    out
}

/// The hosts that carried traffic between two looks: a request in flight or made, a
/// connection made, or a connection open on a host that never carried a request (a TCP
/// service: an open connection is the application's; an HTTP service's open connections
/// are Envoy's idle pool).
fn busy(before: &BTreeMap<String, Carried>, now: &BTreeMap<String, Carried>) -> BTreeSet<String> {
    now.iter()
        .filter(|(h, c)| {
            let b = before.get(*h).copied().unwrap_or_default();
            c.rq_active > 0
                || c.rq_total != b.rq_total
                || c.cx_total != b.cx_total
                || (c.cx_active > 0 && c.rq_total == 0)
        })
        .map(|(h, _)| h.clone())
        .collect()
}

/// Every `idle / 4` (at least a second), lets go of the names idle for `idle`.
pub async fn release_idle(wants: Arc<Wants>, admin: SocketAddr, idle: Duration) {
    let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut before: Option<BTreeMap<String, Carried>> = None;
    loop {
        tokio::time::sleep(every).await;
        let Some(stats) = crate::stats::fetch(admin, STATS).await else {
            continue;
        };
        let now = carried(&stats);
        // The first look only sets the counts to compare with.
        if let Some(before) = before.replace(now.clone()) {
            let busy = busy(&before, &now);
            let gone = wants.forget_idle(idle, |name| {
                let hosts = wants.hosts_of(name);
                hosts.is_empty() || hosts.iter().any(|h| busy.contains(h))
            });
            if !gone.is_empty() {
                tracing::info!(
                    ?gone,
                    ?idle,
                    "not resolved and without traffic: leaving the sidecar's scope"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS_TEXT: &str = "cluster.outbound|8000||httpbin.bar.global.upstream_cx_active: 1\n\
        cluster.outbound|8000||httpbin.bar.global.upstream_cx_total: 7\n\
        cluster.outbound|8000||httpbin.bar.global.upstream_rq_active: 0\n\
        cluster.outbound|8000||httpbin.bar.global.upstream_rq_total: 30\n\
        cluster.outbound|8000|v1|httpbin.bar.global.upstream_cx_total: 2\n\
        cluster.outbound|5432||db.foo.svc.cluster.local.upstream_cx_active: 1\n\
        cluster.outbound|5432||db.foo.svc.cluster.local.upstream_cx_total: 1\n\
        cluster.outbound|5432||db.foo.svc.cluster.local.upstream_rq_total: 0\n\
        cluster.PassthroughCluster.upstream_cx_total: 3\n";

    #[test]
    fn the_passthrough_clusters_addresses_are_read_from_the_admin_page() {
        let text = "outbound|80||a.ns.svc.cluster.local::10.0.0.9:80::cx_total::1\n\
            PassthroughCluster::observability_name::PassthroughCluster\n\
            PassthroughCluster::10.96.0.5:8080::cx_active::1\n\
            PassthroughCluster::10.96.0.5:8080::cx_total::3\n\
            PassthroughCluster::10.96.0.7:9000::hostname::\n\
            PassthroughCluster::[fd00::1]:80::cx_total::1\n\
            PassthroughClusterX::10.96.0.8:80::cx_total::1\n";
        assert_eq!(
            passthrough_addresses(text).into_iter().collect::<Vec<_>>(),
            [Ipv4Addr::new(10, 96, 0, 5), Ipv4Addr::new(10, 96, 0, 7)]
        );
    }

    #[test]
    fn each_address_stands_for_every_name_that_has_it() {
        let table = NameTable::from_entries(
            [
                (
                    "a.ns.svc.cluster.local".to_string(),
                    Ipv4Addr::new(10, 96, 0, 5),
                ),
                ("a.global".to_string(), Ipv4Addr::new(10, 96, 0, 5)),
                (
                    "db-0.db.ns.svc.cluster.local".to_string(),
                    Ipv4Addr::new(10, 1, 0, 3),
                ),
            ],
            &[],
        );
        let by = names_by_address(&table);
        let mut a = by[&Ipv4Addr::new(10, 96, 0, 5)].clone();
        a.sort();
        assert_eq!(a, ["a.global", "a.ns.svc.cluster.local"]);
        assert_eq!(
            by[&Ipv4Addr::new(10, 1, 0, 3)],
            ["db-0.db.ns.svc.cluster.local"]
        );
        assert!(!by.contains_key(&Ipv4Addr::new(10, 96, 0, 6)));
    }

    #[test]
    fn what_each_service_host_carried_is_summed_over_its_clusters() {
        let c = carried(STATS_TEXT);
        assert_eq!(c["httpbin.bar.global"].cx_total, 9, "both subsets");
        assert_eq!(c["httpbin.bar.global"].rq_total, 30);
        assert_eq!(c["db.foo.svc.cluster.local"].cx_active, 1);
        assert_eq!(c.len(), 2, "only outbound clusters: {c:?}");
    }

    #[test]
    fn an_idle_http_pool_is_not_use_an_open_tcp_connection_is() {
        let before = carried(STATS_TEXT);
        let mut now = before.clone();
        // httpbin's pooled connection is Envoy's; db's open connection is the app's.
        assert_eq!(
            busy(&before, &now).into_iter().collect::<Vec<_>>(),
            ["db.foo.svc.cluster.local"]
        );
        if let Some(h) = now.get_mut("httpbin.bar.global") {
            h.rq_total += 1;
        }
        if let Some(d) = now.get_mut("db.foo.svc.cluster.local") {
            d.cx_active = 0;
        }
        assert_eq!(
            busy(&before, &now).into_iter().collect::<Vec<_>>(),
            ["httpbin.bar.global"]
        );
    }
}
