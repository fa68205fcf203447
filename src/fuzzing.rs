//! Entry points for the fuzz targets in `fuzz/` and their regression tests:
//! each reads untrusted text the way vidgate does and must return, whatever
//! the text, never panic. Not part of the stable API.

use std::io::Write;
use std::sync::Arc;

use crate::config::{Config, ConfigSources};
use crate::provider::{Job, JobInput};
use crate::schema::Task;

/// What a provider's answer came to, as the client goes on to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    /// Input and output tokens, when the answer reports its usage.
    pub tokens: Option<(u64, u64)>,
    pub model: Option<String>,
    pub truncated: bool,
}

/// The job every answer is read for: a description from text, capped at 256 tokens.
fn job() -> Job {
    Job {
        task: Task::Describe,
        input: JobInput::Text("frames".into()),
        prompt: Arc::from("Describe the video."),
        prompt_version: Arc::from("fuzz@1"),
        max_output_tokens: 256,
        span: None,
    }
}

/// A 2xx body from an OpenAI-compatible server (Chat Completions).
///
/// # Errors
/// The error vidgate reports for a body it cannot use.
pub fn openai_response(body: &[u8]) -> Result<Answer, String> {
    let answer =
        crate::provider::openai_compat::translate::parse_response(body, &job(), "fuzz").map_err(|e| e.to_string())?;
    Ok(Answer {
        text: answer.text,
        tokens: answer.usage.map(|u| (u.input_tokens, u.output_tokens)),
        model: answer.model,
        truncated: answer.truncated,
    })
}

/// A 2xx body from Gemini's `generateContent`.
///
/// # Errors
/// The error vidgate reports for a body it cannot use.
pub fn gemini_response(body: &[u8]) -> Result<Answer, String> {
    let answer = crate::provider::gemini::translate::parse_response(body, &job(), "fuzz").map_err(|e| e.to_string())?;
    Ok(Answer {
        text: answer.text,
        tokens: answer.usage.map(|u| (u.input_tokens(), u.output_tokens())),
        model: answer.model_version,
        truncated: answer.truncated,
    })
}

/// A user's config file: checked alone, then, when that passes, merged over
/// the defaults and the shipped profiles as `--config FILE` would be.
///
/// # Errors
/// The configuration error, or a temporary file that could not be written.
pub fn config(text: &[u8]) -> Result<Config, String> {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().map_err(|e| e.to_string())?;
    file.write_all(text).and_then(|()| file.flush()).map_err(|e| e.to_string())?;
    crate::config::check_file(file.path()).map_err(|e| e.to_string())?;
    let sources = ConfigSources { file: Some(file.path().to_path_buf()), ..ConfigSources::default() };
    Config::load(&sources).map_err(|e| e.to_string())
}
