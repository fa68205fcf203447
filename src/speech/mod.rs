//! The speech track: what is said in a video, and when.
//!
//! The audio is streamed out of ffmpeg as 16 kHz mono PCM
//! ([`crate::media::pcm`]), cut into segments where someone speaks
//! ([`vad`]), and each segment is transcribed by a speech provider (a
//! [`crate::provider::Provider`] that takes [`crate::provider::JobInput::Audio`]).
//! A video without an audio stream, or whose audio is silent, makes no
//! segment and costs nothing.

pub mod vad;

pub use vad::{Segment, Segmenter, VadSettings};
