//! The Gemini backend's calls: `generateContent` with the video inline or
//! as a file of the Files API (`files`). A video that cannot be used natively
//! is refused with [`ProviderError::video_unusable`], for the gateway to send
//! as frames. All HTTP goes through the shared executor, which holds the key
//! (`x-goog-api-key`) or Vertex AI's bearer token.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use reqwest::header::HeaderName;
use reqwest::Method;

use super::files::{self, Files};
use super::inline::{self, InlineBody};
use super::translate::{self, ParsedAnswer, RequestOptions, VideoPart};
use super::{cost, status};
use crate::config::{
    AuthScheme, Config, ModelProfile, Price, Protocol, ProviderProfile, DEFAULT_INLINE_BYTES, INLINE_REQUEST_LIMIT,
    MAX_INLINE_BYTES,
};
use crate::provider::auth::{self, Auth, TokenSource};
use crate::provider::executor::{Executor, Streamed};
use crate::provider::setup::Basics;
use crate::provider::structured::{self, Constraint, RawAnswer};
use crate::provider::usage;
use crate::provider::{
    Capabilities, ErrorClass, Estimate, Job, JobInput, Provider, ProviderError, ProviderOutput, SetupError,
};
use crate::schema::Usage;

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
    http: Executor,
    options: RequestOptions,
    model_profile: ModelProfile,
    price: Price,
    inline_max_bytes: u64,
    /// Frames per call when sent frames (`frames_per_call`), within the model's limit.
    frames_per_call: u32,
    /// The Files API, which only the Developer API has.
    files: Option<Files>,
    delete_uploads: bool,
    jpeg_quality: u8,
    frame_width: u32,
}

