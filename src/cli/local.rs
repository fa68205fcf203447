//! Building the local backend for a command: find the model files, from the
//! profile or the catalogue, offering to download them on first use.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};

use vidgate::config::{Config, ProviderProfile};
use vidgate::models;

/// The profile with `model_path` and `mmproj_path` filled in from the catalogue.
pub(super) async fn with_model_files(
    name: &str,
    profile: &ProviderProfile,
    config: &Config,
    yes: bool,
) -> anyhow::Result<ProviderProfile> {
    let mut profile = profile.clone();
    if profile.model_path.is_some() {
        return Ok(profile);
    }
    let model = profile.model.clone().or_else(models::default_model).context("no local model is configured")?;
    let catalogue = models::catalogue();
    let Some(entry) = catalogue.get(&model) else {
        bail!("providers.{name}.model `{model}` is not in the catalogue (`vidgate models list`); or set providers.{name}.model_path");
    };
    let cache = config.models.cache_dir.clone().unwrap_or_else(models::default_cache);
    if models::installed(&cache, &model, entry).is_none() {
        if !(yes
            || ask(&format!(
                "The local model {model} is not downloaded yet. Download it into {} now?",
                cache.display()
            ))?)
        {
            bail!("no local model yet: `vidgate models pull {model}` fetches it (or run again with --yes)");
        }
        models::pull(&model, entry, &config.models.base_url, &cache).await?;
    }
    let (model_path, mmproj_path) =
        models::installed(&cache, &model, entry).context("the download did not complete")?;
    profile.model_path = Some(model_path);
    profile.mmproj_path = mmproj_path;
    Ok(profile)
}

/// Ask on the terminal; `false` when there is none to ask on.
fn ask(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
