//! The name table: host name -> addresses, built from a mesh snapshot.

use isthmus_model::MeshSnapshot;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// A template answer for every name under a suffix, as seed 004 writes with CoreDNS:
/// `template IN A remote { answer "{{ .Name }} 60 IN A 1.2.3.4" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The suffix without leading dot, such as `remote` or `svc.b.remote`.
    pub suffix: String,
    /// The address every name under it resolves to.
    pub address: Ipv4Addr,
}

/// A template that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("DNS template `{given}`: {why} (expected SUFFIX=IPV4, such as remote=198.18.255.1)")]
pub struct TemplateError {
    given: String,
    why: &'static str,
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| TemplateError {
            given: s.to_string(),
            why,
        };
        let (suffix, ip) = s.split_once('=').ok_or_else(|| err("no `=`"))?;
        let suffix = suffix
            .trim()
            .trim_start_matches("*.")
            .trim_matches('.')
            .to_ascii_lowercase();
        if suffix.is_empty() {
            return Err(err("empty suffix"));
        }
        let address = ip.trim().parse().map_err(|_| err("not an IPv4 address"))?;
        Ok(Template { suffix, address })
    }
}

/// What the table says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The name exists; these are its IPv4 addresses (possibly none).
    Found(Vec<Ipv4Addr>),
    /// The name does not exist.
    NxDomain,
}

/// Host names and their addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameTable {
    names: BTreeMap<String, Vec<Ipv4Addr>>,
    templates: Vec<Template>,
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl NameTable {
    /// The table for `snapshot`: every service with a VIP (Kubernetes ClusterIP, ServiceEntry
    /// address or an allocated one), headless local services by their pods' addresses,
    /// a StatefulSet's pods by name under their headless service, wildcard ServiceEntry hosts
    /// with an address (`*.example.com`), plus `templates`.
    pub fn from_snapshot(snapshot: &MeshSnapshot, templates: &[Template]) -> Self {
        let mut names: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        let mut wildcards = Vec::new();
        for svc in snapshot.services.values() {
            if let Some(suffix) = svc.hostname.strip_prefix("*.") {
                // A wildcard ServiceEntry host with an address answers every name under it.
                if let Some(address) = svc.vip.as_deref().and_then(|v| v.parse().ok()) {
                    wildcards.push(Template {
                        suffix: suffix.to_ascii_lowercase(),
                        address,
                    });
                }
                continue;
            }
            if svc.hostname.contains('*') {
                continue;
            }
            let addrs: Vec<Ipv4Addr> = match &svc.vip {
                Some(v) => v.parse().ok().into_iter().collect(),
                None => svc
                    .endpoints
                    .iter()
                    .filter(|e| *e.origin.cluster == *snapshot.local_cluster)
                    .filter_map(|e| match e.address.ip() {
                        Some(IpAddr::V4(ip)) => Some(ip),
                        _ => None,
                    })
                    .collect(),
            };
            if addrs.is_empty() && svc.vip.is_some() {
                continue;
            }
            let entry = names.entry(normalize(&svc.hostname)).or_default();
            for a in addrs {
                if !entry.contains(&a) {
                    entry.push(a);
                }
            }
        }
        // A StatefulSet's pods by name under their headless Service, as kube-dns answers
        // `web-0.web.NAMESPACE.svc.cluster.local`.
        if let Some(pods) = snapshot.pods.get(&snapshot.local_cluster) {
            for (ns, hostname, subdomain, ip) in pods.named_in_dns() {
                let service = format!("{subdomain}.{ns}.svc.cluster.local");
                let IpAddr::V4(ip) = ip else { continue };
                if snapshot
                    .services
                    .get(&service)
                    .is_some_and(|s| s.headless())
                {
                    names
                        .entry(normalize(&format!("{hostname}.{service}")))
                        .or_default()
                        .push(ip);
                }
            }
        }
        let mut templates = templates.to_vec();
        templates.extend(wildcards);
        // Longest suffix first, so that `svc.b.remote` wins over `remote`.
        templates.sort_by_key(|t| std::cmp::Reverse(t.suffix.len()));
        NameTable { names, templates }
    }

    /// A table of explicit names (benchmarks and tests).
    pub fn from_entries(
        entries: impl IntoIterator<Item = (String, Ipv4Addr)>,
        templates: &[Template],
    ) -> Self {
        let mut names: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        for (n, a) in entries {
            names.entry(normalize(&n)).or_default().push(a);
        }
        let mut templates = templates.to_vec();
        templates.sort_by_key(|t| std::cmp::Reverse(t.suffix.len()));
        NameTable { names, templates }
    }

    /// Looks `name` up (case-insensitive, with or without the trailing dot).
    pub fn lookup(&self, name: &str) -> Answer {
        match self.lookup_normalized(&normalize(name)) {
            Some(a) => Answer::Found(a.to_vec()),
            None => Answer::NxDomain,
        }
    }

    /// Looks up a name that is already lower case without the trailing dot, without
    /// allocating: the addresses, or `None` for NXDOMAIN.
    pub fn lookup_normalized(&self, name: &str) -> Option<&[Ipv4Addr]> {
        if let Some(a) = self.names.get(name) {
            return Some(a.as_slice());
        }
        self.templates
            .iter()
            .find(|t| {
                name.len() > t.suffix.len()
                    && name.ends_with(&t.suffix)
                    && name.as_bytes()[name.len() - t.suffix.len() - 1] == b'.'
            })
            .map(|t| std::slice::from_ref(&t.address))
    }

    /// Number of names (templates not counted).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no name is known.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The template suffixes (and wildcard hosts), longest first.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// All names and addresses, for debugging pages.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[Ipv4Addr])> {
        self.names.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_match_whole_labels_longest_first() {
        let t: Vec<Template> = ["remote=198.18.255.1", "*.svc.b.remote=198.18.255.2"]
            .iter()
            .map(|s| s.parse().expect("template"))
            .collect();
        assert_eq!(t[1].suffix, "svc.b.remote");
        let table = NameTable {
            names: BTreeMap::new(),
            templates: {
                let mut t = t;
                t.sort_by_key(|t| std::cmp::Reverse(t.suffix.len()));
                t
            },
        };
        assert_eq!(
            table.lookup("reviews.default.svc.b.remote."),
            Answer::Found(vec!["198.18.255.2".parse().expect("ip")])
        );
        assert_eq!(
            table.lookup("ingress.A.REMOTE"),
            Answer::Found(vec!["198.18.255.1".parse().expect("ip")])
        );
        assert_eq!(table.lookup("remote"), Answer::NxDomain);
        assert_eq!(table.lookup("notremote"), Answer::NxDomain);
        assert!("remote".parse::<Template>().is_err());
        assert!("remote=::1".parse::<Template>().is_err());
    }
}
