//! The one place the Gemini backend does I/O: `generateContent`, and the Files
//! API's resumable upload and its state polling. A video that cannot be used
//! natively is refused with [`ProviderError::video_unusable`], for the gateway
//! to send as frames.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::status::{self, FileInfo, FileState};
use super::translate::{self, ParsedAnswer, RequestOptions, VideoPart};
use super::{cost, upload};
use crate::config::{AuthScheme, Config, ModelProfile, Price, Protocol, ProviderProfile};
use crate::provider::http::{self, BodyError};
use crate::provider::usage;
use crate::provider::{
    Capabilities, ErrorClass, Estimate, Job, JobInput, Provider, ProviderError, ProviderOutput, SetupError,
};
use crate::schema::{Observation, TimeRange, Usage};
use crate::secret::Secret;

const BODY_LIMIT: usize = 8 << 20;
const ERROR_BODY_LIMIT: usize = 64 << 10;
/// Uploaded files live 48 hours; reuse one only with an hour to spare.
const FILE_LIFETIME: Duration = Duration::from_secs(47 * 3600);

/// How requests are authorised.
#[derive(Debug)]
enum Credentials {
    /// The Developer API: `x-goog-api-key`.
    Key(Secret),
    /// Vertex AI: a bearer token from a variable, or from a command run once.
    Token {
        env: Option<String>,
        command: Option<Vec<String>>,
        cached: Mutex<Option<Secret>>,
    },
    None,
}

/// Where a model's `generateContent` lives.
#[derive(Debug)]
enum Api {
    Developer { root: String },
    Vertex { root: String, project: String, location: String },
}

/// A Gemini endpoint (Developer API or Vertex AI), built from a profile.
#[derive(Debug)]
pub struct Gemini {
    name: String,
    model: String,
    api: Api,
    credentials: Credentials,
    http: reqwest::Client,
    options: RequestOptions,
    model_profile: ModelProfile,
    price: Price,
    inline_max_bytes: u64,
    /// Frames per call when sent frames (`frames_per_call`), within the model's limit.
    frames_per_call: u32,
    file_timeout: Duration,
    delete_uploads: bool,
    wait_cap: Duration,
    jpeg_quality: u8,
    frame_width: u32,
    disabled: AtomicBool,
    uploads: Mutex<UploadCache>,
}

/// Files uploaded before, by content hash, kept on disk across runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct UploadCache {
    #[serde(skip)]
    path: Option<PathBuf>,
    files: HashMap<String, CachedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedFile {
    name: String,
    uri: String,
    mime_type: String,
    uploaded_unix: u64,
}

