//! The local backend: a GGUF model (and its mmproj vision projector) run in
//! this process by llama.cpp, through `llama-cpp-2` with its `mtmd` feature.
//! No server, no network, no per-token price.
//!
//! Follows llama.cpp's multimodal API (`tools/mtmd/mtmd.h`, b11434 as vendored
//! by llama-cpp-sys-2 0.1.161) and llama-cpp-2 0.1.160's safe wrappers,
//! checked 2026-11-26.
//!
//! One worker thread per provider owns the model, the projector and the
//! context; no llama type crosses an `await`. The async side sends each job
//! over a channel and awaits a oneshot answer; dropping that future (a
//! timeout, a cancelled request) closes the answer channel, and the worker
//! stops at the next frame or token. The model loads on the worker at the
//! first job (or at [`LlamaLocal::load`]), so building a gateway or showing a
//! plan never pays for it; the files are checked (present, GGUF) when the
//! provider is built.
//!
//! A job's frames go into one prompt, each as its time and one media marker,
//! then the job's prompt, all in the model's chat template; frames that do not
//! fit the context together are split into chunks, one observation each.
//! Sampling is greedy unless the profile sets a `temperature`, so answers are
//! repeatable; with a temperature, a `seed` keeps them so. Timeline and find
//! jobs ([`Job::structured`]) are held to the timeline JSON by a llama.cpp
//! grammar made from [`crate::timeline::json_schema`], so even a small model
//! answers with JSON that parses (unless the output cap cuts it); a grammar
//! that cannot be built fails the job (the next provider may serve it),
//! naming `json_grammar = false`, which turns the grammar off. Without the
//! grammar, a bad answer gets the one repair of [`crate::provider::structured`].

mod engine;
mod prompt;
mod runtime;
mod sampling;
mod worker;

use std::sync::{mpsc, Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::config::{Config, Protocol, ProviderProfile};
use crate::provider::structured::{self, Constraint, RawAnswer};
use crate::provider::{
    Capabilities, ErrorClass, Estimate, Job, JobInput, Provider, ProviderError, ProviderOutput, SetupError,
};
use crate::schema::{Observation, TimeRange, Usage};

pub use runtime::backend;

/// Image tokens assumed before the projector is loaded and measured.
const UNMEASURED_IMAGE_TOKENS: u32 = 64;
/// A frame's label ("Frame at 00:01.000:") and separators, in tokens, about.
const LABEL_TOKENS: u32 = 12;
/// The template around a turn, in tokens, about.
const TEMPLATE_TOKENS: u64 = 16;

/// What is known about a model once it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFacts {
    /// The context in tokens.
    pub n_ctx: u32,
    /// Tokens of one 512x512 frame; `None` without a vision projector.
    pub image_tokens: Option<u32>,
    /// The text model's embedding width.
    pub n_embd: u32,
}

/// Where the time of the last job went, for benchmarks and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Prompt tokens evaluated (text and image), over all chunks.
    pub prompt_tokens: u64,
    /// Evaluating the prompts, frames included.
    pub prompt_ms: f64,
    /// Frames evaluated, and the part of `prompt_ms` they took (its label,
    /// image encoding and decoding its embeddings).
    pub frames: u32,
    pub frames_ms: f64,
    /// The part of `frames_ms` in the vision encoder (pixels to embeddings),
    /// for the `encoded_frames` frames where llama.cpp's decode counters tell
    /// it apart from the text model's time: every frame, unless the projector
    /// puts text tokens before each image.
    pub encode_ms: f64,
    pub encoded_frames: u32,
    pub generated_tokens: u64,
    pub generate_ms: f64,
    /// The caller went away before the answer was done.
    pub cancelled: bool,
}

impl Timings {
    pub fn prompt_tokens_per_s(&self) -> f64 {
        per_second(self.prompt_tokens, self.prompt_ms)
    }

    pub fn generated_tokens_per_s(&self) -> f64 {
        per_second(self.generated_tokens, self.generate_ms)
    }

    /// Milliseconds per frame, from its pixels to its tokens in the context.
    pub fn ms_per_frame(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            self.frames_ms / f64::from(self.frames)
        }
    }

    /// Milliseconds per frame in the vision encoder alone; `None` when no
    /// frame's encoding was told apart.
    pub fn encode_ms_per_frame(&self) -> Option<f64> {
        (self.encoded_frames > 0).then(|| self.encode_ms / f64::from(self.encoded_frames))
    }

    /// Prompt tokens per second of the text model alone, without the vision
    /// encoder's time: what llama.cpp's tools call prompt evaluation. `None`
    /// when some frame's encoding could not be told apart.
    pub fn prompt_eval_tokens_per_s(&self) -> Option<f64> {
        (self.encoded_frames == self.frames).then(|| per_second(self.prompt_tokens, self.prompt_ms - self.encode_ms))
    }
}

