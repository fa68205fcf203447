//! How the next token is picked: the profile's sampling settings as a
//! llama.cpp sampler chain, behind the timeline grammar for structured jobs.

use std::sync::OnceLock;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use serde_json::Value;

use crate::config::ProviderProfile;

/// llama.cpp's `LLAMA_DEFAULT_SEED`: `dist` draws a random seed for it.
const RANDOM_SEED: u32 = u32::MAX;

/// The sampling settings of a profile, with llama.cpp's defaults (those of
/// its `common_params_sampling`) for what the profile leaves out, except the
/// temperature: 0, greedy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Sampling {
    /// 0: greedy.
    pub temperature: f32,
    /// 0: off.
    pub top_k: u32,
    /// 1: off.
    pub top_p: f32,
    /// 0: off.
    pub min_p: f32,
    /// 1: off.
    pub repeat_penalty: f32,
    /// 0: off.
    pub repeat_last_n: u32,
    /// `None`: a random seed for each answer.
    pub seed: Option<u32>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: None,
        }
    }
}

impl Sampling {
    /// The profile's settings (checked: see `ProviderProfile::check_sampling`),
    /// the defaults for the rest.
    pub fn from_profile(profile: &ProviderProfile) -> Self {
        let d = Self::default();
        let f = |v: Option<f64>, default: f32| v.map_or(default, |v| v as f32);
        Self {
            temperature: f(profile.temperature, d.temperature),
            top_k: profile.top_k.unwrap_or(d.top_k),
            top_p: f(profile.top_p, d.top_p),
            min_p: f(profile.min_p, d.min_p),
            repeat_penalty: f(profile.repeat_penalty, d.repeat_penalty),
            repeat_last_n: profile.repeat_last_n.unwrap_or(d.repeat_last_n),
            seed: profile.seed,
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// The settings that change answers, for the journal's unit key: empty
    /// for plain greedy decoding (the default), so that keys made before
    /// sampling was configurable still match.
    pub fn key(&self) -> String {
        let penalty = if self.repeat_penalty != 1.0 && self.repeat_last_n > 0 {
            format!("repeat_penalty={};repeat_last_n={}", self.repeat_penalty, self.repeat_last_n)
        } else {
            String::new()
        };
        if self.is_greedy() {
            return penalty;
        }
        let seed = self.seed.map_or_else(|| "random".to_string(), |s| s.to_string());
        format!(
            "temperature={};top_k={};top_p={};min_p={};seed={seed};{penalty}",
            self.temperature, self.top_k, self.top_p, self.min_p
        )
    }

    /// A fresh sampler for one answer, in the order of llama.cpp's common
    /// sampler: the repeat penalty over the last `repeat_last_n` tokens (at
    /// most `n_ctx`), then greedy; or top-k, top-p, min-p, the temperature
    /// and a draw with the seed. Tokens sampled from it count for the penalty.
    pub fn sampler(&self, n_vocab: i32, n_ctx: u32) -> LlamaSampler {
        let mut chain = Vec::with_capacity(6);
        let last_n = self.repeat_last_n.min(n_ctx).min(i32::MAX as u32) as i32;
        if self.repeat_penalty != 1.0 && last_n > 0 {
            chain.push(LlamaSampler::penalties(n_vocab, last_n, self.repeat_penalty, 0.0, 0.0));
        }
        if self.is_greedy() {
            chain.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                chain.push(LlamaSampler::top_k(self.top_k.min(i32::MAX as u32) as i32));
            }
            chain.push(LlamaSampler::top_p(self.top_p, 1));
            chain.push(LlamaSampler::min_p(self.min_p, 1));
            chain.push(LlamaSampler::temp(self.temperature));
            chain.push(LlamaSampler::dist(self.seed.unwrap_or(RANDOM_SEED)));
        }
        LlamaSampler::chain(chain, true)
    }
}

/// How one answer picks its tokens: the profile's chain, alone or held to a
/// grammar.
pub(super) enum Picker {
    Free(LlamaSampler),
    /// Held as llama.cpp's common sampler holds a chain to a grammar
    /// (`common_sampler_sample`, not `grammar_first`): the chain picks from
    /// every token; a pick the grammar allows is taken, else the grammar
    /// removes what it forbids and the chain picks again. Greedy gets the
    /// token it would get with the grammar at the head of the chain, but the
    /// grammar mostly checks one token, not the whole vocabulary: Gemma 3
    /// 270M (262,144 tokens, one thread, a release build) generated 33–40
    /// tokens/s this way, as many as without a grammar (30–43), and 10–13
    /// with the grammar first. The grammar allows the end of generation only
    /// once its JSON is complete.
    Held {
        chain: LlamaSampler,
        grammar: LlamaSampler,
        /// The candidates' buffer, kept from token to token.
        candidates: Vec<LlamaTokenData>,
    },
}

impl Picker {
    /// Pick the next token from the logits of the last evaluated token and
    /// accept it (for the repeat penalty and the grammar). `None` when the
    /// grammar allows no token at all (its JSON is complete and the model has
    /// no end-of-generation token, or the vocabulary cannot go on): the
    /// answer ends there.
    ///
    /// Held, this takes llama.cpp's steps one by one, so that the grammar
    /// never throws across the FFI (which would abort the process).
    ///
    /// # Errors
    /// The grammar refuses a token it allowed (a llama.cpp fault).
    pub fn next(&mut self, ctx: &LlamaContext<'_>) -> Result<Option<LlamaToken>, String> {
        let (chain, grammar, candidates) = match self {
            Picker::Free(chain) => return Ok(Some(chain.sample(ctx, -1))),
            Picker::Held { chain, grammar, candidates } => (chain, grammar, candidates),
        };
        let logits = ctx.get_logits_ith(-1);
        let mut cur = fill(std::mem::take(candidates), logits);
        cur.apply_sampler(chain);
        let mut token = cur.selected_token().filter(|&t| allows(grammar, t));
        if token.is_none() {
            cur = fill(cur.data, logits);
            cur.apply_sampler(grammar);
            cur.apply_sampler(chain);
            let picked = cur.selected.and_then(|i| cur.data.get(i)).filter(|d| d.logit() > f32::NEG_INFINITY);
            token = picked.map(LlamaTokenData::id);
        }
        *candidates = cur.data;
        let Some(token) = token else {
            tracing::debug!("the timeline JSON grammar allows no token: the answer ends");
            return Ok(None);
        };
        grammar.try_accept(token).map_err(|e| format!("the timeline JSON grammar refuses token {}: {e}", token.0))?;
        chain.accept(token);
        Ok(Some(token))
    }
}

/// Every token with its logit, in `buffer`'s memory.
fn fill(mut buffer: Vec<LlamaTokenData>, logits: &[f32]) -> LlamaTokenDataArray {
    buffer.clear();
    buffer.extend((0..).zip(logits).map(|(id, &logit)| LlamaTokenData::new(LlamaToken(id), logit, 0.0)));
    LlamaTokenDataArray::new(buffer, false)
}

/// Whether `grammar` allows `token` next.
fn allows(grammar: &mut LlamaSampler, token: LlamaToken) -> bool {
    let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 0.0, 0.0)], false);
    one.apply_sampler(grammar);
    one.data[0].logit() > f32::NEG_INFINITY
}

