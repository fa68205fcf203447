//! Speech to text in process: OpenAI's Whisper on CTranslate2, through
//! `ct2rs` (the `whisper` feature). It loads the same CTranslate2 directory
//! faster-whisper loads (model.bin, config.json, tokenizer.json,
//! vocabulary.*, preprocessor_config.json), quantizes it to int8 on load and
//! runs it on the CPU, on a blocking thread so the async runtime goes on.
//!
//! It takes the same audio jobs as the OpenAI-compatible transcription
//! client (one segment of the speech track each, 16 kHz mono), costs
//! nothing, and gives its pieces in video time through the same
//! [`crate::provider::transcription::in_video_time`]. A segment longer than
//! Whisper's 30 s window is heard window by window, each starting where the
//! last whole piece of the one before ended ([`window`]).

// Pure, and tested, in every build; used by the engine only with `whisper`.
#[cfg_attr(not(feature = "whisper-engine"), allow(dead_code))]
pub(crate) mod window;

#[cfg(feature = "whisper-engine")]
mod engine;
#[cfg(feature = "whisper-engine")]
pub use engine::WhisperLocal;

use crate::media::SAMPLE_RATE;

/// Samples in Whisper's window: 30 s at 16 kHz.
pub const WINDOW_SAMPLES: usize = 30 * SAMPLE_RATE as usize;

/// The samples of a speech job's WAV (16 kHz, mono, 16-bit, as the speech
/// track cuts it) as floats in [-1, 1].
///
/// # Errors
/// Not a WAV, or another rate, channel count or sample format: named.
pub fn samples_of(wav: &[u8]) -> Result<Vec<f32>, String> {
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).map_err(|e| format!("not a WAV clip: {e}"))?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE || spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(format!(
            "a {} Hz, {}-channel, {}-bit clip: Whisper takes {SAMPLE_RATE} Hz mono 16-bit",
            spec.sample_rate, spec.channels, spec.bits_per_sample
        ));
    }
    reader
        .into_samples::<i16>()
        .map(|s| s.map(|s| f32::from(s) / 32768.0).map_err(|e| format!("a broken WAV clip: {e}")))
        .collect()
}

/// The files a CTranslate2 Whisper directory must hold (`vocabulary` as
/// `.json` or `.txt`).
pub const MODEL_FILES: [&str; 4] = ["model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"];

/// Why `dir` is not a Whisper model directory, naming what is missing.
pub fn missing_files(dir: &std::path::Path) -> Option<String> {
    let mut missing: Vec<&str> = MODEL_FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if !["vocabulary.json", "vocabulary.txt"].iter().any(|f| dir.join(f).is_file()) {
        missing.push("vocabulary.json");
    }
    (!missing.is_empty()).then(|| format!("{}: no {}", dir.display(), missing.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_speech_clip_reads_as_floats_and_other_wavs_are_named() {
        let wav = crate::media::wav(&[0, 16384, -32768]);
        assert_eq!(samples_of(&wav).unwrap(), [0.0, 0.5, -1.0]);
        let err = samples_of(b"RIFF....").unwrap_err();
        assert!(err.contains("not a WAV clip"), "{err}");
        let mut stereo = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        hound::WavWriter::new(&mut stereo, spec).unwrap().finalize().unwrap();
        let err = samples_of(stereo.get_ref()).unwrap_err();
        assert!(err.contains("44100 Hz, 2-channel") && err.contains("16000 Hz mono"), "{err}");
    }

    #[test]
    fn a_directory_without_the_model_files_names_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.bin"), b"x").unwrap();
        std::fs::write(dir.path().join("vocabulary.txt"), b"x").unwrap();
        let err = missing_files(dir.path()).unwrap();
        assert!(err.ends_with("no config.json, tokenizer.json, preprocessor_config.json"), "{err}");
        for f in ["config.json", "tokenizer.json", "preprocessor_config.json"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        assert_eq!(missing_files(dir.path()), None);
    }
}
