//! On-demand scoping, the control plane's half: per node, what its agent says the workload
//! asked for, and which of it Envoy has acknowledged.
//!
//! Two streams meet here under one node id: the agent's (it sends the names its pod
//! resolved, [`isthmus_dns::demand::DEMAND_TYPE`], and waits for the answer before answering
//! the pod's lookup) and Envoy's (it generates with the names as the proxy's
//! [`Demand`], pushes, and reports the generation Envoy acknowledged). A [`Slot`] lives as
//! long as either stream holds it.

use isthmus_model::Demand;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// How long Envoy's first configuration waits for its agent's first word on what the
/// workload uses (the two streams open at about the same time; without the wait a proxy
/// reconnecting after a control plane restart would briefly lose every service it uses).
pub const WAIT_FOR_AGENT: Duration = Duration::from_secs(2);

/// What the control plane sends to sidecars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scoping {
    /// Sidecars whose agent answers their pod's DNS get only what their workload asked for.
    pub on_demand: bool,
    /// With `on_demand`: every service of a sidecar's own namespace from the start.
    pub namespace: bool,
}

/// The wanted names of one node, as its agent last sent them.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// Bumped on every change of `demand`.
    pub generation: u64,
    /// Whether the agent has spoken on this slot yet.
    pub heard: bool,
    /// What the proxy is generated with.
    pub demand: Arc<Demand>,
}

/// One node's demand, shared by its agent's stream and Envoy's.
#[derive(Debug)]
pub struct Slot {
    wanted: watch::Sender<Wanted>,
    in_force: watch::Sender<u64>,
    envoys: AtomicUsize,
}

impl Slot {
    fn new(namespace: bool) -> Slot {
        let wanted = Wanted {
            demand: Arc::new(Demand {
                names: BTreeSet::new(),
                namespace,
            }),
            ..Default::default()
        };
        Slot {
            wanted: watch::channel(wanted).0,
            in_force: watch::channel(0).0,
            envoys: AtomicUsize::new(0),
        }
    }

    /// Records the names the agent wants; returns the generation that holds them (a new one
    /// when they changed).
    pub fn want(&self, names: BTreeSet<String>) -> u64 {
        let mut generation = 0;
        self.wanted.send_if_modified(|w| {
            let changed = w.demand.names != names;
            if changed {
                w.generation += 1;
                w.demand = Arc::new(Demand {
                    names,
                    namespace: w.demand.namespace,
                });
            }
            let first = !w.heard;
            w.heard = true;
            generation = w.generation;
            changed || first
        });
        generation
    }

    /// The wanted names, following changes.
    pub fn subscribe(&self) -> watch::Receiver<Wanted> {
        self.wanted.subscribe()
    }

    /// The newest generation Envoy acknowledged, following changes.
    pub fn in_force(&self) -> watch::Receiver<u64> {
        self.in_force.subscribe()
    }

    /// Records that Envoy holds what generation `g` asked for.
    pub fn set_in_force(&self, g: u64) {
        self.in_force.send_if_modified(|v| {
            let newer = g > *v;
            if newer {
                *v = g;
            }
            newer
        });
    }

    /// Whether an Envoy stream of this node is open (else nothing can come into force).
    pub fn has_envoy(&self) -> bool {
        self.envoys.load(Ordering::Relaxed) > 0
    }

    /// Registers an Envoy stream for as long as the guard lives.
    pub fn attach_envoy(self: &Arc<Self>) -> EnvoyAttached {
        self.envoys.fetch_add(1, Ordering::Relaxed);
        EnvoyAttached(self.clone())
    }
}

/// An Envoy stream registered on a [`Slot`].
#[derive(Debug)]
pub struct EnvoyAttached(Arc<Slot>);

impl Drop for EnvoyAttached {
    fn drop(&mut self) {
        self.0.envoys.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every node's [`Slot`]; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Demands {
    scoping: Scoping,
    slots: Arc<Mutex<HashMap<String, Weak<Slot>>>>,
}

impl Demands {
    /// Demands under `scoping`.
    pub fn new(scoping: Scoping) -> Demands {
        Demands {
            scoping,
            slots: Arc::default(),
        }
    }

    /// The scoping in force.
    pub fn scoping(&self) -> Scoping {
        self.scoping
    }

    /// The slot of `node` (made when neither stream holds it).
    pub fn slot(&self, node: &str) -> Arc<Slot> {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(s) = slots.get(node).and_then(Weak::upgrade) {
            return s;
        }
        // Forget the nodes no stream holds any more.
        slots.retain(|_, s| s.strong_count() > 0);
        let s = Arc::new(Slot::new(self.scoping.namespace));
        slots.insert(node.to_string(), Arc::downgrade(&s));
        s
    }
}

/// What an Envoy stream tracks to tell its slot what is in force: per type, the last
/// response's nonce and the generation it was made at, and whether Envoy answered it.
#[derive(Debug)]
pub struct InForceTracker {
    slot: Arc<Slot>,
    _attached: EnvoyAttached,
    wanted: watch::Receiver<Wanted>,
    types: HashMap<String, Sent>,
}

#[derive(Debug, Clone)]
struct Sent {
    nonce: String,
    generation: u64,
    answered: bool,
}

impl InForceTracker {
    /// Tracks an Envoy stream of `slot`.
    pub fn new(slot: Arc<Slot>) -> InForceTracker {
        InForceTracker {
            _attached: slot.attach_envoy(),
            wanted: slot.subscribe(),
            slot,
            types: HashMap::new(),
        }
    }

