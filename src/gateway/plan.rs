//! Plans: what a request would send to each provider of its chain, and the
//! worst-case cost of it, computed from the profiles' prices without any call.
//! When the first choice costs more than the budget allows, the plan is
//! lowered step by step as `budget.downgrade` says (fps, frame width, model).

use std::sync::Arc;

use serde::Serialize;

use super::{video, Gateway, GatewayError, Member};
use crate::config::Downgrade;
use crate::media::{Extraction, Frame, FrameData, FrameFormat, MediaInfo};
use crate::prompts;
use crate::provider::{Estimate, Job, JobInput};
use crate::schema::{SamplingMode, SamplingPlan, Task, TimeRange};

/// How a provider would see the video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// The video file itself, in one call.
    Video,
    /// Sampled frames, in batches.
    Frames,
}

/// The work one provider would do, and what it would cost at most.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub provider: String,
    pub model: String,
    pub shape: Shape,
    /// Frames sent (at most), for the frames shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<u32>,
    pub width: u32,
    /// Calls to gather observations, then calls to merge them.
    pub observe_calls: u32,
    pub merge_calls: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub estimated_usd: f64,
    /// Why this provider cannot serve the request as planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The bytes of a local model to download before it can serve (plans only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_bytes: Option<u64>,
}

/// A request's plan: a candidate per provider of the chain, the first of which
/// is what the run will use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub task: String,
    pub duration_ms: u64,
    /// What the request may spend: the smaller of its cap and what is left today.
    pub budget_usd: f64,
    pub sampling: SamplingPlan,
    /// Providers of the chain that cannot be used, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// What was lowered to fit the budget.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub downgrades: Vec<String>,
    pub candidates: Vec<Candidate>,
    /// The speech track, when the run transcribes the video's sound; its
    /// cost is part of what must fit the budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech: Option<super::SpeechPlan>,
    /// The first candidate (and the speech track) fits the budget.
    pub fits: bool,
}

impl Plan {
    /// The candidate the run starts with.
    pub fn first(&self) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.error.is_none())
    }
}

/// Frame sizes keep the display aspect ratio, with an even height.
pub(crate) fn frame_height(info: &MediaInfo, width: u32) -> u32 {
    let (dw, dh) = info.video.display_size();
    let h = (u64::from(width) * u64::from(dh.max(1)) / u64::from(dw.max(1))) as u32;
    (h.max(2) + 1) & !1
}

impl Gateway {
    /// The candidates for `task` on the chain `members`, at `sampling`.
    pub(crate) fn candidates(
        &self,
        info: &MediaInfo,
        task: &Task,
        members: &[Member],
        sampling: &SamplingPlan,
    ) -> Vec<Candidate> {
        members.iter().map(|m| self.candidate(info, task, m, sampling)).collect()
    }

