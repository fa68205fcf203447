//! Configuration, in layers: built-in defaults < the profiles in `providers/`
//! < the user's file < environment (`VIDGATE__SECTION__KEY`) < command-line flags.
//!
//! Each layer is checked on its own before merging, so an unknown key or a bad
//! value is reported with the key and the file (or variable) it came from.

mod profile;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use profile::{
    AuthScheme, ImageDetail, ImageTokenRule, ModelProfile, OutputCapField, Price, Protocol, ProviderProfile,
    RateLimits, VideoPart, VideoSampling,
};

/// The profiles shipped in `providers/`, compiled in.
pub const SHIPPED_PROFILES: &[(&str, &str)] = &[
    ("azure-openai", include_str!("../../providers/azure-openai.toml")),
    ("gemini", include_str!("../../providers/gemini.toml")),
    ("groq", include_str!("../../providers/groq.toml")),
    ("llama-server", include_str!("../../providers/llama-server.toml")),
    ("local", include_str!("../../providers/local.toml")),
    ("ollama", include_str!("../../providers/ollama.toml")),
    ("openai", include_str!("../../providers/openai.toml")),
    ("openrouter", include_str!("../../providers/openrouter.toml")),
    ("vertex", include_str!("../../providers/vertex.toml")),
    ("vllm", include_str!("../../providers/vllm.toml")),
];

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
    /// Read prompt templates from here instead of the built-in ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompts_dir: Option<PathBuf>,
    pub providers: BTreeMap<String, ProviderProfile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Providers tried in order.
    pub chain: Vec<String>,
    /// A chain per task (`describe`, `timeline`, `ask`, `find`), instead of `chain`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, Vec<String>>,
    /// Providers for the text calls that merge observations into a story,
    /// answer or timeline; the task's chain when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub text_chain: Vec<String>,
    /// How long a provider that keeps failing sits out, in seconds.
    pub cooldown_s: f64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self { chain: vec!["local".into()], tasks: BTreeMap::new(), text_chain: Vec::new(), cooldown_s: 60.0 }
    }
}

impl RouterConfig {
    /// The configured chain for a task name.
    pub fn chain_for(&self, task: &str) -> &[String] {
        self.tasks.get(task).map_or(&self.chain, |c| c)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Hard cap on spend for one request, in US dollars.
    pub max_usd_per_request: f64,
    /// Hard cap on spend per UTC day, across runs (read from the journal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usd_per_day: Option<f64>,
    /// What may be lowered, in this order, when a plan costs more than the
    /// budget allows: `fps` (fewer frames), `width` (smaller frames),
    /// `model` (a cheaper model of the same provider). Empty: refuse instead.
    pub downgrade: Vec<Downgrade>,
    /// Never sample sparser than this many frames per second when downgrading.
    pub min_fps: f64,
    /// Never send frames narrower than this when downgrading.
    pub min_width: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            max_usd_per_request: 0.25,
            max_usd_per_day: None,
            downgrade: vec![Downgrade::Fps, Downgrade::Width, Downgrade::Model],
            min_fps: 0.05,
            min_width: 256,
        }
    }
}

/// One way to make a plan cheaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Downgrade {
    Fps,
    Width,
    Model,
}

/// The journal of finished work (see [`crate::journal`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Keep a journal; without one, nothing is reused across runs.
    pub enabled: bool,
    /// The journal file; `journal.sqlite3` in the platform data dir when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self { enabled: true, path: None }
    }
}

/// How URL sources are downloaded (see [`crate::fetch`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// The most bytes one video may have.
    pub max_bytes: u64,
    pub max_redirects: u32,
    /// The whole download, in seconds.
    pub timeout_s: f64,
    pub connect_timeout_s: f64,
    /// Give up when no byte arrives for this long.
    pub stall_timeout_s: f64,
    /// Addresses or CIDR blocks that may be fetched from although they are
    /// private, loopback or link-local (e.g. `["10.0.0.0/8"]` for a LAN).
    pub allow: Vec<String>,
    /// Where downloads are kept while a run reads them; the system's
    /// temporary directory when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_dir: Option<PathBuf>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            max_bytes: 2 << 30,
            max_redirects: 5,
            timeout_s: 1800.0,
            connect_timeout_s: 10.0,
            stall_timeout_s: 30.0,
            allow: Vec::new(),
            temp_dir: None,
        }
    }
}

