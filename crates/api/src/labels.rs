//! Label maps, label selectors and annotations, kept small.
//!
//! A `BTreeMap<String, String>` allocates a node of 544 bytes for even one label, and every
//! Service, and every pod whose labels are its own (a StatefulSet's pods are), has a map.
//! [`Labels`] holds the pairs sorted by key in one allocation of exactly their size.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Labels sorted by key, at most one value per key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Box<[(String, String)]>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The labels in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &String)> + Clone + '_ {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every label of `selector` is here with the same value (an empty selector
    /// matches everything).
    pub fn matches(&self, selector: &Labels) -> bool {
        selector.iter().all(|(k, v)| self.get(k) == Some(v))
    }

    /// The labels as a `BTreeMap`, for code that edits them.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0.iter().cloned().collect()
    }
}

/// Sorted by key; of two values for one key, the later wins (as inserting into a map).
impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut pairs: Vec<(String, String)> = iter.into_iter().collect();
        // A stable sort keeps the order given among equal keys; the last of each run wins.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for p in pairs {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        Labels(out.into_boxed_slice())
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        // Already in key order with one value per key.
        Labels(map.into_iter().collect())
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(pairs: [(String, String); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Labels;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label names to values")
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Labels, E> {
                Ok(Labels::new())
            }

            fn visit_none<E: serde::de::Error>(self) -> Result<Labels, E> {
                Ok(Labels::new())
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(pairs.into_iter().collect())
            }
        }
        d.deserialize_any(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pairs_are_sorted_and_the_last_value_of_a_key_wins() {
        let l = labels(&[("b", "2"), ("a", "1"), ("b", "3")]);
        let pairs: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("a", "1"), ("b", "3")]);
        assert_eq!(l.get("b").map(String::as_str), Some("3"));
        assert_eq!(l.get("c"), None);
        assert!(l.contains_key("a") && !l.contains_key("z"));
        assert_eq!((l.len(), Labels::new().is_empty()), (2, true));
        let map: BTreeMap<String, String> = l.to_map();
        assert_eq!(Labels::from(map), l);
    }

    #[test]
    fn a_selector_matches_labels_that_include_it() {
        let pod = labels(&[("app", "a"), ("version", "v1")]);
        assert!(pod.matches(&labels(&[("app", "a")])));
        assert!(pod.matches(&Labels::new()));
        assert!(!pod.matches(&labels(&[("app", "b")])));
        assert!(!pod.matches(&labels(&[("app", "a"), ("tier", "x")])));
    }

    #[test]
    fn reads_and_writes_as_a_map() {
        let l: Labels = serde_json::from_str(r#"{"z": "1", "a": "2"}"#).expect("labels");
        assert_eq!(
            serde_json::to_string(&l).expect("json"),
            r#"{"a":"2","z":"1"}"#
        );
        let none: Labels = serde_json::from_str("null").expect("null");
        assert!(none.is_empty());
        assert!(serde_json::from_str::<Labels>(r#"["a"]"#).is_err());
        assert!(serde_json::from_str::<Labels>(r#"{"a": 1}"#).is_err());
    }
}
