//! Locality load balancing as Istio applies it to a proxy's endpoints
//! (`pilot/pkg/networking/core/loadbalancer`): with outlier detection, endpoints are put in
//! priorities by how near they are to the proxy (same zone and subzone, same zone, same
//! region, another region, a region a `failover` rule passes over) and, with
//! `failoverPriority`, by how many of the listed labels they share with it, so that Envoy
//! sends everything to the nearest healthy endpoints and moves on when those are ejected.
//! With `distribute`, the proxy's rule gives each locality its share of the traffic instead.

pub use crate::policy::locality_matches;
use crate::policy::{levels, Policy};
use isthmus_api::policy::{LocalityDistribute, LocalityLbSetting};
use isthmus_model::{EndpointOrigin, Proxy};

/// How one proxy orders and weighs one destination's endpoints.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalityLb<'a> {
    proxy: Option<&'a Proxy>,
    setting: Option<&'a LocalityLbSetting>,
    /// Priorities by nearness (outlier detection set, locality LB enabled, no distribute).
    failover: bool,
    /// The `distribute` rule for the proxy's locality.
    distribute: Option<&'a LocalityDistribute>,
}

impl<'a> LocalityLb<'a> {
    /// What `policy` asks of locality load balancing for `proxy`.
    pub fn new(proxy: &'a Proxy, policy: &Policy<'a>) -> LocalityLb<'a> {
        let setting = policy.locality();
        let enabled = setting.is_none_or(|s| s.enabled != Some(false));
        if !enabled {
            return LocalityLb::default();
        }
        let distribute = setting.and_then(|s| {
            s.distribute
                .iter()
                .find(|d| !proxy.locality.is_empty() && locality_matches(&d.from, &proxy.locality))
        });
        LocalityLb {
            proxy: Some(proxy),
            setting,
            failover: distribute.is_none() && policy.outlier_detection.is_some(),
            distribute,
        }
    }

    /// Whether endpoints get priorities.
    pub fn prioritizes(&self) -> bool {
        self.failover
    }

    /// Whether localities get weights (the cluster then weighs by locality).
    pub fn distributes(&self) -> bool {
        self.distribute.is_some()
    }

    /// The value of `key` for an endpoint of `origin` (Istio's augmented labels: network,
    /// cluster and the locality's levels besides the pod's own labels).
    fn endpoint_value<'o>(origin: &'o EndpointOrigin, key: &str) -> Option<&'o str> {
        let l = levels(&origin.locality);
        match key {
            "topology.istio.io/network" => Some(&origin.network),
            "topology.istio.io/cluster" => Some(&origin.cluster),
            "topology.kubernetes.io/region" => Some(l[0]),
            "topology.kubernetes.io/zone" => Some(l[1]),
            "topology.istio.io/subzone" => Some(l[2]),
            _ => origin.labels.get(key).map(String::as_str),
        }
    }

    fn proxy_value<'p>(proxy: &'p Proxy, key: &str) -> Option<&'p str> {
        let l = levels(&proxy.locality);
        match key {
            "topology.istio.io/network" => Some(proxy.network.as_str()),
            "topology.istio.io/cluster" => Some(proxy.cluster.as_str()),
            "topology.kubernetes.io/region" => Some(l[0]),
            "topology.kubernetes.io/zone" => Some(l[1]),
            "topology.istio.io/subzone" => Some(l[2]),
            _ => proxy.labels.get(key).map(String::as_str),
        }
    }

    /// `failoverPriority`: how many of the listed labels, in order, an endpoint fails to
    /// share with the proxy (0 when it shares all; `label=value` compares with the value).
    pub fn label_priority(&self, origin: &EndpointOrigin) -> u32 {
        let (Some(proxy), Some(s), true) = (self.proxy, self.setting, self.failover) else {
            return 0;
        };
        let labels = &s.failover_priority;
        let mut matched = 0;
        for entry in labels {
            let (key, want) = match entry.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (entry.as_str(), LocalityLb::proxy_value(proxy, entry)),
            };
            let have = LocalityLb::endpoint_value(origin, key);
            if want.is_some() && have == want {
                matched += 1;
            } else {
                break;
            }
        }
        u32::try_from(labels.len() - matched).unwrap_or(u32::MAX)
    }

    /// Nearness of `locality` to the proxy: 0 same subzone, 1 same zone, 2 same region,
    /// 3 another region, 4 a region that a `failover` rule for the proxy's region passes
    /// over. 0 for all when the proxy's locality is unknown.
    pub fn locality_priority(&self, locality: &str) -> u32 {
        let Some(proxy) = self.proxy.filter(|_| self.failover) else {
            return 0;
        };
        if proxy.locality.is_empty() {
            return 0;
        }
        let (p, e) = (levels(&proxy.locality), levels(locality));
        if p[0] == e[0] && p[1] == e[1] && p[2] == e[2] {
            0
        } else if p[0] == e[0] && p[1] == e[1] {
            1
        } else if p[0] == e[0] {
            2
        } else {
            let passed_over = self.setting.is_some_and(|s| {
                s.failover.iter().any(|f| f.from == p[0])
                    && !s.failover.iter().any(|f| f.from == p[0] && f.to == e[0])
            });
            if passed_over {
                4
            } else {
                3
            }
        }
    }

    /// The priority of a group of endpoints (Istio: label priority x 5 + nearness), before
    /// the priorities are numbered without gaps.
    pub fn priority(&self, locality: &str, label_priority: u32) -> u32 {
        label_priority * 5 + self.locality_priority(locality)
    }

    /// `distribute`: the weight of `locality` among `all` the destination's localities
    /// (each `to` weight split evenly, rounded up, over the localities it matches); `None`
    /// when the locality gets no traffic.
    pub fn weight(&self, locality: &str, all: &[&str]) -> Option<u32> {
        let rule = self.distribute?;
        let mut total = 0;
        for (pattern, w) in &rule.to {
            if !locality_matches(pattern, locality) {
                continue;
            }
            let n = all
                .iter()
                .filter(|l| locality_matches(pattern, l))
                .count()
                .max(1);
            total += w.div_ceil(u32::try_from(n).unwrap_or(u32::MAX));
        }
        (total > 0).then_some(total)
    }
}

/// Numbers `priorities` 0..N in their order, without gaps (Envoy's rule).
pub fn dense(priorities: &[u32]) -> Vec<u32> {
    let mut distinct: Vec<u32> = priorities.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    priorities
        .iter()
        .map(|p| u32::try_from(distinct.partition_point(|d| d < p)).unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_by_level_up_to_a_star() {
        assert!(locality_matches("region1/zone1/*", "region1/zone1/sub"));
        assert!(locality_matches("region1/zone1/*", "region1/zone1"));
        assert!(locality_matches("region1/*", "region1/zone2"));
        assert!(locality_matches("*", "anything/at/all"));
        assert!(locality_matches("region1/zone1", "region1/zone1"));
        assert!(!locality_matches("region1/zone1", "region1/zone2"));
        assert!(!locality_matches("region2/*", "region1/zone1"));
    }

    #[test]
    fn priorities_are_numbered_without_gaps() {
        assert_eq!(dense(&[3, 0, 5, 3]), vec![1, 0, 2, 1]);
        assert_eq!(dense(&[]), Vec::<u32>::new());
    }
}
