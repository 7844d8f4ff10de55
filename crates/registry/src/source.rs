//! Where a cluster's objects come from, as typed events, and the store they are written
//! into: the split of kube-rs's reflector. A [`Source`] (a directory of files here, a
//! Kubernetes API server's watch next) says what happened ([`Event`]); one [`Writer`] per
//! cluster applies the events to the objects in force and says what changed
//! ([`KeyChange`]); everything downstream reads only the store ([`ClusterConfig`]).

use crate::resources::Resources;
use isthmus_api::{Diagnostic, KeyRef, Resource, ResourceKey};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a source saw happen to its cluster's objects.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An object was created or changed.
    Apply(Arc<Resource>),
    /// The object went away (as last seen, the way a Kubernetes watch reports it; only its
    /// key counts).
    Delete(Arc<Resource>),
    /// A complete list starts (a first read, or a re-read after the source lost track):
    /// the objects of the [`Event::InitApply`] events up to [`Event::InitDone`] replace
    /// every object in force.
    Init,
    /// An object of the complete list that [`Event::Init`] started.
    InitApply(Arc<Resource>),
    /// The complete list is done: the store now holds exactly its objects.
    InitDone,
    /// The problems the source found in its latest read, replacing those it reported before
    /// (including those for which a last good version is kept).
    Problems(Vec<Diagnostic>),
}

/// A cluster's objects as a stream of typed events: the file registry is one, a Kubernetes
/// API server's watch another.
pub trait Source: Send {
    /// The cluster (registry) name, such as `cluster1`.
    fn cluster(&self) -> &str;

    /// The events that bring `store` (the objects in force, which a source that keeps last
    /// good versions reads) up to date with the source. `hint` says which files may have
    /// changed, for sources that read files; the first call, and any call whose hint says
    /// `rescan`, yields a complete list ([`Event::Init`] .. [`Event::InitDone`]).
    fn sync(&mut self, store: &ClusterConfig, hint: &crate::watch::Changes) -> Vec<Event>;
}

/// The objects of one cluster at one moment: the read side of a [`Writer`].
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// The cluster (registry) name, such as `cluster1`.
    pub cluster: String,
    /// Resources in force, in key order.
    pub resources: Resources,
    /// Problems of the last read, including the ones for which a last good version is kept.
    pub diagnostics: Vec<Diagnostic>,
    /// This version's number: every batch of events that alters the resources makes a new
    /// one (unique in the process, so versions of different registries never match).
    pub revision: u64,
    /// When this version was patched from the one before by point events, the keys it
    /// touched; `None` after a complete list (compare everything).
    pub last_change: Option<KeyChange>,
}

/// The keys one batch of events changed (added, replaced or removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChange {
    /// The revision the change was applied to.
    pub from_revision: u64,
    /// The keys.
    pub keys: BTreeSet<ResourceKey>,
}

pub(crate) fn next_revision() -> u64 {
    static REVISION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    REVISION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl ClusterConfig {
    /// A configuration of `cluster` holding `resources` (of several with one key, the last),
    /// as tools and tests build one from loaded objects.
    pub fn with_resources(cluster: impl Into<String>, resources: Vec<Resource>) -> Self {
        ClusterConfig {
            cluster: cluster.into(),
            resources: resources.into_iter().map(Arc::new).collect(),
            revision: next_revision(),
            ..Default::default()
        }
    }

    /// The resources of one kind, without walking the others (keys sort by kind first).
    pub fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Arc<Resource>> + 'a {
        self.resources.of_kind(kind, None).iter()
    }

    /// The resources of one kind in one namespace, in name order, without walking the others.
    pub fn of_kind_in<'a>(
        &'a self,
        kind: &str,
        namespace: &str,
    ) -> impl Iterator<Item = &'a Arc<Resource>> + 'a {
        self.resources.of_kind(kind, Some(namespace)).iter()
    }
}

