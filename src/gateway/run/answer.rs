//! From observations to the answer: folding, merge calls, the story.

use super::*;

impl Ctx<'_> {
    /// Turn the observations into what the task asks for.
    pub(super) async fn answer(
        &mut self,
        task: &Task,
        members: &[Member],
        native_events: bool,
    ) -> Result<(), GatewayError> {
        let folded = self.folded();
        self.report.events = folded.clone();
        if members.is_empty() {
            return self.merge_unavailable(task, "no merge provider can be used".into(), false);
        }
        let chain = self.chain(members);
        self.merge = MergeLimits::for_members(&self.gateway.config.merge, members);
        let span = TimeRange { start_ms: 0, end_ms: self.info.duration_ms.max(1) };
        // One observation may not take more than half a window.
        let longest = self.merge.window_chars / 2;
        let mut lines: Vec<(TimeRange, String)> = folded
            .iter()
            .map(|e| {
                let range = TimeRange { start_ms: e.start_ms, end_ms: e.end_ms.max(e.start_ms + 1) };
                let mut line = merge::line(range, &e.text);
                if line.len() > longest {
                    let cut = (0..=longest).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
                    line.truncate(cut);
                    line.push('…');
                }
                (range, line)
            })
            .collect();
        // What is said, beside what is seen, in time order.
        lines.extend(self.speech_lines(longest));
        lines.sort_by_key(|(range, _)| range.start_ms);
        let result = match task {
            Task::Describe => self.story(&chain, lines, span).await.map(|story| self.report.story = Some(story)),
            Task::Timeline if native_events => Ok(()),
            Task::Timeline => self.text_call(&chain, "timeline", task, &lines, span, &[]).await.map(|out| {
                let events = events_of(&out, span);
                if !events.is_empty() {
                    self.report.events = events;
                }
            }),
            Task::Ask { question } => self
                .text_call(&chain, "ask", task, &lines, span, &[("question", question)])
                .await
                .map(|out| self.report.answer = Some(joined_text(&out))),
            Task::Find { what } => self
                .text_call(&chain, "find", task, &lines, span, &[("what", what)])
                .await
                .map(|out| self.report.events = events_of(&out, span)),
        };
        self.report.reused_units += chain.reused();
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.merge_unavailable(task, e.to_string(), e.cause == crate::provider::Cause::Budget),
        }
    }

    /// One text call over `lines` with the template `name`. The lines go into
    /// the template's `{{observations}}` when it has one, else after the prompt.
    pub(super) async fn text_call(
        &mut self,
        chain: &Arc<Journaled>,
        name: &str,
        task: &Task,
        lines: &[(TimeRange, String)],
        span: TimeRange,
        values: &[(&str, &str)],
    ) -> Result<ProviderOutput, ProviderError> {
        let template =
            prompts::load(name, self.gateway.config.prompts_dir.as_deref()).map_err(|e| fatal(e.to_string()))?;
        self.note_template(&template);
        let duration = timecode::format(self.info.duration_ms);
        let block = merge::data_block(lines.iter().map(|(_, l)| l.as_str()));
        let mut all: Vec<(&str, &str)> = vec![("duration", duration.as_str()), ("observations", block.as_str())];
        all.extend_from_slice(values);
        let prompt = template.render(&all).map_err(|e| fatal(e.to_string()))?;
        let input = if prompt.contains(&block) { String::new() } else { block };
        let job = Job {
            task: task.clone(),
            input: JobInput::Text(input),
            prompt: prompt.into(),
            prompt_version: template.id().into(),
            max_output_tokens: self.merge.max_output_tokens,
            span: Some(span),
        };
        emit(self.progress.as_ref(), Progress::Merging { calls: 1 });
        chain.run(&job).await
    }

    /// The story: one merge call when the observations fit one window, else
    /// a summary per window, then summaries of those, until one is left.
    pub(super) async fn story(
        &mut self,
        chain: &Arc<Journaled>,
        mut lines: Vec<(TimeRange, String)>,
        span: TimeRange,
    ) -> Result<String, ProviderError> {
        let window = self.merge.window_chars;
        for level in 0.. {
            let windows: Vec<Vec<(TimeRange, String)>> =
                merge::windows(&lines, window).into_iter().map(<[_]>::to_vec).collect();
            if windows.len() <= 1 || level >= MAX_MERGE_LEVELS {
                if windows.len() > 1 {
                    self.report.warnings.push(format!(
                        "the observations are too long to merge in {MAX_MERGE_LEVELS} rounds; the story merges what fits"
                    ));
                }
                let last = windows.into_iter().next().unwrap_or_default();
                let out = self.text_call(chain, "story", &Task::Describe, &last, span, &[]).await?;
                return Ok(joined_text(&out));
            }
            let mut next = Vec::with_capacity(windows.len());
            for w in &windows {
                let range = TimeRange {
                    start_ms: w.first().map_or(0, |(r, _)| r.start_ms),
                    end_ms: w.last().map_or(1, |(r, _)| r.end_ms),
                };
                let out = self.text_call(chain, "story", &Task::Describe, w, range, &[]).await?;
                next.push((range, merge::line(range, &joined_text(&out))));
            }
            lines = next;
        }
        unreachable!("the loop returns")
    }

    /// The merge step failed: a story or a timeline falls back to the folded
    /// observations; an answer cannot, so the run fails with what it has
    /// (`over_budget`: a budget refused the call).
    pub(super) fn merge_unavailable(
        &mut self,
        task: &Task,
        reason: String,
        over_budget: bool,
    ) -> Result<(), GatewayError> {
        match task {
            Task::Describe | Task::Timeline => {
                self.report.warnings.push(format!(
                    "the observations could not be merged by a model: {reason}; the timeline lists them as they are"
                ));
                Ok(())
            }
            Task::Ask { .. } | Task::Find { .. } => Err(self.failed_for(
                format!("the observations were gathered, but no provider could answer from them: {reason}"),
                over_budget,
            )),
        }
    }
}