impl Gemini {
    /// Build the provider called `name` from its profile.
    ///
    /// # Errors
    /// A missing base URL, model, price, key variable or Vertex project, named with the config key.
    pub fn from_profile(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Self, SetupError> {
        let fail = |message: String| SetupError { provider: name.to_string(), message };
        let Basics { root, model, price, model_profile } = Basics::from_profile(name, profile, Protocol::Gemini)?;
        let inline_max_bytes = profile.inline_max_bytes.unwrap_or(DEFAULT_INLINE_BYTES);
        if inline_max_bytes > MAX_INLINE_BYTES {
            return Err(fail(format!(
                "providers.{name}.inline_max_bytes: {inline_max_bytes} is over {MAX_INLINE_BYTES} bytes, the \
                 largest file whose base64 fits the API's limit of {INLINE_REQUEST_LIMIT} bytes (100 MB) on a \
                 request with the video inline"
            )));
        }
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
            AuthScheme::None => Auth::None,
            AuthScheme::Bearer => {
                if profile.token_env.is_none() && profile.token_command.is_none() {
                    return Err(fail(format!("providers.{name}: set token_env or token_command for Vertex AI")));
                }
                Auth::Token(TokenSource::from_profile(profile))
            }
            _ => Auth::Header(HeaderName::from_static("x-goog-api-key"), auth::api_key(name, profile)?),
        };
        let image_limit = model_profile.max_images_per_request.unwrap_or(3000).max(1);
        let frames_per_call = profile.frames_per_call.map_or(image_limit, |n| n.clamp(1, image_limit));
        let options = RequestOptions {
            media_resolution: profile.media_resolution.as_deref().and_then(translate::media_resolution),
            fps: (config.sampling.fps > 0.0 && config.sampling.fps <= 24.0).then_some(config.sampling.fps),
            json_schema: model_profile.json_schema.unwrap_or(true),
        };
        let wait_cap = crate::timecode::seconds(config.retry.max_wait_s);
        let http = Executor::new(name, credentials, status::error_facts, wait_cap)?;
        let files = match &api {
            Api::Developer { root } => {
                let cache_path = directories::ProjectDirs::from("", "", "vidgate")
                    .map(|d| d.cache_dir().join(format!("gemini-uploads-{name}.json")));
                let timeout = crate::timecode::seconds(profile.file_timeout_s.unwrap_or(300.0));
                Some(Files::new(root.clone(), timeout, cache_path))
            }
            Api::Vertex { .. } => None,
        };
        Ok(Self {
            name: name.to_string(),
            model,
            api,
            http,
            options,
            model_profile,
            price,
            inline_max_bytes,
            frames_per_call,
            files,
            delete_uploads: profile.delete_uploads.unwrap_or(false),
            jpeg_quality: config.sampling.jpeg_quality,
            frame_width: config.sampling.width,
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

    /// Keep the record of uploaded files here instead of the platform cache dir.
    pub fn with_upload_cache(self, path: PathBuf) -> Self {
        if let Some(files) = &self.files {
            files.set_cache_path(path);
        }
        self
    }

    fn error(&self, class: ErrorClass, message: impl Into<String>) -> ProviderError {
        self.http.error(class, message)
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

    fn redact(&self, text: &str) -> String {
        self.http.redact(text)
    }

    /// One `generateContent` call. A video inline is streamed from its file
    /// into the body as it is sent.
    async fn generate(&self, job: &Job, video: Option<&Video>) -> Result<ParsedAnswer, ProviderError> {
        let part = video.map(|v| match &v.bytes {
            VideoBytes::Inline { marker, .. } => VideoPart::Inline { mime_type: &v.mime, base64: marker },
            VideoBytes::File { uri, .. } => VideoPart::File { mime_type: &v.mime, uri },
        });
        let request = translate::build_request(job, part, &self.options_for(job), &self.name)?;
        let call = self.http.request(Method::POST, self.generate_url());
        let call = match video.map(|v| &v.bytes) {
            Some(VideoBytes::Inline { path, size, marker }) => {
                let json = serde_json::to_vec(&request)
                    .map_err(|e| self.error(ErrorClass::Fatal, format!("cannot write the request: {e}")))?;
                let body = InlineBody::new(json, marker, path, *size)
                    .ok_or_else(|| self.error(ErrorClass::Fatal, "the request lost the place of its video"))?;
                call.streamed(Streamed {
                    len: body.len(),
                    content_type: "application/json",
                    make: Box::new(move || body.body()),
                })
            }
            _ => call.json(&request)?,
        };
        let answer = call.send().await?;
        translate::parse_response(&answer.body, job, &self.name).map_err(|e| self.http.redacted(e))
    }

    /// The video as a part: inline when small, else uploaded (or reused). `None`
    /// when it cannot travel natively, so frames must be sent instead.
    async fn video_part(
        &self,
        path: &Path,
        size: u64,
        sha256: Option<&str>,
    ) -> Result<Option<(VideoBytes, String)>, ProviderError> {
        let mime = files::mime_type(path).to_string();
        let mut size = size;
        if size <= self.inline_max_bytes {
            // Its length as it is now: the body announces it before it is
            // read, so it is this length that must be within the limit.
            size = tokio::fs::metadata(path)
                .await
                .map_err(|e| self.error(ErrorClass::Fatal, format!("{}: cannot read it: {e}", path.display())))?
                .len();
            if size <= self.inline_max_bytes {
                let path = path.to_path_buf();
                return Ok(Some((VideoBytes::Inline { path, size, marker: inline::marker() }, mime)));
            }
            tracing::info!(provider = %self.name, "{}: {size} bytes now, over the inline limit of {} bytes", path.display(), self.inline_max_bytes);
        }
        let Some(files) = &self.files else {
            tracing::info!(provider = %self.name, "{size} bytes is over the inline limit and Vertex AI has no Files API: sending frames");
            return Ok(None);
        };
        Ok(files
            .ensure(&self.http, path, size, &mime, sha256)
            .await?
            .map(|f| (VideoBytes::File { name: f.name, uri: f.uri, fresh: f.fresh }, f.mime_type)))
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

    /// How answers are held to the timeline JSON: by the response schema,
    /// where the model takes one.
    fn constraint(&self) -> Constraint {
        Constraint::schema_if(self.options.json_schema)
    }

    /// The output for `job` by the rule of [`structured`], each call one
    /// `generateContent` with the same `video`.
    async fn respond(&self, job: &Job, video: Option<&Video>) -> Result<ProviderOutput, ProviderError> {
        structured::answer(&self.name, job, self.constraint(), |job| async move {
            let estimate = cost::estimate(&job, &self.model_profile, &self.price, &self.options_for(&job), true);
            let answer = self.generate(&job, video).await?;
            let mut warnings = Vec::new();
            let usage = self.usage(&answer, &job, &estimate, &mut warnings);
            let model = answer.model_version.unwrap_or_else(|| self.model.clone());
            Ok(RawAnswer { text: answer.text, usage, model, warnings })
        })
        .await
    }
}

/// How the video travels in one request.
enum VideoBytes {
    /// In the request, read from the file as it is sent. `marker` stands for
    /// its base64 in the JSON written before.
    Inline {
        path: PathBuf,
        size: u64,
        marker: String,
    },
    File {
        name: String,
        uri: String,
        fresh: bool,
    },
}

/// The video of a request, and its mime type.
struct Video {
    bytes: VideoBytes,
    mime: String,
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
        structured::estimate(job, self.constraint(), |job| {
            Ok(cost::estimate(job, &self.model_profile, &self.price, &self.options_for(job), true))
        })
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        self.answer(job).await.map_err(|e| e.redacted(|text| self.redact(text)))
    }
}

impl Gemini {
    async fn answer(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        self.estimate(job)?;
        let JobInput::Video { path, size_bytes, sha256, .. } = &job.input else {
            return self.respond(job, None).await;
        };
        let native = self.model_profile.native_video.unwrap_or(true);
        let part = if native { self.video_part(path, *size_bytes, sha256.as_deref()).await? } else { None };
        let Some((bytes, mime)) = part else {
            let mut err = self.error(
                ErrorClass::FallBack,
                "the video cannot be sent whole (over the inline limit with no Files API, or its upload did not become ACTIVE)",
            );
            err.not_sent = true;
            return Err(video_unusable(err));
        };
        let uploaded = match &bytes {
            VideoBytes::Inline { .. } => None,
            VideoBytes::File { name, fresh, .. } => Some((name.clone(), *fresh)),
        };
        let result = self.respond(job, Some(&Video { bytes, mime })).await;
        if let (Some((name, _)), true, Some(files)) = (&uploaded, self.delete_uploads, &self.files) {
            files.delete(&self.http, name).await;
        }
        match result {
            // The video itself was refused (format, length): its frames may still do.
            Err(e) if e.status == Some(400) && !e.disables_provider => Err(video_unusable(e)),
            result => result,
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

    #[test]
    fn inline_max_bytes_stops_at_the_apis_inline_limit() {
        let build = |bytes: Option<u64>| {
            let mut profile = crate::provider::test_profile(Protocol::Gemini, "gemini-test");
            profile.inline_max_bytes = bytes;
            Gemini::from_profile("gemini", &profile, &Config::default())
        };
        assert_eq!(build(None).unwrap().capabilities().max_inline_bytes, 20_000_000, "the default");
        assert_eq!(build(Some(MAX_INLINE_BYTES)).unwrap().capabilities().max_inline_bytes, 74_000_000);
        let err = build(Some(MAX_INLINE_BYTES + 1)).unwrap_err().to_string();
        assert!(err.contains("providers.gemini.inline_max_bytes") && err.contains("base64"), "{err}");
        // The largest file's request, with a long prompt, within the API's limit.
        let mark = inline::marker();
        let prompt = "p".repeat(200_000);
        let json = serde_json::to_vec(&serde_json::json!({"contents": [{"parts": [
            {"inlineData": {"mimeType": "video/mp4", "data": mark}, "videoMetadata": {"fps": 1.0}},
            {"text": prompt}]}], "generationConfig": {"maxOutputTokens": 8192}}))
        .unwrap();
        let body = InlineBody::new(json, &mark, Path::new("v.mp4"), MAX_INLINE_BYTES).unwrap();
        assert!(body.len() <= INLINE_REQUEST_LIMIT, "{} bytes", body.len());
        let cap = InlineBody::new(mark.clone().into_bytes(), &mark, Path::new("v.mp4"), 100_000_000).unwrap();
        assert!(cap.len() > INLINE_REQUEST_LIMIT, "a file of 100 MB does not fit: {} bytes", cap.len());
    }
}
