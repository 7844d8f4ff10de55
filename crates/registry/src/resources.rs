//! A registry's objects in key order, kept as one sorted vector of shared objects.
//!
//! Each object already names its kind, namespace and name, so the set stores no key of its
//! own: one pointer per object, where a map keyed by [`ResourceKey`] would take a node
//! slot and three more strings (about 170 bytes per object, a large part of a registry of
//! Pods). Lookups are binary searches; changes of many objects are merged in one pass.

use isthmus_api::{KeyRef, Resource, ResourceKey};
use std::sync::Arc;

/// Up to this many objects are put in or taken out one by one; more, in one merge.
const FEW: usize = 8;

/// Objects in key order (kind, then namespace, then name), at most one per key.
#[derive(Debug, Clone, Default)]
pub struct Resources(Vec<Arc<Resource>>);

impl Resources {
    /// How many objects.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, key: KeyRef<'_>) -> Result<usize, usize> {
        self.0.binary_search_by(|r| KeyRef::of(r).cmp(&key))
    }

    /// The object with `key`.
    pub fn get(&self, key: &ResourceKey) -> Option<&Arc<Resource>> {
        self.get_ref(KeyRef::from_key(key))
    }

    /// The object with `key`, given as borrowed parts.
    pub fn get_ref(&self, key: KeyRef<'_>) -> Option<&Arc<Resource>> {
        self.position(key).ok().map(|i| &self.0[i])
    }

    /// Whether an object has `key`.
    pub fn contains_key(&self, key: &ResourceKey) -> bool {
        self.get(key).is_some()
    }

    /// Puts `r` in, replacing (and returning) the object of the same key. `key` must be
    /// `r`'s own (the map-like signature keeps callers readable).
    pub fn insert(&mut self, key: ResourceKey, r: Arc<Resource>) -> Option<Arc<Resource>> {
        debug_assert!(KeyRef::of(&r) == key, "{key} given for {}", KeyRef::of(&r));
        self.put(r)
    }

    /// The objects, in key order.
    pub fn into_vec(self) -> Vec<Arc<Resource>> {
        self.0
    }

    /// Puts `r` in at its key's place, returning the object it replaces.
    pub fn put(&mut self, r: Arc<Resource>) -> Option<Arc<Resource>> {
        match self.position(KeyRef::of(&r)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i], r)),
            Err(i) => {
                // Grown by an eighth, not doubled: a store of thousands of objects keeps
                // little room it will not use (an insert moves the tail anyway).
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact(self.0.len() / 8 + 1);
                }
                self.0.insert(i, r);
                None
            }
        }
    }

    /// Objects already in key order with one per key (as a reader that reports duplicates
    /// leaves them), taken as they are.
    pub(crate) fn from_sorted(objects: Vec<Arc<Resource>>) -> Self {
        debug_assert!(
            objects
                .windows(2)
                .all(|w| KeyRef::of(&w[0]) < KeyRef::of(&w[1])),
            "not in key order, or a key twice"
        );
        Resources(objects)
    }

    /// Takes out the object with `key`.
    pub fn remove(&mut self, key: &ResourceKey) -> Option<Arc<Resource>> {
        let i = self.position(KeyRef::from_key(key)).ok()?;
        Some(self.0.remove(i))
    }

    /// Takes out the objects whose keys are in `keys`: a binary search each, then one move
    /// of the rest however many (no key is compared outside the searches).
    pub fn remove_all(
        &mut self,
        keys: &std::collections::BTreeSet<ResourceKey>,
    ) -> Vec<Arc<Resource>> {
        let mut taken = Vec::new();
        if keys.len() <= FEW {
            // A few: a binary search and a move of the tail each.
            taken.extend(keys.iter().filter_map(|k| self.remove(k)));
            return taken;
        }
        // Keys come in order, so the positions do too.
        let at: Vec<usize> = keys
            .iter()
            .filter_map(|k| self.position(KeyRef::from_key(k)).ok())
            .collect();
        let old = std::mem::take(&mut self.0);
        let mut kept = Vec::with_capacity(old.len() - at.len());
        let mut next = at.iter().copied().peekable();
        for (i, r) in old.into_iter().enumerate() {
            if next.peek() == Some(&i) {
                next.next();
                taken.push(r);
            } else {
                kept.push(r);
            }
        }
        self.0 = kept;
        taken
    }

    /// Keeps the objects for which `keep` says yes.
    pub fn retain(&mut self, mut keep: impl FnMut(KeyRef<'_>, &Arc<Resource>) -> bool) {
        self.0.retain(|r| keep(KeyRef::of(r), r));
    }

    /// Puts in many objects at once (one merge, however many): each replaces the object of
    /// its key; among several of one key, the last wins.
    pub fn insert_all(&mut self, new: Vec<Arc<Resource>>) {
        if new.len() <= FEW {
            for r in new {
                self.put(r);
            }
            return;
        }
        let new = sorted_unique(new);
        // Where each new object goes among the old ones (in order, as the new ones are),
        // and whether it replaces one there.
        let at: Vec<Result<usize, usize>> =
            new.iter().map(|r| self.position(KeyRef::of(r))).collect();
        let old = std::mem::take(&mut self.0);
        let mut out = Vec::with_capacity(old.len() + new.len());
        let mut old = old.into_iter();
        let mut done = 0;
        for (r, at) in new.into_iter().zip(at) {
            let (i, replaces) = match at {
                Ok(i) => (i, true),
                Err(i) => (i, false),
            };
            out.extend(old.by_ref().take(i - done));
            done = i;
            if replaces {
                old.next();
                done += 1;
            }
            out.push(r);
        }
        out.extend(old);
        self.0 = out;
    }

    /// Objects with their keys, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (KeyRef<'_>, &Arc<Resource>)> + '_ {
        self.0.iter().map(|r| (KeyRef::of(r), r))
    }

    /// Keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = KeyRef<'_>> + '_ {
        self.0.iter().map(|r| KeyRef::of(r))
    }

    /// Objects, in key order.
    pub fn values(&self) -> std::slice::Iter<'_, Arc<Resource>> {
        self.0.iter()
    }

    /// The objects of `kind`, or of `kind` in `namespace`, in key order: one run of the
    /// vector, found by two binary searches (keys sort by kind, then namespace).
    pub fn of_kind(&self, kind: &str, namespace: Option<&str>) -> &[Arc<Resource>] {
        let place = |r: &Arc<Resource>| {
            let k = KeyRef::of(r);
            match namespace {
                Some(ns) => (k.kind, k.namespace).cmp(&(kind, ns)),
                None => k.kind.cmp(kind),
            }
        };
        let start = self.0.partition_point(|r| place(r).is_lt());
        let len = self.0[start..].partition_point(|r| place(r).is_eq());
        &self.0[start..start + len]
    }

    /// Objects from `from` on, in key order.
    pub fn from_key<'a>(&'a self, from: KeyRef<'_>) -> std::slice::Iter<'a, Arc<Resource>> {
        let i = self.position(from).unwrap_or_else(|i| i);
        self.0[i..].iter()
    }
}

