//! vidgate: understand videos through one call.
//!
//! The data path follows the design: a [`schema::VideoRequest`] is
//! probed and sampled by [`media`], dispatched to a [`provider::Provider`]
//! wrapped in [`policy`] decorators along the chain the [`router`] chooses, and
//! the observations are merged by [`merge`] into a [`schema::VideoReport`].

#![forbid(unsafe_code)]

pub mod config;
pub mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod journal;
pub mod media;
pub mod merge;
pub mod models;
pub mod observe;
pub mod policy;
pub mod progress;
pub mod prompts;
pub mod provider;
pub mod render;
pub mod router;
pub mod schema;
pub mod secret;
pub mod serve;
pub mod speech;
pub mod timecode;
pub mod timeline;

pub use config::Config;
pub use schema::{VideoReport, VideoRequest};
