//! Reading videos: probe them, then stream sampled frames (or the audio, as
//! PCM) out of ffmpeg, or copy a time range out as a file of its own.
//!
//! ffmpeg and ffprobe are the system's (a declared requirement); vidgate never
//! downloads them. They read only the file named, through the `file` protocol
//! and an allow-list of container formats, so a playlist or concat list cannot
//! make them open anything else.

mod audio;
mod cut;
mod error;
mod extract;
mod plan;
mod probe;
mod scene;

use std::ffi::OsString;
use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine;

pub use audio::{pcm, samples_ms, wav, PcmStream, SAMPLE_RATE};
pub use cut::{cut, Cut};
pub use error::MediaError;
pub use extract::{encode_jpeg, extract, ExtractionWarnings, FrameStream};
pub use plan::{Extraction, Strategy, JPEG_MAX_SIDE};
pub use probe::{probe, AudioInfo, MediaInfo, StreamInfo, VideoInfo};
pub use scene::{SceneDetector, SceneSettings};

/// Container formats ffmpeg may open. No playlists (HLS, DASH), no concat, no
/// image sequences, no protocols other than a plain file.
pub const FORMAT_ALLOW_LIST: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,asf,\
gif,h264,hevc,m4v,mjpeg,dv,nut,mxf,ivf,yuv4mpegpipe,wav,mp3,aac,flac";

/// How a frame's pixels are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFormat {
    /// Packed RGB888, for the local model.
    Rgb,
    /// JPEG at this quality (1..=100), for the wire.
    Jpeg { quality: u8 },
}

/// The pixels of one frame.
#[derive(Clone, PartialEq, Eq)]
pub enum FrameData {
    Rgb(Vec<u8>),
    Jpeg(Jpeg),
}

impl FrameData {
    pub fn bytes(&self) -> &[u8] {
        match self {
            FrameData::Rgb(b) => b,
            FrameData::Jpeg(b) => b,
        }
    }
}

/// A JPEG image, and its base64 once something asked for it. The bytes never
/// change, so every request that sends the frame (each retry, each fallback,
/// each clone of the frame) shares one encoding instead of making its own.
#[derive(Clone)]
pub struct Jpeg(Arc<JpegInner>);

struct JpegInner {
    bytes: Vec<u8>,
    base64: OnceLock<Arc<str>>,
}

impl Jpeg {
    /// The bytes in standard base64 (`A-Z a-z 0-9 + / =`), encoded on the
    /// first call and shared after.
    pub fn base64(&self) -> Arc<str> {
        let inner = &*self.0;
        inner.base64.get_or_init(|| base64::engine::general_purpose::STANDARD.encode(&inner.bytes).into()).clone()
    }
}

impl From<Vec<u8>> for Jpeg {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Arc::new(JpegInner { bytes, base64: OnceLock::new() }))
    }
}

impl Deref for Jpeg {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0.bytes
    }
}

impl PartialEq for Jpeg {
    fn eq(&self, other: &Self) -> bool {
        self.0.bytes == other.0.bytes
    }
}

impl Eq for Jpeg {}

impl fmt::Debug for Jpeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jpeg({} bytes)", self.0.bytes.len())
    }
}

/// One sampled frame, with its presentation time.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Position among the frames of this extraction, from 0.
    pub index: u32,
    /// Presentation time, milliseconds from the start of the video.
    pub pts_ms: u64,
    pub width: u32,
    pub height: u32,
    pub data: FrameData,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.data {
            FrameData::Rgb(_) => "rgb",
            FrameData::Jpeg(_) => "jpeg",
        };
        f.debug_struct("Frame")
            .field("index", &self.index)
            .field("pts_ms", &self.pts_ms)
            .field("size", &format_args!("{}x{}", self.width, self.height))
            .field(kind, &format_args!("{} bytes", self.data.bytes().len()))
            .finish()
    }
}

/// ffmpeg input options that confine it to the named file, with a cap on any
/// single allocation (a frame of 8K RGB is 100 MB; a lying header gets no more).
pub(crate) fn ffmpeg_input_args() -> Vec<&'static str> {
    vec![
        "-max_alloc",
        "1073741824",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        FORMAT_ALLOW_LIST,
        "-probesize",
        "50000000",
        "-analyzeduration",
        "20000000",
    ]
}

/// The `file:` URL of a path, for other modules that run ffmpeg; the path as
/// given when it cannot be made absolute.
pub fn file_url(path: &Path) -> OsString {
    input_url(path).unwrap_or_else(|_| path.as_os_str().to_owned())
}

/// The `file:` URL of a path, absolute, so names starting with `-` or holding
/// `:` are never read as options or protocols.
pub(crate) fn input_url(path: &Path) -> Result<OsString, MediaError> {
    let absolute = std::path::absolute(path).map_err(|e| MediaError::io(path, e))?;
    let mut url = OsString::from("file:");
    url.push(absolute.as_os_str());
    Ok(url)
}
