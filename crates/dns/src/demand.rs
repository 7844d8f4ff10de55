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
    encode_in_force(names.into_iter().map(|n| (n, &[] as &[String])))
}

/// Names in force as a [`DEMAND_TYPE`] answer: one per line, each followed by a tab and the
/// service hosts it brought into scope (space-separated), which the agent watches for
/// traffic before it lets the name go.
pub fn encode_in_force<'a>(names: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, hosts) in names {
        if !out.is_empty() {
            out.push(b'\n');
        }
        out.extend_from_slice(n.as_bytes());
        if !hosts.is_empty() {
            out.push(b'\t');
            out.extend_from_slice(hosts.join(" ").as_bytes());
        }
    }
    out
}

/// Reads what [`encode_in_force`] wrote: each name with its hosts.
pub fn decode_in_force(
    bytes: &[u8],
) -> Result<std::collections::BTreeMap<String, Vec<String>>, DemandError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DemandError)?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (name, hosts) = l.split_once('\t').unwrap_or((l, ""));
            let name = name.trim();
            (!name.is_empty()).then(|| {
                (
                    name.to_string(),
                    hosts.split_whitespace().map(str::to_string).collect(),
                )
            })
        })
        .collect())
}

/// A [`DEMAND_TYPE`] resource that is not a list of names.
#[derive(Debug, thiserror::Error)]
#[error("a {DEMAND_TYPE} resource must be UTF-8 names, one per line")]
pub struct DemandError;

/// The names of what [`encode_names`] or [`encode_in_force`] wrote.
pub fn decode_names(bytes: &[u8]) -> Result<BTreeSet<String>, DemandError> {
    Ok(decode_in_force(bytes)?.into_keys().collect())
}

/// What the control plane says is in force in the sidecar's Envoy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InForce {
    /// Every name (the control plane scopes nothing).
    pub all: bool,
    /// The names whose services Envoy holds.
    pub names: Arc<BTreeSet<String>>,
    /// Per name, the service hosts it brought into scope (as the control plane said).
    pub hosts: Arc<std::collections::BTreeMap<String, Vec<String>>>,
}

impl InForce {
    fn holds(&self, name: &str) -> bool {
        self.all || self.names.contains(name)
    }
}

/// The names a pod has resolved, and which of them are in force.
#[derive(Debug)]
pub struct Wants {
    /// Each name wanted, with when the pod last resolved it.
    names: Mutex<std::collections::BTreeMap<String, std::time::Instant>>,
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

