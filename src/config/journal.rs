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
    /// A PostgreSQL database instead of the file (`postgres://user@host:port/db`),
    /// which several instances share. Its password never goes here: it is
    /// read from the environment variable `password_env` names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The environment variable holding the database's password, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Connections to the database at most, per process (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
    /// Where the videos of unfinished runs given as bytes (uploads) are kept
    /// with a PostgreSQL journal: a folder every instance reads and writes
    /// (default: `videos` in the platform data dir). A file journal keeps
    /// them beside its file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub videos_dir: Option<PathBuf>,
    /// Days finished work is kept: older units and finished runs are
    /// dropped by `vidgate journal prune` and by `vidgate serve` (hourly).
    /// Absent: kept forever. Spend rows stay while a budget reads them, and
    /// an unfinished run keeps its units whatever their age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<i64>,
}

/// The most connections `pool_size` allows.
pub const MAX_POOL_SIZE: u32 = 64;

/// The longest `keep_days` (a hundred years).
pub const MAX_KEEP_DAYS: i64 = 36_500;

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            url: None,
            password_env: None,
            pool_size: None,
            videos_dir: None,
            keep_days: None,
        }
    }
}

impl JournalConfig {
    /// Open the journal this names: the PostgreSQL database at `url`, else
    /// the file at `path` (or the default file).
    ///
    /// # Errors
    /// A journal that cannot be opened or reached; a password variable that
    /// is named but not set.
    pub fn open(&self) -> Result<crate::journal::Journal, crate::journal::JournalError> {
        use crate::journal::{self, Journal};
        let Some(url) = &self.url else {
            return Journal::open(&self.path.clone().unwrap_or_else(journal::default_path));
        };
        let password = match &self.password_env {
            Some(var) => Some(std::env::var(var).map_err(|_| journal::JournalError {
                path: crate::secret::redact_urls(url),
                message: format!("journal.password_env names {var}, which is not set"),
            })?),
            None => None,
        };
        let videos = self.videos_dir.clone().unwrap_or_else(|| {
            journal::default_path().parent().map_or_else(|| PathBuf::from("videos"), |d| d.join("videos"))
        });
        Journal::connect_with(
            url,
            password.as_deref(),
            Some(&videos),
            self.pool_size.unwrap_or(journal::DEFAULT_POOL_SIZE),
        )
    }

    /// # Errors
    /// An empty `path`, or `keep_days` outside 1..=36500, named by its key
    /// within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        // An empty file name would open a throw-away database: no daily cap
        // across runs, nothing to resume.
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(Invalid::new("path", "is empty: name the journal file, or leave the key out for the default"));
        }
        if let Some(url) = &self.url {
            if self.path.is_some() {
                return Err(Invalid::new(
                    "url",
                    "and journal.path are both set: a journal is a file or a database, give one",
                ));
            }
            let Some(rest) = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")) else {
                return Err(Invalid::new("url", "is not a PostgreSQL URL: give postgres://user@host:port/database"));
            };
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            if authority.rsplit_once('@').is_some_and(|(user, _)| user.contains(':')) {
                return Err(Invalid::new(
                    "url",
                    "holds a password: keep it out of the config, in the environment variable named by journal.password_env",
                ));
            }
            crate::journal::wants_tls(url).map_err(|why| Invalid::new("url", why))?;
        }
        if let Some(size) = self.pool_size.filter(|s| !(1..=MAX_POOL_SIZE).contains(s)) {
            return Err(Invalid::new("pool_size", format!("{size} is outside 1..={MAX_POOL_SIZE} connections")));
        }
        if self.videos_dir.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(Invalid::new("videos_dir", "is empty: name a folder, or leave the key out for the default"));
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
