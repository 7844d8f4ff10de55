//! Active health checks of the gateways other clusters are reached through, so that a
//! gateway that drops packets silently leaves rotation without any configuration (Linkerd
//! probes its gateways the same way). Every [`INTERVAL`] each gateway address the mesh
//! sends traffic to (meshNetworks gateways, and ServiceEntry endpoints on the east-west port
//! 15443) gets a TCP connect within [`TIMEOUT`]; after [`DOWN_AFTER`] failures in a row it
//! is down, after one success it is up again. A change wakes the build loop, which marks
//! the gateway's endpoints UNHEALTHY in what every proxy is sent: one probe per gateway per
//! control plane, not one per proxy.

use isthmus_api::validate::EAST_WEST_PORT;
use isthmus_model::health::GatewayHealth;
use isthmus_model::MeshSnapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// How often each gateway is probed.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How long a connect may take.
pub const TIMEOUT: Duration = Duration::from_millis(800);
/// Failed probes in a row before a gateway is down.
pub const DOWN_AFTER: u32 = 2;

/// One gateway's probe state.
#[derive(Debug, Clone, Default)]
struct State {
    failures: u32,
    down_since: Option<SystemTime>,
    last_error: String,
}

/// Probes the gateways and keeps which are down.
#[derive(Debug)]
pub struct GatewayProber {
    targets: Mutex<BTreeSet<(String, u32)>>,
    states: Mutex<BTreeMap<(String, u32), State>>,
    changed: Arc<Notify>,
}

/// The gateway addresses `snapshot` sends traffic to: every network's gateways and the
/// ServiceEntry endpoints on port 15443 (other clusters' east-west gateways, as the seeds
/// write them).
pub fn targets(snapshot: &MeshSnapshot) -> BTreeSet<(String, u32)> {
    let mut out: BTreeSet<(String, u32)> = snapshot
        .network_gateways
        .values()
        .flatten()
        .map(|g| (g.address.clone(), g.port))
        .collect();
    for svc in snapshot.services.values() {
        for e in svc.endpoints.iter() {
            if e.origin.ports.values().any(|p| *p == EAST_WEST_PORT) {
                out.insert((e.address.to_string(), EAST_WEST_PORT));
            }
        }
    }
    out
}

impl GatewayProber {
    /// A prober with nothing to probe yet; `changed` is notified when a gateway goes down or
    /// comes back.
    pub fn new(changed: Arc<Notify>) -> Self {
        GatewayProber {
            targets: Mutex::new(BTreeSet::new()),
            states: Mutex::new(BTreeMap::new()),
            changed,
        }
    }

    /// What to probe from now on (what the snapshot in force names); the others are
    /// forgotten.
    pub fn set_targets(&self, targets: BTreeSet<(String, u32)>) {
        lock(&self.states).retain(|k, _| targets.contains(k));
        *lock(&self.targets) = targets;
    }

    /// The gateways down now.
    pub fn health(&self) -> GatewayHealth {
        GatewayHealth {
            down: lock(&self.states)
                .iter()
                .filter(|(_, s)| s.down_since.is_some())
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    /// Probes forever.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let targets: Vec<(String, u32)> = lock(&self.targets).iter().cloned().collect();
            let results =
                futures::future::join_all(targets.iter().map(|(a, p)| probe(a, *p))).await;
            let mut changed = false;
            let mut states = lock(&self.states);
            for (target, result) in targets.into_iter().zip(results) {
                let s = states.entry(target.clone()).or_default();
                match result {
                    Ok(()) => {
                        s.failures = 0;
                        if let Some(since) = s.down_since.take() {
                            changed = true;
                            tracing::info!(gateway = %format!("{}:{}", target.0, target.1), down_for = ?since.elapsed().unwrap_or_default(), "gateway answers again: back in rotation");
                        }
                    }
                    Err(e) => {
                        s.failures += 1;
                        s.last_error = e;
                        if s.failures >= DOWN_AFTER && s.down_since.is_none() {
                            s.down_since = Some(SystemTime::now());
                            changed = true;
                            tracing::warn!(gateway = %format!("{}:{}", target.0, target.1), error = %s.last_error, failures = s.failures, "gateway does not answer: out of rotation until it does");
                        }
                    }
                }
            }
            drop(states);
            if changed {
                self.changed.notify_one();
            }
        }
    }