/// The GBNF grammar of the timeline JSON ([`crate::timeline::json_schema`]),
/// made by llama.cpp's own converter once per process (it depends on the
/// schema alone, not on a model). The grammar writes an object's keys in the
/// order its schema lists them, so they are listed as `required` orders them
/// (`start`, `end`, `text`: as the prompts show), not sorted.
///
/// # Errors
/// Why llama.cpp cannot convert the schema; every later call gets the same.
pub(super) fn timeline_gbnf() -> Result<&'static str, String> {
    static GBNF: OnceLock<Result<String, String>> = OnceLock::new();
    GBNF.get_or_init(|| {
        llama_cpp_2::json_schema_to_grammar(&schema_text(&crate::timeline::json_schema(), &[]))
            .map_err(|e| format!("llama.cpp cannot turn the timeline JSON schema into a grammar: {e}"))
    })
    .as_ref()
    .map(String::as_str)
    .map_err(Clone::clone)
}

/// A JSON schema as text, with the keys named in `first` before the others,
/// and each `properties` in the order of its schema's `required`.
fn schema_text(value: &Value, first: &[&str]) -> String {
    match value {
        Value::Object(map) => {
            let required: Vec<&str> = map
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| first.iter().position(|f| f == k).unwrap_or(first.len()));
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    let order = if k == "properties" { &required[..] } else { &[] };
                    format!("{}:{}", Value::from(k.as_str()), schema_text(&map[k], order))
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(|v| schema_text(v, &[])).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// A fresh grammar sampler that holds an answer to the timeline JSON, for
/// `model`'s vocabulary: it allows the end of generation only once the JSON
/// is complete.
///
/// # Errors
/// Why the grammar cannot be made, and that `json_grammar = false` turns it off.
pub(super) fn timeline_grammar(model: &LlamaModel) -> Result<LlamaSampler, String> {
    const OFF: &str = "set json_grammar = false to generate without it";
    let gbnf = timeline_gbnf().map_err(|e| format!("{e} ({OFF})"))?;
    LlamaSampler::grammar(model, gbnf, "root")
        .map_err(|e| format!("llama.cpp cannot build the timeline JSON grammar: {e} ({OFF})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_key_is_empty_for_plain_greedy_and_changes_with_each_setting() {
        let greedy = Sampling::default();
        assert_eq!(greedy.key(), "");
        let penalised = Sampling { repeat_penalty: 1.1, ..greedy };
        assert_ne!(penalised.key(), "");
        let sampled = Sampling { temperature: 0.7, seed: Some(7), ..greedy };
        let keys = [
            sampled.key(),
            Sampling { temperature: 0.8, ..sampled }.key(),
            Sampling { top_k: 20, ..sampled }.key(),
            Sampling { top_p: 0.9, ..sampled }.key(),
            Sampling { min_p: 0.1, ..sampled }.key(),
            Sampling { seed: Some(8), ..sampled }.key(),
            Sampling { seed: None, ..sampled }.key(),
            Sampling { repeat_penalty: 1.1, ..sampled }.key(),
            penalised.key(),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    /// The token `sampler` picks from these logits (token i has logits[i]).
    fn pick(sampler: &mut LlamaSampler, logits: &[f32]) -> i32 {
        let data = logits.iter().enumerate().map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0));
        let mut array = LlamaTokenDataArray::from_iter(data, false);
        array.apply_sampler(sampler);
        array.selected_token().expect("the chain selects a token").0
    }

    fn sampled(temperature: f32, seed: u32) -> Sampling {
        Sampling { temperature, seed: Some(seed), ..Sampling::default() }
    }

    const FLAT: [f32; 4] = [1.0, 1.0, 0.9, 0.9];

    #[test]
    fn an_unset_profile_is_greedy_and_the_profile_sets_each_value() {
        let unset = Sampling::from_profile(&ProviderProfile::default());
        assert_eq!(unset, Sampling::default());
        assert!(unset.is_greedy());
        let profile = ProviderProfile {
            temperature: Some(0.7),
            top_k: Some(20),
            top_p: Some(0.9),
            min_p: Some(0.1),
            repeat_penalty: Some(1.1),
            repeat_last_n: Some(128),
            seed: Some(42),
            ..ProviderProfile::default()
        };
        let s = Sampling::from_profile(&profile);
        assert_eq!(
            s,
            Sampling {
                temperature: 0.7,
                top_k: 20,
                top_p: 0.9,
                min_p: 0.1,
                repeat_penalty: 1.1,
                repeat_last_n: 128,
                seed: Some(42)
            }
        );
        assert!(!s.is_greedy());
    }

    #[test]
    fn a_seed_is_kept_and_without_one_each_sampler_draws_its_own() {
        assert_eq!(sampled(1.0, 42).sampler(4, 64).get_seed(), 42);
        let unseeded = Sampling { temperature: 1.0, ..Sampling::default() };
        let seeds: Vec<u32> = (0..3).map(|_| unseeded.sampler(4, 64).get_seed()).collect();
        assert!(seeds[0] != seeds[1] || seeds[1] != seeds[2], "random seeds: {seeds:?}");
        assert!(!seeds.contains(&RANDOM_SEED), "{seeds:?}");
    }

    #[test]
    fn the_timeline_schema_converts_to_a_gbnf_grammar_with_a_root() {
        let gbnf = timeline_gbnf().expect("llama.cpp converts the schema");
        assert!(gbnf.lines().any(|l| l.starts_with("root ::=")), "{gbnf}");
        for key in ["events", "start", "end", "text"] {
            assert!(gbnf.contains(&format!("\\\"{key}\\\"")), "{key}: {gbnf}");
        }
        assert!(std::ptr::eq(gbnf, timeline_gbnf().unwrap()), "converted once");
        // An event's keys come in the prompts' order, not sorted.
        let item = gbnf.lines().find(|l| l.starts_with("events-item ::=")).expect("an event rule");
        let at = |key: &str| item.find(&format!("events-item-{key}-kv")).unwrap_or(usize::MAX);
        assert!(at("start") < at("end") && at("end") < at("text") && at("text") < usize::MAX, "{item}");
    }

    #[test]
    fn schema_text_orders_properties_as_required_and_keeps_every_value() {
        let schema = serde_json::json!({"type": "object", "required": ["b", "c", "a"],
            "properties": {"a": {"enum": [1, "x"]}, "b": {"type": "string"}, "c": {"type": "null"}, "d": {}}});
        let text = schema_text(&schema, &[]);
        let props = &text[text.find("\"properties\"").unwrap()..];
        let at = |key: &str| props.find(&format!("\"{key}\":")).unwrap();
        assert!(at("b") < at("c") && at("c") < at("a") && at("a") < at("d"), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), schema);
    }

    #[test]
    fn greedy_takes_the_likeliest_token() {
        let greedy = Sampling::default();
        assert_eq!(pick(&mut greedy.sampler(4, 64), &[0.5, 3.0, 2.9, -1.0]), 1);
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens_and_seeds_differ() {
        let draws = |seed| {
            let mut sampler = sampled(1.0, seed).sampler(4, 64);
            (0..16).map(|_| pick(&mut sampler, &FLAT)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        // Over 16 draws each from four near-equal tokens, seeds 0..8 do not
        // all draw the same sequence (they are fixed: this cannot flake).
        let first = draws(0);
        assert!((1..8).any(|seed| draws(seed) != first), "{first:?}");
        assert!(first.iter().any(|&t| t != first[0]), "one sampler draws different tokens: {first:?}");
    }

    #[test]
    fn the_filters_bound_the_draw() {
        for seed in 0..32 {
            // top_k = 1 leaves the likeliest token alone, at any temperature.
            let top1 = Sampling { top_k: 1, ..sampled(5.0, seed) };
            assert_eq!(pick(&mut top1.sampler(4, 64), &[0.0, 0.5, 0.4, 0.1]), 1);
            // min_p = 0.5 drops the tokens less than half as likely as the
            // best (e^-1 here), which top_p = 0.95 and min_p = 0.05 keep.
            let min_p = Sampling { min_p: 0.5, ..sampled(1.0, seed) };
            assert!(pick(&mut min_p.sampler(4, 64), &[5.0, 5.0, 4.0, 4.0]) < 2);
        }
        let defaults = (0..32).map(|seed| pick(&mut sampled(1.0, seed).sampler(4, 64), &[5.0, 5.0, 4.0, 4.0]));
        assert!(defaults.into_iter().any(|t| t >= 2), "the defaults keep all four");
    }

    #[test]
    fn the_repeat_penalty_steers_greedy_away_from_a_generated_token() {
        let logits = [0.0, 1.0, 0.9];
        let plain = Sampling::default();
        let mut sampler = plain.sampler(3, 64);
        sampler.accept(LlamaToken(1));
        assert_eq!(pick(&mut sampler, &logits), 1, "no penalty by default");

        let penalised = Sampling { repeat_penalty: 2.0, ..Sampling::default() };
        let mut sampler = penalised.sampler(3, 64);
        assert_eq!(pick(&mut sampler, &logits), 1, "nothing generated yet");
        sampler.accept(LlamaToken(1));
        assert_eq!(pick(&mut sampler, &logits), 2, "1.0 / 2 < 0.9");

        // repeat_last_n = 0 turns it off.
        let off = Sampling { repeat_last_n: 0, ..penalised };
        let mut sampler = off.sampler(3, 64);
        sampler.accept(LlamaToken(1));
        assert_eq!(pick(&mut sampler, &logits), 1);
    }
}
