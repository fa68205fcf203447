//! The provider: a CTranslate2 Whisper loaded once, on first use, and run
//! on blocking threads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ct2rs::{ComputeType, Config as Ct2Config, Whisper, WhisperOptions};

use super::window::{self, Piece};
use super::{missing_files, samples_of, WINDOW_SAMPLES};
use crate::config::{Config, Protocol, ProviderProfile};
use crate::media::SAMPLE_RATE;
use crate::provider::transcription::in_video_time;
use crate::provider::{
    AudioClip, Capabilities, ErrorClass, Estimate, Job, JobInput, Provider, ProviderError, ProviderOutput, SetupError,
};
use crate::schema::Usage;

/// Beams, as faster-whisper and OpenAI's decoder search by default.
const BEAM_SIZE: usize = 5;

/// Whisper in process, built from a `whisper_local` profile.
pub struct WhisperLocal {
    name: String,
    model: String,
    dir: PathBuf,
    threads: usize,
    language: Option<String>,
    /// Loaded on the first job; the lock is held while loading, so two
    /// first jobs load it once.
    loaded: Arc<Mutex<Option<Arc<Whisper>>>>,
}

impl std::fmt::Debug for WhisperLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperLocal")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("dir", &self.dir)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// Every core, at most 8 (CTranslate2 gains little past that for base).
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

impl WhisperLocal {
    /// Build the provider called `name`; the model directory is checked
    /// here, loaded on the first job. The language comes from `[speech]`.
    ///
    /// # Errors
    /// Another protocol, or no model directory with the files Whisper needs
    /// (the message names the command that fetches it).
    pub fn from_profile(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Self, SetupError> {
        let fail = |message: String| SetupError { provider: name.to_string(), message };
        if profile.protocol != Some(Protocol::WhisperLocal) {
            return Err(fail(format!("providers.{name}.protocol is not \"whisper_local\"")));
        }
        let dir = crate::models::speech_model_dir(name, profile, config).map_err(fail)?;
        if let Some(missing) = missing_files(&dir) {
            return Err(fail(format!(
                "{missing} (`vidgate models pull whisper-base` or `fixtures/fetch.sh --model whisper-base` fetches one; \
                 providers.{name}.model_path names it)"
            )));
        }
        let model = profile
            .model
            .clone()
            .unwrap_or_else(|| dir.file_name().map_or_else(|| "whisper".into(), |n| n.to_string_lossy().into_owned()));
        Ok(Self {
            name: name.to_string(),
            model,
            dir,
            threads: profile.threads.filter(|&t| t > 0).map_or_else(default_threads, |t| t.min(512) as usize),
            language: config.speech.language.clone(),
            loaded: Arc::new(Mutex::new(None)),
        })
    }

    /// Load the model now rather than on the first job (blocking: call it
    /// off the async runtime).
    ///
    /// # Errors
    /// CTranslate2 cannot load the directory.
    pub fn load_now(&self) -> Result<(), String> {
        load(&self.loaded, &self.dir, self.threads)
            .map(|_| ())
            .map_err(|e| format!("cannot load the Whisper model in {}: {e:#}", self.dir.display()))
    }

    fn clip<'a>(&self, job: &'a Job) -> Result<&'a AudioClip, ProviderError> {
        match &job.input {
            JobInput::Audio(clip) => Ok(clip),
            _ => Err(ProviderError::new(&self.name, ErrorClass::FallBack, "a speech provider takes audio only")),
        }
    }
}

/// The model, loaded into `slot` the first time.
fn load(slot: &Mutex<Option<Arc<Whisper>>>, dir: &std::path::Path, threads: usize) -> anyhow::Result<Arc<Whisper>> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(whisper) = slot.as_ref() {
        return Ok(whisper.clone());
    }
    let config =
        Ct2Config { compute_type: ComputeType::INT8, num_threads_per_replica: threads, ..Ct2Config::default() };
    let whisper = Arc::new(Whisper::new(dir, config)?);
    *slot = Some(whisper.clone());
    Ok(whisper)
}

/// What is said in `samples` (16 kHz), in seconds from their start: 30 s
/// windows, each from where the last whole piece of the one before ended.
fn transcribe(whisper: &Whisper, samples: &[f32], language: Option<&str>) -> anyhow::Result<Vec<Piece>> {
    let rate = f64::from(SAMPLE_RATE);
    let options = WhisperOptions { beam_size: BEAM_SIZE, ..WhisperOptions::default() };
    let mut window = vec![0f32; WINDOW_SAMPLES];
    let mut pieces = Vec::new();
    let mut seek = 0usize;
    while seek < samples.len() {
        let end = (seek + WINDOW_SAMPLES).min(samples.len());
        // Whisper hears 30 s: a shorter window is padded with silence, as
        // Whisper's own front end pads it.
        window.fill(0.0);
        window[..end - seek].copy_from_slice(&samples[seek..end]);
        let decoded = whisper.generate(&window, language, true, &options)?.into_iter().next().unwrap_or_default();
        let last = end == samples.len();
        let heard = window::read(&decoded, (end - seek) as f64 / rate, last);
        let offset = seek as f64 / rate;
        pieces.extend(heard.pieces.into_iter().map(|p| Piece {
            start_s: p.start_s + offset,
            end_s: p.end_s + offset,
            text: p.text,
        }));
        if last {
            break;
        }
        seek += ((heard.heard_s * rate) as usize).max(1);
    }
    Ok(pieces)
}

#[async_trait]
impl Provider for WhisperLocal {
    fn id(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    /// The language and the search change the transcript.
    fn settings_key(&self) -> String {
        format!("language={:?};beam={BEAM_SIZE};int8", self.language)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_images_per_call: 1,
            max_inline_bytes: u64::MAX,
            audio: true,
            offline: true,
            ..Capabilities::default()
        }
    }

    /// Nothing to pay.
    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        self.clip(job)?;
        Ok(Estimate { input_tokens: 0, output_tokens: 0, cost_usd: 0.0 })
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let clip = self.clip(job)?;
        let fail = |message: String| ProviderError::new(&self.name, ErrorClass::FallBack, message);
        let samples = samples_of(&clip.wav).map_err(fail)?;
        let (slot, dir, threads) = (self.loaded.clone(), self.dir.clone(), self.threads);
        let language = self.language.clone();
        let pieces = tokio::task::spawn_blocking(move || {
            let whisper = load(&slot, &dir, threads)
                .map_err(|e| format!("cannot load the Whisper model in {}: {e:#}", dir.display()))?;
            transcribe(&whisper, &samples, language.as_deref()).map_err(|e| format!("Whisper failed: {e:#}"))
        })
        .await
        .map_err(|e| fail(crate::observe::why(e)))?
        .map_err(fail)?;
        let heard = pieces.iter().map(|p| (p.start_s, p.end_s, p.text.as_str()));
        Ok(ProviderOutput {
            observations: in_video_time(clip, heard, &self.name, &self.model),
            usage: Usage { input_tokens: 0, output_tokens: 0, cost_usd: 0.0 },
            model: self.model.clone(),
            warnings: Vec::new(),
        })
    }
}
