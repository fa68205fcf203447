//! The one call: a video and a task in, a report out.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vidgate::gateway::Gateway;
//! use vidgate::schema::{Task, VideoRequest};
//!
//! let gateway = Gateway::from_config(vidgate::Config::builtin()?)?;
//! let report = gateway.run(VideoRequest::new("clip.mp4", Task::Describe)).await?;
//! println!("{}", report.story.unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! A run probes the video, plans the work within the budget (lowering fps,
//! frame size or model as configured, or refusing with the numbers before
//! anything is spent), gathers observations (the video itself to a
//! native-video provider, else sampled frames to the chain), and merges them
//! into the answer with text calls. Every finished unit is journaled before
//! the run moves on, so nothing is bought twice.

mod plan;
mod reload;
mod run;
mod speech;
mod video;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::config::{Config, ConfigError, Protocol, ProviderProfile};
use crate::journal::{Journal, JournalError};
use crate::media::MediaError;
use crate::policy::{self, Breaker, Budget, SharedLedger};
use crate::prompts::PromptError;
use crate::provider::anthropic::Anthropic;
use crate::provider::gemini::Gemini;
use crate::provider::openai_compat::OpenAiCompat;
use crate::provider::Provider;
use crate::router::RouteError;
use crate::schema::VideoReport;

pub use plan::{Candidate, Plan, Shape};
pub use reload::{Live, Reload};
pub use run::{Account, RunOptions};
pub use speech::SpeechPlan;

/// Why a run gave no report.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// A URL source could not be fetched (refused address, limits, HTTP).
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// The request itself cannot be served as asked.
    #[error("{0}")]
    Input(String),
    /// No provider of the chain could be built (missing key, model file ...).
    #[error("no provider of the chain can be used: {0}")]
    Setup(String),
    /// The plan costs more than the budget allows, even lowered as configured.
    /// Nothing was spent.
    #[error("{0}")]
    OverBudget(String),
    /// The journal, which holds the day's and the keys' spend, could not be
    /// reached to check the budget. Nothing was spent; worth trying again.
    #[error("{0}")]
    LedgerUnavailable(String),
    /// `kept` says what the journal holds of the work done.
    #[error("the request's deadline of {ms} ms passed; {kept}")]
    Deadline { ms: u64, kept: String },
    /// Every provider failed, or a budget ran out mid-run (`over_budget`:
    /// the providers are not at fault). What was done is in `partial` (and
    /// the journal).
    #[error("{summary}")]
    Failed { summary: String, partial: Box<VideoReport>, over_budget: bool },
}

/// Serves requests on the providers a config names. Cheap to share: one
/// gateway serves many requests at once, with shared rate limits and a
/// daily budget held in its journal.
pub struct Gateway {
    config: Config,
    journal: Arc<Journal>,
    /// Providers given by the caller, by profile name (tests, custom backends).
    injected: BTreeMap<String, Arc<dyn Provider>>,
    /// Each provider's shared layers (rate limits, timeout), by `name@model`.
    shared: Mutex<BTreeMap<String, Arc<dyn Provider>>>,
    /// What those layers' rate limits hold, by `name@model`: kept by a
    /// reload that rebuilds the layers on an unchanged profile.
    limits: Mutex<BTreeMap<String, Arc<policy::LimitState>>>,
    /// Each provider's circuit breaker, by profile name, shared by all runs.
    breakers: Mutex<BTreeMap<String, Arc<Breaker>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("chain", &self.config.router.chain)
            .field("journal", &self.journal.path())
            .finish_non_exhaustive()
    }
}

/// One provider of a chain, ready for a request.
#[derive(Clone)]
pub(crate) struct Member {
    pub name: String,
    pub profile: ProviderProfile,
    pub shared: Arc<dyn Provider>,
}

impl Member {
    /// The model's context in tokens: the profile's own `context_tokens`
    /// first (what a local model is loaded with), else the model catalogue's,
    /// else what the provider reports (a local model's default context).
    pub(crate) fn context_tokens(&self) -> Option<u64> {
        let model = self.profile.model.as_deref().unwrap_or_default();
        self.profile
            .context_tokens
            .map(u64::from)
            .or_else(|| self.profile.models.get(model).and_then(|m| m.context_tokens))
            .or_else(|| self.shared.capabilities().context_tokens)
    }
}