impl Gemini {
    /// Build the provider called `name` from its profile.
    ///
    /// # Errors
    /// A missing base URL, model, price, key variable or Vertex project, named with the config key.
    pub fn from_profile(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Self, SetupError> {
        let fail = |message: String| SetupError { provider: name.to_string(), message };
        if profile.protocol != Some(Protocol::Gemini) {
            return Err(fail(format!("providers.{name}.protocol is not \"gemini\"")));
        }
        let root = profile.base_url.as_deref().ok_or_else(|| fail(format!("providers.{name}.base_url is not set")))?;
        let root = root.trim_end_matches('/').to_string();
        let model = profile.model.clone().ok_or_else(|| fail(format!("providers.{name}.model is not set")))?;
        let price = profile
            .price_for(&model)
            .ok_or_else(|| {
                fail(format!("no price for model `{model}`: set [providers.{name}.price] or [providers.{name}.models.\"{model}\".price]"))
            })?;
        let auth = profile.auth_scheme();
        let vertex = auth == AuthScheme::Bearer || profile.project.is_some();
        let api = if vertex {
            let project = profile
                .project
                .clone()
                .ok_or_else(|| fail(format!("providers.{name}.project is not set (Vertex AI)")))?;
            let location = profile.location.clone().unwrap_or_else(|| "us-central1".into());
            Api::Vertex { root, project, location }
        } else {
            Api::Developer { root }
        };
        let credentials = match auth {
            AuthScheme::None => Credentials::None,
            AuthScheme::Bearer => {
                if profile.token_env.is_none() && profile.token_command.is_none() {
                    return Err(fail(format!("providers.{name}: set token_env or token_command for Vertex AI")));
                }
                Credentials::Token {
                    env: profile.token_env.clone(),
                    command: profile.token_command.clone(),
                    cached: Mutex::new(None),
                }
            }
            _ => {
                let var = profile
                    .api_key_env
                    .as_deref()
                    .ok_or_else(|| fail(format!("providers.{name}.api_key_env is not set")))?;
                Credentials::Key(Secret::from_env(var).ok_or_else(|| {
                    fail(format!("the environment variable {var} (providers.{name}.api_key_env) is not set"))
                })?)
            }
        };
        let model_profile = profile.model_profile(&model).cloned().unwrap_or_default();
        let image_limit = model_profile.max_images_per_request.unwrap_or(3000).max(1);
        let frames_per_call = profile.frames_per_call.map_or(image_limit, |n| n.clamp(1, image_limit));
        let options = RequestOptions {
            media_resolution: profile.media_resolution.as_deref().and_then(translate::media_resolution),
            fps: (config.sampling.fps > 0.0 && config.sampling.fps <= 24.0).then_some(config.sampling.fps),
            json_schema: model_profile.json_schema.unwrap_or(true),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        let cache_path = directories::ProjectDirs::from("", "", "vidgate")
            .map(|d| d.cache_dir().join(format!("gemini-uploads-{name}.json")));
        Ok(Self {
            name: name.to_string(),
            model,
            api,
            credentials,
            http,
            options,
            model_profile,
            price,
            inline_max_bytes: profile.inline_max_bytes.unwrap_or(20_000_000),
            frames_per_call,
            file_timeout: crate::timecode::seconds(profile.file_timeout_s.unwrap_or(300.0)),
            delete_uploads: profile.delete_uploads.unwrap_or(false),
            wait_cap: crate::timecode::seconds(config.retry.max_wait_s),
            jpeg_quality: config.sampling.jpeg_quality,
            frame_width: config.sampling.width,
            disabled: AtomicBool::new(false),
            uploads: Mutex::new(UploadCache::load(cache_path)),
        })
    }

    /// The profile's options, with the sampling the job's plan chose: the
    /// request and its estimate follow a budget's lowered fps. The API takes
    /// at most 24 a second.
    fn options_for(&self, job: &Job) -> RequestOptions {
        let mut options = self.options.clone();
        if let JobInput::Video { fps: Some(fps), .. } = job.input {
            if fps.is_finite() && fps > 0.0 {
                options.fps = Some(fps.min(translate::MAX_FPS));
            }
        }
        options
    }

    pub(super) fn id_str(&self) -> &str {
        &self.name
    }

    /// Keep the record of uploaded files here instead of the platform cache dir.
    pub fn with_upload_cache(self, path: PathBuf) -> Self {
        *self.uploads.lock().unwrap_or_else(|e| e.into_inner()) = UploadCache::load(Some(path));
        self
    }

    fn error(&self, class: ErrorClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(self.name.clone(), class, message)
    }

    fn generate_url(&self) -> String {
        match &self.api {
            Api::Developer { root } => format!("{root}/v1beta/models/{}:generateContent", self.model),
            Api::Vertex { root, project, location } => format!(
                "{root}/v1/projects/{project}/locations/{location}/publishers/google/models/{}:generateContent",
                self.model
            ),
        }
    }

    /// The API root of the Files API, which only the Developer API has.
    fn files_root(&self) -> Option<&str> {
        match &self.api {
            Api::Developer { root } => Some(root),
            Api::Vertex { .. } => None,
        }
    }

    /// Add the credentials to a request.
    pub(super) async fn authorise(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        match &self.credentials {
            Credentials::None => Ok(builder),
            Credentials::Key(key) => Ok(builder.header("x-goog-api-key", key.expose())),
            Credentials::Token { env, command, cached } => {
                let known = cached.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let token = match known {
                    Some(token) => token,
                    None => {
                        let token = self.fetch_token(env.as_deref(), command.as_deref()).await?;
                        *cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
                        token
                    }
                };
                Ok(builder.bearer_auth(token.expose()))
            }
        }
    }

    async fn fetch_token(&self, env: Option<&str>, command: Option<&[String]>) -> Result<Secret, ProviderError> {
        if let Some(token) = env.and_then(Secret::from_env) {
            return Ok(token);
        }
        let Some((program, args)) = command.and_then(|c| c.split_first()) else {
            return Err(
                self.error(ErrorClass::FallBack, format!("no bearer token: {} is not set", env.unwrap_or("token_env")))
            );
        };
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(program).args(args).kill_on_drop(true).output(),
        )
        .await
        .map_err(|_| self.error(ErrorClass::FallBack, format!("the token command `{program}` took over 30 s")))?
        .map_err(|e| self.error(ErrorClass::FallBack, format!("cannot run the token command `{program}`: {e}")))?;
        let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() || token.is_empty() {
            return Err(self.error(
                ErrorClass::FallBack,
                format!("the token command `{program}` gave no token ({})", output.status),
            ));
        }
        Ok(Secret::new(token))
    }

    pub(super) fn redact(&self, text: &str) -> String {
        match &self.credentials {
            Credentials::Key(key) => key.redact(text),
            Credentials::Token { cached, .. } => match cached.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                Some(token) => token.redact(text),
                None => text.to_string(),
            },
            Credentials::None => text.to_string(),
        }
    }

    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Turn a failed HTTP answer into a classified error; refused keys disable the provider.
    pub(super) async fn status_error(&self, response: reqwest::Response) -> ProviderError {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = http::read_capped(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
        let body = self.redact(&String::from_utf8_lossy(&body));
        let facts = status::error_facts(body.as_bytes());
        let err = crate::provider::classify(&self.name, status, &body, facts.as_ref(), &headers, self.wait_cap)
            .redacted(|t| self.redact(t));
        if err.disables_provider {
            self.disabled.store(true, Ordering::SeqCst);
        }
        err
    }

    pub(super) fn send_error(&self, e: &reqwest::Error, maybe_billed: bool) -> ProviderError {
        let detail = self.redact(&crate::secret::redact_urls(&http::error_chain(e)));
        let mut err = self.error(ErrorClass::Transient, format!("the request failed: {detail}"));
        err.maybe_billed = maybe_billed && !e.is_connect();
        err.unreachable = e.is_connect();
        err
    }

    /// One `generateContent` call.
    async fn generate(&self, job: &Job, video: Option<VideoPart<'_>>) -> Result<ParsedAnswer, ProviderError> {
        let request = translate::build_request(job, video, &self.options_for(job), &self.name)?;
        let builder = self.authorise(self.http.post(self.generate_url()).json(&request)).await?;
        let response = builder.send().await.map_err(|e| self.send_error(&e, true))?;
        if !response.status().is_success() {
            return Err(self.status_error(response).await);
        }
        let body = http::read_capped(response, BODY_LIMIT).await.map_err(|e| {
            let class = match e {
                BodyError::TooLarge { .. } => ErrorClass::FallBack,
                BodyError::Broken(_) => ErrorClass::Transient,
            };
            let mut err = self.error(class, e.to_string());
            err.maybe_billed = true;
            err
        })?;
        translate::parse_response(&body, job, &self.name).map_err(|e| e.redacted(|text| self.redact(text)))
    }

    /// The video as a part: inline when small, else uploaded (or reused). `None`
    /// when it cannot travel natively, so frames must be sent instead.
    async fn video_part(&self, path: &Path, size: u64) -> Result<Option<(VideoBytes, String)>, ProviderError> {
        let mime = mime_type(path).to_string();
        if size <= self.inline_max_bytes {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| self.error(ErrorClass::Fatal, format!("{}: cannot read it: {e}", path.display())))?;
            return Ok(Some((VideoBytes::Inline(bytes), mime)));
        }
        let Some(root) = self.files_root() else {
            tracing::info!(provider = %self.name, "{size} bytes is over the inline limit and Vertex AI has no Files API: sending frames");
            return Ok(None);
        };
        let content = crate::models::hash_file(path)
            .await
            .map_err(|e| self.error(ErrorClass::Fatal, format!("{}: cannot read it: {e}", path.display())))?;
        // An upload belongs to one API root (and so one project's files).
        let hash = format!("{root} {content}");
        if let Some(cached) = self.uploads.lock().unwrap_or_else(|e| e.into_inner()).fresh(&hash) {
            tracing::info!(provider = %self.name, file = %cached.name, "reusing an uploaded file");
            return Ok(Some((VideoBytes::File { name: cached.name, uri: cached.uri, fresh: false }, cached.mime_type)));
        }
        let file = upload::upload(self, root, path, size, &mime).await?;
        let file = match self.wait_active(root, file).await? {
            Some(file) => file,
            None => return Ok(None),
        };
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remember(&hash, &file, &mime);
        Ok(Some((VideoBytes::File { name: file.name, uri: file.uri, fresh: true }, mime)))
    }