/// How observations become a story, a timeline or an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// Observations per merge call, in characters; longer videos are merged
    /// in windows, then the windows' summaries are merged (map-reduce).
    pub window_chars: usize,
    /// Output cap of each merge call, in tokens.
    pub max_output_tokens: u32,
    /// Output cap of each observation call, in tokens.
    pub observation_tokens: u32,
}

impl Default for MergeConfig {
    fn default() -> Self {
        Self { window_chars: 12_000, max_output_tokens: 1024, observation_tokens: 300 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    pub fps: f64,
    pub max_frames: u32,
    pub width: u32,
    /// Scene sampling: how different a shot must be from the last one kept, 0..1.
    pub scene_threshold: f64,
    /// Scene sampling: the least time between two kept frames.
    pub scene_min_gap_ms: u64,
    /// Sample by seeking instead of decoding everything when frames are at
    /// least this many seconds apart.
    pub seek_min_interval_s: f64,
    /// JPEG quality of frames sent over the wire, 1..=100.
    pub jpeg_quality: u8,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            fps: 1.0,
            max_frames: 64,
            width: 512,
            scene_threshold: 0.35,
            scene_min_gap_ms: 1000,
            seek_min_interval_s: 4.0,
            jpeg_quality: 85,
        }
    }
}

/// Limits on input media, enforced by the probe before anything is decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaLimits {
    pub max_duration_s: f64,
    /// Width × height of the video stream that is read (the default one, else the first).
    pub max_pixels: u64,
    pub max_streams: u32,
    pub max_file_bytes: u64,
    /// How long ffprobe may take.
    pub probe_timeout_s: f64,
    /// How long one extraction may take.
    pub extract_timeout_s: f64,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_duration_s: 4.0 * 3600.0,
            max_pixels: 7680 * 4320,
            max_streams: 16,
            max_file_bytes: 8 << 30,
            probe_timeout_s: 30.0,
            extract_timeout_s: 3600.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    /// A provider's requested wait above this is not slept but handed to the next provider.
    pub max_wait_s: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { max_attempts: 4, max_wait_s: 30.0 }
    }
}

/// Where local models come from and where they are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// The root the catalogue's paths are relative to (a mirror may stand in).
    pub base_url: String,
    /// Where downloaded models are kept; the platform cache dir when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self { base_url: "https://huggingface.co".into(), cache_dir: None }
    }
}

/// A configuration error, naming the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {origin}: cannot read it: {source}")]
    Read { origin: String, source: std::io::Error },
    #[error("config {origin}: not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("config {origin}: key `{key}`: {message}")]
    Key { origin: String, key: String, message: String },
    #[error("config: {0}")]
    Merge(String),
}

/// Where the user's file and flags come from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// `--config FILE`: must exist.
    pub file: Option<PathBuf>,
    /// Read `VIDGATE__*` variables (and `$VIDGATE_CONFIG`).
    pub use_env: bool,
    /// Look for `./vidgate.toml` and the platform config file.
    pub discover_files: bool,
    /// Command-line overrides as (`section.key`, TOML value text).
    pub overrides: Vec<(String, String)>,
}

impl ConfigSources {
    /// What the CLI uses: everything, with `--config` if given.
    pub fn standard(file: Option<PathBuf>) -> Self {
        Self { file, use_env: true, discover_files: true, overrides: Vec::new() }
    }

    pub fn with_override(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.overrides.push((key.to_string(), value.to_string()));
        self
    }
}

impl Config {
    /// Built-in defaults and shipped profiles only.
    pub fn builtin() -> Result<Self, ConfigError> {
        Self::load(&ConfigSources::default())
    }

    /// Merge every layer named by `sources`.
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        let defaults = toml::to_string(&Config::default()).map_err(|e| ConfigError::Merge(e.to_string()))?;
        builder = builder.add_source(config::File::from_str(&defaults, config::FileFormat::Toml));