fn per_second(count: u64, ms: f64) -> f64 {
    if ms > 0.0 {
        count as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

/// A llama.cpp model in this process, built from a `llama_local` profile.
pub struct LlamaLocal {
    settings: worker::Settings,
    shared: Arc<worker::Shared>,
    /// The worker's inbox; the thread starts with the first request.
    inbox: Mutex<Option<mpsc::Sender<worker::Request>>>,
}

impl std::fmt::Debug for LlamaLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaLocal").field("settings", &self.settings).field("facts", &self.facts()).finish()
    }
}

impl LlamaLocal {
    /// Build the provider called `name` from its profile. Checks the files
    /// (present, GGUF) but loads nothing.
    ///
    /// # Errors
    /// No `model_path`, or a model or projector file that is missing or not GGUF.
    pub fn from_profile(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Self, SetupError> {
        let provider = Self::planned(name, profile, config)?;
        let fail = |message: String| SetupError { provider: name.to_string(), message };
        let model_path = &provider.settings.model_path;
        runtime::check_gguf(model_path).map_err(|p| fail(format!("model {} {p}", model_path.display())))?;
        if let Some(mmproj) = &profile.mmproj_path {
            runtime::check_gguf(mmproj).map_err(|p| fail(format!("vision projector {} {p}", mmproj.display())))?;
        }
        Ok(provider)
    }

    /// Build the provider as [`Self::from_profile`] does, without looking at
    /// the files: for the plan of a model that is not downloaded yet. Its
    /// estimates hold; a job would fail to load the model.
    ///
    /// # Errors
    /// No `model_path`, or a setting out of range.
    pub fn planned(name: &str, profile: &ProviderProfile, _config: &Config) -> Result<Self, SetupError> {
        let fail = |message: String| SetupError { provider: name.to_string(), message };
        if profile.protocol != Some(Protocol::LlamaLocal) {
            return Err(fail(format!("providers.{name}.protocol is not \"llama_local\"")));
        }
        let Some(model_path) = profile.model_path.clone() else {
            let named =
                profile.model.as_deref().map(|m| format!(" (model \"{m}\" is a catalogue name)")).unwrap_or_default();
            return Err(fail(format!(
                "providers.{name}.model_path is not set{named}: name the GGUF file of the model"
            )));
        };
        if profile.context_tokens == Some(0) {
            return Err(fail(format!("providers.{name}.context_tokens is 0")));
        }
        if let Err((key, why)) = profile.check_sampling() {
            return Err(fail(format!("providers.{name}.{key}: {why}")));
        }
        let model_name = profile.model.clone().unwrap_or_else(|| {
            model_path
                .file_stem()
                .map_or_else(|| model_path.display().to_string(), |s| s.to_string_lossy().into_owned())
        });
        let settings = worker::Settings {
            provider: name.to_string(),
            model_name,
            model_path,
            mmproj_path: profile.mmproj_path.clone(),
            threads: profile.threads.filter(|&t| t > 0).unwrap_or_else(runtime::default_threads).min(512),
            gpu_layers: profile.gpu_layers.unwrap_or(0),
            context_tokens: profile.context_tokens,
            sampling: sampling::Sampling::from_profile(profile),
            json_grammar: profile.json_grammar.unwrap_or(true),
        };
        Ok(Self { settings, shared: Arc::default(), inbox: Mutex::new(None) })
    }

    /// Load the model now instead of at the first job.
    ///
    /// # Errors
    /// Why llama.cpp cannot load the model, the projector or the context
    /// (e.g. a projector made for another model), as the same error every
    /// later job gets.
    pub async fn load(&self) -> Result<ModelFacts, ProviderError> {
        let (reply, answer) = oneshot::channel();
        self.send(worker::Request::Load { reply })?;
        answer.await.map_err(|_| self.worker_gone())??;
        self.facts().ok_or_else(|| self.worker_gone())
    }

    /// The loaded model's facts; `None` before it is loaded.
    pub fn facts(&self) -> Option<ModelFacts> {
        self.shared.facts.get().copied()
    }

    /// Where the time of the last job went (also a cancelled one).
    pub fn last_timings(&self) -> Option<Timings> {
        *self.shared.last_timings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, request: worker::Request) -> Result<(), ProviderError> {
        let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        if inbox.is_none() {
            let tx = worker::spawn(self.settings.clone(), self.shared.clone())
                .map_err(|e| self.error(ErrorClass::FallBack, format!("cannot start the worker thread: {e}")))?;
            *inbox = Some(tx);
        }
        let tx = inbox.as_ref().ok_or_else(|| self.worker_gone())?;
        tx.send(request).map_err(|_| self.worker_gone())
    }

    fn error(&self, class: ErrorClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(self.settings.provider.clone(), class, message)
    }

    fn worker_gone(&self) -> ProviderError {
        self.error(ErrorClass::FallBack, "the local model's worker thread stopped")
    }

    fn n_ctx(&self) -> u32 {
        self.facts().map_or_else(|| self.settings.context_tokens.unwrap_or(worker::DEFAULT_CONTEXT), |f| f.n_ctx)
    }

    fn image_tokens(&self) -> u32 {
        self.facts().and_then(|f| f.image_tokens).unwrap_or(UNMEASURED_IMAGE_TOKENS)
    }

    /// Refuse what this backend can never serve, before any work.
    fn check(&self, job: &Job) -> Result<(), ProviderError> {
        match &job.input {
            JobInput::Video { .. } => {
                Err(self.error(ErrorClass::FallBack, "the local model takes frames, not a video file"))
            }
            JobInput::Frames(frames) if frames.is_empty() => {
                Err(self.error(ErrorClass::Fatal, "the job has no frames"))
            }
            JobInput::Frames(_) if self.settings.mmproj_path.is_none() => Err(self.error(
                ErrorClass::FallBack,
                format!("model {} has no vision projector (mmproj_path)", self.settings.model_name),
            )),
            JobInput::Frames(frames) => {
                match frames.iter().find(|f| !matches!(f.data, crate::media::FrameData::Rgb(_))) {
                    Some(f) => Err(self.error(
                        ErrorClass::FallBack,
                        format!("frame {} is JPEG; the local model takes RGB frames (FrameFormat::Rgb)", f.index),
                    )),
                    None => Ok(()),
                }
            }
            JobInput::Text(_) => Ok(()),
            JobInput::Audio(_) => Err(crate::provider::no_audio(&self.settings.provider)),
        }
    }

    fn observation(&self, range: TimeRange, text: String) -> Observation {
        Observation {
            range,
            text,
            provider: self.settings.provider.clone(),
            model: Some(self.settings.model_name.clone()),
        }
    }
}

#[async_trait]
impl Provider for LlamaLocal {
    fn id(&self) -> &str {
        &self.settings.provider
    }

