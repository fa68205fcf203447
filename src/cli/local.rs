//! Building the local backend for a command: find the model files, from the
//! profile or the catalogue, offering to download them on first use.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};

use vidgate::config::{Config, Protocol, ProviderProfile};
use vidgate::models;

/// The profile with `model_path` and `mmproj_path` filled in from the catalogue.
pub(super) async fn with_model_files(
    name: &str,
    profile: &ProviderProfile,
    config: &Config,
    yes: bool,
) -> anyhow::Result<ProviderProfile> {
    let Some((model, entry)) = models::catalogue_model_of(name, profile).map_err(anyhow::Error::msg)? else {
        return Ok(profile.clone());
    };
    let cache = models::cache_dir(config);
    if models::installed(&cache, &model, &entry).is_none() {
        if !(yes
            || ask(&format!(
                "The local model {model} is not downloaded yet. Download it into {} now?",
                cache.display()
            ))?)
        {
            bail!("no local model yet: `vidgate models pull {model}` fetches it (or run again with --yes)");
        }
        super::models::pull_drawing(&model, &entry, config, &cache)
            .await
            .map_err(|e| anyhow::anyhow!(without_download(&model, e, config)))?;
    }
    let (model_path, mmproj_path) =
        models::installed(&cache, &model, &entry).context("the download did not complete")?;
    let mut profile = profile.clone();
    profile.model_path = Some(model_path);
    profile.mmproj_path = mmproj_path;
    Ok(profile)
}

/// A failed download, and where it is the hub's (or mirror's) fault, the two
/// ways to go on without it, in one line.
fn without_download(model: &str, e: models::ModelError, config: &Config) -> String {
    // A mirror's URL may carry a token.
    let base = vidgate::secret::redact_urls(&config.models.base_url);
    let what = match &e {
        models::ModelError::Unreachable { message, .. } => {
            format!("the model hub {base} cannot be reached ({})", vidgate::secret::redact_urls(message))
        }
        models::ModelError::Download { .. } => {
            format!("the model hub {base} did not serve it ({})", vidgate::secret::redact_urls(&e.to_string()))
        }
        _ => return format!("cannot download the local model {model}: {e}"),
    };
    format!(
        "cannot download the local model {model}: {what}. Two other ways: set models.base_url to a mirror that holds \
         the catalogue's files, or use a cloud profile: {}",
        cloud_suggestion(config)
    )
}

/// A cloud profile to name, with its key variable: one whose key is set if
/// any, else the Gemini profile, else the first that takes a key.
fn cloud_suggestion(config: &Config) -> String {
    let mut keyed: Vec<(&String, &String)> = config
        .providers
        .iter()
        .filter(|(_, p)| p.protocol.is_some_and(|p| p != Protocol::LlamaLocal))
        .filter_map(|(name, p)| Some((name, p.api_key_env.as_ref()?)))
        .collect();
    let is_set = |var: &str| vidgate::secret::Secret::from_env(var).is_some();
    keyed.sort_by_key(|(name, var)| (!is_set(var), name.as_str() != "gemini"));
    match keyed.first() {
        Some((name, var)) => {
            format!("set {var} to your key and add `--provider {name}` (`vidgate providers` lists the profiles)")
        }
        None => "add one to your config with its key variable (`vidgate providers` lists the profiles)".into(),
    }
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
