//! How the next token is picked: the profile's sampling settings as a
//! llama.cpp sampler chain.

use llama_cpp_2::sampling::LlamaSampler;

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

#[cfg(test)]
mod tests {
    use llama_cpp_2::token::data::LlamaTokenData;
    use llama_cpp_2::token::data_array::LlamaTokenDataArray;
    use llama_cpp_2::token::LlamaToken;

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