    fn model(&self) -> &str {
        &self.settings.model_name
    }

    /// The sampling settings, and `json_grammar=false` when the grammar is
    /// off (on, the default, keys stay as they were).
    fn settings_key(&self) -> String {
        let key = self.settings.sampling.key();
        match (self.settings.json_grammar, key.is_empty()) {
            (true, _) => key,
            (false, true) => "json_grammar=false".into(),
            (false, false) => format!("{key};json_grammar=false"),
        }
    }

    /// `max_images_per_call` is what fits three quarters of the context (the
    /// rest for the prompt and the answer); more are split into chunks anyway.
    fn capabilities(&self) -> Capabilities {
        let per_frame = self.image_tokens() + LABEL_TOKENS;
        let frames = if self.settings.mmproj_path.is_some() { (self.n_ctx() / 4 * 3 / per_frame).max(1) } else { 0 };
        Capabilities {
            native_video: false,
            video_offsets: false,
            max_images_per_call: frames,
            max_inline_bytes: u64::MAX,
            json_schema: self.settings.json_grammar,
            audio: false,
            offline: true,
            rgb_frames: true,
            context_tokens: Some(u64::from(self.n_ctx())),
        }
    }

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        self.check(job)?;
        structured::estimate(job, self.constraint(), |job| {
            let text = prompt::content(job).len() as u64 / 4 + TEMPLATE_TOKENS;
            let frames = match &job.input {
                JobInput::Frames(frames) => frames.len() as u64,
                _ => 0,
            };
            let input_tokens = text + frames * u64::from(self.image_tokens() + LABEL_TOKENS);
            Ok(Estimate { input_tokens, output_tokens: u64::from(job.max_output_tokens), cost_usd: 0.0 })
        })
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        self.check(job)?;
        if !job.structured() {
            return self.observe(job).await;
        }
        structured::answer(&self.settings.provider, job, self.constraint(), |job| async move {
            let mut output = self.observe(&job).await?;
            // A timeline is one answer: frames that need several prompts give several.
            if output.observations.len() != 1 {
                return Err(self.error(
                    ErrorClass::FallBack,
                    format!(
                        "the job's frames need {} prompts in a context of {} tokens; a timeline needs one",
                        output.observations.len(),
                        self.n_ctx()
                    ),
                ));
            }
            let text = output.observations.remove(0).text;
            Ok(RawAnswer { text, usage: output.usage, model: output.model, warnings: output.warnings })
        })
        .await
    }
}

