//! On-demand scoping, the agent's half: the names its pod resolved are the services its
//! sidecar wants. The DNS proxy holds the answer to a mesh name until the control plane says
//! the sidecar's Envoy holds that service's configuration ([`Wants::want`]), so that the
//! first call after a lookup finds its listener and cluster; the agent's xDS stream sends the
//! names ([`DEMAND_TYPE`]) and reports what is in force ([`Wants::set_in_force`]).
//!
//! On the wire, a request of [`DEMAND_TYPE`] names every name wanted (state of the world);
//! the answer comes once Envoy has acknowledged the configuration for them, with one
//! resource listing the names now in force, or with version [`ALL_IN_FORCE`] when the
//! control plane scopes nothing (every service is always sent).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The xDS type URL of a sidecar's wanted names.
pub const DEMAND_TYPE: &str = "type.googleapis.com/isthmus.v1.Demand";

/// The version of a [`DEMAND_TYPE`] answer when every name is always in force.
pub const ALL_IN_FORCE: &str = "all";

/// How long a lookup waits for its service's configuration before it is answered anyway
/// (the control plane away or slow): then the call goes out as it would without scoping's
/// help, and may fail.
pub const WAIT_FOR_CONFIG: Duration = Duration::from_secs(3);

/// Names as a [`DEMAND_TYPE`] resource: one per line.
pub fn encode_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for n in names {
        if !out.is_empty() {
            out.push(b'\n');
        }
        out.extend_from_slice(n.as_bytes());
    }
    out
}

/// A [`DEMAND_TYPE`] resource that is not a list of names.
#[derive(Debug, thiserror::Error)]
#[error("a {DEMAND_TYPE} resource must be UTF-8 names, one per line")]
pub struct DemandError;

/// Reads what [`encode_names`] wrote.
pub fn decode_names(bytes: &[u8]) -> Result<BTreeSet<String>, DemandError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DemandError)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect())
}

/// What the control plane says is in force in the sidecar's Envoy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InForce {
    /// Every name (the control plane scopes nothing).
    pub all: bool,
    /// The names whose services Envoy holds.
    pub names: Arc<BTreeSet<String>>,
}

impl InForce {
    fn holds(&self, name: &str) -> bool {
        self.all || self.names.contains(name)
    }
}

/// The names a pod has resolved, and which of them are in force.
#[derive(Debug)]
pub struct Wants {
    names: Mutex<BTreeSet<String>>,
    /// Bumped when a name is added: the stream sends the names again.
    asked: watch::Sender<u64>,
    in_force: watch::Sender<InForce>,
}

impl Default for Wants {
    fn default() -> Self {
        Wants {
            names: Mutex::default(),
            asked: watch::channel(0).0,
            in_force: watch::channel(InForce::default()).0,
        }
    }
}

impl Wants {
    /// No name wanted yet.
    pub fn new() -> Arc<Wants> {
        Arc::new(Wants::default())
    }

    /// Whether `name`'s service is in force.
    pub fn is_in_force(&self, name: &str) -> bool {
        self.in_force.borrow().holds(name)
    }

    /// Every name wanted, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    /// Wakes when a name is added.
    pub fn asked(&self) -> watch::Receiver<u64> {
        self.asked.subscribe()
    }

    /// Records what the control plane says is in force.
    pub fn set_in_force(&self, in_force: InForce) {
        self.in_force.send_replace(in_force);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        match self.names.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Wants `name` and waits until its service is in force, at most `wait`. Returns whether
    /// it is.
    pub async fn want(&self, name: &str, wait: Duration) -> bool {
        let mut rx = self.in_force.subscribe();
        if rx.borrow_and_update().holds(name) {
            return true;
        }
        if self.lock().insert(name.to_string()) {
            self.asked.send_modify(|n| *n += 1);
        }
        let done = tokio::time::timeout(wait, async {
            loop {
                if rx.changed().await.is_err() {
                    return false;
                }
                if rx.borrow_and_update().holds(name) {
                    return true;
                }
            }
        })
        .await;
        done.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_travel_one_per_line() {
        let bytes = encode_names(["a.ns.svc.cluster.local", "b.global"]);
        assert_eq!(bytes, b"a.ns.svc.cluster.local\nb.global");
        let back = decode_names(&bytes).expect("names");
        assert_eq!(
            back.into_iter().collect::<Vec<_>>(),
            ["a.ns.svc.cluster.local", "b.global"]
        );
        assert!(decode_names(&[0xff, 0xfe]).is_err());
        assert!(decode_names(b"").expect("none").is_empty());
    }

    #[tokio::test]
    async fn a_lookup_waits_until_its_name_is_in_force() {
        let wants = Wants::new();
        let mut asked = wants.asked();
        let w = wants.clone();
        let lookup = tokio::spawn(async move { w.want("a.global", Duration::from_secs(5)).await });
        asked.changed().await.expect("asked");
        assert_eq!(wants.names(), ["a.global"]);
        assert!(!lookup.is_finished(), "waits for the configuration");
        // Another name coming into force does not release it.
        wants.set_in_force(InForce {
            all: false,
            names: Arc::new(BTreeSet::from(["b.global".to_string()])),
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!lookup.is_finished());
        wants.set_in_force(InForce {
            all: false,
            names: Arc::new(BTreeSet::from(["a.global".to_string()])),
        });
        assert!(lookup.await.expect("joined"), "in force");
        // Later lookups of it pay nothing and ask nothing.
        assert!(wants.is_in_force("a.global"));
        assert!(wants.want("a.global", Duration::ZERO).await);
        assert_eq!(*asked.borrow_and_update(), 1);
    }

    #[tokio::test]
    async fn without_an_answer_a_lookup_gives_up_after_its_wait() {
        let wants = Wants::new();
        let started = std::time::Instant::now();
        assert!(!wants.want("a.global", Duration::from_millis(100)).await);
        assert!(started.elapsed() >= Duration::from_millis(100));
        // All in force (no scoping): every name at once.
        wants.set_in_force(InForce {
            all: true,
            names: Arc::default(),
        });
        assert!(wants.want("b.global", Duration::ZERO).await);
    }
}
