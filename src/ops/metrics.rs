//! The Prometheus registry every layer counts into. One process-wide
//! [`Metrics`] (atomics: no lock on the hot path); `/metrics` encodes it.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeLabel {
    pub edge: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LevelLabel {
    pub level: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// A task revival's outcome (`revived`, `skipped`, `failed`) and why
/// (`reconnected`, `disabled`, `deleted` for skipped; `deadline`, `refused`
/// for failed; empty for revived).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevivalLabel {
    pub outcome: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Every series the agent exports (prefix `kapacitor_pagertree_`).
#[derive(Debug)]
pub struct Metrics {
    /// Connections accepted, by edge (`stream`, `batch`).
    pub connections_total: Family<EdgeLabel, Counter>,
    /// Connections open now.
    pub connections_open: Family<EdgeLabel, Gauge>,
    /// Connections closed at once because `server.max_connections` were open.
    pub connections_refused_total: Family<EdgeLabel, Counter>,
    /// Sessions that ended with a protocol error, by reason.
    pub protocol_errors_total: Family<ReasonLabel, Counter>,
    pub points_total: Family<EdgeLabel, Counter>,
    pub batches_total: Counter,
    /// Events handed to delivery, by level.
    pub events_total: Family<LevelLabel, Counter>,
    /// Events not sent because of inhibition, stateChangesOnly is not counted here.
    pub events_inhibited_total: Counter,
    /// Mode 2 points whose level was missing or not a level name.
    pub bad_levels_total: Counter,
    /// Level/reset expressions that failed to evaluate (missing field, type error).
    pub expression_errors_total: Counter,
    pub keepalives_total: Counter,
    /// Keepalive responses sent unasked while a session had to stop reading.
    pub keepalives_unsolicited_total: Counter,
    /// Restore requests whose bytes could not be used (answered success anyway).
    pub restore_unusable_total: Counter,
    pub init_failures_total: Counter,
    /// Delivery attempts by outcome (`delivered`, `retry`, `parked`, `dead_letter`).
    pub deliveries_total: Family<OutcomeLabel, Counter>,
    pub retries_total: Counter,
    pub outbox_depth: Gauge,
    pub outbox_oldest_age_seconds: Gauge,
    pub parked: Gauge,
    pub degraded: Gauge,
    /// Seconds from the event's commit to the end of its successful request.
    pub delivery_latency_seconds: Histogram,
    /// Tasks marked open at an agent start, by what revival did with them.
    pub revivals_total: Family<RevivalLabel, Counter>,
}

impl Metrics {
    fn new() -> Self {
        Self {
            connections_total: Family::default(),
            connections_open: Family::default(),
            connections_refused_total: Family::default(),
            protocol_errors_total: Family::default(),
            points_total: Family::default(),
            batches_total: Counter::default(),
            events_total: Family::default(),
            events_inhibited_total: Counter::default(),
            bad_levels_total: Counter::default(),
            expression_errors_total: Counter::default(),
            keepalives_total: Counter::default(),
            keepalives_unsolicited_total: Counter::default(),
            restore_unusable_total: Counter::default(),
            init_failures_total: Counter::default(),
            deliveries_total: Family::default(),
            retries_total: Counter::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age_seconds: Gauge::default(),
            parked: Gauge::default(),
            degraded: Gauge::default(),
            delivery_latency_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            revivals_total: Family::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "connections",
            "UDF connections accepted",
            self.connections_total.clone(),
        );
        r.register(
            "connections_open",
            "UDF connections open now",
            self.connections_open.clone(),
        );
        r.register(
            "connections_refused",
            "UDF connections closed at once because server.max_connections were open",
            self.connections_refused_total.clone(),
        );
        r.register(
            "protocol_errors",
            "sessions ended by a protocol error",
            self.protocol_errors_total.clone(),
        );
        r.register("points", "points received", self.points_total.clone());
        r.register("batches", "batches received", self.batches_total.clone());
        r.register(
            "events",
            "alert events handed to delivery",
            self.events_total.clone(),
        );
        r.register(
            "events_inhibited",
            "events suppressed by inhibit()",
            self.events_inhibited_total.clone(),
        );
        r.register(
            "bad_levels",
            "mode 2 points with a missing or unknown level",
            self.bad_levels_total.clone(),
        );
        r.register(
            "expression_errors",
            "level expressions that failed to evaluate",
            self.expression_errors_total.clone(),
        );
        r.register(
            "keepalives",
            "keepalive requests answered",
            self.keepalives_total.clone(),
        );
        r.register(
            "keepalives_unsolicited",
            "keepalive responses sent while a session paused reading",
            self.keepalives_unsolicited_total.clone(),
        );
        r.register(
            "restore_unusable",
            "restore requests with unusable bytes (accepted)",
            self.restore_unusable_total.clone(),
        );
        r.register(
            "init_failures",
            "Init requests refused",
            self.init_failures_total.clone(),
        );
        r.register(
            "deliveries",
            "delivery attempts by outcome",
            self.deliveries_total.clone(),
        );
        r.register("retries", "delivery retries", self.retries_total.clone());
        r.register(
            "outbox_depth",
            "events in the outbox not yet delivered",
            self.outbox_depth.clone(),
        );
        r.register(
            "outbox_oldest_age_seconds",
            "age of the oldest undelivered event",
            self.outbox_oldest_age_seconds.clone(),
        );
        r.register(
            "parked",
            "events parked after a permanent refusal",
            self.parked.clone(),
        );
        r.register(
            "degraded",
            "1 while the outbox cannot store and events wait in memory",
            self.degraded.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "from commit to the end of the successful request",
            self.delivery_latency_seconds.clone(),
        );
        r.register(
            "revivals",
            "tasks marked open at an agent start, by what revival did (revived, skipped, failed) and why",
            self.revivals_total.clone(),
        );
    }
}

struct Global {
    metrics: Metrics,
    registry: Registry,
}

fn global() -> &'static Global {
    static G: OnceLock<Global> = OnceLock::new();
    G.get_or_init(|| {
        let metrics = Metrics::new();
        let mut registry = Registry::with_prefix("kapacitor_pagertree");
        metrics.register(&mut registry);
        Global { metrics, registry }
    })
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &global().metrics
}

/// The Prometheus text exposition of every series.
pub fn encode() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &global().registry);
    out
}
