//! Merging observations into one timeline.
//!
//! Observations arrive as they are made (a push-style sink); consecutive
//! observations that say the same thing are folded into one event spanning
//! them. The story prompt that turns events into a narrative builds on this.

use crate::schema::{Event, Observation};

/// Receives observations as providers produce them.
pub trait ObservationSink {
    fn observe(&mut self, observation: Observation);
}

/// Collects observations and folds them into events.
#[derive(Debug, Default)]
pub struct TimelineBuilder {
    observations: Vec<Observation>,
}

impl ObservationSink for TimelineBuilder {
    fn observe(&mut self, observation: Observation) {
        self.observations.push(observation);
    }
}

impl TimelineBuilder {
    /// Events in time order; an observation repeating the one before it
    /// (ignoring case, spacing and punctuation) extends that event.
    pub fn events(&self) -> Vec<Event> {
        let mut sorted: Vec<&Observation> = self.observations.iter().collect();
        sorted.sort_by_key(|o| (o.range.start_ms, o.range.end_ms));
        let mut events: Vec<Event> = Vec::new();
        for o in sorted {
            match events.last_mut() {
                Some(last)
                    if normalized(&last.text) == normalized(&o.text)
                        && o.range.start_ms <= last.end_ms.max(o.range.start_ms) =>
                {
                    last.end_ms = last.end_ms.max(o.range.end_ms);
                }
                _ => events.push(Event {
                    start_ms: o.range.start_ms,
                    end_ms: o.range.end_ms,
                    text: o.text.trim().to_string(),
                }),
            }
        }
        events
    }

    pub fn observations(&self) -> &[Observation] {
        &self.observations
    }
}

fn normalized(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TimeRange;

    fn obs(start: u64, end: u64, text: &str) -> Observation {
        Observation {
            range: TimeRange { start_ms: start, end_ms: end },
            text: text.into(),
            provider: "p".into(),
            model: None,
        }
    }

    #[test]
    fn repeated_captions_fold_into_one_event() {
        let mut t = TimelineBuilder::default();
        for o in [
            obs(2000, 3000, "A dog runs."),
            obs(0, 1000, "A red car."),
            obs(1000, 2000, "a red car"),
            obs(3000, 4000, "A red car."),
        ] {
            t.observe(o);
        }
        let events = t.events();
        let spans: Vec<_> = events.iter().map(|e| (e.start_ms, e.end_ms, e.text.as_str())).collect();
        assert_eq!(spans, [(0, 2000, "A red car."), (2000, 3000, "A dog runs."), (3000, 4000, "A red car.")]);
    }
}
