//! The timeline as data: the JSON a model is asked for, checked before it is
//! believed. Times outside the video, ends before starts and empty text are
//! refused with the reason, so a caller can ask once for a repair.

use serde::Deserialize;

use crate::schema::{Event, TimeRange};
use crate::timecode;

/// The JSON schema of `{"events":[{"start","end","text"}]}`, for providers that
/// can be held to one.
pub fn json_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "start": {"type": "string", "description": "MM:SS.mmm from the start of the video"},
                        "end": {"type": "string", "description": "MM:SS.mmm from the start of the video"},
                        "text": {"type": "string"}
                    },
                    "required": ["start", "end", "text"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["events"],
        "additionalProperties": false
    })
}

#[derive(Deserialize)]
struct Answer {
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    start: serde_json::Value,
    end: serde_json::Value,
    text: String,
}

/// Read a model's timeline answer; every event must lie within `within`.
///
/// # Errors
/// A reason a model can act on, e.g. "event 2 ends at 01:10.000, after the video's end 01:00.000".
pub fn parse_events(answer: &str, within: TimeRange) -> Result<Vec<Event>, String> {
    let json = strip_fence(answer);
    let parsed: Answer =
        serde_json::from_str(json).map_err(|e| format!("the answer is not the requested JSON: {e}"))?;
    let mut events = Vec::with_capacity(parsed.events.len());
    for (i, raw) in parsed.events.into_iter().enumerate() {
        let n = i + 1;
        let start = time(&raw.start).ok_or_else(|| format!("event {n}: start {} is not a time", raw.start))?;
        let end = time(&raw.end).ok_or_else(|| format!("event {n}: end {} is not a time", raw.end))?;
        if end < start {
            return Err(format!(
                "event {n} ends ({}) before it starts ({})",
                timecode::format(end),
                timecode::format(start)
            ));
        }
        // Models round times: an event that runs up to a second (or 2 %) past
        // the end is cut at the end; one that starts past it is refused.
        let slack = 1_000.max(within.duration_ms() / 50);
        let end = if end > within.end_ms && end <= within.end_ms + slack && start < within.end_ms {
            within.end_ms
        } else {
            end
        };
        if start < within.start_ms || end > within.end_ms {
            return Err(format!(
                "event {n} ({}–{}) is outside the video's {}–{}",
                timecode::format(start),
                timecode::format(end),
                timecode::format(within.start_ms),
                timecode::format(within.end_ms)
            ));
        }
        let text = raw.text.trim();
        if text.is_empty() {
            return Err(format!("event {n} has no text"));
        }
        events.push(Event { start_ms: start, end_ms: end, text: text.to_string() });
    }
    events.sort_by_key(|e| (e.start_ms, e.end_ms));
    Ok(events)
}

/// A time as a string (`MM:SS.mmm`, `H:MM:SS`, `12.5`) or a number of seconds.
fn time(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::String(s) => timecode::parse(s),
        serde_json::Value::Number(n) => {
            let secs = n.as_f64()?;
            (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| (secs * 1000.0).round() as u64)
        }
        _ => None,
    }
}

/// Models sometimes wrap JSON in a Markdown fence despite being asked not to.
fn strip_fence(text: &str) -> &str {
    let t = text.trim();
    let Some(inner) = t.strip_prefix("```") else { return t };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: TimeRange = TimeRange { start_ms: 0, end_ms: 60_000 };

    #[test]
    fn a_good_answer_becomes_sorted_events() {
        let answer = r#"```json
{"events":[{"start":"00:10.500","end":"00:20","text":"A car passes."},{"start":0,"end":"0:05","text":" A door opens. "}]}
```"#;
        let events = parse_events(answer, MINUTE).unwrap();
        assert_eq!(events[0], Event { start_ms: 0, end_ms: 5_000, text: "A door opens.".into() });
        assert_eq!((events[1].start_ms, events[1].end_ms), (10_500, 20_000));
    }

    #[test]
    fn bad_answers_say_what_is_wrong() {
        for (answer, reason) in [
            ("not json", "not the requested JSON"),
            (r#"{"events":[{"start":"soon","end":"00:02","text":"x"}]}"#, "start \"soon\" is not a time"),
            (r#"{"events":[{"start":"00:09","end":"00:02","text":"x"}]}"#, "ends (00:02.000) before it starts"),
            (r#"{"events":[{"start":"00:50","end":"01:10","text":"x"}]}"#, "outside the video's 00:00.000–01:00.000"),
            (r#"{"events":[{"start":"00:01","end":"00:02","text":"  "}]}"#, "has no text"),
            (r#"{"events":[{"start":"01:00.500","end":"01:00.800","text":"x"}]}"#, "outside the video's"),
        ] {
            let err = parse_events(answer, MINUTE).unwrap_err();
            assert!(err.contains(reason), "{answer}: {err}");
        }
    }

    #[test]
    fn an_end_rounded_just_past_the_video_is_cut_at_its_end() {
        let answer = r#"{"events":[{"start":"00:55","end":"01:00.900","text":"The credits roll."}]}"#;
        assert_eq!(parse_events(answer, MINUTE).unwrap()[0].end_ms, 60_000);
        let answer = r#"{"events":[{"start":"00:55","end":"01:03","text":"x"}]}"#;
        assert!(parse_events(answer, MINUTE).is_err(), "three seconds past a minute is not rounding");
    }
}