/// Applies a cluster's events to its objects in force. The one place that decides what
/// changed: an object applied with the content it already has keeps its `Arc` (so that what
/// was built from it is reused downstream) and is no change; every real change is listed in
/// the new version's [`ClusterConfig::last_change`].
#[derive(Debug)]
pub struct Writer {
    current: Arc<ClusterConfig>,
    /// The objects of a complete list being received.
    listing: Option<Vec<Arc<Resource>>>,
    /// Whether a complete list has been applied (the store reflects the source).
    synced: bool,
}

impl Writer {
    /// An empty store for `cluster`.
    pub fn new(cluster: impl Into<String>) -> Self {
        Writer {
            current: Arc::new(ClusterConfig {
                cluster: cluster.into(),
                ..Default::default()
            }),
            listing: None,
            synced: false,
        }
    }

    /// Whether the store holds a complete list of the source yet (its first
    /// [`Event::InitDone`] was applied): until then it is not the cluster's state, and a
    /// control plane should not serve from it.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The objects in force, shared (snapshot builds hold them without copying).
    pub fn store(&self) -> &Arc<ClusterConfig> {
        &self.current
    }

    /// Applies one batch of events; returns true when the objects in force changed (a new
    /// revision). Problems replace the reported ones without making a revision.
    pub fn apply(&mut self, events: Vec<Event>) -> bool {
        // Point edits since the last complete list, the last per key winning.
        let mut edits: BTreeMap<ResourceKey, Option<Arc<Resource>>> = BTreeMap::new();
        let mut relisted: Option<Resources> = None;
        let mut problems = None;
        for event in events {
            match event {
                Event::Apply(r) => {
                    edits.insert(r.key(), Some(r));
                }
                Event::Delete(r) => {
                    edits.insert(r.key(), None);
                }
                Event::Init => {
                    // Whatever came before is superseded by the list.
                    edits.clear();
                    self.listing = Some(Vec::new());
                }
                Event::InitApply(r) => match &mut self.listing {
                    Some(l) => l.push(r),
                    None => {
                        edits.insert(r.key(), Some(r));
                    }
                },
                Event::InitDone => {
                    let listed = self.listing.take().unwrap_or_default();
                    let base = relisted.as_ref().unwrap_or(&self.current.resources);
                    relisted = Some(relist(base, listed));
                    edits.clear();
                    self.synced = true;
                }
                Event::Problems(d) => problems = Some(d),
            }
        }
        let mut changed = false;
        let mut next = None;
        if let Some(list) = relisted {
            changed = !same_objects(&list, &self.current.resources);
            next = Some(list);
        }
        let base = next.as_ref().unwrap_or(&self.current.resources);
        let mut removed = BTreeSet::new();
        let mut inserted = Vec::new();
        for (key, edit) in edits {
            match (base.get(&key), edit) {
                (Some(old), Some(new)) if Arc::ptr_eq(old, &new) || old.object == new.object => {}
                (None, None) => {}
                (Some(_), None) => {
                    removed.insert(key);
                }
                (_, Some(new)) => inserted.push(new),
            }
        }
        let point_change = !removed.is_empty() || !inserted.is_empty();
        if let Some(d) = problems {
            if d != self.current.diagnostics {
                Arc::make_mut(&mut self.current).diagnostics = d;
            }
        }
        if !changed && !point_change {
            return false;
        }
        let from_revision = self.current.revision;
        // Copied only if a snapshot build still holds the previous version.
        let current = Arc::make_mut(&mut self.current);
        let relisted = next.is_some();
        if let Some(list) = next {
            current.resources = list;
        }
        let mut keys: BTreeSet<ResourceKey> = inserted.iter().map(|r| r.key()).collect();
        current.resources.remove_all(&removed);
        current.resources.insert_all(inserted);
        keys.extend(removed);
        current.last_change = (!relisted).then_some(KeyChange {
            from_revision,
            keys,
        });
        current.revision = next_revision();
        true
    }
}

