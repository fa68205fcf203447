//! `vidgate transcribe VIDEO`: the speech track alone, what is said and
//! when, as text, SubRip, WebVTT or the report's JSON.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use vidgate::config::Config;
use vidgate::gateway::Gateway;
use vidgate::render;
use vidgate::schema::{Event, Task, VideoRequest};

/// How to print the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TranscriptFormat {
    Text,
    Json,
    Srt,
    Vtt,
}

#[derive(Debug, Args)]
pub struct TranscribeArgs {
    /// The video: a file, or an http(s) URL that vidgate downloads itself.
    pub video: PathBuf,
    /// Use this speech provider (a profile name) instead of speech.chain.
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Spend at most this much, in US dollars (never more than
    /// budget.max_usd_per_request).
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// The speech's language, ISO-639-1 (`en`); detected when absent.
    #[arg(long, value_name = "CODE")]
    pub language: Option<String>,
    /// How to print the transcript.
    #[arg(long, value_enum, default_value_t = TranscriptFormat::Text)]
    pub format: TranscriptFormat,
}

impl TranscribeArgs {
    /// What the flags set in config.
    pub fn config_overrides(&self) -> Vec<(String, String)> {
        let mut overrides = Vec::new();
        if let Some(p) = &self.provider {
            overrides.push(("speech.chain".to_string(), format!("[{}]", toml_string(p))));
        }
        if let Some(l) = &self.language {
            overrides.push(("speech.language".to_string(), toml_string(l)));
        }
        overrides
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub async fn run(args: TranscribeArgs, config: Config) -> anyhow::Result<()> {
    let mut request = VideoRequest::new(&args.video, Task::Describe);
    request.source = super::task::source_of(&args.video);
    if let Some(usd) = args.max_cost {
        anyhow::ensure!(usd.is_finite() && usd >= 0.0, "--max-cost {usd} is not an amount of dollars ≥ 0");
        request.constraints.max_cost_usd = Some(usd);
    }
    let gateway = Gateway::from_config(config)?;
    let report = gateway.transcribe(&request).await?;
    let cues: Vec<Event> = report
        .speech
        .iter()
        .map(|o| Event { start_ms: o.range.start_ms, end_ms: o.range.end_ms, text: o.text.clone() })
        .collect();
    let mut out = std::io::stdout().lock();
    match args.format {
        TranscriptFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        TranscriptFormat::Srt => out.write_all(render::srt(&cues).as_bytes())?,
        TranscriptFormat::Vtt => out.write_all(render::vtt(&cues).as_bytes())?,
        TranscriptFormat::Text => out.write_all(render::text(&cues).as_bytes())?,
    }
    out.flush().context("writing to stdout")?;
    if args.format != TranscriptFormat::Json {
        for w in &report.warnings {
            eprintln!("vidgate: warning: {w}");
        }
        eprintln!(
            "vidgate: {} segments of speech, ${:.4} spent, {} reused from the journal",
            report.speech.len(),
            report.usage.cost_usd,
            report.reused_units
        );
        if cues.is_empty() {
            eprintln!("vidgate: no speech was heard in the video");
        }
    }
    Ok(())
}
