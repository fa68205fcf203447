//! One integration-test binary. Modules:
//!
//! - `util`: temp dirs, clips made with ffmpeg, the CLI, process checks
//! - `probe`: what ffprobe reports, on generated clips
//! - `cut`: stream-copied cuts of a time range
//! - `frames`: sampling modes, exact timestamps, sizes, process hygiene
//! - `bad_input`: every refused input gets a clear error, no panic
//! - `bad_media`: a corpus of lying, odd and extreme media, and odd paths: handled or refused, in bounded time
//! - `clips`: the real clips of fixtures/fetch.sh
//! - `gateway`: the one call with scripted providers: fallback, reuse, budgets
//! - `gemini`: the Gemini backend against a fake server with uploads and file states
//! - `journal`: resume across processes and directories, leases, a fresh journal shared at once, failed writes
//! - `models`: model downloads: resume, size and checksum
//! - `openai`: the OpenAI-compatible backend against a fake server, fault by fault
//! - `providers`: profiles on the command line: known models, readiness, plans and first use
//! - `secrets`: keys never leak into output, logs, reports or the journal
//! - `url_source`: URL sources: SSRF refusals, redirects, byte and time limits
//! - `cli`: the `vidgate` command itself

mod bad_input;
mod bad_media;
mod cli;
mod clips;
mod cut;
mod frames;
mod gateway;
mod gemini;
mod journal;
mod models;
mod openai;
mod probe;
mod providers;
mod secrets;
mod url_source;
#[allow(dead_code)] // some helpers serve only the process_hygiene binary
mod util;