/// Sorted by key; of several with one key, the last.
fn sorted_unique(mut v: Vec<Arc<Resource>>) -> Vec<Arc<Resource>> {
    // Stable: equal keys keep their order, so the last given is the last of its run.
    v.sort_by(|a, b| KeyRef::of(a).cmp(&KeyRef::of(b)));
    let mut out: Vec<Arc<Resource>> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if KeyRef::of(last) == KeyRef::of(&r) => *last = r,
            _ => out.push(r),
        }
    }
    out.shrink_to_fit();
    out
}

impl FromIterator<Arc<Resource>> for Resources {
    /// Objects in any order; of several with one key, the last.
    fn from_iter<I: IntoIterator<Item = Arc<Resource>>>(iter: I) -> Self {
        Resources(sorted_unique(iter.into_iter().collect()))
    }
}

impl FromIterator<(ResourceKey, Arc<Resource>)> for Resources {
    /// As from bare objects (each object's own key counts), so that code building a map
    /// of `(key, object)` builds this.
    fn from_iter<I: IntoIterator<Item = (ResourceKey, Arc<Resource>)>>(iter: I) -> Self {
        iter.into_iter().map(|(_, r)| r).collect()
    }
}

impl<'a> IntoIterator for &'a Resources {
    type Item = (KeyRef<'a>, &'a Arc<Resource>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, Arc<Resource>>,
        fn(&'a Arc<Resource>) -> (KeyRef<'a>, &'a Arc<Resource>),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|r| (KeyRef::of(r), r))
    }
}

impl std::ops::Index<&ResourceKey> for Resources {
    type Output = Arc<Resource>;

