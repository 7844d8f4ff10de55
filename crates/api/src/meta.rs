//! Kubernetes object metadata.

use crate::labels::Labels;
use crate::shared::Interner;
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
    #[serde(default, skip_serializing_if = "Namespace::is_empty")]
    pub namespace: Namespace,
    /// Labels (shared: a pod's labels are also its endpoints' and its proxy's).
    #[serde(default, skip_serializing_if = "no_labels")]
    pub labels: Arc<Labels>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
}

/// A namespace's name in one pointer (null for the empty name, as cluster-scoped objects
/// have), its characters shared by the objects of the namespace that a reader read.
///
/// One pointer rather than `Arc<str>`'s two: with the name, labels and annotations it keeps
/// an [`ObjectMeta`] at 40 bytes, and so a stored Pod in the allocator's 96-byte block
/// instead of its 112-byte one. Each distinct name costs one more allocation (the `Arc`'s
/// counts apart from the characters); a reader shares one per namespace.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Namespace(Option<Arc<Box<str>>>);

impl std::hash::Hash for Namespace {
    // As the `str` it borrows as (a map keyed by namespaces is looked up by `&str`).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Namespace {
    /// The name (empty for none).
    pub fn as_str(&self) -> &str {
        self.0.as_deref().map_or("", |s| s)
    }

    /// Whether it is the empty name.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Takes `names`' copy of the name, or gives it one: the objects of one namespace share
    /// their characters.
    pub fn share(&mut self, names: &mut Interner<Box<str>>) {
        if let Some(name) = &mut self.0 {
            names.share(name);
        }
    }

    /// Whether `self` and `other` share their characters (an interner's copy).
    pub fn ptr_eq(&self, other: &Namespace) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl std::ops::Deref for Namespace {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Namespace {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Namespace {
    fn from(s: &str) -> Self {
        Namespace((!s.is_empty()).then(|| Arc::new(Box::from(s))))
    }
}

impl From<String> for Namespace {
    fn from(s: String) -> Self {
        Namespace((!s.is_empty()).then(|| Arc::new(s.into_boxed_str())))
    }
}

impl PartialEq<str> for Namespace {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Namespace {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Namespace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `namespace:` with no value reads as none.
        Ok(Option::<String>::deserialize(d)?
            .map(Namespace::from)
            .unwrap_or_default())
    }
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
    fn a_namespace_is_one_pointer_found_by_its_str_and_written_as_one() {
        assert_eq!(std::mem::size_of::<Namespace>(), 8);
        let ns = Namespace::from("shop");
        assert_eq!(&*ns, "shop");
        assert_eq!(ns, "shop");
        assert!(Namespace::from("").is_empty());
        assert!(Namespace::from(String::new()).ptr_eq(&Namespace::default()));
        // A set of namespaces is looked up by `&str` (Hash and Eq agree with str's).
        let set: std::collections::HashSet<Namespace> = [ns.clone()].into();
        assert!(set.get("shop").is_some_and(|n| n.ptr_eq(&ns)));
        assert!(!ns.ptr_eq(&Namespace::from("shop")));
        let mut sorted = vec![
            Namespace::from("b"),
            Namespace::default(),
            Namespace::from("a"),
        ];
        sorted.sort();
        assert_eq!(sorted, ["", "a", "b"].map(Namespace::from));
        for (text, want) in [
            (r#"{"name": "x", "namespace": "shop"}"#, "shop"),
            (r#"{"name": "x", "namespace": null}"#, ""),
            (r#"{"name": "x", "namespace": ""}"#, ""),
            (r#"{"name": "x"}"#, ""),
        ] {
            let meta: ObjectMeta = serde_json::from_str(text).expect(text);
            assert_eq!(meta.namespace, want, "{text}");
        }
        let meta = ObjectMeta {
            name: "x".into(),
            namespace: "shop".into(),
            ..ObjectMeta::default()
        };
        assert_eq!(
            serde_json::to_string(&meta).expect("json"),
            r#"{"name":"x","namespace":"shop"}"#
        );
    }

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
        assert_eq!(std::mem::size_of::<ObjectMeta>(), 40);
    }
}
