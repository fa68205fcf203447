//! `vidgate models list` and `vidgate models pull NAME`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use vidgate::config::Config;
use vidgate::models::{self, CatalogueModel, ModelError, PullProgress};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// The models vidgate can fetch, and which are installed.
    List,
    /// Download a model's files (a GGUF and its vision projector, or a Whisper directory) into the cache (resumes an interrupted download).
    Pull {
        /// A name from `vidgate models list`.
        name: String,
    },
}

pub async fn run(command: ModelsCommand, config: &Config) -> anyhow::Result<()> {
    let cache = models::cache_dir(config);
    let catalogue = models::catalogue();
    let mut out = std::io::stdout().lock();
    match command {
        ModelsCommand::List => {
            for (name, model) in &catalogue {
                let state = if models::installed(&cache, name, model).is_some() { "installed" } else { "-" };
                let default = if model.default { " (default)" } else { "" };
                let size = model
                    .files
                    .iter()
                    .map(|f| f.size)
                    .sum::<Option<u64>>()
                    .map_or_else(|| "?".to_string(), super::gigabytes);
                let kind = model.kind.as_str();
                writeln!(out, "{name:32} {kind:7} {state:10} {size:>8}  {}{default}", model.description)?;
            }
            writeln!(out, "\ncache: {}", cache.display())?;
        }
        ModelsCommand::Pull { name } => {
            let model = catalogue.get(&name).with_context(|| {
                format!("no model called `{name}`; known: {}", catalogue.keys().cloned().collect::<Vec<_>>().join(", "))
            })?;
            let paths = pull_drawing(&name, model, config, &cache).await?;
            for path in paths {
                writeln!(out, "{}", path.display())?;
            }
        }
    }
    Ok(())
}

/// Download `model` into `cache`, drawing each file's progress on stderr
/// (shown only on a terminal).
pub(super) async fn pull_drawing(
    name: &str,
    model: &CatalogueModel,
    config: &Config,
    cache: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let drawer = tokio::spawn(async move {
        let mut bar: Option<ProgressBar> = None;
        while let Some(event) = rx.recv().await {
            match event {
                PullProgress::Started { file, bytes, total } => {
                    let new = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                    if let Ok(style) =
                        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                    {
                        new.set_style(style);
                    }
                    new.set_message(file);
                    new.set_position(bytes);
                    bar = Some(new);
                }
                PullProgress::Received { bytes, .. } => bar.iter().for_each(|b| b.set_position(bytes)),
                PullProgress::Verified { .. } => bar.take().iter().for_each(ProgressBar::finish_and_clear),
            }
        }
        // A download that failed midway leaves its bar: clear it before the error is printed.
        bar.iter().for_each(ProgressBar::finish_and_clear);
    });
    let result = models::pull_with_progress(name, model, &config.models.base_url, cache, Some(&tx)).await;
    drop(tx);
    let _ = drawer.await;
    result
}
