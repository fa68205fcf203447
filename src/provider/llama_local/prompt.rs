//! The prompt of a local job, as pure text and arithmetic: how frames are
//! labelled, how a chat template wraps the user's turn, and how frames are
//! split into chunks that fit the context. No llama type appears here.

use std::ops::Range;

use crate::provider::{Job, JobInput};

/// Between a text job's instruction and its text (the same as the
/// OpenAI-compatible backend sends).
pub(super) const TEXT_SEPARATOR: &str = "\n\n";

/// Stands for the user's content while the chat template is rendered, so the
/// rendering can be cut into what goes before and after it.
pub(super) const CONTENT_SENTINEL: &str = "VIDGATE_USER_CONTENT_3f9c1e";

/// The text before one frame's media marker: its time, as the model reads it.
pub(super) use crate::provider::frame_label;

/// One frame's part of the prompt, "Frame at 00:01.500:\n<marker>\n", in two:
/// the label, decoded as text on its own, and the media marker, which mtmd
/// tokenizes with the frame's bitmap (so the vision encoder's time can be
/// told apart from the label's).
pub(super) fn frame_segment(pts_ms: u64, marker: &str) -> (String, String) {
    (format!("{}\n", frame_label(pts_ms)), format!("{marker}\n"))
}

/// What follows the frames in the user's turn (or is all of it, for text):
/// the job's prompt, and a text job's text after it.
pub(super) fn content(job: &Job) -> String {
    match &job.input {
        JobInput::Text(text) => format!("{}{TEXT_SEPARATOR}{}", job.prompt.trim(), text.trim()).trim().to_string(),
        _ => job.prompt.trim().to_string(),
    }
}

/// The chat turn around the user's content: `head` before it (the template's
/// opening, up to where the content starts) and `tail` after it (closing the
/// turn and opening the assistant's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChatWrap {
    pub head: String,
    pub tail: String,
}

impl ChatWrap {
    /// No template: the content as it is, then a new line to answer on.
    pub(super) fn plain() -> Self {
        Self { head: String::new(), tail: "\n".into() }
    }

    /// Cut a template rendered with [`CONTENT_SENTINEL`] as the user's
    /// content; `None` unless the sentinel appears exactly once.
    pub(super) fn from_rendered(rendered: &str) -> Option<Self> {
        let (head, tail) = rendered.split_once(CONTENT_SENTINEL)?;
        if tail.contains(CONTENT_SENTINEL) {
            return None;
        }
        Some(Self { head: head.to_string(), tail: tail.to_string() })
    }
}

/// A prompt that cannot fit the context, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DoesNotFit {
    /// Prompt tokens of the smallest prompt that had to fit.
    pub prompt: usize,
    /// Tokens reserved for the answer.
    pub output: usize,
    pub n_ctx: usize,
}

impl DoesNotFit {
    pub(super) fn message(&self) -> String {
        format!(
            "{} tokens do not fit the context of {} ({} of prompt and {} reserved for the answer); \
             raise context_tokens or ask for fewer output tokens",
            self.prompt + self.output,
            self.n_ctx,
            self.prompt,
            self.output
        )
    }
}

/// Split frames into consecutive runs, each fitting the context together with
/// the `fixed` tokens every chunk repeats (template, prompt) and the `output`
/// cap. `frames[i]` is the token count of frame i's segment. Greedy: each run
/// takes as many frames as fit.
///
/// # Errors
/// When the fixed part alone, or it with one frame, does not fit.
pub(super) fn plan_chunks(
    fixed: usize,
    frames: &[usize],
    n_ctx: usize,
    output: usize,
) -> Result<Vec<Range<usize>>, DoesNotFit> {
    let room = n_ctx.checked_sub(output).and_then(|r| r.checked_sub(fixed));
    let Some(room) = room else {
        return Err(DoesNotFit { prompt: fixed + frames.first().copied().unwrap_or(0), output, n_ctx });
    };
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, &cost) in frames.iter().enumerate() {
        if cost > room {
            return Err(DoesNotFit { prompt: fixed + cost, output, n_ctx });
        }
        if used + cost > room {
            chunks.push(start..i);
            start = i;
            used = 0;
        }
        used += cost;
    }
    if start < frames.len() {
        chunks.push(start..frames.len());
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Task;

    fn job(input: JobInput, prompt: &str) -> Job {
        Job {
            task: Task::Describe,
            input,
            prompt: prompt.into(),
            prompt_version: "t@1".into(),
            max_output_tokens: 8,
            span: None,
        }
    }

    #[test]
    fn frames_are_labelled_with_their_time_then_one_marker() {
        let (label, media) = frame_segment(1_500, "<__media__>");
        assert_eq!(label + &media, "Frame at 00:01.500:\n<__media__>\n");
        assert_eq!(media, "<__media__>\n");
        assert_eq!(frame_label(3_723_004), "Frame at 1:02:03.004:");
    }

    #[test]
    fn a_text_job_puts_its_text_after_the_instruction() {
        let text = job(JobInput::Text("  a car passes \n".into()), " Summarise: ");
        assert_eq!(content(&text), "Summarise:\n\na car passes");
        let frames = job(JobInput::Frames(Vec::new().into()), " Describe. ");
        assert_eq!(content(&frames), "Describe.");
    }

    #[test]
    fn a_rendered_template_is_cut_around_the_content() {
        let rendered = format!("<|im_start|>user\n{CONTENT_SENTINEL}<|im_end|>\n<|im_start|>assistant\n");
        let wrap = ChatWrap::from_rendered(&rendered).unwrap();
        assert_eq!(wrap.head, "<|im_start|>user\n");
        assert_eq!(wrap.tail, "<|im_end|>\n<|im_start|>assistant\n");
        assert_eq!(ChatWrap::from_rendered("no sentinel"), None);
        assert_eq!(ChatWrap::from_rendered(&format!("{CONTENT_SENTINEL}{CONTENT_SENTINEL}")), None);
    }

    #[test]
    fn frames_are_chunked_greedily_to_fit() {
        // 96 context, 8 for the answer, 30 fixed: 58 left, two frames of 28 each.
        assert_eq!(plan_chunks(30, &[28; 5], 96, 8).unwrap(), [0..2, 2..4, 4..5]);
        assert_eq!(plan_chunks(30, &[28; 2], 96, 8).unwrap(), [0..2, 2..2][..1]);
        assert_eq!(plan_chunks(30, &[10, 40, 10, 10], 96, 8).unwrap(), [0..2, 2..4]);
        assert_eq!(plan_chunks(30, &[], 96, 8).unwrap(), Vec::<Range<usize>>::new());
    }

    #[test]
    fn what_cannot_fit_is_named_in_tokens() {
        let err = plan_chunks(30, &[28, 80], 96, 8).unwrap_err();
        assert_eq!(err, DoesNotFit { prompt: 110, output: 8, n_ctx: 96 });
        assert!(err.message().starts_with("118 tokens do not fit the context of 96"), "{}", err.message());
        let err = plan_chunks(100, &[], 96, 8).unwrap_err();
        assert_eq!(err, DoesNotFit { prompt: 100, output: 8, n_ctx: 96 });
        let err = plan_chunks(10, &[], 96, 200).unwrap_err();
        assert_eq!(err.prompt + err.output, 210);
    }
}