/// `listed` in key order (of several with one key, the first), each object that `base` holds
/// with the same content replaced by `base`'s `Arc`.
fn relist(base: &Resources, mut listed: Vec<Arc<Resource>>) -> Resources {
    // Stable: the first of several with one key stays first of its run.
    listed.sort_by(|a, b| KeyRef::of(a).cmp(&KeyRef::of(b)));
    listed.dedup_by(|later, first| KeyRef::of(later) == KeyRef::of(first));
    // Collected by pushing: up to half of it is room the list no longer needs (64 KB for a
    // cluster of 4,000 pods), kept for as long as the list is in force (a later insert grows
    // it by an eighth, `Resources::put`).
    listed.shrink_to_fit();
    let mut old = base.values().peekable();
    for r in &mut listed {
        let key = KeyRef::of(r);
        while old.peek().is_some_and(|o| KeyRef::of(o) < key) {
            old.next();
        }
        if let Some(o) = old.peek().filter(|o| KeyRef::of(o) == key) {
            if !Arc::ptr_eq(o, r) && o.object == r.object {
                *r = Arc::clone(o);
            }
        }
    }
    Resources::from_sorted(listed)
}

/// Whether two sets hold the same objects (the same `Arc`, or equal content).
fn same_objects(a: &Resources, b: &Resources) -> bool {
    a.len() == b.len()
        && a.values().zip(b.values()).all(|(x, y)| {
            Arc::ptr_eq(x, y) || (KeyRef::of(x) == KeyRef::of(y) && x.object == y.object)
        })
}

/// A source and the store it writes: one cluster's registry.
#[derive(Debug)]
pub struct Registry<S> {
    source: S,
    writer: Writer,
}

impl<S: Source> Registry<S> {
    /// A registry of `source`'s cluster, empty until [`Registry::sync`] is called.
    pub fn with_source(source: S) -> Self {
        let writer = Writer::new(source.cluster());
        Registry { source, writer }
    }

