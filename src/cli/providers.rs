//! `vidgate providers`: every profile, whether it can be used here (its key
//! set, its model downloaded) and what its model costs. Keys are never read
//! out: only the name of their variable and whether it is set.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use vidgate::config::{Config, Price, Protocol, ProviderProfile};
use vidgate::models;
use vidgate::secret::Secret;

#[derive(Debug, clap::Args)]
pub struct ProvidersArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One profile as listed.
#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    protocol: Option<&'static str>,
    model: Option<String>,
    /// Its place in `router.chain`, from 1.
    chain_position: Option<usize>,
    ready: bool,
    /// What it still needs, or what makes it ready.
    status: String,
    /// The variable that holds its key (or token), never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_present: Option<bool>,
    /// A local model still to download, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    download_bytes: Option<u64>,
    /// US dollars per million tokens, for `model`.
    price: Option<Price>,
    /// US dollars per minute of audio, for a speech model.
    #[serde(skip_serializing_if = "Option::is_none")]
    usd_per_audio_minute: Option<f64>,
    /// What the profile is, in its own words.
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// The day its prices and limits were checked, and the page they were checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    prices_checked: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prices_source: Option<String>,
}

pub fn run(args: ProvidersArgs, config: &Config) -> anyhow::Result<()> {
    let listed: Vec<Listed> = config.providers.iter().map(|(name, p)| listed(name, p, config)).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &listed)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:<16} {:<12} {:<42} {:<5} {:<14} status",
            "profile", "protocol", "model", "ready", "$/Mtok in/out"
        )?;
        for l in &listed {
            let name = match l.chain_position {
                Some(n) => format!("{} ({n})", l.name),
                None => l.name.clone(),
            };
            let price = match l.price {
                Some(p) if p.input_per_mtok == 0.0 && p.output_per_mtok == 0.0 => "free".to_string(),
                Some(p) => format!("{} / {}", p.input_per_mtok, p.output_per_mtok),
                None => match l.usd_per_audio_minute {
                    Some(0.0) => "free".to_string(),
                    Some(m) => format!("{m}/audio min"),
                    None => "-".to_string(),
                },
            };
            writeln!(
                out,
                "{name:<16} {:<12} {:<42} {:<5} {price:<14} {}",
                l.protocol.unwrap_or("-"),
                l.model.as_deref().unwrap_or("-"),
                if l.ready { "yes" } else { "no" },
                l.status
            )?;
            let about = [l.description.clone(), l.prices_checked.as_ref().map(|d| format!("prices of {d}"))];
            let about: Vec<String> = about.into_iter().flatten().collect();
            if !about.is_empty() {
                writeln!(out, "{:<16} {}", "", about.join(" · "))?;
            }
        }
        writeln!(out, "\n(N): the place in router.chain; --provider NAME uses any other")
            .context("writing to stdout")?;
    }
    Ok(())
}

impl Listed {
    /// Whether the variable `var` holds a key, noted (never the key itself).
    fn has_key(&mut self, var: &str) -> bool {
        let present = Secret::from_env(var).is_some();
        self.key_env = Some(var.to_string());
        self.key_present = Some(present);
        present
    }
}

fn listed(name: &str, p: &ProviderProfile, config: &Config) -> Listed {
    let mut l = Listed {
        name: name.to_string(),
        protocol: p.protocol.as_ref().map(Protocol::as_str),
        model: p.model.clone(),
        chain_position: config.router.chain.iter().position(|n| n == name).map(|i| i + 1),
        ready: false,
        status: String::new(),
        key_env: None,
        key_present: None,
        download_bytes: None,
        price: p.model.as_deref().and_then(|m| p.price_for(m)),
        usd_per_audio_minute: p.model.as_deref().and_then(|m| p.model_profile(m)?.audio_usd_per_minute),
        description: p.description.clone(),
        prices_checked: p.prices_checked.clone(),
        prices_source: p.prices_source.clone(),
    };
    let status = match p.protocol {
        None => Err(format!("providers.{name}.protocol is not set")),
        Some(Protocol::LlamaLocal) => local_status(name, p, config, &mut l),
        Some(Protocol::WhisperLocal) => whisper_status(name, p, config),
        Some(_) => remote_status(name, p, &mut l),
    };
    (l.ready, l.status) = match status {
        Ok(s) => (true, s),
        Err(s) => (false, s),
    };
    l
}

fn local_status(name: &str, p: &ProviderProfile, config: &Config, l: &mut Listed) -> Result<String, String> {
    if !cfg!(feature = "local") {
        return Err("this vidgate was built without the local backend (cargo feature `local`)".into());
    }
    if let Some(path) = &p.model_path {
        return if path.is_file() {
            Ok(format!("model file {}", path.display()))
        } else {
            Err(format!("providers.{name}.model_path {} is not a file", path.display()))
        };
    }
    let (model, _) = models::catalogue_model_of(name, p)?.ok_or("no local model is configured")?;
    l.model = Some(model.clone());
    match models::pending_download(name, p, config) {
        Some(pending) => {
            l.download_bytes = Some(pending.bytes);
            Err(format!(
                "needs a download of {}: `vidgate models pull {model}` (or --yes on first use)",
                super::gigabytes(pending.bytes)
            ))
        }
        None => Ok(format!("model downloaded into {}", models::cache_dir(config).display())),
    }
}

fn whisper_status(name: &str, p: &ProviderProfile, config: &Config) -> Result<String, String> {
    if !cfg!(feature = "whisper-engine") {
        return Err(
            "this vidgate was built without Whisper in process (cargo feature `whisper`, or `whisper-ruy` without MKL)"
                .into(),
        );
    }
    let dir = models::speech_model_dir(name, p, config)?;
    match vidgate::provider::whisper_local::missing_files(&dir) {
        Some(missing) => Err(missing),
        None => Ok(format!("Whisper model in {}", dir.display())),
    }
}

fn remote_status(name: &str, p: &ProviderProfile, l: &mut Listed) -> Result<String, String> {
    let base_url = p.base_url.as_deref().ok_or_else(|| format!("providers.{name}.base_url is not set"))?;
    let model = p.model.as_deref().ok_or_else(|| format!("providers.{name}.model is not set"))?;
    if p.protocol == Some(Protocol::OpenaiTranscription) {
        if l.usd_per_audio_minute.is_none() {
            return Err(format!(
                "no price for model `{model}`: set providers.{name}.models.\"{model}\".audio_usd_per_minute"
            ));
        }
    } else if l.price.is_none() {
        return Err(format!("no price for model `{model}`: set [providers.{name}.price]"));
    }
    if let Some(var) = &p.api_key_env {
        return if l.has_key(var) { Ok(format!("key in {var}")) } else { Err(format!("set {var} to your key")) };
    }
    if p.token_env.is_none() && p.token_command.is_none() {
        return Ok(format!("no key; a server at {base_url}"));
    }
    // A bearer token (Vertex AI): from its variable, else from its command.
    if p.project.is_none() {
        return Err(format!("set providers.{name}.project"));
    }
    if let Some(var) = p.token_env.as_deref().filter(|var| l.has_key(var)) {
        return Ok(format!("token in {var}"));
    }
    match p.token_command.as_deref().and_then(<[String]>::first) {
        Some(program) if on_path(program) => Ok(format!("token from `{program}` when used")),
        Some(program) => Err(format!("set {} or install `{program}`", p.token_env.as_deref().unwrap_or("a token"))),
        None => Err(format!("set {}", p.token_env.as_deref().unwrap_or("a token"))),
    }
}

/// Whether `program` names a file, or one in a directory of `$PATH`.
fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}