        for (name, text) in SHIPPED_PROFILES {
            let origin = format!("providers/{name}.toml (built in)");
            let table = parse_toml(text, &origin)?;
            check_profile(name, &table, &origin)?;
            let wrapped = wrap_profile(name, table);
            builder = builder.add_source(config::File::from_str(&wrapped, config::FileFormat::Toml));
        }

        if let Some(path) = user_file(sources)? {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::Read { origin: origin.clone(), source })?;
            let table = parse_toml(&text, &origin)?;
            check_layer(toml::Value::Table(table.clone()), &origin)?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }

        if sources.use_env {
            let env = env_layer();
            for (var, key, value) in &env {
                let table = nest(key, value.clone());
                check_layer(toml::Value::Table(table), &format!("environment variable {var}"))?;
                builder = builder
                    .set_override(key.as_str(), toml_to_config(value))
                    .map_err(|e| ConfigError::Merge(e.to_string()))?;
            }
        }

        for (key, text) in &sources.overrides {
            let origin = format!("command-line flag for `{key}`");
            let value = parse_scalar(text);
            check_layer(toml::Value::Table(nest(key, value.clone())), &origin)?;
            builder = builder
                .set_override(key.as_str(), toml_to_config(&value))
                .map_err(|e| ConfigError::Merge(e.to_string()))?;
        }

        let merged = builder.build().map_err(|e| ConfigError::Merge(e.to_string()))?;
        let mut config: Config = serde_path_to_error::deserialize(merged).map_err(|e| ConfigError::Key {
            origin: "(merged)".into(),
            key: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;
        config.fill_known_models();
        config.check_references()?;
        Ok(config)
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
            let namesake = match protocol {
                Protocol::Gemini => "gemini",
                Protocol::Openai => "openai",
                Protocol::LlamaLocal => "local",
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

    fn check_values(&self, origin: &str) -> Result<(), ConfigError> {
        let bad =
            |key: &str, message: String| ConfigError::Key { origin: origin.to_string(), key: key.to_string(), message };
        // An empty file name would open a throw-away database: no daily cap
        // across runs, nothing to resume.
        if self.journal.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(bad(
                "journal.path",
                "is empty: name the journal file, or leave the key out for the default".into(),
            ));
        }
        let s = &self.sampling;
        if !(s.fps > 0.0 && s.fps <= 60.0) {
            return Err(bad("sampling.fps", format!("{} is outside (0, 60]", s.fps)));
        }
        if s.max_frames == 0 || s.max_frames > 10_000 {
            return Err(bad("sampling.max_frames", format!("{} is outside 1..=10000", s.max_frames)));
        }
        if !(16..=8192).contains(&s.width) {
            return Err(bad("sampling.width", format!("{} is outside 16..=8192", s.width)));
        }
        if !(s.scene_threshold > 0.0 && s.scene_threshold < 1.0) {
            return Err(bad("sampling.scene_threshold", format!("{} is outside (0, 1)", s.scene_threshold)));
        }
        if !(1..=100).contains(&s.jpeg_quality) {
            return Err(bad("sampling.jpeg_quality", format!("{} is outside 1..=100", s.jpeg_quality)));
        }
        if !(s.seek_min_interval_s >= 0.0 && s.seek_min_interval_s.is_finite()) {
            return Err(bad("sampling.seek_min_interval_s", "must be a finite number ≥ 0".into()));
        }
        if !(self.budget.max_usd_per_request >= 0.0 && self.budget.max_usd_per_request.is_finite()) {
            return Err(bad("budget.max_usd_per_request", "must be a finite number ≥ 0".into()));
        }
        if let Some(day) = self.budget.max_usd_per_day {
            if !(day >= 0.0 && day.is_finite()) {
                return Err(bad("budget.max_usd_per_day", "must be a finite number ≥ 0".into()));
            }
        }
        if !(self.budget.min_fps > 0.0 && self.budget.min_fps.is_finite()) {
            return Err(bad("budget.min_fps", "must be a finite number > 0".into()));
        }
        let f = &self.fetch;
        let l = &self.limits;
        // Every setting that becomes a wait: a finite, bounded number of seconds.
        let max = crate::timecode::MAX_SECONDS;
        for (key, v) in [
            ("fetch.timeout_s", f.timeout_s),
            ("fetch.connect_timeout_s", f.connect_timeout_s),
            ("fetch.stall_timeout_s", f.stall_timeout_s),
            ("limits.probe_timeout_s", l.probe_timeout_s),
            ("limits.extract_timeout_s", l.extract_timeout_s),
            ("retry.max_wait_s", self.retry.max_wait_s),
        ] {
            if !(v > 0.0 && v <= max) {
                return Err(bad(key, format!("{v} is outside (0, {max}] seconds")));
            }
        }
        if let Some(entry) =
            f.allow.iter().find(|e| e.parse::<ipnet::IpNet>().is_err() && e.parse::<std::net::IpAddr>().is_err())
        {
            return Err(bad("fetch.allow", format!("`{entry}` is not an IP address or CIDR block")));
        }
        if self.merge.window_chars < 500 {
            return Err(bad("merge.window_chars", format!("{} is below 500", self.merge.window_chars)));
        }
        let cooldown = self.router.cooldown_s;
        if !(cooldown >= 0.0 && cooldown <= max) {
            return Err(bad("router.cooldown_s", format!("{cooldown} is outside [0, {max}] seconds")));
        }
        if !(l.max_duration_s > 0.0 && l.max_duration_s.is_finite()) {
            return Err(bad("limits.max_duration_s", format!("{} must be a finite number > 0", l.max_duration_s)));
        }
        for (name, p) in &self.providers {
            p.check_sampling().map_err(|(key, message)| bad(&format!("providers.{name}.{key}"), message))?;
            for (key, value) in [("timeout_s", p.timeout_s), ("file_timeout_s", p.file_timeout_s)] {
                match value {
                    Some(v) if !(v > 0.0 && v <= max) => {
                        return Err(bad(
                            &format!("providers.{name}.{key}"),
                            format!("{v} is outside (0, {max}] seconds"),
                        ))
                    }
                    _ => {}
                }
            }
            if let Some(url) = &p.base_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad(&format!("providers.{name}.base_url"), format!("`{url}` is not an http(s) URL")));
                }
            }
            if let Some(var) = &p.api_key_env {
                if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(bad(
                        &format!("providers.{name}.api_key_env"),
                        "must be the NAME of an environment variable (letters, digits, _), never the key".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_references(&self) -> Result<(), ConfigError> {
        const TASKS: [&str; 4] = ["describe", "timeline", "ask", "find"];
        if let Some(task) = self.router.tasks.keys().find(|t| !TASKS.contains(&t.as_str())) {
            return Err(ConfigError::Key {
                origin: "(merged)".into(),
                key: format!("router.tasks.{task}"),
                message: format!("not a task; the tasks are {}", TASKS.join(", ")),
            });
        }
        let chains = std::iter::once(("router.chain".to_string(), &self.router.chain))
            .chain(std::iter::once(("router.text_chain".to_string(), &self.router.text_chain)))
            .chain(self.router.tasks.iter().map(|(t, c)| (format!("router.tasks.{t}"), c)));
        for (key, name) in chains.flat_map(|(key, chain)| chain.iter().map(move |name| (key.clone(), name))) {
            let Some(profile) = self.providers.get(name) else {
                let known: Vec<_> = self.providers.keys().map(String::as_str).collect();
                return Err(ConfigError::Key {
                    origin: "(merged)".into(),
                    key,
                    message: format!("no provider called `{name}`; known: {}", known.join(", ")),
                });
            };
            if profile.protocol.is_none() {
                return Err(ConfigError::Key {
                    origin: "(merged)".into(),
                    key: format!("providers.{name}.protocol"),
                    message: "missing: one of \"gemini\", \"openai\", \"llama_local\"".into(),
                });
            }
        }
        Ok(())
    }
}

/// The user's file: `--config`, else `$VIDGATE_CONFIG`, else `./vidgate.toml`,
/// else the platform config dir. An explicitly named file must exist.
fn user_file(sources: &ConfigSources) -> Result<Option<PathBuf>, ConfigError> {
    let must_exist = |path: PathBuf, origin: &str| {
        if path.is_file() {
            Ok(Some(path))
        } else {
            Err(ConfigError::Read {
                origin: format!("{} ({origin})", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            })
        }
    };
    if let Some(path) = &sources.file {
        return must_exist(path.clone(), "--config");
    }
    if sources.use_env {
        if let Some(path) = std::env::var_os("VIDGATE_CONFIG").filter(|p| !p.is_empty()) {
            return must_exist(PathBuf::from(path), "$VIDGATE_CONFIG");
        }
    }
    if sources.discover_files {
        let local = PathBuf::from("vidgate.toml");
        if local.is_file() {
            return Ok(Some(local));
        }
        if let Some(dirs) = directories::ProjectDirs::from("", "", "vidgate") {
            let platform = dirs.config_dir().join("vidgate.toml");
            if platform.is_file() {
                return Ok(Some(platform));
            }
        }
    }
    Ok(None)
}

fn parse_toml(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax { origin: origin.to_string(), message: e.message().to_string() })
}

/// Check one layer alone: unknown keys and bad values, named with their origin.
fn check_layer(value: toml::Value, origin: &str) -> Result<(), ConfigError> {
    let layer: Config = serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Key {
        origin: origin.to_string(),
        key: e.path().to_string(),
        message: e.into_inner().to_string(),
    })?;
    layer.check_values(origin)
}

fn check_profile(name: &str, table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    let wrapped: toml::Table =
        toml::from_str(&wrap_profile(name, table.clone())).map_err(|e| ConfigError::Merge(e.to_string()))?;
    check_layer(toml::Value::Table(wrapped), origin)
}

fn wrap_profile(name: &str, table: toml::Table) -> String {
    let mut providers = toml::Table::new();
    providers.insert(name.to_string(), toml::Value::Table(table));
    let mut root = toml::Table::new();
    root.insert("providers".into(), toml::Value::Table(providers));
    toml::to_string(&root).expect("a TOML table serializes")
}

/// `VIDGATE__SECTION__KEY=value` → (variable, `section.key`, value).
fn env_layer() -> Vec<(String, String, toml::Value)> {
    let mut out: Vec<_> = std::env::vars()
        .filter_map(|(var, value)| {
            let rest = var.strip_prefix("VIDGATE__")?;
            let key = rest.split("__").map(str::to_ascii_lowercase).collect::<Vec<_>>().join(".");
            Some((var, key, parse_scalar(&value)))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A flag or variable's text as a TOML value: numbers, booleans and arrays as
/// such, anything else as a string.
fn parse_scalar(text: &str) -> toml::Value {
    let probe = format!("v = {text}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

fn nest(dotted: &str, value: toml::Value) -> toml::Table {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut table = toml::Table::new();
    table.insert(last.to_string(), value);
    for part in parts.into_iter().rev() {
        let mut outer = toml::Table::new();
        outer.insert(part.to_string(), toml::Value::Table(table));
        table = outer;
    }
    table
}

fn toml_to_config(value: &toml::Value) -> config::Value {
    use config::ValueKind;
    let kind = match value {
        toml::Value::String(s) => ValueKind::String(s.clone()),
        toml::Value::Integer(i) => ValueKind::I64(*i),
        toml::Value::Float(f) => ValueKind::Float(*f),
        toml::Value::Boolean(b) => ValueKind::Boolean(*b),
        toml::Value::Datetime(d) => ValueKind::String(d.to_string()),
        toml::Value::Array(items) => ValueKind::Array(items.iter().map(toml_to_config).collect()),
        toml::Value::Table(t) => ValueKind::Table(t.iter().map(|(k, v)| (k.clone(), toml_to_config(v))).collect()),
    };
    config::Value::new(None, kind)
}

/// Where a config file would be found on this platform, for `--help` and errors.
pub fn platform_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "vidgate").map(|d| d.config_dir().join("vidgate.toml"))
}

/// Read a config file alone, for tools that validate a file without merging it.
pub fn check_file(path: &Path) -> Result<(), ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { origin: origin.clone(), source })?;
    check_layer(toml::Value::Table(parse_toml(&text, &origin)?), &origin)
}

#[cfg(test)]
mod tests;
