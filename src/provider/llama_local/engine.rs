//! One loaded model serving jobs: tokenize, evaluate, sample. Lives on the
//! worker thread only; nothing here is `await`ed.

use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{
    mtmd_default_marker, MtmdBitmap, MtmdContext, MtmdInputChunkType, MtmdInputChunks, MtmdInputText,
};
use llama_cpp_2::token::LlamaToken;

use super::prompt::{self, ChatWrap};
use super::sampling::{self, Picker, Sampling};
use super::Timings;
use crate::media::{Frame, FrameData};
use crate::provider::{Job, JobInput};
use crate::schema::TimeRange;
use crate::timecode;

/// What one chunk of a job produced.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    /// The frames' time range; `None` for a text job.
    pub range: Option<TimeRange>,
    pub text: String,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
}

/// A loaded model, its vision projector and one context, borrowed from the
/// worker thread's stack.
pub(super) struct Engine<'m> {
    pub model_name: String,
    pub model: &'m LlamaModel,
    pub mtmd: Option<MtmdContext>,
    pub ctx: LlamaContext<'m>,
    /// The context the user configured (llama.cpp may round its own up).
    pub n_ctx: u32,
    pub n_batch: u32,
    pub wrap: ChatWrap,
    pub sampling: Sampling,
    /// Hold structured jobs ([`Job::structured`]) to the timeline JSON with
    /// a grammar.
    pub json_grammar: bool,
}

/// Why a job stopped early.
pub(super) enum Stop {
    /// What went wrong; the job cannot be served by this model (the next
    /// provider may serve it).
    Failed(String),
    /// The caller went away; nobody reads the answer.
    Cancelled,
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Failed(message)
    }
}

/// A frame's part of the prompt: its label's tokens, and its media marker
/// tokenized by mtmd with the frame's bitmap.
struct FramePart {
    pts_ms: u64,
    label: Vec<LlamaToken>,
    chunks: MtmdInputChunks,
    /// mtmd's chunks start with the image (no text tokens before it), so
    /// the encoder's time can be told apart from the decoding.
    image_first: bool,
}

impl FramePart {
    fn tokens(&self) -> usize {
        self.label.len() + self.chunks.total_tokens()
    }
}