/// The size of merge calls: windows of observations and the output cap,
/// shrunk to fit the smallest context among the merge providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MergeLimits {
    pub window_chars: usize,
    pub max_output_tokens: u32,
}

/// Tokens a merge template and its framing take, beside the observations.
const MERGE_PROMPT_TOKENS: u64 = 700;

impl MergeLimits {
    pub(crate) fn for_members(config: &crate::config::MergeConfig, members: &[Member]) -> Self {
        let mut limits = Self { window_chars: config.window_chars, max_output_tokens: config.max_output_tokens };
        if let Some(context) = members.iter().filter_map(Member::context_tokens).min() {
            let output = u64::from(limits.max_output_tokens).min(context / 4).max(16);
            let room = context.saturating_sub(output + MERGE_PROMPT_TOKENS).max(64);
            // Three characters a token: observations are dense with times and numbers.
            limits.window_chars = limits.window_chars.min((room * 3) as usize).max(200);
            limits.max_output_tokens = output as u32;
        }
        limits
    }
}

impl Gateway {
    /// A gateway on `config`, with the journal it names (or the default file).
    ///
    /// # Errors
    /// When the journal cannot be opened.
    pub fn from_config(config: Config) -> Result<Self, GatewayError> {
        let journal = if config.journal.enabled { config.journal.open()? } else { Journal::in_memory()? };
        Ok(Self::with_journal(config, journal))
    }

    /// A gateway on `config` that keeps its journal in `journal`.
    pub fn with_journal(config: Config, journal: Journal) -> Self {
        Self {
            config,
            journal: Arc::new(journal),
            injected: BTreeMap::new(),
            shared: Mutex::default(),
            limits: Mutex::default(),
            breakers: Mutex::default(),
        }
    }

    /// Serve the profile `name` with `provider` instead of building it from
    /// its protocol (the profile must still exist in config, for its limits).
    pub fn with_provider(mut self, name: impl Into<String>, provider: Arc<dyn Provider>) -> Self {
        self.injected.insert(name.into(), provider);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// What the journal keeps of a run that stopped early, when `unsaved`
    /// of its finished units could not be written there.
    pub fn kept_note(&self, unsaved: u32) -> String {
        let path = self.journal.path();
        if !self.journal.is_durable() {
            "the journal is off (journal.enabled = false): nothing done is kept, and a rerun pays for it again".into()
        } else if unsaved == 0 {
            format!("finished units are kept in the journal {path}, and a rerun reuses them")
        } else {
            format!(
                "{unsaved} finished units could not be written to the journal {path}, and a rerun pays for them again; the others are kept there"
            )
        }
    }

    /// `f` on the journal, off the async runtime's threads: SQLite may
    /// fsync, or wait for another process's lock.
    pub(crate) async fn on_journal<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let journal = self.journal.clone();
        let path = journal.path().to_string();
        tokio::task::spawn_blocking(move || f(&journal))
            .await
            .unwrap_or_else(|e| Err(JournalError { path, message: e.to_string() }))
    }

    /// Build (or reuse) the providers named in `names`; a provider that
    /// cannot be built is left out with its reason.
    pub(crate) fn members(&self, names: &[String]) -> (Vec<Member>, Vec<String>) {
        let (members, skipped, _) = self.gather(names, false);
        (members, skipped)
    }

    /// As [`Self::members`]; and for a plan (`planning`), a local model that
    /// is not downloaded yet is a member all the same, as it will be once
    /// downloaded, with the bytes to fetch by provider name.
    pub(crate) fn gather(&self, names: &[String], planning: bool) -> (Vec<Member>, Vec<String>, BTreeMap<String, u64>) {
        let mut members = Vec::new();
        let mut skipped = Vec::new();
        let mut downloads = BTreeMap::new();
        for name in names {
            match self.member(name, None) {
                Ok(m) => members.push(m),
                Err(reason) => match self.pending_local(name).filter(|_| planning) {
                    Some((m, bytes)) => {
                        downloads.insert(name.clone(), bytes);
                        members.push(m);
                    }
                    None => skipped.push(reason),
                },
            }
        }
        (members, skipped, downloads)
    }

