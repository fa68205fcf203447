//! One integration-test binary. Modules:
//!
//! - `util`: temp dirs, clips made with ffmpeg, the CLI, process checks
//! - `anthropic`: the Anthropic Messages API backend against a fake answering in recorded shapes
//! - `probe`: what ffprobe reports, on generated clips
//! - `cut`: stream-copied cuts of a time range
//! - `frames`: sampling modes, exact timestamps, sizes, process hygiene
//! - `bad_input`: every refused input gets a clear error, no panic
//! - `bad_media`: a corpus of lying, odd and extreme media, and odd paths: handled or refused, in bounded time
//! - `clips`: the real clips of fixtures/fetch.sh
//! - `gateway`: the one call with scripted providers: fallback, reuse, budgets
//! - `gemini`: the Gemini backend against a fake server with uploads and file states
//! - `journal`: resume across processes and directories, leases, a fresh journal shared at once, failed writes
//! - `prune`: the journal's retention: shrinking on disk, paying again for pruned work, unfinished runs kept, CLI, serve
//! - `models`: model downloads: resume, size and checksum
//! - `module_cycles`: no import cycles between the crate's module files
//! - `openai`: the OpenAI-compatible backend against a fake server, fault by fault
//! - `providers`: profiles on the command line: known models, readiness, plans and first use
//! - `structured`: the same timeline answers through every backend: the same outcome for the same violation
//! - `speech`: the speech track: audio out of ffmpeg, speech segments, transcription, the story
//! - `secrets`: keys never leak into output, logs, reports or the journal
//! - `vertex`: Vertex AI's bearer tokens: fetched again before they expire, and once on a 401
//! - `url_source`: URL sources: SSRF refusals, redirects, byte and time limits
//! - `cli`: the `vidgate` command itself

mod anthropic;
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
mod module_cycles;
mod openai;
mod probe;
mod providers;
mod prune;
mod secrets;
mod serve;
mod speech;
mod structured;
mod url_source;
#[allow(dead_code)] // some helpers serve only the process_hygiene binary
mod util;
mod vertex;
