//! Provider profiles: what a service or deployment is, as data.
//!
//! One file per service ships in `providers/`; a user's `[providers.NAME]` table
//! overrides keys of a shipped profile or adds a new one. Every field is
//! optional here so that an override may name only what it changes; what a
//! backend needs is checked when the provider is built.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::{self, Invalid};

/// The wire protocol a profile speaks: one backend module each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Gemini,
    Openai,
    LlamaLocal,
    Anthropic,
    /// OpenAI's `/v1/audio/transcriptions` (speech to text), as OpenAI, Groq,
    /// a whisper.cpp server and vLLM serve it.
    OpenaiTranscription,
    /// Whisper in process, on CTranslate2 weights (the `whisper` feature).
    WhisperLocal,
}

impl Protocol {
    /// Every protocol, for messages that list them.
    pub const ALL: [Protocol; 6] = [
        Protocol::Gemini,
        Protocol::Openai,
        Protocol::LlamaLocal,
        Protocol::Anthropic,
        Protocol::OpenaiTranscription,
        Protocol::WhisperLocal,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Gemini => "gemini",
            Protocol::Openai => "openai",
            Protocol::LlamaLocal => "llama_local",
            Protocol::Anthropic => "anthropic",
            Protocol::OpenaiTranscription => "openai_transcription",
            Protocol::WhisperLocal => "whisper_local",
        }
    }

    /// Whether it turns speech into text (a `speech.chain` member) rather
    /// than answering about frames or videos.
    pub fn is_speech(&self) -> bool {
        matches!(self, Protocol::OpenaiTranscription | Protocol::WhisperLocal)
    }
}

/// How the key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// `Authorization: Bearer KEY` (OpenAI and most others, Vertex AI).
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKeyHeader,
    /// `x-goog-api-key: KEY` (the Gemini Developer API).
    GoogApiKey,
    /// No key (local servers).
    None,
}

/// The `detail` an OpenAI-style image part asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageDetail {
    Low,
    High,
    Auto,
}

/// The request field that carries the output cap (OpenAI-compatible servers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputCapField {
    /// `max_completion_tokens`: OpenAI and Azure OpenAI (required by reasoning models).
    MaxCompletionTokens,
    /// `max_tokens`: what most other servers read.
    MaxTokens,
}

/// How an OpenAI-compatible server takes a whole video in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoPart {
    /// `{"type":"video_url","video_url":{"url":"data:video/mp4;base64,…"}}`: vLLM,
    /// SGLang, OpenRouter, DashScope (Qwen), Kimi.
    VideoUrl,
    /// `{"type":"input_video","input_video":{"data":"…"}}`: llama.cpp's
    /// `llama-server`, llama-cpp-python.
    InputVideo,
    /// `{"type":"file","file":{"file_data":"data:video/mp4;base64,…","format":"video/mp4"}}`:
    /// LiteLLM.
    File,
}

/// Where an OpenAI-compatible server reads the video's sampling from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoSampling {
    /// It samples at its own rate (`video_fps` says which): nothing is sent.
    None,
    /// A top-level `"fps"`.
    Fps,
    /// vLLM's `"mm_processor_kwargs": {"fps": …}`, or `{"num_frames": …}` when
    /// `video_max_frames` is what limits.
    MmProcessorKwargs,
}

/// Prices in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Cached input, where the provider discounts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
    /// Audio input, where it is priced apart from text, image and video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_input_per_mtok: Option<f64>,
}

/// How a model family counts the tokens of one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum ImageTokenRule {
    /// Fit in `max_side`, shorten the short side to `short_side`, then
    /// `base + per_tile × tiles of tile_px` (GPT-4o class). Low detail is `base`.
    Tiles { base: u32, per_tile: u32, tile_px: u32, max_side: u32, short_side: u32 },
    /// 32-px patches, capped, times a multiplier (GPT-4.1 mini/nano, o4-mini).
    Patches { patch_px: u32, max_patches: u32, multiplier: f64 },
    /// The same count for every image (Gemini's 258, local projectors).
    Fixed { tokens: u32 },
}