    /// Adds `isthmus_gateway_up{gateway="ADDR:PORT"}` to `registry`: per probed gateway, 1
    /// while it answers, 0 while it is out of rotation; read from the probes when scraped.
    pub fn register(self: &Arc<Self>, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let prober = self.clone();
        let up = crate::metrics::ReadWhenScraped::new(
            "isthmus_gateway_up",
            "Whether a gateway other clusters are reached through answers the control plane's probe (1) or is out of rotation (0).",
            &["gateway"],
            move |g: &prometheus::IntGaugeVec| {
                for ((a, p), s) in lock(&prober.states).iter() {
                    g.with_label_values(&[&format!("{a}:{p}")])
                        .set(i64::from(s.down_since.is_none()));
                }
            },
        )?;
        registry.register(Box::new(up))
    }

    /// The text of [`GatewayProber::register`]'s metric alone.
    pub fn metrics(self: &Arc<Self>) -> String {
        let registry = prometheus::Registry::new();
        match self.register(&registry) {
            Ok(()) => crate::metrics::encode(&registry),
            Err(_) => String::new(),
        }
    }

    /// One line per gateway that is down: which, since when, and the last error.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.states)
            .iter()
            .filter_map(|((a, p), s)| {
                let since = s.down_since?;
                let secs = since.elapsed().unwrap_or_default().as_secs();
                Some(format!(
                    "warning: gateway {a}:{p} does not answer ({}; down for {secs} s): its endpoints are out of rotation",
                    s.last_error
                ))
            })
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A TCP connect to the gateway within [`TIMEOUT`].
async fn probe(address: &str, port: u32) -> Result<(), String> {
    let port = u16::try_from(port).map_err(|_| format!("port {port} out of range"))?;
    match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect((address, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gateway_that_stops_answering_is_down_after_two_probes_and_back_after_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let up = (
            "127.0.0.1".to_string(),
            u32::from(listener.local_addr().expect("addr").port()),
        );
        // A port nothing listens on: connections are refused.
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = l.local_addr().expect("addr").port();
            drop(l);
            ("127.0.0.1".to_string(), u32::from(port))
        };
        let changed = Arc::new(Notify::new());
        let prober = Arc::new(GatewayProber::new(changed.clone()));
        prober.set_targets([up.clone(), refused.clone()].into_iter().collect());
        let task = tokio::spawn(prober.clone().run());
        tokio::time::timeout(Duration::from_secs(5), changed.notified())
            .await
            .expect("a change within two probes");
        let health = prober.health();
        assert!(health.is_down(&refused.0, refused.1), "{health:?}");
        assert!(!health.is_down(&up.0, up.1), "{health:?}");
        let metrics = prober.metrics();
        assert!(
            metrics.contains(&format!(
                "isthmus_gateway_up{{gateway=\"127.0.0.1:{}\"}} 0",
                refused.1
            )) && metrics.contains(&format!(
                "isthmus_gateway_up{{gateway=\"127.0.0.1:{}\"}} 1",
                up.1
            )),
            "{metrics}"
        );
        assert!(
            prober
                .problems()
                .iter()
                .any(|p| p.contains(&format!("127.0.0.1:{}", refused.1))),
            "{:?}",
            prober.problems()
        );
        // It answers again: up after one probe.
        let back = tokio::net::TcpListener::bind(("127.0.0.1", refused.1 as u16))
            .await
            .expect("rebind the port");
        tokio::time::timeout(Duration::from_secs(5), changed.notified())
            .await
            .expect("back within a probe");
        assert!(prober.health().down.is_empty());
        // A target no snapshot names any more is forgotten.
        prober.set_targets([up.clone()].into_iter().collect());
        assert!(!prober.metrics().contains(&format!(":{}\"", refused.1)));
        task.abort();
        drop((listener, back));
    }
}