    fn candidate(&self, info: &MediaInfo, task: &Task, member: &Member, sampling: &SamplingPlan) -> Candidate {
        let caps = member.shared.capabilities();
        let mut c = Candidate {
            provider: member.name.clone(),
            model: member.shared.model().to_string(),
            shape: if caps.native_video { Shape::Video } else { Shape::Frames },
            frames: None,
            width: sampling.width,
            observe_calls: 0,
            merge_calls: 0,
            input_tokens: 0,
            output_tokens: 0,
            estimated_usd: 0.0,
            error: None,
            download_bytes: None,
        };
        let merge = &self.config.merge;
        let limits = super::MergeLimits::for_members(merge, std::slice::from_ref(member));
        let mut add = |e: Estimate, times: u32| {
            c.input_tokens += e.input_tokens * u64::from(times);
            c.output_tokens += e.output_tokens * u64::from(times);
            c.estimated_usd += e.cost_usd * f64::from(times);
        };
        // Observations, and how much text they make for the merge.
        let observation_chars: u64;
        if caps.native_video {
            let job = prompts::load("timeline", self.config.prompts_dir.as_deref())
                .and_then(|template| video::video_job(info, sampling, &template, None));
            match job.map_err(|e| e.to_string()).and_then(|job| member.shared.estimate(&job).map_err(|e| e.message)) {
                Ok(e) => add(e, 1),
                Err(e) => c.error = Some(e),
            }
            c.observe_calls = 1;
            observation_chars = u64::from(video::NATIVE_OUTPUT_TOKENS) * 4;
        } else {
            let extraction = match Extraction::new(
                info,
                sampling,
                &self.config.sampling,
                FrameFormat::Rgb,
                std::time::Duration::from_secs(1),
            ) {
                Ok(x) => x,
                Err(e) => {
                    c.error = Some(e.to_string());
                    return c;
                }
            };
            let frames = extraction.expected_frames().unwrap_or(sampling.max_frames).min(sampling.max_frames).max(1);
            let per_call = caps.max_images_per_call.max(1).min(frames);
            let (full, rest) = (frames / per_call, frames % per_call);
            let height = frame_height(info, sampling.width);
            let batch = |n: u32| -> Job {
                let frames: Vec<Frame> = (0..n)
                    .map(|i| Frame {
                        index: i,
                        pts_ms: extraction.range.start_ms + u64::from(i) * 1000,
                        width: sampling.width,
                        height,
                        data: if caps.rgb_frames {
                            FrameData::Rgb(Vec::new())
                        } else {
                            FrameData::Jpeg(Vec::new().into())
                        },
                    })
                    .collect();
                Job {
                    task: Task::Describe,
                    input: JobInput::Frames(frames.into()),
                    prompt: Arc::from("x".repeat(900)),
                    prompt_version: Arc::from("frame"),
                    max_output_tokens: merge.observation_tokens,
                    span: None,
                }
            };
            for (n, times) in [(per_call, full), (rest, 1)] {
                if n == 0 || times == 0 {
                    continue;
                }
                match member.shared.estimate(&batch(n)) {
                    Ok(e) => add(e, times),
                    Err(e) => c.error = Some(e.message),
                }
            }
            c.frames = Some(frames);
            c.observe_calls = full + u32::from(rest > 0);
            let observations = if per_call == 1 { frames } else { c.observe_calls };
            observation_chars = u64::from(observations) * u64::from(merge.observation_tokens) * 4;
        }
        // Merging: one call per window, and one more to merge the windows.
        let needs_merge = !(caps.native_video && matches!(task, Task::Timeline));
        if needs_merge {
            let window = limits.window_chars as u64;
            let windows = observation_chars.div_ceil(window).max(1);
            let calls = if windows > 1 { windows + 1 } else { 1 } as u32;
            let text = Job {
                task: task.clone(),
                input: JobInput::Text("x".repeat(observation_chars.min(window) as usize)),
                prompt: Arc::from("x".repeat(1500)),
                prompt_version: Arc::from("merge"),
                max_output_tokens: limits.max_output_tokens,
                span: Some(TimeRange { start_ms: 0, end_ms: info.duration_ms.max(1) }),
            };
            match member.shared.estimate(&text) {
                Ok(e) => add(e, calls),
                Err(e) => c.error = c.error.take().or(Some(e.message)),
            }
            c.merge_calls = calls;
        }
        c
    }

    /// The plan for `task`: candidates at the requested sampling, lowered as
    /// configured until the first one fits `budget_usd`.
    pub(crate) fn fit_plan(
        &self,
        info: &MediaInfo,
        task: &Task,
        members: &mut [Member],
        requested: &SamplingPlan,
        budget_usd: f64,
    ) -> Result<Plan, GatewayError> {
        let mut sampling = requested.clone();
        let mut downgrades = Vec::new();
        let min_fps = self.config.budget.min_fps;
        let min_width = self.config.budget.min_width.max(16);
        let steps = self.config.budget.downgrade.clone();
        let mut step = 0;
        // Where the current step began: its sampling, its downgrades and the cost then.
        let mut step_start: Option<(SamplingPlan, usize, f64)> = None;
        loop {
            let candidates = self.candidates(info, task, members, &sampling);
            let first_cost = candidates.iter().find(|c| c.error.is_none()).map(|c| c.estimated_usd);
            let fits = first_cost.is_some_and(|cost| cost <= budget_usd + 1e-12);
            if fits || first_cost.is_none() || step >= steps.len() {
                return Ok(Plan {
                    task: task.name().to_string(),
                    duration_ms: info.duration_ms,
                    budget_usd,
                    sampling,
                    skipped: Vec::new(),
                    downgrades,
                    candidates,
                    speech: None,
                    fits,
                });
            }
            let cost = first_cost.unwrap_or(f64::INFINITY);
            let (start_sampling, start_len, start_cost) =
                step_start.get_or_insert_with(|| (sampling.clone(), downgrades.len(), cost)).clone();
            let lowered = match steps[step] {
                Downgrade::Fps => lower_fps(&mut sampling, min_fps),
                Downgrade::Width => lower_width(&mut sampling, min_width),
                Downgrade::Model => self.lower_model(members),
            };
            match lowered {
                Some(what) => downgrades.push(what),
                None => {
                    // A step that saved nothing (a narrower frame for a video
                    // sent whole, say) is undone: the plan names only what
                    // lowers the cost.
                    if cost >= start_cost {
                        sampling = start_sampling;
                        downgrades.truncate(start_len);
                    }
                    step += 1;
                    step_start = None;
                }
            }
        }
    }