/// What one model can take and costs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelProfile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_images_per_request: Option<u32>,
    /// The largest request body the service accepts, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vision: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_video: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tokens: Option<ImageTokenRule>,
    /// Tokens per second of video at default resolution (native-video models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_tokens_per_second: Option<f64>,
    /// Tokens per second of audio (native-video models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_tokens_per_second: Option<f64>,
    /// OpenAI-compatible native video: the part the video travels in
    /// (default `video_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_part: Option<VideoPart>,
    /// OpenAI-compatible native video: how the sampling rate is sent
    /// (default `none`: the server's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_sampling: Option<VideoSampling>,
    /// OpenAI-compatible native video: frames a second the server samples
    /// when the plan sets no rate (or cannot send one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_fps: Option<f64>,
    /// OpenAI-compatible native video: the most frames the server takes from
    /// one video.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_max_frames: Option<u32>,
    /// OpenAI-compatible native video: prompt tokens per sampled frame, at
    /// most (the cost rule is frames × this).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_tokens_per_frame: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// Speech models: US dollars per minute of audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_usd_per_minute: Option<f64>,
    /// Speech models: the least audio billed for one request, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_min_billed_s: Option<f64>,
    /// Speech models: answers `verbose_json`, with the times of each
    /// segment of text (default true). `false`: `json`, one text for the
    /// whole clip (`gpt-4o-transcribe`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verbose_json: Option<bool>,
}

impl ModelProfile {
    /// Take every value this profile leaves unset from `known`: its own values win.
    pub fn fill_from(&mut self, known: &ModelProfile) {
        let ModelProfile {
            context_tokens,
            max_output_tokens,
            max_images_per_request,
            max_request_bytes,
            vision,
            json_schema,
            native_video,
            audio,
            image_tokens,
            video_tokens_per_second,
            audio_tokens_per_second,
            video_part,
            video_sampling,
            video_fps,
            video_max_frames,
            video_tokens_per_frame,
            price,
            audio_usd_per_minute,
            audio_min_billed_s,
            verbose_json,
        } = known;
        self.context_tokens = self.context_tokens.or(*context_tokens);
        self.max_output_tokens = self.max_output_tokens.or(*max_output_tokens);
        self.max_images_per_request = self.max_images_per_request.or(*max_images_per_request);
        self.max_request_bytes = self.max_request_bytes.or(*max_request_bytes);
        self.vision = self.vision.or(*vision);
        self.json_schema = self.json_schema.or(*json_schema);
        self.native_video = self.native_video.or(*native_video);
        self.audio = self.audio.or(*audio);
        self.image_tokens = self.image_tokens.or(*image_tokens);
        self.video_tokens_per_second = self.video_tokens_per_second.or(*video_tokens_per_second);
        self.audio_tokens_per_second = self.audio_tokens_per_second.or(*audio_tokens_per_second);
        self.video_part = self.video_part.or(*video_part);
        self.video_sampling = self.video_sampling.or(*video_sampling);
        self.video_fps = self.video_fps.or(*video_fps);
        self.video_max_frames = self.video_max_frames.or(*video_max_frames);
        self.video_tokens_per_frame = self.video_tokens_per_frame.or(*video_tokens_per_frame);
        self.price = self.price.or(*price);
        self.audio_usd_per_minute = self.audio_usd_per_minute.or(*audio_usd_per_minute);
        self.audio_min_billed_s = self.audio_min_billed_s.or(*audio_min_billed_s);
        self.verbose_json = self.verbose_json.or(*verbose_json);
    }
}

