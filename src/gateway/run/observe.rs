//! Gathering observations: the video to native-video providers, frames to the rest.

use super::*;

impl Ctx<'_> {
    /// Gather observations: the video to the native-video providers at the
    /// head of the chain, else (or when they all fail) frames to the rest,
    /// and to those of them that said the video itself cannot be used.
    /// Returns whether the observations are already timeline events.
    pub(super) async fn observe(&mut self, members: &[Member], plan: &Plan) -> Result<bool, GatewayError> {
        let native: Vec<Member> =
            members.iter().take_while(|m| m.shared.capabilities().native_video).cloned().collect();
        let mut refused = Vec::new();
        if !native.is_empty() {
            match self.observe_video(&native, &plan.sampling).await {
                Ok(()) => return Ok(true),
                Err((e, _)) if e.class == crate::provider::ErrorClass::Fatal => return Err(self.failed(e.to_string())),
                Err((e, names)) => {
                    self.report.warnings.push(format!("the video could not be sent whole: {e}"));
                    refused = names;
                }
            }
        }
        if !refused.is_empty() {
            self.report
                .warnings
                .push(format!("the video itself cannot be used by {}: sent frames", refused.join(", ")));
        }
        let frames_members: Vec<Member> = members
            .iter()
            .filter(|m| !m.shared.capabilities().native_video || refused.contains(&m.name))
            .cloned()
            .collect();
        if frames_members.is_empty() {
            return Err(self.failed("no provider of the chain takes frames, and the video call failed".into()));
        }
        self.observe_frames(&frames_members, plan).await?;
        Ok(false)
    }

    /// The video call. On failure, the error and the providers that said the
    /// video itself cannot be used.
    pub(super) async fn observe_video(
        &mut self,
        members: &[Member],
        sampling: &SamplingPlan,
    ) -> Result<(), (ProviderError, Vec<String>)> {
        let template = prompts::load("timeline", self.gateway.config.prompts_dir.as_deref())
            .map_err(|e| (fatal(e.to_string()), Vec::new()))?;
        let job = video_job(&self.info, sampling, &template, Some(self.video_hash.clone()))
            .map_err(|e| (fatal(e.to_string()), Vec::new()))?;
        let timeout = timecode::seconds(self.gateway.config.limits.extract_timeout_s);
        let cut = match sampling.range {
            Some(range) => Some(Arc::new(
                RangeCut::new(&self.info, range, &template, timeout).map_err(|e| (fatal(e.to_string()), Vec::new()))?,
            )),
            None => None,
        };
        let (stepped, steps) = VideoStep::wrap(members, cut);
        let span = job.covered();
        self.note_template(&template);
        let chain = self.chain(&stepped);
        emit(
            self.progress.as_ref(),
            Progress::Uploading { provider: members[0].name.clone(), bytes: self.info.size_bytes },
        );
        let result = chain.run(&job).await;
        self.report.reused_units += chain.reused();
        let output = result.map_err(|e| {
            let refused = members.iter().zip(&steps).filter(|(_, s)| s.refused()).map(|(m, _)| m.name.clone());
            (e, refused.collect())
        })?;
        let events = events_of(&output, span);
        self.add_observations(events.into_iter().map(|e| Observation {
            range: TimeRange { start_ms: e.start_ms, end_ms: e.end_ms.max(e.start_ms + 1) },
            text: e.text,
            provider: output_provider(&output, &members[0].name),
            model: Some(output.model.clone()),
        }));
        Ok(())
    }

    pub(super) async fn observe_frames(&mut self, members: &[Member], plan: &Plan) -> Result<(), GatewayError> {
        let config = &self.gateway.config;
        let rgb = members.iter().any(|m| m.shared.capabilities().rgb_frames);
        let format = if rgb { FrameFormat::Rgb } else { FrameFormat::Jpeg { quality: config.sampling.jpeg_quality } };
        let extraction = Extraction::new(
            &self.info,
            &plan.sampling,
            &config.sampling,
            format,
            crate::timecode::seconds(config.limits.extract_timeout_s),
        )?;
        let frames = media::extract(extraction)?;
        let per_call = members.iter().map(|m| m.shared.capabilities().max_images_per_call.max(1)).min().unwrap_or(1);
        let concurrency =
            members.iter().map(|m| m.profile.limits.max_concurrency.unwrap_or(4).max(1)).min().unwrap_or(1) as usize;
        let chain = self.chain(members);
        let settings = ObserveSettings {
            task: Task::Describe,
            frames_per_call: per_call,
            concurrency,
            max_output_tokens: config.merge.observation_tokens,
            duration_ms: self.info.duration_ms,
            progress: self.progress.clone(),
        };
        // Read once the frames are consumed: some are only known at the end.
        let warnings = frames.warnings_handle();
        let observed: Observed = observe_frames(chain.clone(), frames, &settings, config.prompts_dir.as_deref())
            .await
            .map_err(|e| match e {
                crate::observe::ObserveError::Media(m) => GatewayError::Media(m),
                crate::observe::ObserveError::Prompt(p) => GatewayError::Prompt(p),
            })?;
        self.report.reused_units += chain.reused();
        self.report.warnings.extend(warnings.list());
        self.report.prompt_versions.extend(observed.prompt_versions.iter().cloned());
        for (span, e) in &observed.failures {
            self.report.warnings.push(format!(
                "{}–{}: no observation: {e}",
                timecode::format(span.start_ms),
                timecode::format(span.end_ms)
            ));
        }
        // A story with holes is not the story of the video: the run fails,
        // and what was answered is kept (here and in the journal) for a rerun.
        let failed = observed.failures.len();
        let over_budget = observed.failures.iter().any(|(_, e)| e.cause == crate::provider::Cause::Budget);
        let reason = match observed.failures.first() {
            Some((span, e)) => Some(format!(
                "{failed} units got no answer from any provider (the first at {}: {e}); {} observations were made",
                timecode::format(span.start_ms),
                observed.observations.len(),
            )),
            None if observed.observations.is_empty() => {
                Some(format!("{}: no frames could be sampled", self.info.path.display()))
            }
            None => None,
        };
        self.add_observations(observed.observations);
        match reason {
            Some(reason) => Err(self.failed_for(reason, over_budget)),
            None => Ok(()),
        }
    }
}