    /// Replace the first provider with a cheaper vision model of the same profile.
    fn lower_model(&self, members: &mut [Member]) -> Option<String> {
        let first = members.iter_mut().find(|m| !m.shared.capabilities().offline)?;
        let current = first.shared.model().to_string();
        let price = |m: &str| first.profile.price_for(m).map(|p| p.input_per_mtok + p.output_per_mtok);
        let now = price(&current)?;
        let cheaper = first
            .profile
            .models
            .iter()
            .filter(|(name, m)| **name != current && m.vision != Some(false))
            .filter_map(|(name, m)| m.price.map(|p| (name.clone(), p.input_per_mtok + p.output_per_mtok)))
            .filter(|(_, p)| *p < now)
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        let replacement = self.member(&first.name, Some(&cheaper.0)).ok()?;
        *first = replacement;
        Some(format!("model {current} → {}", cheaper.0))
    }
}

fn lower_fps(sampling: &mut SamplingPlan, min_fps: f64) -> Option<String> {
    match &mut sampling.mode {
        SamplingMode::Fps { fps } if *fps / 2.0 >= min_fps => {
            let before = *fps;
            *fps /= 2.0;
            Some(format!("fps {before} → {}", *fps))
        }
        SamplingMode::Count { count } if *count > 1 => {
            let before = *count;
            *count = (*count / 2).max(1);
            Some(format!("frames {before} → {count}"))
        }
        SamplingMode::Keyframes | SamplingMode::Scenes { .. } if sampling.max_frames > 1 => {
            let before = sampling.max_frames;
            sampling.max_frames = (before / 2).max(1);
            Some(format!("max frames {before} → {}", sampling.max_frames))
        }
        _ => None,
    }
}

fn lower_width(sampling: &mut SamplingPlan, min_width: u32) -> Option<String> {
    let next = (sampling.width * 3 / 4) & !1;
    (next >= min_width && next < sampling.width).then(|| {
        let before = sampling.width;
        sampling.width = next;
        format!("width {before} → {next} px")
    })
}

/// The refusal when nothing fits: every number a user needs to decide.
pub(crate) fn over_budget_message(plan: &Plan) -> String {
    let Some(c) = plan.first() else {
        return "no provider of the chain can serve this request".into();
    };
    let mut what = match c.frames {
        Some(n) => format!("{n} frames at {} px in {} calls", c.width, c.observe_calls),
        None => "the video in one call".into(),
    };
    if let Some(s) = &plan.speech {
        what.push_str(&format!(
            " and up to {} of speech on {} in {} calls (up to ${:.4})",
            crate::timecode::format(s.audio_ms),
            s.provider,
            s.calls,
            s.estimated_usd
        ));
    }
    let lowered = if plan.downgrades.is_empty() {
        "nothing could be lowered (budget.downgrade)".to_string()
    } else {
        format!("even after lowering {}", plan.downgrades.join(", "))
    };
    format!(
        "over budget: {task} on {provider} ({model}) needs {what} plus {merge} merge calls, about {input} input and {output} output tokens, up to ${cost:.4}, but this request may spend ${budget:.4}; {lowered}. Nothing was spent. Raise budget.max_usd_per_request or --max-cost, sample fewer frames, or pick a cheaper provider (`vidgate plan` shows the options)",
        task = plan.task,
        provider = c.provider,
        model = c.model,
        merge = c.merge_calls,
        input = c.input_tokens,
        output = c.output_tokens,
        cost = c.estimated_usd + plan.speech.as_ref().map_or(0.0, |s| s.estimated_usd),
        budget = plan.budget_usd,
    )
}