impl Engine<'_> {
    /// Serve `job`, checking `cancelled` between frames and between tokens.
    pub(super) fn run(
        &mut self,
        job: &Job,
        cancelled: &dyn Fn() -> bool,
        timings: &mut Timings,
    ) -> Result<Vec<Answer>, Stop> {
        let frames: &[Frame] = match &job.input {
            JobInput::Frames(frames) => frames,
            JobInput::Text(_) => &[],
            JobInput::Video { .. } => {
                return Err(Stop::Failed("the local model takes frames, not a video file".into()))
            }
            JobInput::Audio(_) => return Err(Stop::Failed("the local model takes no audio".into())),
        };
        let head = self.tokenize(&self.wrap.head, true, true);
        let mut tail = self.tokenize(&prompt::content(job), false, false);
        tail.extend(self.tokenize(&self.wrap.tail, false, true));
        let parts = self.frame_parts(frames)?;
        let fixed = head.len() + tail.len();
        let costs: Vec<usize> = parts.iter().map(FramePart::tokens).collect();
        let output = job.max_output_tokens as usize;
        let plan = prompt::plan_chunks(fixed, &costs, self.n_ctx as usize, output).map_err(|e| e.message())?;
        if frames.is_empty() {
            return Ok(vec![self.answer(&head, &[], &tail, job, cancelled, timings)?]);
        }
        let mut answers = Vec::with_capacity(plan.len());
        for range in plan {
            answers.push(self.answer(&head, &parts[range], &tail, job, cancelled, timings)?);
        }
        Ok(answers)
    }

    /// Evaluate one prompt (head, frames, tail) from an empty cache and generate.
    fn answer(
        &mut self,
        head: &[LlamaToken],
        parts: &[FramePart],
        tail: &[LlamaToken],
        job: &Job,
        cancelled: &dyn Fn() -> bool,
        timings: &mut Timings,
    ) -> Result<Answer, Stop> {
        if cancelled() {
            return Err(Stop::Cancelled);
        }
        // Before any work: a grammar that cannot be built fails the job now.
        let picker = self.picker(job)?;
        // Without frames, head and tail go in one batch, as llama.cpp's tools
        // decode a prompt.
        let joined: Vec<LlamaToken>;
        let (head, tail) = if parts.is_empty() {
            joined = head.iter().chain(tail).copied().collect();
            (&[][..], &joined[..])
        } else {
            (head, tail)
        };
        let started = Instant::now();
        self.ctx.clear_kv_cache();
        let mut n_past = self.eval_tokens(head, 0, false)?;
        for part in parts {
            if cancelled() {
                return Err(Stop::Cancelled);
            }
            let frame_started = Instant::now();
            n_past = self.eval_tokens(&part.label, n_past, false)?;
            // mtmd encodes the image, then decodes its embeddings; llama.cpp's
            // counters time the decoding, the rest is the encoder. Both are
            // read synchronized, so no earlier decode is still unaccounted for.
            let decoded_before = self.decode_ms();
            let image_started = Instant::now();
            let Some(mtmd) = self.mtmd.as_mut() else {
                return Err(self.no_projector().into());
            };
            n_past = part
                .chunks
                .eval_chunks(mtmd, &mut self.ctx, n_past, 0, self.n_batch as i32, false)
                .map_err(|e| format!("cannot evaluate the frame at {}: {e}", timecode::format(part.pts_ms)))?;
            let decoded = self.decode_ms() - decoded_before;
            if part.image_first {
                timings.encode_ms += (ms(image_started) - decoded).max(0.0);
                timings.encoded_frames += 1;
            }
            timings.frames += 1;
            timings.frames_ms += ms(frame_started);
        }
        n_past = self.eval_tokens(tail, n_past, true)?;
        // A GPU decodes asynchronously: wait, so the prompt's time is its own
        // and not the first generated token's.
        self.ctx.synchronize();
        let prompt_tokens = (head.len() + tail.len() + parts.iter().map(FramePart::tokens).sum::<usize>()) as u64;
        timings.prompt_tokens += prompt_tokens;
        timings.prompt_ms += ms(started);

        let started = Instant::now();
        let generated = self.generate(picker, n_past, job.max_output_tokens, cancelled, timings);
        timings.generate_ms += ms(started);
        let (bytes, output_tokens) = generated?;
        let range = match (parts.first(), parts.last()) {
            (Some(first), Some(last)) => Some(TimeRange { start_ms: first.pts_ms, end_ms: last.pts_ms + 1 }),
            _ => None,
        };
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        Ok(Answer { range, text, prompt_tokens, output_tokens })
    }

    fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), add_special, parse_special)
    }

    /// Each frame's label and marker, tokenized with its bitmap.
    fn frame_parts(&self, frames: &[Frame]) -> Result<Vec<FramePart>, String> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let Some(mtmd) = &self.mtmd else {
            return Err(self.no_projector());
        };
        let marker = mtmd_default_marker();
        let mut parts = Vec::with_capacity(frames.len());
        for frame in frames {
            let at = timecode::format(frame.pts_ms);
            let rgb = rgb_of(frame).map_err(|m| format!("frame {} at {at} {m}", frame.index))?;
            let bitmap = MtmdBitmap::from_image_data(frame.width, frame.height, rgb)
                .map_err(|e| format!("frame {} at {at}: {e}", frame.index))?;
            let (label, media) = prompt::frame_segment(frame.pts_ms, marker);
            let text = MtmdInputText { text: media, add_special: false, parse_special: true };
            let chunks = mtmd
                .tokenize(text, &[&bitmap])
                .map_err(|e| format!("frame {} at {at}: mtmd cannot tokenize it: {e}", frame.index))?;
            let image_first = chunks.get(0).is_some_and(|c| c.chunk_type() != MtmdInputChunkType::Text);
            let label = self.tokenize(&label, false, true);
            parts.push(FramePart { pts_ms: frame.pts_ms, label, chunks, image_first });
        }
        Ok(parts)
    }

    /// Milliseconds the text model has spent decoding in this context, by
    /// llama.cpp's own counters (prompt and generation), after waiting for
    /// any decode still running.
    fn decode_ms(&mut self) -> f64 {
        self.ctx.synchronize();
        let t = self.ctx.timings();
        t.t_p_eval_ms() + t.t_eval_ms()
    }

    fn no_projector(&self) -> String {
        format!("model {} has no vision projector (mmproj_path)", self.model_name)
    }

    /// Decode text tokens in batches from position `n_past`; logits for the
    /// last token only when `logits_last`. Returns the next position.
    fn eval_tokens(&mut self, tokens: &[LlamaToken], mut n_past: i32, logits_last: bool) -> Result<i32, String> {
        let step = self.n_batch.max(1) as usize;
        let mut batch = LlamaBatch::new(step.min(tokens.len()).max(1), 1);
        for (i, piece) in tokens.chunks(step).enumerate() {
            let last_piece = (i + 1) * step >= tokens.len();
            batch.clear();
            for (j, token) in piece.iter().enumerate() {
                let logits = logits_last && last_piece && j + 1 == piece.len();
                batch.add(*token, n_past + j as i32, &[0], logits).map_err(|e| e.to_string())?;
            }
            self.ctx.decode(&mut batch).map_err(|e| format!("llama.cpp cannot decode the prompt: {e}"))?;
            n_past += piece.len() as i32;
        }
        Ok(n_past)
    }

    /// A fresh sampler of the profile's settings (greedy by default) for one
    /// answer, held to the timeline JSON grammar when the job is structured
    /// and `json_grammar` is on.
    fn picker(&self, job: &Job) -> Result<Picker, String> {
        let chain = self.sampling.sampler(self.model.n_vocab(), self.n_ctx);
        if !(self.json_grammar && job.structured()) {
            return Ok(Picker::Free(chain));
        }
        let grammar = sampling::timeline_grammar(self.model)?;
        Ok(Picker::Held { chain, grammar, candidates: Vec::new() })
    }

    /// Pick tokens with `picker` from the logits of the last evaluated token,
    /// until an end-of-generation token, `max` tokens, or a grammar that
    /// allows nothing more. Pieces are bytes (a character may span tokens),
    /// decoded by the caller.
    fn generate(
        &mut self,
        mut picker: Picker,
        mut n_past: i32,
        max: u32,
        cancelled: &dyn Fn() -> bool,
        timings: &mut Timings,
    ) -> Result<(Vec<u8>, u64), Stop> {
        let model = self.model;
        let vocab = model.vocab();
        let mut batch = LlamaBatch::new(1, 1);
        let mut bytes = Vec::new();
        let mut count = 0u64;
        while count < u64::from(max) {
            if cancelled() {
                return Err(Stop::Cancelled);
            }
            let Some(token) = picker.next(&self.ctx)? else { break };
            if vocab.is_eog(token) {
                break;
            }
            vocab.token_to_piece_into(token, &mut bytes, false, None);
            count += 1;
            timings.generated_tokens += 1;
            if count == u64::from(max) {
                break;
            }
            batch.clear();
            batch.add(token, n_past, &[0], true).map_err(|e| e.to_string())?;
            self.ctx.decode(&mut batch).map_err(|e| format!("llama.cpp cannot decode token {count}: {e}"))?;
            n_past += 1;
        }
        Ok((bytes, count))
    }
}

