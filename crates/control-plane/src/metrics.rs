//! The monitoring port's metrics: one Prometheus registry gathering every component's
//! (the xDS server's `pilot_*`, the CA's `citadel_server_*`, the API servers' watch events)
//! and the gauges read from state when scraped (gateways, cluster sources, heap), written in
//! Prometheus's text format.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts, Registry};

/// A gauge family whose samples are set from state each time it is gathered: `fill` is
/// given the family emptied of the last scrape's samples (a gateway no longer probed
/// leaves it).
pub struct ReadWhenScraped<F> {
    gauges: IntGaugeVec,
    fill: F,
}

impl<F: Fn(&IntGaugeVec) + Send + Sync> ReadWhenScraped<F> {
    /// The family `name` with `labels`, filled by `fill`.
    pub fn new(name: &str, help: &str, labels: &[&str], fill: F) -> prometheus::Result<Self> {
        Ok(ReadWhenScraped {
            gauges: IntGaugeVec::new(Opts::new(name, help), labels)?,
            fill,
        })
    }
}

impl<F: Fn(&IntGaugeVec) + Send + Sync> Collector for ReadWhenScraped<F> {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.gauges.reset();
        (self.fill)(&self.gauges);
        self.gauges.collect()
    }
}

/// A Prometheus gauge value from a count or a Unix time (saturated, never wrapped).
pub fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The text exposition of everything `registry` holds.
pub fn encode(registry: &Registry) -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap_or_else(|e| format!("# encoding the metrics failed: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_gauge_read_when_scraped_shows_the_state_of_that_scrape_only() {
        let state = Arc::new(AtomicI64::new(2));
        let read = state.clone();
        let registry = Registry::new();
        let gauges = ReadWhenScraped::new("t_up", "Test.", &["who"], move |g: &IntGaugeVec| {
            let n = read.load(Ordering::Relaxed);
            for i in 0..n {
                g.with_label_values(&[&i.to_string()]).set(1);
            }
        })
        .expect("valid");
        registry.register(Box::new(gauges)).expect("register");
        let text = encode(&registry);
        assert!(text.contains("# TYPE t_up gauge"), "{text}");
        assert!(text.contains("t_up{who=\"1\"} 1"), "{text}");
        state.store(1, Ordering::Relaxed);
        let text = encode(&registry);
        assert!(
            !text.contains("who=\"1\""),
            "a sample gone from state leaves: {text}"
        );
        assert!(text.contains("t_up{who=\"0\"} 1"), "{text}");
        assert_eq!(gauge_value(u64::MAX), i64::MAX);
    }
}
