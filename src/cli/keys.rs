//! `vidgate keys`: the API keys of `vidgate serve`, kept in the journal.

use std::io::Write;

use anyhow::Context;

use vidgate::config::Config;
use vidgate::journal::{ApiKey, Journal, NewKey};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a key; it is printed once, on stdout, and kept only hashed.
    Create {
        /// A name for the key, unique among live keys (e.g. the application's).
        #[arg(long)]
        name: String,
        /// The key's own cap per UTC day in US dollars, beside the gateway's.
        #[arg(long, value_name = "USD")]
        max_usd_per_day: Option<f64>,
        /// Requests a minute the key may make.
        #[arg(long, value_name = "N")]
        requests_per_minute: Option<u32>,
        /// May manage keys and read /metrics.
        #[arg(long)]
        admin: bool,
    },
    /// List the keys (never the keys themselves), with today's spend.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key, by its id or its name: its next request is refused.
    Revoke {
        #[arg(value_name = "NAME|ID")]
        key: String,
    },
}

fn open(config: &Config) -> anyhow::Result<Journal> {
    anyhow::ensure!(
        config.journal.enabled,
        "API keys are kept in the journal, and it is off (journal.enabled = false): turn it on"
    );
    Ok(config.journal.open()?)
}

pub fn run(command: KeysCommand, config: &Config) -> anyhow::Result<()> {
    let journal = open(config)?;
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Create { name, max_usd_per_day, requests_per_minute, admin } => {
            let made = journal.create_key(&NewKey { name, admin, max_usd_per_day, requests_per_minute })?;
            writeln!(out, "{}", made.key.expose()).context("writing to stdout")?;
            eprintln!(
                "vidgate: key {} ({}) made; this is the only time it is shown: send it as `Authorization: Bearer <key>`",
                made.record.name, made.record.id
            );
        }
        KeysCommand::List { json } => {
            let keys = journal.list_keys()?;
            if json {
                serde_json::to_writer_pretty(&mut out, &keys)?;
                writeln!(out)?;
            } else {
                print_keys(&mut out, &keys)?;
            }
        }
        KeysCommand::Revoke { key } => {
            let revoked = journal.revoke_key(&key)?;
            writeln!(out, "revoked {} ({})", revoked.name, revoked.id).context("writing to stdout")?;
        }
    }
    Ok(())
}

fn print_keys(out: &mut impl Write, keys: &[ApiKey]) -> anyhow::Result<()> {
    if keys.is_empty() {
        writeln!(out, "no keys: make one with `vidgate keys create --name <name>`")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<17} {:<20} {:<6} {:>10} {:>8} {:>12} {:<29} REVOKED",
        "ID", "NAME", "ADMIN", "USD/DAY", "RPM", "SPENT TODAY", "CREATED"
    )?;
    for k in keys {
        let cap = k.max_usd_per_day.map_or("-".to_string(), |c| format!("{c:.2}"));
        let rpm = k.requests_per_minute.map_or("-".to_string(), |r| r.to_string());
        writeln!(
            out,
            "{:<17} {:<20} {:<6} {:>10} {:>8} {:>12} {:<29} {}",
            k.id,
            k.name,
            if k.admin { "yes" } else { "no" },
            cap,
            rpm,
            format!("{:.4}", k.spent_today_usd),
            utc(k.created_unix_s),
            k.revoked_unix_s.map_or("-".to_string(), utc)
        )?;
    }
    Ok(())
}

/// A Unix time as an HTTP date (`Sat, 05 Dec 2026 05:21:55 GMT`).
pub(super) fn utc(unix_s: i64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_s.max(0) as u64))
}
