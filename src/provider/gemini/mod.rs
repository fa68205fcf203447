//! The Gemini backend: `generateContent` with the video itself (inline, or
//! uploaded through the Files API) or with frames as JPEG parts, for the
//! Gemini Developer API and Vertex AI, which speak the same protocol.
//!
//! Follows the API reference <https://ai.google.dev/api/generate-content>, the
//! video guide <https://ai.google.dev/gemini-api/docs/video-understanding>
//! (offsets, fps, tokens per second) and the prices of
//! <https://ai.google.dev/gemini-api/docs/pricing> (checked 2026-11-26).
//!
//! The translation is pure: `translate` builds the request and reads the
//! answer, `schema` puts the timeline's JSON Schema in Gemini's dialect,
//! `status` reads error bodies and file states, `cost` counts tokens and
//! dollars; none of them does any I/O. `client` makes the calls (a video inline
//! streamed into its body by `inline`) and `files` uploads, polls and deletes,
//! both through the shared executor. The wire types of `wire` never leave
//! this module.

mod client;
mod cost;
mod files;
mod inline;
mod schema;
mod status;
pub(crate) mod translate;
mod wire;

pub use client::Gemini;