    /// The local provider `name` as it will be once its catalogue model is
    /// downloaded, and the bytes that takes; never cached, never run.
    fn pending_local(&self, name: &str) -> Option<(Member, u64)> {
        let profile = self.config.provider(name).filter(|p| p.protocol == Some(Protocol::LlamaLocal))?;
        let pending = crate::models::pending_download(name, profile, &self.config)?;
        let backend = planned_local(name, &pending.profile, &self.config)?;
        let shared = policy::Stack::shared(backend, profile);
        Some((Member { name: name.to_string(), profile: profile.clone(), shared }, pending.bytes))
    }

    /// The provider `name`, with its model replaced by `model` when given.
    pub(crate) fn member(&self, name: &str, model: Option<&str>) -> Result<Member, String> {
        let Some(profile) = self.config.provider(name) else {
            return Err(format!("{name}: no such provider profile"));
        };
        let mut profile = profile.clone();
        if let Some(model) = model {
            profile.model = Some(model.to_string());
            // The catalogue's price for the new model, not the profile's override.
            profile.price = None;
        }
        let key = format!("{name}@{}", profile.model.as_deref().unwrap_or(""));
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = shared.get(&key) {
            return Ok(Member { name: name.to_string(), profile, shared: found.clone() });
        }
        let backend = match self.injected.get(name) {
            Some(p) if model.is_none() => p.clone(),
            _ => self.backend(name, &profile).map_err(|e| format!("{name}: {e}"))?,
        };
        let limits = {
            let mut held = self.limits.lock().unwrap_or_else(|e| e.into_inner());
            let state = || {
                if self.journal.is_shared_database() {
                    // Every instance of the database counts against one limit.
                    policy::LimitState::shared(&profile.limits, self.journal.clone(), &key)
                } else {
                    policy::LimitState::new(&profile.limits)
                }
            };
            held.entry(key.clone()).or_insert_with(|| Arc::new(state())).clone()
        };
        let layers = policy::Stack::shared_with(backend, &profile, limits);
        shared.insert(key, layers.clone());
        Ok(Member { name: name.to_string(), profile, shared: layers })
    }

    fn backend(&self, name: &str, profile: &ProviderProfile) -> Result<Arc<dyn Provider>, String> {
        match profile.protocol {
            Some(Protocol::Openai) => {
                Ok(Arc::new(OpenAiCompat::from_profile(name, profile, &self.config).map_err(|e| e.message)?))
            }
            Some(Protocol::Gemini) => {
                Ok(Arc::new(Gemini::from_profile(name, profile, &self.config).map_err(|e| e.message)?))
            }
            Some(Protocol::LlamaLocal) => local_backend(name, profile, &self.config),
            Some(Protocol::Anthropic) => {
                Ok(Arc::new(Anthropic::from_profile(name, profile, &self.config).map_err(|e| e.message)?))
            }
            Some(Protocol::OpenaiTranscription) => Ok(Arc::new(
                crate::provider::transcription::Transcription::from_profile(name, profile, &self.config)
                    .map_err(|e| e.message)?,
            )),
            Some(Protocol::WhisperLocal) => whisper_backend(name, profile, &self.config),
            None => Err(format!("providers.{name}.protocol is not set")),
        }
    }

    pub(crate) fn breaker(&self, name: &str) -> Arc<Breaker> {
        self.breakers.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_string()).or_default().clone()
    }

    /// The budget of one request: the smaller of the configured cap and the
    /// request's own, today's cap when there is one, and the paying
    /// account's cap for today when it has one.
    pub(crate) fn budgets(&self, request_cap: Option<f64>, account: Option<&Account>) -> Vec<Budget> {
        let cap = request_cap
            .map_or(self.config.budget.max_usd_per_request, |c| c.clamp(0.0, self.config.budget.max_usd_per_request));
        let mut budgets = vec![Budget::new(cap)];
        if let Some(day_cap) = self.config.budget.max_usd_per_day {
            // The day's spend and reservations live in the journal, shared by
            // every run and every process that uses it.
            let ledger: Arc<dyn SharedLedger> = self.journal.clone();
            budgets.push(Budget::new(day_cap).shared(ledger));
        }
        if let Some((id, cap)) = account.and_then(|a| Some((&a.id, a.max_usd_per_day?))) {
            budgets.push(Budget::new(cap).shared(Arc::new(self.journal.account_ledger(id))));
        }
        budgets
    }
}

