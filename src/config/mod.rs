//! Configuration: one section per concern, each with its own `validate()`,
//! and the provider profiles; [`Config::load`] merges the layers and checks each.
//!
//! Layers, lowest first: built-in defaults < the profiles in `providers/`
//! < the user's file < environment (`VIDGATE__SECTION__KEY`) < command-line flags.

mod budget;
mod check;
mod fetch;
mod journal;
mod limits;
mod load;
mod merge;
mod models;
mod profile;
mod retry;
mod router;
mod sampling;
mod server;
mod speech;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use budget::{BudgetConfig, Downgrade};
pub use check::{ConfigError, Invalid};
pub use fetch::FetchConfig;
pub use journal::{JournalConfig, MAX_KEEP_DAYS};
pub use limits::MediaLimits;
pub use load::{check_file, platform_config_path, ConfigSources};
pub use merge::MergeConfig;
pub use models::ModelsConfig;
pub use profile::{
    AuthScheme, ImageDetail, ImageTokenRule, ModelProfile, OutputCapField, Price, Protocol, ProviderProfile,
    RateLimits, VideoPart, VideoSampling, DEFAULT_INLINE_BYTES, DEFAULT_TOKEN_LIFETIME_S, INLINE_REQUEST_LIMIT,
    MAX_INLINE_BYTES, MAX_TOKEN_LIFETIME_S,
};
pub use retry::RetryConfig;
pub use router::{RouteAlias, RouterConfig, TASKS};
pub use sampling::SamplingConfig;
pub use server::ServerConfig;
pub use speech::{SpeechConfig, SpeechTrack, VadSettings};

/// The profiles shipped in `providers/` as (name, TOML text), compiled in:
/// every `*.toml` there but the model catalogue, by name (see `build.rs`),
/// so that a new vendor is a new file and nothing more.
pub const SHIPPED_PROFILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/shipped_profiles.rs"));

/// The whole configuration, after merging every layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub router: RouterConfig,
    pub budget: BudgetConfig,
    pub sampling: SamplingConfig,
    pub limits: MediaLimits,
    pub retry: RetryConfig,
    pub models: ModelsConfig,
    pub journal: JournalConfig,
    pub merge: MergeConfig,
    pub fetch: FetchConfig,
    pub server: ServerConfig,
    pub speech: SpeechConfig,
    /// Read prompt templates from here instead of the built-in ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompts_dir: Option<PathBuf>,
    pub providers: BTreeMap<String, ProviderProfile>,
}

impl Config {
    /// Check every section, and every provider profile, on its own.
    ///
    /// # Errors
    /// The first value out of its range, with its whole key (`sampling.fps`,
    /// `providers.NAME.top_p`).
    pub fn validate(&self) -> Result<(), Invalid> {
        self.journal.validate().map_err(|e| e.within("journal"))?;
        self.sampling.validate().map_err(|e| e.within("sampling"))?;
        self.budget.validate().map_err(|e| e.within("budget"))?;
        self.fetch.validate().map_err(|e| e.within("fetch"))?;
        self.server.validate().map_err(|e| e.within("server"))?;
        self.limits.validate().map_err(|e| e.within("limits"))?;
        self.retry.validate().map_err(|e| e.within("retry"))?;
        self.merge.validate().map_err(|e| e.within("merge"))?;
        self.router.validate().map_err(|e| e.within("router"))?;
        self.models.validate().map_err(|e| e.within("models"))?;
        self.speech.validate().map_err(|e| e.within("speech"))?;
        for (name, profile) in &self.providers {
            profile.validate().map_err(|e| e.within(&format!("providers.{name}")))?;
        }
        Ok(())
    }

    /// What only the merged whole can tell: every chain names a profile
    /// that exists and says which protocol it speaks.
    fn check_references(&self) -> Result<(), Invalid> {
        for (key, chain) in self.router.chains() {
            for name in chain {
                let Some(profile) = self.providers.get(name) else {
                    let known: Vec<_> = self.providers.keys().map(String::as_str).collect();
                    return Err(Invalid::new(
                        format!("router.{key}"),
                        format!("no provider called `{name}`; known: {}", known.join(", ")),
                    ));
                };
                if profile.protocol.is_some_and(|p| p.is_speech()) {
                    return Err(Invalid::new(
                        format!("router.{key}"),
                        format!("`{name}` is a speech provider: name it in speech.chain"),
                    ));
                }
                if profile.protocol.is_none() {
                    let protocols: Vec<String> = Protocol::ALL.iter().map(|p| format!("\"{}\"", p.as_str())).collect();
                    return Err(Invalid::new(
                        format!("providers.{name}.protocol"),
                        format!("missing: one of {}", protocols.join(", ")),
                    ));
                }
            }
        }
        for name in &self.speech.chain {
            let protocol = self.providers.get(name).and_then(|p| p.protocol);
            if !protocol.is_some_and(|p| p.is_speech()) {
                let speech: Vec<_> = self
                    .providers
                    .iter()
                    .filter(|(_, p)| p.protocol.is_some_and(|p| p.is_speech()))
                    .map(|(n, _)| n.as_str())
                    .collect();
                return Err(Invalid::new(
                    "speech.chain",
                    format!(
                        "`{name}` is not a speech provider (protocol \"openai_transcription\" or \"whisper_local\"); speech providers: {}",
                        speech.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Complete what each profile says of the models it names (its `model`
    /// and its `models` entries) from a shipped profile of the same protocol
    /// that lists the model: its price, limits and token rules. The profile's
    /// own values win, and a model no shipped profile lists is left as it is.
    ///
    /// Where several shipped profiles list a model, the one on the same
    /// `base_url` is taken, then the one named after the protocol (`gemini`,
    /// `openai`, `local`), then the first by name. Profile-wide prices (the
    /// free local servers') are never lent: only a model's own entry is.
    pub fn fill_known_models(&mut self) {
        let shipped: Vec<(String, ProviderProfile)> = SHIPPED_PROFILES
            .iter()
            .filter_map(|(name, _)| Some((name.to_string(), self.providers.get(*name)?.clone())))
            .collect();
        for (name, profile) in &mut self.providers {
            let Some(protocol) = profile.protocol else { continue };
            let mut sources: Vec<&(String, ProviderProfile)> =
                shipped.iter().filter(|(n, p)| n != name && p.protocol == Some(protocol)).collect();
            // The in-process backend's profile is `local`; every other is named as its protocol.
            let namesake = match protocol {
                Protocol::LlamaLocal => "local",
                other => other.as_str(),
            };
            sources.sort_by_key(|(n, p)| (p.base_url.is_none() || p.base_url != profile.base_url, n != namesake));
            let named = profile.model.iter().chain(profile.models.keys()).cloned().collect::<Vec<_>>();
            for model in named {
                if let Some(known) = sources.iter().find_map(|(_, p)| p.models.get(&model)) {
                    profile.models.entry(model).or_default().fill_from(known);
                }
            }
        }
    }

    /// The profile called `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderProfile> {
        self.providers.get(name)
    }
}

#[cfg(test)]
mod tests;
