//! The OpenAI-compatible backend: Chat Completions with images as base64 data
//! URLs, for OpenAI, Azure OpenAI, OpenRouter, vLLM, Ollama, llama-server,
//! LM Studio, Groq and the like. A vendor that speaks this protocol is a
//! profile in `providers/`, not code here.
//!
//! Follows the Chat Completions reference
//! <https://platform.openai.com/docs/api-reference/chat>, the image-token rules
//! of the vision guide <https://platform.openai.com/docs/guides/images-vision#calculating-costs>
//! and the prices of <https://platform.openai.com/docs/pricing> (checked 2026-11-26).
//!
//! A model whose profile says `native_video = true` is sent the video itself
//! instead (see `video` for the shapes and the frames it counts).
//!
//! The translation is pure: `translate` builds the request and reads the
//! answer, `cost` counts tokens and dollars; neither does any I/O. The wire
//! types of `wire` never leave this module.

mod client;
mod cost;
pub(crate) mod translate;
mod video;
mod wire;

pub use client::OpenAiCompat;
