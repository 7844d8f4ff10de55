//! Kubernetes object metadata.

use crate::labels::Labels;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

fn no_labels(l: &Arc<Labels>) -> bool {
    l.is_empty()
}

/// The part of `metadata` that Isthmus reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name (boxed: no room kept for more, 16 bytes in line).
    #[serde(default)]
    pub name: Box<str>,
    /// Namespace; empty for cluster-scoped objects or when the file leaves it to the loader
    /// (shared by a file's objects).
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub namespace: Arc<str>,
    /// Labels (shared: a pod's labels are also its endpoints' and its proxy's).
    #[serde(default, skip_serializing_if = "no_labels")]
    pub labels: Arc<Labels>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
}

/// Annotations: the same compact sorted map as [`Labels`], behind one pointer that is null
/// when there are none, as most objects have (an empty map in line would take 16-24 bytes in
/// every object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations(Option<Box<Labels>>);

impl Annotations {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0.as_ref()?.get(key)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The annotations in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().flat_map(|m| m.iter())
    }

    /// Sets `key` to `value`, returning the value it had (the map is made again: annotations
    /// are read far more often than they are set).
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        let mut map = self.0.as_ref().map(|m| m.to_map()).unwrap_or_default();
        let old = map.insert(key, value);
        *self = map.into();
        old
    }
}

impl From<Labels> for Annotations {
    fn from(map: Labels) -> Self {
        Annotations((!map.is_empty()).then(|| Box::new(map)))
    }
}

impl From<BTreeMap<String, String>> for Annotations {
    fn from(map: BTreeMap<String, String>) -> Self {
        Labels::from(map).into()
    }
}

impl<const N: usize> From<[(String, String); N]> for Annotations {
    fn from(pairs: [(String, String); N]) -> Self {
        Labels::from(pairs).into()
    }
}

impl Serialize for Annotations {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Annotations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `annotations:` with no value reads as none, as Kubernetes reads it.
        Ok(Labels::deserialize(d)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_read_and_write_as_a_map_and_take_no_room_when_empty() {
        let meta: ObjectMeta =
            serde_json::from_str(r#"{"name": "a", "annotations": {"b": "2", "a": "1"}}"#)
                .expect("metadata");
        assert_eq!(meta.annotations.get("a").map(String::as_str), Some("1"));
        assert_eq!(meta.annotations.get("c"), None);
        let keys: Vec<&str> = meta.annotations.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(
            serde_json::to_string(&meta).expect("json"),
            r#"{"name":"a","annotations":{"a":"1","b":"2"}}"#
        );
        for text in [
            r#"{"name": "a"}"#,
            r#"{"name": "a", "annotations": null}"#,
            r#"{"name": "a", "annotations": {}}"#,
        ] {
            let meta: ObjectMeta = serde_json::from_str(text).expect(text);
            assert!(meta.annotations.is_empty(), "{text}");
            assert_eq!(meta.annotations, Annotations::default(), "{text}");
        }
        let mut a = Annotations::default();
        assert_eq!(a.insert("k".into(), "v".into()), None);
        assert_eq!(a.insert("k".into(), "w".into()), Some("v".into()));
        assert_eq!(a, Annotations::from([("k".to_string(), "w".to_string())]));
        assert_eq!(std::mem::size_of::<Annotations>(), 8);
        assert_eq!(std::mem::size_of::<ObjectMeta>(), 48);
    }
}
