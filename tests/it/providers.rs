//! Profiles from the command line: known models in custom profiles, the
//! `vidgate providers` listing, plans and first use of a local model that is
//! not downloaded.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::*;

/// The variables of every shipped profile's key, removed so that what the
/// tests see does not depend on the machine.
fn without_keys(mut cmd: Command) -> Command {
    let config = vidgate::Config::builtin().unwrap();
    for var in config.providers.values().filter_map(|p| p.api_key_env.as_ref().or(p.token_env.as_ref())) {
        cmd.env_remove(var);
    }
    cmd
}

fn config_file(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("vidgate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn plan_json(config: &Path, provider: &str, env: (&str, &str)) -> serde_json::Value {
    let out = without_keys(vidgate())
        .args(["plan", "--json", "--provider", provider, "--config"])
        .arg(config)
        .arg(testsrc_10s())
        .env(env.0, env.1)
        .output()
        .unwrap();
    assert!(out.status.success(), "{provider}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

const MYGEM: &str = "[providers.mygem]\nprotocol = \"gemini\"\nbase_url = \"http://127.0.0.1:9\"\n\
                     api_key_env = \"MYGEM_TEST_KEY\"\nmodel = \"gemini-2.5-flash\"\n";

#[test]
fn a_custom_profile_of_a_known_model_plans_with_the_shipped_price_and_its_own_wins() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = config_file(dir.path(), "[providers.gemini]\nmodel = \"gemini-2.5-flash\"\n");
    let reference = plan_json(&shipped, "gemini", ("GEMINI_API_KEY", "test-key"))["candidates"][0].clone();
    let usd = reference["estimated_usd"].as_f64().unwrap();
    assert!(usd > 0.0, "{reference}");

    let custom = config_file(dir.path(), MYGEM);
    let c = plan_json(&custom, "mygem", ("MYGEM_TEST_KEY", "test-key"))["candidates"][0].clone();
    assert_eq!((c["provider"].as_str(), c["model"].as_str()), (Some("mygem"), Some("gemini-2.5-flash")));
    assert_eq!(c["input_tokens"], reference["input_tokens"], "the shipped token rules: {c}");
    assert_eq!(c["estimated_usd"], reference["estimated_usd"], "the shipped price: {c}");

    // The profile's own price (ten times the shipped one, no audio or cache rates) wins.
    let own = config_file(
        dir.path(),
        &format!("{MYGEM}[providers.mygem.price]\ninput_per_mtok = 3.0\noutput_per_mtok = 25.0\n"),
    );
    let c = plan_json(&own, "mygem", ("MYGEM_TEST_KEY", "test-key"))["candidates"][0].clone();
    assert_eq!((&c["input_tokens"], &c["output_tokens"]), (&reference["input_tokens"], &reference["output_tokens"]));
    let tokens = |key: &str| c[key].as_u64().unwrap() as f64;
    let expected = (tokens("input_tokens") * 3.0 + tokens("output_tokens") * 25.0) / 1e6;
    let own_usd = c["estimated_usd"].as_f64().unwrap();
    assert!((own_usd - expected).abs() < 1e-9 && own_usd > 9.0 * usd, "{own_usd}: {c}");
}

#[test]
fn an_unknown_model_without_a_price_is_still_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &MYGEM.replace("gemini-2.5-flash", "gemini-0-unknown"));
    let out = without_keys(vidgate())
        .args(["plan", "--provider", "mygem", "--config"])
        .arg(&config)
        .arg(testsrc_10s())
        .env("MYGEM_TEST_KEY", "test-key")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no price for model `gemini-0-unknown`") && err.contains("[providers.mygem.price]"), "{err}");
}
