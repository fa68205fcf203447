//! `[journal]`: where finished work is kept (see [`crate::journal`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::Invalid;

/// The journal of finished work (see [`crate::journal`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Keep a journal; without one, nothing is reused across runs.
    pub enabled: bool,
    /// The journal file; `journal.sqlite3` in the platform data dir when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Days finished work is kept: older units and finished runs are
    /// dropped by `vidgate journal prune` and by `vidgate serve` (hourly).
    /// Absent: kept forever. Spend rows stay while a budget reads them, and
    /// an unfinished run keeps its units whatever their age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<i64>,
}

/// The longest `keep_days` (a hundred years).
pub const MAX_KEEP_DAYS: i64 = 36_500;

impl Default for JournalConfig {
    fn default() -> Self {
        Self { enabled: true, path: None, keep_days: None }
    }
}

impl JournalConfig {
    /// # Errors
    /// An empty `path`, or `keep_days` outside 1..=36500, named by its key
    /// within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        // An empty file name would open a throw-away database: no daily cap
        // across runs, nothing to resume.
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(Invalid::new("path", "is empty: name the journal file, or leave the key out for the default"));
        }
        if let Some(days) = self.keep_days.filter(|d| !(1..=MAX_KEEP_DAYS).contains(d)) {
            return Err(Invalid::new(
                "keep_days",
                format!("{days} is outside 1..={MAX_KEEP_DAYS} days: leave the key out to keep everything"),
            ));
        }
        Ok(())
    }
}
