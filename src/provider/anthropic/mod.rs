//! The Anthropic backend: the Messages API with frames as base64 image
//! blocks, each after a text block with its time, for Claude models.
//!
//! Follows the Messages reference <https://platform.claude.com/docs/en/api/messages>,
//! its errors <https://platform.claude.com/docs/en/api/errors> and rate-limit
//! headers <https://platform.claude.com/docs/en/api/rate-limits>, the image
//! rules of the vision guide <https://platform.claude.com/docs/en/build-with-claude/vision>,
//! tool use for structured answers, and the prices of
//! <https://platform.claude.com/docs/en/about-claude/pricing> (checked 2026-12-04).
//!
//! The translation is pure: `translate` builds the request and reads the
//! answer, `cost` counts tokens and dollars; neither does any I/O. The wire
//! types of `wire` never leave this module.

mod client;
mod cost;
pub(crate) mod translate;
mod wire;

pub use client::Anthropic;