/// A service's rate limits, as the profile states them for a default tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_day: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// How long a bearer token is used when its source does not say when it
/// expires (`token_lifetime_s`): under the hour an access token of `gcloud` lives.
pub const DEFAULT_TOKEN_LIFETIME_S: f64 = 3000.0;
/// The longest `token_lifetime_s`: twelve hours, the longest an access token lives.
pub const MAX_TOKEN_LIFETIME_S: f64 = 43_200.0;
/// The Gemini API's limit on a request with the video inline: 100 MB.
pub const INLINE_REQUEST_LIMIT: u64 = 100_000_000;
/// The largest `inline_max_bytes`, a file's size: the largest file whose
/// request fits [`INLINE_REQUEST_LIMIT`]. Its base64 (4 bytes for every 3)
/// takes 98,666,668 bytes, which leaves over 1.3 MB for the JSON around it.
/// Larger videos go through the Files API.
pub const MAX_INLINE_BYTES: u64 = 74_000_000;
/// `inline_max_bytes` when the profile does not set it.
pub const DEFAULT_INLINE_BYTES: u64 = 20_000_000;

/// One service or deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderProfile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The API root, e.g. `https://api.openai.com/v1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The *name* of the environment variable that holds the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthScheme>,
    /// The model used unless a request names another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A price for `model` that overrides the catalogue below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelProfile>,
    pub limits: RateLimits,
    /// The day the prices and limits were checked, `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prices_checked: Option<String>,
    /// The page they were checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prices_source: Option<String>,
    /// Per-request timeout in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,

    // OpenAI-compatible
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
    /// Frames per call; 1 is frame-by-frame mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_call: Option<u32>,
    /// Which request field carries the output cap; `max_tokens` by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_cap_field: Option<OutputCapField>,
    /// Azure's `api-version` query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,

    // Gemini and Vertex AI
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Vertex AI: the variable holding a bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Vertex AI: a command whose output is a bearer token, alone or as JSON
    /// with its expiry (`gcloud auth print-access-token --format=json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_command: Option<Vec<String>>,
    /// Seconds a bearer token from `token_env` or `token_command` is used
    /// before it is fetched again, when the command does not say when it
    /// expires (default 3000; 1 to 43200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_lifetime_s: Option<f64>,
    /// Send the video inline up to this size in bytes; upload above it
    /// (default 20 MB, at most 74 MB: the file's base64 and the JSON around
    /// it must fit the API's limit of 100 MB on the request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_max_bytes: Option<u64>,
    /// Give up waiting for an uploaded file to become ACTIVE after this many
    /// seconds (then frames are sent instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_timeout_s: Option<f64>,
    /// Delete an uploaded file once its answer is in (default: keep it for
    /// reuse while it lives, 48 h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_uploads: Option<bool>,
    /// `low`, `medium` or `high`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_resolution: Option<String>,

    // Local llama.cpp
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmproj_path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_layers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u32>,
    /// How the next token is drawn: 0 (the default) always takes the likeliest
    /// one (greedy: the same job gives the same answer); above 0, one is drawn
    /// at this temperature from those the filters below keep, as llama.cpp's
    /// own tools do. Other protocols ignore this and the keys below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Keep only the `top_k` likeliest tokens; 0 keeps all (default 40).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Keep the likeliest tokens until their probabilities add up to
    /// `top_p`, 0..=1; 1 keeps all (default 0.95).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Drop tokens less likely than `min_p` times the likeliest, 0..=1;
    /// 0 drops none (default 0.05).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f64>,
    /// Divide the logits of tokens already generated (among the last
    /// `repeat_last_n`) by this, > 0; 1 is off (the default). Applies when
    /// greedy too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f64>,
    /// How many of the last generated tokens `repeat_penalty` looks at, at
    /// most the context; 0 is off (default 64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_last_n: Option<u32>,
    /// The seed of the draw when `temperature` > 0: the same seed, model,
    /// settings and job give the same answer. Unset, each answer draws with a
    /// fresh random seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// Hold timeline and find answers to their JSON with a llama.cpp grammar
    /// made from the timeline schema (default true): the model can write
    /// nothing else, and ends only once the JSON is complete. `false`
    /// generates freely, as for other tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_grammar: Option<bool>,
}

