//! Token counts as providers report them, and the warnings about answers
//! that are kept although something about them is off.

use serde::{Deserialize, Deserializer};

use super::Estimate;
use crate::schema::Usage;

/// A token count from an answer's usage. The OpenAI spec types the counts as
/// plain integers, so a server may send a negative one (or a fraction, or a
/// string); such a count is kept as what was sent, so that one odd field costs
/// the usage, never the answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum TokenCount {
    Count(u64),
    Unusable(String),
    #[default]
    Missing,
}

impl TokenCount {
    /// The count, `0` when absent; the raw value when it cannot be a count.
    pub(crate) fn get(&self) -> Result<u64, &str> {
        match self {
            TokenCount::Count(n) => Ok(*n),
            TokenCount::Missing => Ok(0),
            TokenCount::Unusable(raw) => Err(raw),
        }
    }
}

impl<'de> Deserialize<'de> for TokenCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(match &value {
            serde_json::Value::Null => TokenCount::Missing,
            serde_json::Value::Number(n) => {
                n.as_u64().map_or_else(|| TokenCount::Unusable(n.to_string()), TokenCount::Count)
            }
            other => TokenCount::Unusable(other.to_string().chars().take(40).collect()),
        })
    }
}

/// Reads the named counts; the first that cannot be a count, as `name = raw`.
pub(crate) fn counts<const N: usize>(named: [(&str, &TokenCount); N]) -> Result<[u64; N], String> {
    let mut out = [0; N];
    for (slot, (name, count)) in out.iter_mut().zip(named) {
        *slot = count.get().map_err(|raw| format!("{name} = {raw}"))?;
    }
    Ok(out)
}

/// What an answer cost, and what is doubtful about it. Usage that is not
/// reported, or cannot be read (`unusable` says why), is billed at the
/// estimate, never less; an answer that stopped at its output cap is kept,
/// with `cut` naming the protocol's own finish reason.
pub(crate) fn settle(
    provider: &str,
    reported: Option<Usage>,
    unusable: Option<&str>,
    cut: Option<&str>,
    cap: u32,
    estimate: &Estimate,
    warnings: &mut Vec<String>,
) -> Usage {
    let mut warn = |warning: String| {
        tracing::warn!("{warning}");
        warnings.push(warning);
    };
    if let Some(what) = unusable {
        warn(self::unusable(provider, what, estimate.cost_usd));
    }
    if let Some(reason) = cut {
        warn(format!("{} ({reason})", cut_at_cap(provider, cap)));
    }
    reported.unwrap_or(Usage {
        input_tokens: estimate.input_tokens,
        output_tokens: estimate.output_tokens,
        cost_usd: estimate.cost_usd,
    })
}

/// The warning for an answer whose usage could not be read.
pub(crate) fn unusable(provider: &str, what: &str, estimate_usd: f64) -> String {
    format!(
        "{provider}: the answer's usage is unusable ({what}); the answer is kept and billed at the estimate of ${estimate_usd:.6}"
    )
}

/// The warning for an answer that stopped at its output cap.
pub(crate) fn cut_at_cap(provider: &str, cap: u32) -> String {
    format!("{provider}: the answer stopped at the output cap of {cap} tokens and may be cut short")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_counts_are_kept_as_sent() {
        let parse = |json: &str| serde_json::from_str::<TokenCount>(json).unwrap();
        assert_eq!(parse("12"), TokenCount::Count(12));
        assert_eq!(parse("null"), TokenCount::Missing);
        assert_eq!(parse("-5"), TokenCount::Unusable("-5".into()));
        assert_eq!(parse("1.5"), TokenCount::Unusable("1.5".into()));
        assert_eq!(parse("\"7\""), TokenCount::Unusable("\"7\"".into()));
        let (a, b) = (TokenCount::Count(3), TokenCount::Unusable("-5".into()));
        assert_eq!(counts([("a", &a), ("m", &TokenCount::Missing)]), Ok([3, 0]));
        assert_eq!(counts([("a", &a), ("prompt_tokens", &b)]), Err("prompt_tokens = -5".to_string()));
    }
}