    /// The wanted names now (marked seen).
    pub fn current(&mut self) -> Wanted {
        self.wanted.borrow_and_update().clone()
    }

    /// Waits for the agent's first word, at most [`WAIT_FOR_AGENT`].
    pub async fn wait_for_agent(&mut self) {
        let wait = self.wanted.wait_for(|w| w.heard);
        let _ = tokio::time::timeout(WAIT_FOR_AGENT, wait).await;
    }

    /// Resolves when the wanted names change (never, once the slot is gone).
    pub async fn changed(&mut self) {
        if self.wanted.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// A response of `type_url` went out with `nonce`, generated at `generation`. `covers`
    /// says whether Envoy asked for every resource of the type that generation has (Envoy
    /// asks for a new cluster's endpoints and a new listener's routes only once it has the
    /// cluster or listener): until it has, the type is not at that generation.
    pub fn sent(&mut self, type_url: &str, nonce: &str, generation: u64, covers: bool) {
        let before = self.types.get(type_url).map_or(0, |s| s.generation);
        self.types.insert(
            type_url.to_string(),
            Sent {
                nonce: nonce.to_string(),
                generation: if covers { generation } else { before },
                answered: false,
            },
        );
    }

    /// A push at `generation` sent nothing of `type_url`: what Envoy holds of it (or will,
    /// once it answers what is in flight) already is that generation's, if it `covers`
    /// everything (see [`InForceTracker::sent`]).
    pub fn unchanged(&mut self, type_url: &str, generation: u64, covers: bool) {
        if let Some(s) = self.types.get_mut(type_url) {
            if covers {
                s.generation = s.generation.max(generation);
            }
        }
        self.publish();
    }

    /// Envoy answered `nonce` of `type_url` (ACK or NACK: either way nothing more comes).
    pub fn answered(&mut self, type_url: &str, nonce: &str) {
        if let Some(s) = self.types.get_mut(type_url) {
            if s.nonce == nonce {
                s.answered = true;
            }
        }
        self.publish();
    }

    /// When nothing is in flight, the oldest generation among the types is in force.
    fn publish(&self) {
        if self.types.is_empty() || self.types.values().any(|s| !s.answered) {
            return;
        }
        if let Some(g) = self.types.values().map(|s| s.generation).min() {
            self.slot.set_in_force(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_slot_lives_while_a_stream_holds_it_and_counts_changes() {
        let demands = Demands::new(Scoping {
            on_demand: true,
            namespace: true,
        });
        let a = demands.slot("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local");
        assert!(Arc::ptr_eq(
            &a,
            &demands.slot("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local")
        ));
        assert!(a.subscribe().borrow().demand.namespace);
        assert!(!a.subscribe().borrow().heard);
        assert_eq!(a.want(names(&[])), 0, "no names yet: no new generation");
        assert!(a.subscribe().borrow().heard, "but the agent has spoken");
        assert_eq!(a.want(names(&["x.global"])), 1);
        assert_eq!(a.want(names(&["x.global"])), 1, "the same names");
        assert_eq!(a.want(names(&["x.global", "y.global"])), 2);
        drop(a);
        let b = demands.slot("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local");
        assert_eq!(
            b.subscribe().borrow().generation,
            0,
            "forgotten with its streams"
        );
    }

    #[test]
    fn a_generation_is_in_force_once_every_type_sent_at_it_is_answered() {
        let slot = Demands::new(Scoping::default()).slot("n");
        let mut in_force = slot.in_force();
        let mut t = InForceTracker::new(slot.clone());
        assert!(slot.has_envoy());
        t.sent("cds", "1", 0, true);
        t.sent("lds", "2", 0, true);
        t.answered("cds", "1");
        t.answered("lds", "2");
        assert_eq!(*in_force.borrow_and_update(), 0);
        let g = slot.want(names(&["x.global"]));
        t.sent("cds", "3", g, true);
        t.answered("cds", "3");
        assert!(!in_force.has_changed().expect("open"), "lds not at {g} yet");
        t.sent("lds", "4", g, true);
        t.answered("lds", "9");
        assert!(!in_force.has_changed().expect("open"), "another nonce");
        t.answered("lds", "4");
        assert_eq!(*in_force.borrow_and_update(), g);
        // A push that changes nothing of a type brings it to the generation too.
        let g2 = slot.want(names(&["x.global", "y.global"]));
        t.sent("cds", "5", g2, true);
        t.answered("cds", "5");
        assert!(!in_force.has_changed().expect("open"));
        t.unchanged("lds", g2, true);
        assert_eq!(*in_force.borrow_and_update(), g2);
        // A new cluster's endpoints: not there until Envoy asks for them and answers.
        let g3 = slot.want(names(&["x.global", "y.global", "z.global"]));
        t.sent("cds", "6", g3, true);
        t.unchanged("lds", g3, true);
        t.unchanged("eds", g3, false);
        t.sent("eds", "7", g3, false);
        t.answered("cds", "6");
        t.answered("eds", "7");
        assert!(
            !in_force.has_changed().expect("open"),
            "endpoints not asked for yet"
        );
        t.sent("eds", "8", g3, true);
        t.answered("eds", "8");
        assert_eq!(*in_force.borrow_and_update(), g3);
        drop(t);
        assert!(!slot.has_envoy());
    }
}