impl ProviderProfile {
    /// The model profile of `model`, if the catalogue lists it.
    pub fn model_profile(&self, model: &str) -> Option<&ModelProfile> {
        self.models.get(model)
    }

    /// The price that applies to `model`: the profile's own, else the catalogue's.
    pub fn price_for(&self, model: &str) -> Option<Price> {
        self.price.or_else(|| self.models.get(model).and_then(|m| m.price))
    }

    /// Check the local sampling settings: the key and why, if one is out of range.
    pub fn check_sampling(&self) -> Result<(), (&'static str, String)> {
        if let Some(t) = self.temperature {
            if !(t >= 0.0 && t.is_finite()) {
                return Err(("temperature", format!("{t} is not a finite number ≥ 0 (0 = greedy)")));
            }
        }
        for (key, value) in [("top_p", self.top_p), ("min_p", self.min_p)] {
            match value {
                Some(v) if !(0.0..=1.0).contains(&v) => return Err((key, format!("{v} is outside [0, 1]"))),
                _ => {}
            }
        }
        if let Some(r) = self.repeat_penalty {
            if !(r > 0.0 && r.is_finite()) {
                return Err(("repeat_penalty", format!("{r} is not a finite number > 0 (1 = off)")));
            }
        }
        if self.seed == Some(u32::MAX) {
            return Err((
                "seed",
                format!(
                    "{} is outside 0..={}: llama.cpp reads it as random (leave `seed` unset)",
                    u32::MAX,
                    u32::MAX - 1
                ),
            ));
        }
        Ok(())
    }

    /// Checks one profile alone; what it needs to be built is checked when it is.
    ///
    /// # Errors
    /// The first value out of its range, named by its key within the profile.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.check_sampling().map_err(|(key, message)| Invalid::new(key, message))?;
        for (key, value) in [("timeout_s", self.timeout_s), ("file_timeout_s", self.file_timeout_s)] {
            if let Some(seconds) = value {
                check::wait(key, seconds)?;
            }
        }
        if let Some(life) = self.token_lifetime_s {
            let max = MAX_TOKEN_LIFETIME_S;
            if !(1.0..=max).contains(&life) {
                return Err(Invalid::new(
                    "token_lifetime_s",
                    format!("{life} is outside 1..={max} seconds (a bearer token is used this long before it is fetched again)"),
                ));
            }
        }
        if let Some(bytes) = self.inline_max_bytes.filter(|b| *b > MAX_INLINE_BYTES) {
            return Err(Invalid::new(
                "inline_max_bytes",
                format!(
                    "{bytes} is over {MAX_INLINE_BYTES} bytes, the largest file whose base64 fits the API's \
                     limit of {INLINE_REQUEST_LIMIT} bytes (100 MB) on a request with the video inline: \
                     larger videos go through the Files API"
                ),
            ));
        }
        if let Some(url) = &self.base_url {
            check::http_url("base_url", url)?;
        }
        if let Some(day) = &self.prices_checked {
            let date = day.parse::<toml::value::Datetime>().ok().filter(|d| d.time.is_none() && d.offset.is_none());
            if date.is_none() {
                return Err(Invalid::new("prices_checked", format!("`{day}` is not a date, YYYY-MM-DD")));
            }
        }
        if let Some(page) = &self.prices_source {
            check::http_url("prices_source", page)?;
        }
        if let Some(var) = &self.api_key_env {
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Invalid::new(
                    "api_key_env",
                    "must be the NAME of an environment variable (letters, digits, _), never the key",
                ));
            }
        }
        Ok(())
    }

    /// The auth scheme, defaulting by protocol.
    pub fn auth_scheme(&self) -> AuthScheme {
        self.auth.unwrap_or(match (self.protocol, &self.api_key_env) {
            (_, None) => AuthScheme::None,
            (Some(Protocol::Gemini), Some(_)) => AuthScheme::GoogApiKey,
            _ => AuthScheme::Bearer,
        })
    }
}
