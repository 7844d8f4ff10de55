//! The name table (Istio's NDS) as ADS streams send it to agents: one resource of type
//! [`NDS_TYPE`], encoded once per table and shared by every stream, its version the hash
//! of its bytes so that a stream sends it again only when a name or address changed.

use bytes::{Bytes, BytesMut};
use envoy_types::pb::google::protobuf::Any;
pub use isthmus_dns::nds::NDS_TYPE;
use isthmus_dns::NameTable;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The table encoded as a response's `resources` entry.
#[derive(Debug, Clone)]
pub struct EncodedNames {
    /// A hash of the encoded table: the response's version.
    pub version: u64,
    /// The `resources` entry.
    pub entry: Bytes,
    /// Names in it (for logs).
    pub names: usize,
}

impl EncodedNames {
    fn of(table: &NameTable) -> EncodedNames {
        let value = table.encode_nds();
        let mut h = DefaultHasher::new();
        value.hash(&mut h);
        let any = Any {
            type_url: NDS_TYPE.to_string(),
            value,
        };
        let mut buf = BytesMut::with_capacity(crate::wire::resource_entry_len(&any));
        crate::wire::put_resource_entry(&mut buf, &any);
        EncodedNames {
            version: h.finish(),
            entry: buf.freeze(),
            names: table.len() + table.templates().len(),
        }
    }
}

/// The control plane's current name table, followed by streams, with the encoding of the
/// latest one kept for all of them.
#[derive(Debug, Clone)]
pub struct NameTables {
    rx: watch::Receiver<Arc<NameTable>>,
    encoded: Arc<Mutex<Option<LastEncoded>>>,
}

/// A table and its encoding.
type LastEncoded = (Arc<NameTable>, Arc<EncodedNames>);

impl NameTables {
    /// Tables as `rx` publishes them.
    pub fn new(rx: watch::Receiver<Arc<NameTable>>) -> NameTables {
        NameTables {
            rx,
            encoded: Arc::default(),
        }
    }

    /// A receiver that wakes when the table changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<NameTable>> {
        self.rx.clone()
    }

    /// The current table, encoded (once, whichever stream asks first).
    pub fn current(&self) -> Arc<EncodedNames> {
        let table = self.rx.borrow().clone();
        let mut cached = match self.encoded.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((t, e)) = cached.as_ref() {
            if Arc::ptr_eq(t, &table) {
                return e.clone();
            }
        }
        let e = Arc::new(EncodedNames::of(&table));
        *cached = Some((table, e.clone()));
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn the_table_is_encoded_once_per_table_and_versioned_by_content() {
        let t = |ip: [u8; 4]| {
            Arc::new(NameTable::from_entries(
                [("a.global".to_string(), ip.into())],
                &[],
            ))
        };
        let (tx, rx) = watch::channel(t([10, 0, 0, 1]));
        let tables = NameTables::new(rx);
        let first = tables.current();
        assert!(Arc::ptr_eq(&first, &tables.current()), "shared");
        tx.send_replace(t([10, 0, 0, 1]));
        let same = tables.current();
        assert_eq!(same.version, first.version, "same content, same version");
        tx.send_replace(t([10, 0, 0, 2]));
        assert_ne!(tables.current().version, first.version);
        // The entry is field 2 of a response: an Any of the NDS type.
        let any = envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse::decode(
            first.entry.clone(),
        )
        .expect("a response with one resource")
        .resources
        .remove(0);
        assert_eq!(any.type_url, NDS_TYPE);
        let back = NameTable::from_nds(&any.value).expect("a name table");
        assert_eq!(
            back.lookup("a.global"),
            isthmus_dns::Answer::Found(vec![[10, 0, 0, 1].into()])
        );
    }
}