impl LlamaLocal {
    /// How answers are held to the timeline JSON: by the grammar, unless it is off.
    fn constraint(&self) -> Constraint {
        if self.settings.json_grammar {
            Constraint::Grammar
        } else {
            Constraint::Free
        }
    }

    /// One run of the model: an observation per prompt its frames needed.
    async fn observe(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let (reply, answer) = oneshot::channel();
        self.send(worker::Request::Run { job: job.clone(), reply })?;
        let answers = answer.await.map_err(|_| self.worker_gone())??;
        let mut usage = Usage::default();
        let mut observations = Vec::with_capacity(answers.len());
        let mut warnings = Vec::new();
        for a in answers {
            // The engine stops at the cap without seeing an end token: the answer may be cut short.
            if a.output_tokens >= u64::from(job.max_output_tokens) && warnings.is_empty() {
                warnings.push(super::usage::cut_at_cap(&self.settings.provider, job.max_output_tokens));
            }
            usage.input_tokens += a.prompt_tokens;
            usage.output_tokens += a.output_tokens;
            let range = a.range.or(job.span).unwrap_or(TimeRange { start_ms: 0, end_ms: 1 });
            observations.push(self.observation(range, a.text));
        }
        Ok(ProviderOutput { observations, usage, model: self.settings.model_name.clone(), warnings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_on_by_default_and_off_names_itself_in_the_journal_key() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.gguf");
        std::fs::write(&model, b"GGUF").unwrap();
        let local = |temperature: Option<f64>, json_grammar: Option<bool>| {
            let profile = ProviderProfile {
                protocol: Some(Protocol::LlamaLocal),
                model_path: Some(model.clone()),
                temperature,
                seed: Some(3),
                json_grammar,
                ..ProviderProfile::default()
            };
            LlamaLocal::from_profile("local", &profile, &Config::default()).unwrap()
        };
        let key = |temperature, json_grammar| local(temperature, json_grammar).settings_key();
        assert!(local(None, None).capabilities().json_schema);
        assert!(!local(None, Some(false)).capabilities().json_schema);
        // On (the default or said so), keys stay as they were.
        assert_eq!((key(None, None), key(None, Some(true))), (String::new(), String::new()));
        assert_eq!(key(None, Some(false)), "json_grammar=false");
        let sampled = key(Some(0.5), None);
        assert!(!sampled.is_empty());
        assert_eq!(key(Some(0.5), Some(false)), format!("{sampled};json_grammar=false"));
    }

    #[test]
    fn timings_give_rates_per_phase() {
        let t = Timings {
            prompt_tokens: 1100,
            prompt_ms: 3000.0,
            frames: 2,
            frames_ms: 2600.0,
            encode_ms: 800.0,
            encoded_frames: 2,
            generated_tokens: 64,
            generate_ms: 800.0,
            cancelled: false,
        };
        assert_eq!(t.prompt_tokens_per_s(), 1100.0 / 3.0);
        // Without the encoder: 1100 tokens in 2200 ms.
        assert_eq!(t.prompt_eval_tokens_per_s(), Some(500.0));
        assert_eq!(t.encode_ms_per_frame(), Some(400.0));
        assert_eq!(t.ms_per_frame(), 1300.0);
        assert_eq!(t.generated_tokens_per_s(), 80.0);

        // A frame whose encoding was not told apart: no encoder-free rate.
        let partly = Timings { encoded_frames: 1, encode_ms: 400.0, ..t };
        assert_eq!(partly.encode_ms_per_frame(), Some(400.0));
        assert_eq!(partly.prompt_eval_tokens_per_s(), None);
        // A text job: all of the prompt is the text model's.
        let text = Timings { prompt_tokens: 512, prompt_ms: 1024.0, ..Timings::default() };
        assert_eq!((text.prompt_eval_tokens_per_s(), text.encode_ms_per_frame()), (Some(500.0), None));
        assert_eq!(Timings::default().generated_tokens_per_s(), 0.0);
    }
}
