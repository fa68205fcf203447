//! `vidgate models list` and `vidgate models pull NAME`.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;

use vidgate::config::Config;
use vidgate::models;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// The models vidgate can fetch, and which are installed.
    List,
    /// Download a model and its vision projector into the cache (resumes an interrupted download).
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
                writeln!(out, "{name:32} {state:10} {size:>8}  {}{default}", model.description)?;
            }
            writeln!(out, "\ncache: {}", cache.display())?;
        }
        ModelsCommand::Pull { name } => {
            let model = catalogue.get(&name).with_context(|| {
                format!("no model called `{name}`; known: {}", catalogue.keys().cloned().collect::<Vec<_>>().join(", "))
            })?;
            let paths = models::pull(&name, model, &config.models.base_url, &cache).await?;
            for path in paths {
                writeln!(out, "{}", path.display())?;
            }
        }
    }
    Ok(())
}
