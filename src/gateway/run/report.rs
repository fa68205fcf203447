//! The report of a run: what was observed, spent and tried, and its final form.

use super::*;

impl Ctx<'_> {
    pub(super) fn add_observations(&mut self, observations: impl IntoIterator<Item = Observation>) {
        for o in observations {
            if !self.report.providers.contains(&o.provider) {
                self.report.providers.push(o.provider.clone());
            }
            self.report.observations.push(o);
        }
        self.report.observations.sort_by_key(|o| (o.range.start_ms, o.range.end_ms));
    }

    pub(super) fn note_template(&mut self, template: &Template) {
        let id = template.id();
        if !self.report.prompt_versions.contains(&id) {
            self.report.prompt_versions.push(id);
        }
    }

    /// The observations folded into events (near-duplicates merged). A
    /// frame's observation stands for the time until the next one.
    pub(super) fn folded(&self) -> Vec<Event> {
        let mut t = TimelineBuilder::default();
        let obs = &self.report.observations;
        for (i, o) in obs.iter().enumerate() {
            let mut o = o.clone();
            let next = obs[i + 1..].iter().map(|n| n.range.start_ms).find(|&s| s > o.range.start_ms);
            let until = next.unwrap_or(self.info.duration_ms);
            if o.range.duration_ms() <= 1 && until > o.range.end_ms {
                o.range.end_ms = until;
            }
            t.observe(o);
        }
        t.events()
    }

    /// A failure, with everything done so far.
    pub(super) fn failed(&mut self, reason: String) -> GatewayError {
        self.failed_for(reason, false)
    }

    /// [`Ctx::failed`]; `over_budget`, when a budget refused the calls the
    /// run still needed.
    pub(super) fn failed_for(&mut self, reason: String, over_budget: bool) -> GatewayError {
        let summary = attempt_summary(&self.log.snapshot(), &reason);
        let report = self.snapshot();
        GatewayError::Failed {
            summary: if summary.is_empty() { reason } else { format!("{reason} (attempts: {summary})") },
            partial: Box::new(report),
            over_budget,
        }
    }

    pub(super) fn snapshot(&self) -> VideoReport {
        let mut report = self.report.clone();
        report.attempts = self.log.snapshot();
        let mut usage = Usage::default();
        for a in &report.attempts {
            usage.add(&a.usage);
            for w in &a.warnings {
                if !report.warnings.contains(w) {
                    report.warnings.push(w.clone());
                }
            }
        }
        // What may have been billed without an answer counts too.
        let spent = self.budgets[0].spent();
        if spent > usage.cost_usd + 1e-9 {
            report.warnings.push(format!(
                "calls that failed without an answer may have been billed up to ${:.4}; counted against the budget",
                spent - usage.cost_usd
            ));
            usage.cost_usd = spent;
        }
        report.usage = usage;
        report.unsaved_units = self.unsaved.load(Ordering::SeqCst);
        if report.unsaved_units > 0 {
            report.warnings.push(self.gateway.kept_note(report.unsaved_units));
        }
        report
    }

    pub(super) fn finish(self) -> VideoReport {
        let report = self.snapshot();
        emit(self.progress.as_ref(), Progress::Done { spent_usd: report.usage.cost_usd });
        report
    }
}

/// Events from a timeline-shaped answer: the provider's parsed events, or a
/// JSON answer parsed here when the provider returned it as text.
pub(super) fn events_of(output: &ProviderOutput, span: TimeRange) -> Vec<Event> {
    if let [only] = output.observations.as_slice() {
        if let Ok(events) = timeline::parse_events(&only.text, span) {
            return events;
        }
    }
    output
        .observations
        .iter()
        .map(|o| Event { start_ms: o.range.start_ms, end_ms: o.range.end_ms, text: o.text.clone() })
        .collect()
}

pub(super) fn joined_text(output: &ProviderOutput) -> String {
    output.observations.iter().map(|o| o.text.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("\n\n")
}

pub(super) fn output_provider(output: &ProviderOutput, default: &str) -> String {
    output.observations.first().map_or_else(|| default.to_string(), |o| o.provider.clone())
}

/// Per provider: attempts and how they ended, e.g. `openai: 3 failed (HTTP 503)`.
fn attempt_summary(attempts: &[crate::schema::Attempt], said: &str) -> String {
    use crate::schema::Outcome;
    let mut per: Vec<(String, u32, u32, String)> = Vec::new();
    for a in attempts {
        let i = match per.iter().position(|p| p.0 == a.provider) {
            Some(i) => i,
            None => {
                per.push((a.provider.clone(), 0, 0, String::new()));
                per.len() - 1
            }
        };
        match &a.outcome {
            Outcome::Ok => per[i].1 += 1,
            Outcome::Transient { reason } | Outcome::FellBack { reason } | Outcome::Fatal { reason } => {
                per[i].2 += 1;
                per[i].3 = reason.clone();
            }
        }
    }
    per.iter()
        .map(|(p, ok, failed, last)| {
            if *failed == 0 {
                format!("{p}: {ok} ok")
            } else if said.contains(last.as_str()) {
                // The error (and its body) once per line is enough.
                format!("{p}: {ok} ok, {failed} failed, the last as above")
            } else {
                format!("{p}: {ok} ok, {failed} failed, the last: {last}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
