//! The name table as the control plane sends it to agents over xDS: Istio's NDS resource,
//! `istio.networking.nds.v1.NameTable` (a map from host name to its addresses), so that an
//! agent answers its pod's DNS from the table it last received, also while the control plane
//! is away. Wildcard hosts and template suffixes travel as `*.SUFFIX` keys, as Istio writes
//! wildcard ServiceEntry hosts in the same table.

use crate::table::{NameTable, Template};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The xDS type URL of the name table (Istio's).
pub const NDS_TYPE: &str = "type.googleapis.com/istio.networking.nds.v1.NameTable";

/// `istio.networking.nds.v1.NameTable`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NameTableProto {
    /// Host name (lower case, no trailing dot) to what it resolves to.
    #[prost(btree_map = "string, message", tag = "1")]
    pub table: BTreeMap<String, NameInfo>,
}

/// `istio.networking.nds.v1.NameTable.NameInfo`: one host.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NameInfo {
    /// Its addresses.
    #[prost(string, repeated, tag = "1")]
    pub ips: Vec<String>,
    /// `Kubernetes` or `External` in Istio; empty here.
    #[prost(string, tag = "2")]
    pub registry: String,
    /// Istio's short name (unused by Isthmus's agent).
    #[prost(string, tag = "3")]
    pub shortname: String,
    /// Istio's namespace (unused by Isthmus's agent).
    #[prost(string, tag = "4")]
    pub namespace: String,
    /// Istio's alternative host names (unused by Isthmus's agent).
    #[prost(string, repeated, tag = "5")]
    pub alt_hosts: Vec<String>,
}

/// A name table resource that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NdsError {
    /// The bytes are not a NameTable.
    #[error("the name table is not a valid istio.networking.nds.v1.NameTable: {0}")]
    Decode(#[from] prost::DecodeError),
    /// An address is not IPv4.
    #[error("name table entry `{host}`: `{ip}` is not an IPv4 address")]
    Address {
        /// The host.
        host: String,
        /// What was given.
        ip: String,
    },
}

impl NameTable {
    /// The table as the NDS resource.
    pub fn to_nds(&self) -> NameTableProto {
        let info = |ips: &[Ipv4Addr]| NameInfo {
            ips: ips.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        let mut table: BTreeMap<String, NameInfo> = self
            .entries()
            .map(|(name, ips)| (name.to_string(), info(ips)))
            .collect();
        for t in self.templates() {
            table.insert(format!("*.{}", t.suffix), info(&[t.address]));
        }
        NameTableProto { table }
    }

    /// The encoded NDS resource.
    pub fn encode_nds(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.to_nds())
    }

    /// Reads an NDS resource: every address must be IPv4 (the whole table is refused
    /// otherwise, and the agent keeps the one it has).
    pub fn from_nds(bytes: &[u8]) -> Result<NameTable, NdsError> {
        let proto: NameTableProto = prost::Message::decode(bytes)?;
        let mut names = Vec::new();
        let mut templates = Vec::new();
        for (host, info) in proto.table {
            for ip in &info.ips {
                let address: Ipv4Addr = ip.parse().map_err(|_| NdsError::Address {
                    host: host.clone(),
                    ip: ip.clone(),
                })?;
                match host.strip_prefix("*.") {
                    Some(suffix) => templates.push(Template {
                        suffix: suffix.to_ascii_lowercase(),
                        address,
                    }),
                    None => names.push((host.clone(), address)),
                }
            }
        }
        Ok(NameTable::from_entries(names, &templates))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Answer;

    #[test]
    fn a_table_survives_the_trip_over_xds() {
        let template: Template = "remote=198.18.255.1".parse().expect("template");
        let table = NameTable::from_entries(
            [
                (
                    "httpbin.bar.global".to_string(),
                    Ipv4Addr::new(127, 255, 0, 2),
                ),
                (
                    "a.b.svc.cluster.local".to_string(),
                    Ipv4Addr::new(10, 96, 0, 1),
                ),
                (
                    "a.b.svc.cluster.local".to_string(),
                    Ipv4Addr::new(10, 96, 0, 2),
                ),
            ],
            &[template],
        );
        let bytes = table.encode_nds();
        let back = NameTable::from_nds(&bytes).expect("decode");
        assert_eq!(back, table);
        assert_eq!(
            back.lookup("x.remote"),
            Answer::Found(vec![Ipv4Addr::new(198, 18, 255, 1)])
        );
        let proto = table.to_nds();
        assert_eq!(proto.table["*.remote"].ips, ["198.18.255.1"]);
        assert_eq!(proto.table["a.b.svc.cluster.local"].ips.len(), 2);
    }

    #[test]
    fn a_bad_table_is_refused_whole() {
        let mut proto = NameTable::default().to_nds();
        proto.table.insert(
            "x.global".into(),
            NameInfo {
                ips: vec!["not-an-ip".into()],
                ..Default::default()
            },
        );
        let err = NameTable::from_nds(&prost::Message::encode_to_vec(&proto)).expect_err("refused");
        assert!(err.to_string().contains("x.global"), "{err}");
        assert!(NameTable::from_nds(&[0xff, 0xff, 0xff]).is_err());
    }
}