    /// Brings the store up to date with the source (`hint`: what may have changed); returns
    /// true when the objects in force changed.
    pub fn sync(&mut self, hint: &crate::watch::Changes) -> bool {
        let events = self.source.sync(self.writer.store(), hint);
        self.writer.apply(events)
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        self.source.cluster()
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The objects in force, shared.
    pub fn current(&self) -> &Arc<ClusterConfig> {
        self.writer.store()
    }

    /// Whether the store holds a complete list of the source yet.
    pub fn is_synced(&self) -> bool {
        self.writer.is_synced()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(yaml: &str) -> Vec<Arc<Resource>> {
        let loaded = isthmus_api::load_str(yaml, None, "ns");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded.resources.into_iter().map(Arc::new).collect()
    }

    fn pod(name: &str, ip: &str) -> Arc<Resource> {
        objects(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nstatus: {{podIP: {ip}}}\n"
        ))
        .remove(0)
    }

    fn names(w: &Writer) -> Vec<String> {
        w.store().resources.keys().map(|k| k.to_string()).collect()
    }

    fn listed(objects: &[Arc<Resource>]) -> Vec<Event> {
        let mut events = vec![Event::Init];
        events.extend(objects.iter().cloned().map(Event::InitApply));
        events.push(Event::InitDone);
        events
    }

    #[test]
    fn a_complete_list_replaces_everything_and_names_no_keys() {
        let mut w = Writer::new("c1");
        assert!(!w.is_synced());
        assert!(!w.apply(vec![Event::Init, Event::InitApply(pod("a", "10.0.0.1"))]));
        assert!(!w.is_synced(), "a list is in force only when it is done");
        assert!(w.store().resources.is_empty());
        assert!(w.apply(vec![Event::InitDone]));
        assert!(w.is_synced());
        assert_eq!(names(&w), ["Pod/ns/a"]);
        assert!(w.apply(listed(&[pod("b", "10.0.0.2"), pod("a", "10.0.0.1")])));
        assert_eq!(names(&w), ["Pod/ns/a", "Pod/ns/b"]);
        assert_eq!(w.store().last_change, None, "a list compares everything");
        let r1 = w.store().revision;
        // The same list again (new objects, same content): no change, the same Arcs.
        let a = w.store().resources.values().next().cloned().expect("a");
        assert!(!w.apply(listed(&[pod("a", "10.0.0.1"), pod("b", "10.0.0.2")])));
        assert_eq!(w.store().revision, r1);
        let a_again = w.store().resources.values().next().cloned().expect("a");
        assert!(Arc::ptr_eq(&a, &a_again));
        // A list without b removes it.
        assert!(w.apply(listed(&[pod("a", "10.0.0.1")])));
        assert_eq!(names(&w), ["Pod/ns/a"]);
        assert!(w.store().revision > r1);
    }

    #[test]
    fn point_events_change_only_what_differs_and_say_which_keys() {
        let mut w = Writer::new("c1");
        w.apply(listed(&[pod("a", "10.0.0.1"), pod("b", "10.0.0.2")]));
        let before = w.store().revision;
        let b = w.store().resources.values().nth(1).cloned().expect("b");
        // a moves, b is applied unchanged, c appears, a delete of a missing key is nothing.
        let changed = w.apply(vec![
            Event::Apply(pod("a", "10.0.0.9")),
            Event::Apply(pod("b", "10.0.0.2")),
            Event::Apply(pod("c", "10.0.0.3")),
            Event::Delete(pod("zz", "10.0.0.99")),
        ]);
        assert!(changed);
        let change = w.store().last_change.clone().expect("a point change");
        assert_eq!(change.from_revision, before);
        let keys: Vec<String> = change.keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["Pod/ns/a", "Pod/ns/c"]);
        assert!(Arc::ptr_eq(
            &b,
            w.store().resources.values().nth(1).expect("b")
        ));
        // A delete then an apply of the same key in one batch: the apply wins.
        assert!(w.apply(vec![
            Event::Delete(pod("c", "10.0.0.3")),
            Event::Apply(pod("c", "10.0.0.4"))
        ]));
        assert_eq!(names(&w), ["Pod/ns/a", "Pod/ns/b", "Pod/ns/c"]);
        // A delete names the object as last seen; its content does not matter.
        assert!(w.apply(vec![Event::Delete(pod("c", "10.0.0.1"))]));
        assert_eq!(names(&w), ["Pod/ns/a", "Pod/ns/b"]);
        // Nothing at all: no new revision.
        let r = w.store().revision;
        assert!(!w.apply(vec![Event::Apply(pod("a", "10.0.0.9"))]));
        assert_eq!(w.store().revision, r);
    }

    #[test]
    fn events_stay_small() {
        // A complete list of a million objects is a million events.
        assert!(
            std::mem::size_of::<Event>() <= 32,
            "{}",
            std::mem::size_of::<Event>()
        );
    }

    #[test]
    fn problems_are_reported_without_a_new_revision() {
        let mut w = Writer::new("c1");
        w.apply(listed(&[pod("a", "10.0.0.1")]));
        let r = w.store().revision;
        assert!(!w.apply(vec![Event::Problems(vec![Diagnostic::error("bad")])]));
        assert_eq!(w.store().revision, r);
        assert_eq!(w.store().diagnostics.len(), 1);
        assert!(!w.apply(vec![Event::Problems(Vec::new())]));
        assert!(w.store().diagnostics.is_empty());
    }

    #[test]
    fn a_list_keeps_the_first_of_a_key_and_point_events_after_it_apply_on_top() {
        let mut w = Writer::new("c1");
        let mut events = listed(&[pod("a", "10.0.0.1"), pod("a", "10.0.0.2")]);
        events.push(Event::Apply(pod("b", "10.0.0.3")));
        assert!(w.apply(events));
        assert_eq!(names(&w), ["Pod/ns/a", "Pod/ns/b"]);
        let ip = match &w.store().resources.values().next().expect("a").object {
            isthmus_api::Object::Pod(p) => p.status.pod_ip().map(|i| i.to_string()),
            _ => None,
        };
        assert_eq!(ip.as_deref(), Some("10.0.0.1"));
    }
}