/// The packed RGB of a frame, checked against its size.
fn rgb_of(frame: &Frame) -> Result<&[u8], String> {
    let FrameData::Rgb(rgb) = &frame.data else {
        return Err("is JPEG; the local model takes RGB frames (FrameFormat::Rgb)".into());
    };
    let want = u64::from(frame.width) * u64::from(frame.height) * 3;
    if frame.width == 0 || frame.height == 0 || rgb.len() as u64 != want {
        return Err(format!("has {} bytes, not {}x{} RGB ({want} bytes)", rgb.len(), frame.width, frame.height));
    }
    Ok(rgb)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: u32, height: u32, data: FrameData) -> Frame {
        Frame { index: 3, pts_ms: 1500, width, height, data }
    }

    #[test]
    fn only_rgb_of_the_stated_size_is_a_bitmap() {
        assert!(rgb_of(&frame(2, 2, FrameData::Rgb(vec![0; 12]))).is_ok());
        let jpeg = rgb_of(&frame(2, 2, FrameData::Jpeg(vec![0xff, 0xd8].into()))).unwrap_err();
        assert!(jpeg.contains("is JPEG"), "{jpeg}");
        let short = rgb_of(&frame(2, 2, FrameData::Rgb(vec![0; 11]))).unwrap_err();
        assert_eq!(short, "has 11 bytes, not 2x2 RGB (12 bytes)");
        assert!(rgb_of(&frame(0, 0, FrameData::Rgb(Vec::new()))).is_err());
        // A size whose byte count overflows u32 is refused, not wrapped.
        assert!(rgb_of(&frame(65536, 65536, FrameData::Rgb(vec![0; 12]))).is_err());
    }
}
