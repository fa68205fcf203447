//! `vidgate journal`: what the journal holds, and pruning it by age.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use super::keys::utc;

use vidgate::config::{Config, MAX_KEEP_DAYS};
use vidgate::journal::{self, Journal, JournalStats, Pruned};

#[derive(Debug, clap::Subcommand)]
pub enum JournalCommand {
    /// Rows per table, bytes on disk, the oldest entry and today's spend.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Drop units and finished runs older than some days, then give the
    /// space back to the disk. Today's spend and an unfinished run's units
    /// always stay. The first prune of a journal made before vidgate kept
    /// incremental vacuum rewrites the whole file (a full VACUUM): it can
    /// take a while on a large journal.
    Prune {
        /// Days to keep (fractions allowed; 0 drops all that may go).
        /// Default: journal.keep_days from the config.
        #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
        older_than: Option<f64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn open(config: &Config) -> anyhow::Result<Journal> {
    anyhow::ensure!(config.journal.enabled, "the journal is off (journal.enabled = false): there is none to read");
    if config.journal.url.is_some() {
        return Ok(config.journal.open()?);
    }
    let path = config.journal.path.clone().unwrap_or_else(journal::default_path);
    anyhow::ensure!(
        path.is_file(),
        "no journal at {}: nothing was journaled there yet (journal.path names another file?)",
        path.display()
    );
    Ok(Journal::open(&path)?)
}

/// The age to prune at: `--older-than`, else `journal.keep_days`.
fn cut(older_than: Option<f64>, config: &Config) -> anyhow::Result<Duration> {
    let days = match (older_than, config.journal.keep_days) {
        (Some(days), _) => {
            anyhow::ensure!(
                days.is_finite() && (0.0..=MAX_KEEP_DAYS as f64).contains(&days),
                "--older-than {days}: days must be a number in 0..={MAX_KEEP_DAYS}"
            );
            days
        }
        (None, Some(days)) => days as f64,
        (None, None) => anyhow::bail!(
            "how old is too old? give --older-than DAYS, or set journal.keep_days in the config; nothing was pruned"
        ),
    };
    Ok(Duration::from_secs_f64(days * 86_400.0))
}

pub fn run(command: JournalCommand, config: &Config) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        JournalCommand::Stats { json } => {
            let stats = open(config)?.stats()?;
            if json {
                serde_json::to_writer_pretty(&mut out, &stats)?;
                writeln!(out)?;
            } else {
                print_stats(&mut out, &stats)?;
            }
        }
        JournalCommand::Prune { older_than, json } => {
            let age = cut(older_than, config)?;
            let pruned = open(config)?.prune(age)?;
            if json {
                serde_json::to_writer_pretty(&mut out, &pruned)?;
                writeln!(out)?;
            } else {
                print_pruned(&mut out, &pruned)?;
            }
        }
    }
    Ok(())
}

fn print_stats(out: &mut impl Write, s: &JournalStats) -> anyhow::Result<()> {
    writeln!(out, "journal      {}", s.path)?;
    writeln!(out, "on disk      {} bytes ({} in free pages; auto-vacuum {})", s.bytes, s.free_bytes, s.auto_vacuum)?;
    for (table, n) in &s.rows {
        writeln!(out, "{:<12} {n} rows", table)?;
    }
    writeln!(out, "videos kept  {} ({} bytes)", s.videos, s.video_bytes)?;
    let oldest = s.oldest_unix_s.map_or("-".to_string(), utc);
    writeln!(out, "oldest entry {oldest}")?;
    writeln!(out, "spent today  ${:.4}", s.spent_today_usd).context("writing to stdout")?;
    Ok(())
}

fn print_pruned(out: &mut impl Write, p: &Pruned) -> anyhow::Result<()> {
    let rows: Vec<String> = p.rows.iter().map(|(t, n)| format!("{n} {t}")).collect();
    writeln!(out, "pruned       entries older than {}: {}", utc(p.before_unix_s), rows.join(", "))?;
    if p.units_kept_for_unfinished_runs > 0 {
        writeln!(out, "kept         {} older units of unfinished runs", p.units_kept_for_unfinished_runs)?;
    }
    if p.videos_removed > 0 {
        writeln!(out, "videos       {} kept copies removed", p.videos_removed)?;
    }
    writeln!(out, "vacuum       {}", p.vacuum)?;
    writeln!(out, "on disk      {} bytes, was {}", p.bytes_after, p.bytes_before).context("writing to stdout")?;
    Ok(())
}