    /// Poll until the file is ACTIVE. `None` when it FAILED or the wait ran out
    /// (the file is then deleted, so nothing is left behind).
    async fn wait_active(&self, root: &str, mut file: FileInfo) -> Result<Option<FileInfo>, ProviderError> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            match file.state {
                FileState::Active => return Ok(Some(file)),
                FileState::Failed => {
                    tracing::warn!(provider = %self.name, file = %file.name, error = %self.redact(&format!("{:?}", file.error)), "the upload FAILED processing: sending frames");
                    self.delete(root, &file.name).await;
                    return Ok(None);
                }
                FileState::Processing | FileState::Unknown => {}
            }
            if started.elapsed() + delay > self.file_timeout {
                tracing::warn!(provider = %self.name, file = %file.name, "the upload is still PROCESSING after {:?}: sending frames", self.file_timeout);
                self.delete(root, &file.name).await;
                return Ok(None);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            let url = format!("{root}/v1beta/{}", file.name);
            let response =
                self.authorise(self.http.get(&url)).await?.send().await.map_err(|e| self.send_error(&e, false))?;
            if !response.status().is_success() {
                return Err(self.status_error(response).await);
            }
            let body = http::read_capped(response, ERROR_BODY_LIMIT)
                .await
                .map_err(|e| self.error(ErrorClass::Transient, e.to_string()))?;
            file = status::parse_file(&body).map_err(|e| self.error(ErrorClass::Transient, e))?;
        }
    }

    async fn delete(&self, root: &str, name: &str) {
        let url = format!("{root}/v1beta/{name}");
        let request = match self.authorise(self.http.delete(&url)).await {
            Ok(r) => r,
            Err(_) => return,
        };
        match request.send().await {
            Ok(r) if r.status().is_success() => {
                self.uploads.lock().unwrap_or_else(|e| e.into_inner()).forget(name);
            }
            Ok(r) => {
                tracing::warn!(provider = %self.name, file = name, status = r.status().as_u16(), "could not delete an uploaded file")
            }
            Err(e) => {
                tracing::warn!(provider = %self.name, file = name, "could not delete an uploaded file: {}", self.redact(&e.to_string()))
            }
        }
    }

    /// What the answer cost, and what is doubtful about it: usage that
    /// cannot be read is billed at the estimate; a cut answer is kept.
    fn usage(&self, answer: &ParsedAnswer, job: &Job, fallback: &Estimate, warnings: &mut Vec<String>) -> Usage {
        if let Some(what) = &answer.unusable_usage {
            warnings.push(usage::unusable(&self.name, what, fallback.cost_usd));
        }
        if answer.truncated {
            let cut = usage::cut_at_cap(&self.name, job.max_output_tokens);
            warnings.push(format!("{cut} (finishReason \"MAX_TOKENS\")"));
        }
        warnings.iter().for_each(|w| tracing::warn!("{w}"));
        match &answer.usage {
            Some(t) => Usage {
                input_tokens: t.input_tokens(),
                output_tokens: t.output_tokens(),
                cost_usd: cost::actual_cost(t, &self.price),
            },
            None => Usage {
                input_tokens: fallback.input_tokens,
                output_tokens: fallback.output_tokens,
                cost_usd: fallback.cost_usd,
            },
        }
    }

    fn output(&self, job: &Job, answer: ParsedAnswer, estimate: &Estimate) -> Result<ProviderOutput, ProviderError> {
        let mut warnings = Vec::new();
        let usage = self.usage(&answer, job, estimate, &mut warnings);
        let model = answer.model_version.unwrap_or_else(|| self.model.clone());
        let span = job.covered();
        let observations = if translate::structured(job, &self.options) {
            let events = crate::timeline::parse_events(&answer.text, span).map_err(|reason| {
                let mut err =
                    self.error(ErrorClass::FallBack, format!("unit failed: the timeline is invalid: {reason}"));
                err.maybe_billed = true;
                err.billed = Some(Box::new(usage));
                err
            })?;
            events
                .into_iter()
                .map(|e| Observation {
                    range: TimeRange { start_ms: e.start_ms, end_ms: e.end_ms.max(e.start_ms + 1) },
                    text: e.text,
                    provider: self.name.clone(),
                    model: Some(model.clone()),
                })
                .collect()
        } else {
            vec![Observation {
                range: span,
                text: answer.text.trim().to_string(),
                provider: self.name.clone(),
                model: Some(model.clone()),
            }]
        };
        Ok(ProviderOutput { observations, usage, model, warnings })
    }
}

