//! `GET /metrics` (admin keys): the service's state in Prometheus' text
//! format, made with the `prometheus-client` crate.
//!
//! Calls, spend and latency are counted from each run's report as the run
//! ends (every attempt it made, a failed run's partial report included); a
//! cancelled run, which has no report, adds only to the runs counter. Queue,
//! running runs and breakers are read when scraped.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::schema::{Outcome, VideoReport};
use crate::serve::runs::{Run, RunState};
use crate::serve::{ApiError, App};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: String,
    outcome: &'static str,
}

type FloatCounter = Counter<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 10 ms to about 82 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// The service's metrics. Names (all prefixed `vidgate_`):
///
/// - `runs_finished_total{state}`: runs ended, by `done`, `failed`, `cancelled`;
/// - `runs{state}`: runs `queued` and `running` now;
/// - `queue_length`: runs waiting for a slot;
/// - `calls_total{provider,outcome}`: provider calls, by `ok`, `transient`,
///   `fell_back`, `fatal`;
/// - `call_latency_seconds{provider}`: a histogram of those calls' latency;
/// - `spend_usd_total`: what runs spent; `provider_spend_usd_total{provider}`:
///   what each provider's answered calls cost (the total may be more: calls
///   that failed after they may have been billed count there);
/// - `breaker_open{provider}`: 1 while the provider is benched or half-open;
///   `breaker_cooldown_seconds{provider}`: how long it stays benched;
/// - `journal_pruned_rows_total{table}`: rows the journal's retention
///   (`journal.keep_days`) dropped, by table;
/// - `journal_bytes`: the journal's bytes on disk (file and write-ahead log).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    finished: Family<StateLabel, Counter>,
    runs: Family<StateLabel, Gauge>,
    queue: Gauge,
    calls: Family<CallLabels, Counter>,
    latency: Family<ProviderLabel, Histogram, fn() -> Histogram>,
    spend: FloatCounter,
    provider_spend: Family<ProviderLabel, FloatCounter>,
    breaker_open: Family<ProviderLabel, Gauge>,
    breaker_cooldown: Family<ProviderLabel, Gauge<f64, AtomicU64>>,
    journal_pruned: Family<TableLabel, Counter>,
    journal_bytes: Gauge,
    /// Scrapes set the gauges then encode: one at a time.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vidgate");
        let m = Self {
            finished: Family::default(),
            runs: Family::default(),
            queue: Gauge::default(),
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            spend: FloatCounter::default(),
            provider_spend: Family::default(),
            breaker_open: Family::default(),
            breaker_cooldown: Family::default(),
            journal_pruned: Family::default(),
            journal_bytes: Gauge::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register("runs_finished", "Runs ended, by state", m.finished.clone());
        registry.register("runs", "Runs queued or running now", m.runs.clone());
        registry.register("queue_length", "Runs waiting for a slot", m.queue.clone());
        registry.register("calls", "Provider calls, by provider and outcome", m.calls.clone());
        registry.register("call_latency_seconds", "Provider call latency", m.latency.clone());
        registry.register("spend_usd", "What runs spent, in USD", m.spend.clone());
        registry.register("provider_spend_usd", "What each provider's calls cost, in USD", m.provider_spend.clone());
        registry.register(
            "breaker_open",
            "1 while a provider is benched by its circuit breaker",
            m.breaker_open.clone(),
        );
        registry.register(
            "breaker_cooldown_seconds",
            "Seconds a benched provider stays benched",
            m.breaker_cooldown.clone(),
        );
        registry.register(
            "journal_pruned_rows",
            "Rows the journal's retention dropped, by table",
            m.journal_pruned.clone(),
        );
        registry.register("journal_bytes", "The journal's bytes on disk", m.journal_bytes.clone());
        for table in crate::journal::TABLES {
            // Every table shows from the start, at 0.
            let _ = m.journal_pruned.get_or_create(&TableLabel { table });
        }
        Self { registry, ..m }
    }

    /// Count the rows a prune of the journal dropped.
    pub fn journal_pruned(&self, pruned: &crate::journal::Pruned) {
        for (&table, &n) in &pruned.rows {
            self.journal_pruned.get_or_create(&TableLabel { table }).inc_by(n);
        }
    }

    /// Count a run that ended: its state, and its report's calls and spend.
    pub fn run_finished(&self, _run: &Run, state: &RunState) {
        self.finished.get_or_create(&StateLabel { state: state.name() }).inc();
        let report = match state {
            RunState::Done { report } => Some(report.as_ref()),
            RunState::Failed { partial, .. } => partial.as_deref(),
            _ => None,
        };
        if let Some(report) = report {
            self.count_report(report);
        }
    }

    fn count_report(&self, report: &VideoReport) {
        for a in &report.attempts {
            let outcome = match a.outcome {
                Outcome::Ok => "ok",
                Outcome::Transient { .. } => "transient",
                Outcome::FellBack { .. } => "fell_back",
                Outcome::Fatal { .. } => "fatal",
            };
            self.calls.get_or_create(&CallLabels { provider: a.provider.clone(), outcome }).inc();
            let provider = ProviderLabel { provider: a.provider.clone() };
            self.latency.get_or_create(&provider).observe(a.latency_ms as f64 / 1000.0);
            if a.usage.cost_usd > 0.0 {
                self.provider_spend.get_or_create(&provider).inc_by(a.usage.cost_usd);
            }
        }
        if report.usage.cost_usd > 0.0 {
            self.spend.inc_by(report.usage.cost_usd);
        }
    }

    /// The text exposition, with the gauges read from `app` now.
    pub fn render(&self, app: &App) -> Result<String, std::fmt::Error> {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let (running, waiting) = app.runs.load();
        self.runs.get_or_create(&StateLabel { state: "running" }).set(running as i64);
        self.runs.get_or_create(&StateLabel { state: "queued" }).set(waiting as i64);
        self.queue.set(waiting as i64);
        // Only the providers of the config in force: one a reload removed goes.
        self.breaker_open.clear();
        self.breaker_cooldown.clear();
        let gateway = app.gateway();
        for name in gateway.config().providers.keys() {
            let open_for = gateway.breaker(name).open_for();
            let label = ProviderLabel { provider: name.clone() };
            self.breaker_open.get_or_create(&label).set(i64::from(open_for.is_some()));
            self.breaker_cooldown.get_or_create(&label).set(open_for.map_or(0.0, |d| d.as_secs_f64()));
        }
        let bytes = gateway.journal().bytes_on_disk();
        self.journal_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// `GET /metrics`: the admin check is made by [`crate::serve::keys`].
pub(super) async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    let text = app.metrics.render(&app).map_err(|e| {
        ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("metrics: {e}"))
    })?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}
