//! On-demand scoping, letting go: a name the pod has not resolved for `--scope-idle` and
//! whose services' clusters carried no connection since the last look leaves the names the
//! agent sends, and the control plane takes those services out of the sidecar. A name whose
//! services the control plane did not name is kept: without them the agent cannot tell
//! whether it is used.

use isthmus_dns::demand::Wants;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