/// How the video travels in one request.
enum VideoBytes {
    Inline(Vec<u8>),
    File { name: String, uri: String, fresh: bool },
}

fn mime_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("webm") => "video/webm",
        Some("mov") => "video/quicktime",
        Some("avi") => "video/x-msvideo",
        Some("mkv") => "video/x-matroska",
        Some("mpg" | "mpeg") => "video/mpeg",
        Some("flv") => "video/x-flv",
        Some("wmv") => "video/x-ms-wmv",
        Some("3gp") => "video/3gpp",
        _ => "video/mp4",
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl UploadCache {
    fn load(path: Option<PathBuf>) -> Self {
        let mut cache: UploadCache = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        cache.path = path;
        cache
    }

    fn fresh(&self, hash: &str) -> Option<CachedFile> {
        self.files.get(hash).filter(|f| now_unix().saturating_sub(f.uploaded_unix) < FILE_LIFETIME.as_secs()).cloned()
    }

    fn remember(&mut self, hash: &str, file: &FileInfo, mime: &str) {
        let now = now_unix();
        self.files.retain(|_, f| now.saturating_sub(f.uploaded_unix) < FILE_LIFETIME.as_secs());
        self.files.insert(
            hash.to_string(),
            CachedFile {
                name: file.name.clone(),
                uri: file.uri.clone(),
                mime_type: mime.to_string(),
                uploaded_unix: now,
            },
        );
        self.save();
    }

    fn forget(&mut self, name: &str) {
        self.files.retain(|_, f| f.name != name);
        self.save();
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(bytes) = serde_json::to_vec_pretty(self) {
            let tmp = path.with_extension("json.tmp");
            if std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
}

#[async_trait]
impl Provider for Gemini {
    fn id(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    /// Everything besides the job that changes what is sent: the video's
    /// sampling rate and resolution, the schema, and the JPEG quality and
    /// width of the frames sent when the video cannot go whole.
    fn settings_key(&self) -> String {
        let o = &self.options;
        let fps = o.fps.map_or_else(|| "api".to_string(), |f| f.to_string());
        let resolution = o.media_resolution.map_or_else(|| "api".to_string(), |r| format!("{r:?}"));
        format!(
            "fps={fps};media_resolution={resolution};json_schema={};jpeg_quality={};width={}",
            o.json_schema, self.jpeg_quality, self.frame_width
        )
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_video: self.model_profile.native_video.unwrap_or(true),
            video_offsets: true,
            max_images_per_call: self.frames_per_call,
            max_inline_bytes: self.inline_max_bytes,
            json_schema: self.options.json_schema,
            audio: self.model_profile.audio.unwrap_or(true),
            offline: false,
            rgb_frames: false,
            context_tokens: self.model_profile.context_tokens,
        }
    }

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        // For a video job this is the video's cost: the frames it may fall back to cost less.
        Ok(cost::estimate(job, &self.model_profile, &self.price, &self.options_for(job), true))
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        self.answer(job).await.map_err(|e| e.redacted(|text| self.redact(text)))
    }
}

impl Gemini {
    async fn answer(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        if self.disabled.load(Ordering::SeqCst) {
            return Err(self.error(ErrorClass::FallBack, "disabled for this run: its key was refused"));
        }
        let estimate = self.estimate(job)?;
        let JobInput::Video { path, size_bytes, .. } = &job.input else {
            let answer = self.generate(job, None).await?;
            return self.output(job, answer, &estimate);
        };
        let native = self.model_profile.native_video.unwrap_or(true);
        let part = if native { self.video_part(path, *size_bytes).await? } else { None };
        let Some((bytes, mime)) = part else {
            let mut err = self.error(
                ErrorClass::FallBack,
                "the video cannot be sent whole (over the inline limit with no Files API, or its upload did not become ACTIVE)",
            );
            err.not_sent = true;
            return Err(video_unusable(err));
        };
        let (video, uploaded) = match &bytes {
            VideoBytes::Inline(data) => (VideoPart::Inline { mime_type: &mime, bytes: data }, None),
            VideoBytes::File { name, uri, fresh } => {
                (VideoPart::File { mime_type: &mime, uri }, Some((name.clone(), *fresh)))
            }
        };
        let result = self.generate(job, Some(video)).await;
        if let (Some((name, _)), true, Some(root)) = (&uploaded, self.delete_uploads, self.files_root()) {
            self.delete(root, name).await;
        }
        match result {
            // The video itself was refused (format, length): its frames may still do.
            Err(e) if e.status == Some(400) && !e.disables_provider => Err(video_unusable(e)),
            result => self.output(job, result?, &estimate),
        }
    }
}

/// `err`, marked as saying that the video itself cannot be used: the gateway
/// sends this provider frames instead.
fn video_unusable(mut err: ProviderError) -> ProviderError {
    err.video_unusable = true;
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(edit: impl FnOnce(&mut ProviderProfile, &mut Config)) -> String {
        let mut profile = crate::provider::test_profile(Protocol::Gemini, "gemini-test");
        let mut config = Config::default();
        edit(&mut profile, &mut config);
        Gemini::from_profile("gemini", &profile, &config).unwrap().settings_key()
    }

    #[test]
    fn every_setting_that_changes_the_request_changes_the_journal_key() {
        let base = key(|_, _| {});
        assert_eq!(base, key(|_, _| {}));
        assert_ne!(base, key(|_, c| c.sampling.fps = 5.0), "fps");
        assert_ne!(base, key(|p, _| p.media_resolution = Some("low".into())), "media_resolution");
        assert_ne!(
            key(|p, _| p.media_resolution = Some("low".into())),
            key(|p, _| p.media_resolution = Some("high".into()))
        );
        assert_ne!(base, key(|_, c| c.sampling.jpeg_quality = 50), "JPEG quality");
        assert_ne!(base, key(|_, c| c.sampling.width = 640), "frame width");
    }
}