#[cfg(feature = "local")]
fn local_backend(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Arc<dyn Provider>, String> {
    let profile = crate::models::with_installed_files(name, profile, config)?;
    Ok(Arc::new(crate::provider::llama_local::LlamaLocal::from_profile(name, &profile, config).map_err(|e| e.message)?))
}

#[cfg(feature = "local")]
fn planned_local(name: &str, profile: &ProviderProfile, config: &Config) -> Option<Arc<dyn Provider>> {
    Some(Arc::new(crate::provider::llama_local::LlamaLocal::planned(name, profile, config).ok()?))
}

#[cfg(not(feature = "local"))]
fn planned_local(_: &str, _: &ProviderProfile, _: &Config) -> Option<Arc<dyn Provider>> {
    None
}

#[cfg(not(feature = "local"))]
fn local_backend(name: &str, _: &ProviderProfile, _: &Config) -> Result<Arc<dyn Provider>, String> {
    Err(format!(
        "provider `{name}` is the local llama.cpp backend, and this vidgate was built without it (cargo feature `local`)"
    ))
}

#[cfg(feature = "whisper-engine")]
fn whisper_backend(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Arc<dyn Provider>, String> {
    Ok(Arc::new(
        crate::provider::whisper_local::WhisperLocal::from_profile(name, profile, config).map_err(|e| e.message)?,
    ))
}

#[cfg(not(feature = "whisper-engine"))]
fn whisper_backend(name: &str, _: &ProviderProfile, _: &Config) -> Result<Arc<dyn Provider>, String> {
    Err(format!(
        "provider `{name}` is Whisper in process, and this vidgate was built without it (cargo feature `whisper`, or `whisper-ruy` without MKL)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MergeConfig;
    use crate::provider::scripted::ScriptedProvider;

    fn member(context: Option<u32>) -> Member {
        let profile = ProviderProfile { context_tokens: context, ..ProviderProfile::default() };
        Member { name: "m".into(), profile, shared: Arc::new(ScriptedProvider::new("m")) }
    }

    #[test]
    fn merge_calls_shrink_to_the_smallest_context() {
        let config = MergeConfig::default();
        let free = MergeLimits::for_members(&config, &[member(None)]);
        assert_eq!((free.window_chars, free.max_output_tokens), (12_000, 1024));
        let small = MergeLimits::for_members(&config, &[member(None), member(Some(2048))]);
        // 2048 tokens: 512 for the answer, 700 for the template, 836 × 3 characters of observations.
        assert_eq!((small.window_chars, small.max_output_tokens), (2_508, 512));
        // A profile that names no context: the provider's own report counts
        // (a local model loaded with its default context, say).
        let reported = Member {
            name: "local".into(),
            profile: ProviderProfile::default(),
            shared: Arc::new(ScriptedProvider::new("local").with_capabilities(crate::provider::Capabilities {
                context_tokens: Some(2048),
                ..crate::provider::Capabilities::default()
            })),
        };
        let local = MergeLimits::for_members(&config, &[member(None), reported]);
        assert_eq!((local.window_chars, local.max_output_tokens), (2_508, 512));
    }

    crate::journal::testing::on_both! {
        /// On PostgreSQL each provider's limits are rows that every instance
        /// takes from; on SQLite they stay the process's.
        fn a_shared_database_shares_each_providers_rate_limits(place) {
            use crate::journal::db::SqlExt;
            let mut config = Config::builtin().unwrap();
            let limits = crate::config::RateLimits { requests_per_minute: Some(60), ..Default::default() };
            let profile =
                ProviderProfile { protocol: Some(Protocol::Openai), model: Some("m".into()), limits, ..ProviderProfile::default() };
            config.providers.insert("p".into(), profile);
            let gateway =
                Gateway::with_journal(config, place.open()).with_provider("p", Arc::new(ScriptedProvider::new("p")));
            let member = gateway.member("p", None).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(member.shared.run(&crate::provider::scripted::text_job())).unwrap();
            let shared = place.kind == Kind::Postgres;
            assert_eq!(gateway.limits.lock().unwrap()["p@m"].is_shared(), shared);
            let rows: Option<i64> = gateway
                .journal()
                .sql(|c| c.one("SELECT COUNT(*) FROM rate_limits WHERE key = 'p@m/requests'", &[]))
                .unwrap();
            assert_eq!(rows, Some(i64::from(shared)));
        }
    }
}