    /// The object with `key`; panics when there is none, as a map's index does (for tests
    /// and for keys just read from the same set).
    fn index(&self, key: &ResourceKey) -> &Arc<Resource> {
        match self.get(key) {
            Some(r) => r,
            None => panic!("no resource {key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(yaml: &str) -> Vec<Arc<Resource>> {
        isthmus_api::load_str(yaml, None, "default")
            .resources
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    fn pod(ns: &str, name: &str, ip: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nstatus: {{podIP: {ip}}}\n---\n")
    }

    fn ip(r: &Resource) -> Option<String> {
        match &r.object {
            isthmus_api::Object::Pod(p) => p.status.pod_ip().map(|ip| ip.to_string()),
            _ => None,
        }
    }

    #[test]
    fn a_store_grows_by_an_eighth_not_by_doubling() {
        let text: String = (0..2000)
            .map(|i| pod("ns", &format!("p{i:05}"), "10.0.0.1"))
            .collect();
        let mut set = Resources::default();
        for r in objects(&text) {
            set.put(r);
        }
        assert_eq!(set.len(), 2000);
        assert!(
            set.0.capacity() <= 2000 + 2000 / 8 + 1,
            "capacity {} for 2000",
            set.0.capacity()
        );
    }

    #[test]
    fn keeps_key_order_and_one_object_per_key() {
        let text = [
            pod("b", "x", "10.0.0.1"),
            pod("a", "y", "10.0.0.2"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n".into(),
            pod("a", "x", "10.0.0.3"),
            pod("b", "x", "10.0.0.4"),
        ]
        .concat();
        let set: Resources = objects(&text).into_iter().collect();
        assert_eq!(
            set.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
            ["Namespace/a", "Pod/a/x", "Pod/a/y", "Pod/b/x"]
        );
        let bx = ResourceKey {
            kind: "Pod".into(),
            namespace: "b".into(),
            name: "x".into(),
        };
        assert_eq!(
            ip(&set[&bx]).as_deref(),
            Some("10.0.0.4"),
            "the last of one key wins"
        );
        assert!(set.contains_key(&bx));
        assert!(set
            .get_ref(KeyRef {
                kind: "Pod",
                namespace: "c",
                name: "x"
            })
            .is_none());
        let from: Vec<_> = set
            .from_key(KeyRef {
                kind: "Pod",
                namespace: "a",
                name: "",
            })
            .map(|r| KeyRef::of(r).to_string())
            .collect();
        assert_eq!(from, ["Pod/a/x", "Pod/a/y", "Pod/b/x"]);
    }

    #[test]
    fn insert_remove_and_merge_keep_the_order() {
        let mut set: Resources =
            objects(&[pod("a", "m", "10.0.0.1"), pod("a", "q", "10.0.0.2")].concat())
                .into_iter()
                .collect();
        let new = objects(
            &[
                pod("a", "z", "10.0.0.3"),
                pod("a", "a", "10.0.0.4"),
                pod("a", "m", "10.0.0.5"),
            ]
            .concat(),
        );
        set.insert_all(new);
        assert_eq!(
            set.keys().map(|k| k.name).collect::<Vec<_>>(),
            ["a", "m", "q", "z"]
        );
        let am = KeyRef {
            kind: "Pod",
            namespace: "a",
            name: "m",
        };
        assert_eq!(
            ip(set.get_ref(am).expect("a/m")).as_deref(),
            Some("10.0.0.5")
        );
        let one = objects(&pod("a", "n", "10.0.0.6")).remove(0);
        assert!(set.insert(KeyRef::of(&one).to_key(), one.clone()).is_none());
        let again = objects(&pod("a", "n", "10.0.0.7")).remove(0);
        let replaced = set.insert(KeyRef::of(&again).to_key(), again);
        assert!(replaced.is_some_and(|r| Arc::ptr_eq(&r, &one)));
        assert_eq!(
            set.keys().map(|k| k.name).collect::<Vec<_>>(),
            ["a", "m", "n", "q", "z"]
        );
        let gone = set.remove_all(
            &[
                am.to_key(),
                KeyRef {
                    kind: "Pod",
                    namespace: "a",
                    name: "b",
                }
                .to_key(),
            ]
            .into(),
        );
        assert_eq!(gone.len(), 1);
        assert!(set.get_ref(am).is_none());
        set.insert(am.to_key(), gone[0].clone());
        assert!(set.remove(&am.to_key()).is_some());
        assert!(set.remove(&am.to_key()).is_none());
        set.retain(|k, _| k.name != "q");
        assert_eq!(
            set.keys().map(|k| k.name).collect::<Vec<_>>(),
            ["a", "n", "z"]
        );
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn many_changes_at_once_match_a_map_doing_them_one_by_one() {
        // A reference map and the set get the same batches, small (one by one) and large
        // (merged), with replacements, duplicates within a batch and removals.
        let mut model: std::collections::BTreeMap<String, String> = Default::default();
        let mut set = Resources::default();
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) % 40
        };
        for round in 0..30u32 {
            let size = if round % 3 == 0 { 3 } else { 25 };
            let mut batch = String::new();
            let mut names = Vec::new();
            for i in 0..size {
                let name = format!("p{:02}", next());
                let ip = format!("10.0.{round}.{i}");
                batch.push_str(&pod("a", &name, &ip));
                names.push((name, ip));
            }
            set.insert_all(objects(&batch));
            for (name, ip) in names {
                model.insert(name, ip);
            }
            let gone: std::collections::BTreeSet<ResourceKey> = (0..size / 2)
                .map(|_| {
                    KeyRef {
                        kind: "Pod",
                        namespace: "a",
                        name: &format!("p{:02}", next()),
                    }
                    .to_key()
                })
                .collect();
            let taken = set.remove_all(&gone);
            let expected_taken = gone
                .iter()
                .filter(|k| model.remove(&k.name).is_some())
                .count();
            assert_eq!(taken.len(), expected_taken, "round {round}");
            let got: Vec<(String, String)> = set
                .values()
                .map(|r| (KeyRef::of(r).name.to_string(), ip(r).unwrap_or_default()))
                .collect();
            let want: Vec<(String, String)> = model.clone().into_iter().collect();
            assert_eq!(got, want, "round {round}");
        }
    }
}