    /// The service hosts `name` brought into scope, as the control plane last said (none
    /// when it did not say).
    pub fn hosts_of(&self, name: &str) -> Vec<String> {
        self.in_force
            .borrow()
            .hosts
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Every name wanted, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Records that the pod resolved `name` now (it stays wanted while it is resolved).
    pub fn touch(&self, name: &str) {
        if let Some(at) = self.lock().get_mut(name) {
            *at = std::time::Instant::now();
        }
    }

    /// Stops wanting the names the pod has not resolved for `idle` and that `in_use` says
    /// carry no traffic; the stream then sends the rest, and the control plane takes those
    /// services out of the sidecar. Returns the names let go.
    pub fn forget_idle(&self, idle: Duration, in_use: impl Fn(&str) -> bool) -> Vec<String> {
        let now = std::time::Instant::now();
        let gone: Vec<String> = {
            let mut names = self.lock();
            let gone: Vec<String> = names
                .iter()
                .filter(|(n, at)| now.duration_since(**at) >= idle && !in_use(n))
                .map(|(n, _)| n.clone())
                .collect();
            for n in &gone {
                names.remove(n);
            }
            gone
        };
        if !gone.is_empty() {
            self.in_force.send_modify(|f| {
                if !f.all {
                    let mut held = (*f.names).clone();
                    for n in &gone {
                        held.remove(n);
                    }
                    f.names = Arc::new(held);
                }
            });
            self.asked.send_modify(|n| *n += 1);
        }
        gone
    }

    /// Wakes when a name is added.
    pub fn asked(&self) -> watch::Receiver<u64> {
        self.asked.subscribe()
    }

    /// Records what the control plane says is in force.
    pub fn set_in_force(&self, in_force: InForce) {
        self.in_force.send_replace(in_force);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, std::time::Instant>> {
        match self.names.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether the sidecar may be scoped: false once the control plane answered "all" (it
    /// scopes nothing).
    pub fn scoped(&self) -> bool {
        !self.in_force.borrow().all
    }

    /// Wants `name` from now on without waiting for it (use seen by other means than a
    /// lookup); a name already wanted is touched. Returns whether it was newly wanted.
    pub fn ask(&self, name: &str) -> bool {
        let added = {
            let mut names = self.lock();
            let now = std::time::Instant::now();
            names.insert(name.to_string(), now).is_none()
        };
        if added {
            self.asked.send_modify(|n| *n += 1);
        }
        added
    }

    /// Wants `name` and waits until its service is in force, at most `wait`. Returns whether
    /// it is.
    pub async fn want(&self, name: &str, wait: Duration) -> bool {
        let mut rx = self.in_force.subscribe();
        if rx.borrow_and_update().holds(name) {
            return true;
        }
        self.ask(name);
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
    fn names_in_force_carry_the_hosts_they_brought() {
        let hosts = vec![
            "a.ns.svc.cluster.local".to_string(),
            "b.ns.svc.cluster.local".to_string(),
        ];
        let bytes = encode_in_force([
            ("a.ns.svc.cluster.local", hosts.as_slice()),
            ("x.remote", &[][..]),
        ]);
        let back = decode_in_force(&bytes).expect("in force");
        assert_eq!(back["a.ns.svc.cluster.local"], hosts);
        assert!(back["x.remote"].is_empty());
        assert_eq!(decode_names(&bytes).expect("names").len(), 2);
    }

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
            ..Default::default()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!lookup.is_finished());
        wants.set_in_force(InForce {
            all: false,
            names: Arc::new(BTreeSet::from(["a.global".to_string()])),
            ..Default::default()
        });
        assert!(lookup.await.expect("joined"), "in force");
        // Later lookups of it pay nothing and ask nothing.
        assert!(wants.is_in_force("a.global"));
        assert!(wants.want("a.global", Duration::ZERO).await);
        assert_eq!(*asked.borrow_and_update(), 1);
    }

    #[tokio::test]
    async fn names_neither_resolved_nor_carrying_traffic_for_a_while_are_let_go() {
        let wants = Wants::new();
        let held = |names: &[&str]| InForce {
            all: false,
            names: Arc::new(names.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        wants.set_in_force(held(&["a.global", "b.global", "c.global"]));
        for n in ["a.global", "b.global", "c.global"] {
            assert!(wants.want(n, Duration::ZERO).await);
        }
        // Names in force before they were wanted are not recorded: want them.
        let mut asked = wants.asked();
        asked.borrow_and_update();
        for n in ["a.global", "b.global", "c.global"] {
            let _ = wants.want(n, Duration::ZERO).await;
        }
        assert!(wants.names().is_empty(), "in force, so never asked for");
        // Asked for, then in force.
        let w = wants.clone();
        wants.set_in_force(held(&[]));
        let lookups = tokio::spawn(async move {
            for n in ["a.global", "b.global", "c.global"] {
                w.want(n, Duration::from_millis(10)).await;
            }
        });
        lookups.await.expect("joined");
        wants.set_in_force(held(&["a.global", "b.global", "c.global"]));
        assert_eq!(wants.names(), ["a.global", "b.global", "c.global"]);
        // Not idle long enough: kept.
        assert!(wants
            .forget_idle(Duration::from_secs(60), |_| false)
            .is_empty());
        tokio::time::sleep(Duration::from_millis(30)).await;
        wants.touch("a.global");
        // b carries traffic; c neither is resolved nor carries any: only c goes.
        let gone = wants.forget_idle(Duration::from_millis(20), |n| n == "b.global");
        assert_eq!(gone, ["c.global"]);
        assert_eq!(wants.names(), ["a.global", "b.global"]);
        assert!(
            asked.has_changed().expect("open"),
            "the stream sends the rest"
        );
        assert!(!wants.is_in_force("c.global"), "a new lookup waits again");
        assert!(wants.is_in_force("a.global"));
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
            ..Default::default()
        });
        assert!(wants.want("b.global", Duration::ZERO).await);
    }
}
