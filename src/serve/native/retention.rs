//! Retention: uploads older than `server.keep_uploads_hours` are removed,
//! and finished runs' reports older than `server.keep_reports_days` are
//! forgotten (by the service and in the journal). A video an unfinished run
//! reads stays, and so does an unfinished run.
//!
//! [`sweep`] does one pass at a given time; [`spawn`] runs it now and then.
//!
//! The journal itself is pruned when `journal.keep_days` is set: at start,
//! then hourly ([`prune_journal`], [`spawn_pruning`]; what goes and what
//! stays is in [`crate::journal::Journal::prune`]).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::gateway::GatewayError;
use crate::schema::VideoSource;
use crate::serve::App;

/// What one pass removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Swept {
    /// Files removed from the uploads dir.
    pub uploads: Vec<PathBuf>,
    /// Runs whose report was forgotten.
    pub runs: Vec<i64>,
}

/// One pass as at `now`: remove each upload last written or used more than
/// `keep_uploads_hours` before it, and forget each run finished more than
/// `keep_reports_days` before it.
///
/// # Errors
/// The journal cannot be written; the uploads are swept all the same.
pub async fn sweep(app: &App, now: SystemTime) -> Result<Swept, GatewayError> {
    let mut swept = Swept::default();
    let dir = app.server.uploads_dir();
    let uploads_before = now.checked_sub(Duration::from_secs_f64(app.server.keep_uploads_hours * 3600.0));
    // Videos that runs not over yet will read (or read now): this
    // instance's, and those of every process or instance on the journal.
    let mut in_use: Vec<PathBuf> = app
        .runs
        .list()
        .iter()
        .filter(|r| !r.state().is_over())
        .filter_map(|r| match &r.request.source {
            VideoSource::Path { path } => Some(path.clone()),
            _ => None,
        })
        .collect();
    in_use.extend(app.gateway().on_journal(|j| j.unfinished_videos()).await?);
    if let (Some(before), Ok(entries)) = (uploads_before, std::fs::read_dir(&dir)) {
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let old = meta.is_file() && meta.modified().is_ok_and(|m| m < before);
            if old && !in_use.contains(&path) {
                match std::fs::remove_file(&path) {
                    Ok(()) => swept.uploads.push(path),
                    Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot remove an old upload"),
                }
            }
        }
    }
    let reports_before = now
        .checked_sub(Duration::from_secs_f64(app.server.keep_reports_days * 86_400.0))
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let forgotten = app.gateway().on_journal(move |j| j.forget_outcomes(reports_before)).await?;
    for id in forgotten {
        if app.runs.forget_finished(id) {
            swept.runs.push(id);
        }
    }
    if !swept.uploads.is_empty() || !swept.runs.is_empty() {
        tracing::info!(
            uploads = swept.uploads.len(),
            reports = swept.runs.len(),
            "retention: removed old uploads and reports"
        );
    }
    Ok(swept)
}

/// How often [`spawn`] sweeps: hourly, or more often when a retention is
/// shorter than two hours (half of it), never more than every 10 s.
pub fn interval(app: &App) -> Duration {
    let shortest = (app.server.keep_uploads_hours * 3600.0).min(app.server.keep_reports_days * 86_400.0);
    Duration::from_secs_f64((shortest / 2.0).clamp(10.0, 3600.0))
}

/// Sweep now, then every [`interval`], until the runtime ends. Call it
/// within a Tokio runtime.
pub fn spawn(app: App) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval(&app));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sweep(&app, SystemTime::now()).await {
                tracing::warn!(error = %e, "retention: cannot forget old reports in the journal");
            }
        }
    })
}

/// How often [`spawn_pruning`] prunes the journal.
pub const JOURNAL_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Prune the journal of what is older than `journal.keep_days`, counting
/// the rows dropped in the metrics. `None` when no retention is set.
///
/// # Errors
/// The journal cannot be read or written.
pub async fn prune_journal(app: &App) -> Result<Option<crate::journal::Pruned>, GatewayError> {
    let Some(days) = app.gateway().config().journal.keep_days else { return Ok(None) };
    let age = Duration::from_secs(u64::try_from(days).unwrap_or(0).saturating_mul(86_400));
    let pruned = app.gateway().on_journal(move |j| j.prune(age)).await?;
    app.metrics.journal_pruned(&pruned);
    Ok(Some(pruned))
}

/// Prune the journal now, then every [`JOURNAL_PRUNE_INTERVAL`], until the
/// runtime ends, whenever `journal.keep_days` is set in the config in force
/// (a reload may set or change it). Call it within a Tokio runtime. The
/// first prune of a journal made before incremental vacuum rewrites the file
/// once (see [`crate::journal::Journal::prune`]), while the journal's other
/// work waits.
pub fn spawn_pruning(app: App) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(JOURNAL_PRUNE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = prune_journal(&app).await {
                tracing::warn!(error = %e, "retention: cannot prune the journal");
            }
        }
    })
}
