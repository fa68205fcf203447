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

#[test]
fn providers_lists_readiness_and_prices_and_never_a_key() {
    let secret = "sk-listing-secret-4f1c9e";
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), MYGEM);
    let run = |json: bool| -> Output {
        let mut cmd = without_keys(vidgate());
        cmd.arg("providers").args(json.then_some("--json")).arg("--config").arg(&config);
        cmd.env("GEMINI_API_KEY", secret).env("VIDGATE__MODELS__CACHE_DIR", dir.path().join("models"));
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains(secret) && !all.contains("4f1c9e"), "a key is never shown: {all}");
        out
    };
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&run(true).stdout).unwrap();
    let find = |name: &str| listed.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name}: {listed:?}"));

    let gemini = find("gemini");
    assert_eq!((gemini["ready"].as_bool(), gemini["key_present"].as_bool()), (Some(true), Some(true)), "{gemini}");
    assert_eq!(gemini["key_env"], "GEMINI_API_KEY");
    assert_eq!(gemini["price"]["input_per_mtok"], 0.30);
    let openai = find("openai");
    assert_eq!((openai["ready"].as_bool(), openai["key_present"].as_bool()), (Some(false), Some(false)), "{openai}");
    assert_eq!(openai["status"], "set OPENAI_API_KEY to your key");
    // The custom profile, with the shipped price of the model it names, and no key yet.
    let mygem = find("mygem");
    assert_eq!(mygem["price"]["output_per_mtok"], 2.50, "{mygem}");
    assert_eq!(mygem["ready"], false);
    assert!(find("ollama")["ready"].as_bool().unwrap(), "a local server needs no key");

    let local = find("local");
    assert_eq!(local["chain_position"], 1, "{local}");
    if cfg!(feature = "local") {
        let catalogue = vidgate::models::catalogue();
        let bytes: u64 = catalogue["smolvlm2-256m-video-instruct"].files.iter().filter_map(|f| f.size).sum();
        assert_eq!((local["ready"].as_bool(), local["download_bytes"].as_u64()), (Some(false), Some(bytes)));
    }

    let text = String::from_utf8(run(false).stdout).unwrap();
    let line =
        |name: &str| text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{text}"));
    assert!(line("gemini").contains(" yes ") && line("gemini").ends_with("key in GEMINI_API_KEY"), "{text}");
    assert!(line("gemini").contains("0.3 / 2.5"), "{text}");
    assert!(line("openai").contains(" no ") && line("openai").contains("set OPENAI_API_KEY"), "{text}");
    if cfg!(feature = "local") {
        assert!(line("local (1)").contains("needs a download of 0.28 GB"), "{text}");
    }
}

#[cfg(feature = "local")]
#[test]
fn plan_shows_a_local_model_not_downloaded_as_a_candidate_with_its_download() {
    let cache = tempfile::tempdir().unwrap();
    let plan = |json: bool| -> Output {
        let out = without_keys(vidgate())
            .arg("plan")
            .args(json.then_some("--json"))
            .arg(testsrc_10s())
            .env("VIDGATE__MODELS__CACHE_DIR", cache.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let json: serde_json::Value = serde_json::from_slice(&plan(true).stdout).unwrap();
    let c = &json["candidates"][0];
    let catalogue = vidgate::models::catalogue();
    let bytes: u64 = catalogue["smolvlm2-256m-video-instruct"].files.iter().filter_map(|f| f.size).sum();
    assert_eq!((c["provider"].as_str(), c["model"].as_str()), (Some("local"), Some("smolvlm2-256m-video-instruct")));
    assert_eq!(c["download_bytes"].as_u64(), Some(bytes), "{json}");
    assert_eq!((c["shape"].as_str(), c["frames"].as_u64()), (Some("frames"), Some(10)), "{json}");
    assert_eq!(c["estimated_usd"], 0.0);
    assert!(c.get("error").is_none() && json["fits"] == true, "{json}");

    let text = String::from_utf8(plan(false).stdout).unwrap();
    assert!(
        text.contains("needs a download of 0.28 GB first: `vidgate models pull smolvlm2-256m-video-instruct`"),
        "{text}"
    );
    assert!(std::fs::read_dir(cache.path()).unwrap().next().is_none(), "a plan downloads nothing");
}

#[cfg(feature = "local")]
#[test]
fn first_use_with_an_unreachable_hub_ends_in_one_line_naming_the_other_ways() {
    let cache = tempfile::tempdir().unwrap();
    let out = without_keys(vidgate())
        .args(["describe", "--yes"])
        .arg(testsrc_10s())
        .env("VIDGATE__MODELS__CACHE_DIR", cache.path())
        .env("VIDGATE__MODELS__BASE_URL", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line, no progress: {err:?}");
    assert!(err.starts_with("vidgate: error: cannot download the local model smolvlm2-256m-video-instruct"), "{err}");
    assert!(err.contains("the model hub http://127.0.0.1:1 cannot be reached"), "{err}");
    assert!(err.contains("set models.base_url to a mirror"), "{err}");
    assert!(err.contains("set GEMINI_API_KEY to your key and add `--provider gemini`"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn providers_shows_what_each_profile_is_and_where_its_prices_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        "[providers.mine]\nprotocol = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n\
         description = \"The team's own server.\"\nprices_checked = \"2026-11-20\"\n\
         prices_source = \"https://example.com/pricing\"\n",
    );
    let run = |json: bool| -> String {
        let mut cmd = without_keys(vidgate());
        cmd.arg("providers").args(json.then_some("--json")).arg("--config").arg(&config);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let listed: Vec<serde_json::Value> = serde_json::from_str(&run(true)).unwrap();
    let find = |name: &str| listed.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name}: {listed:?}"));
    let mine = find("mine");
    assert_eq!(mine["description"], "The team's own server.", "{mine}");
    assert_eq!(
        (&mine["prices_checked"], &mine["prices_source"]),
        (&"2026-11-20".into(), &"https://example.com/pricing".into())
    );
    let shipped = vidgate::Config::builtin().unwrap();
    let gemini = shipped.provider("gemini").unwrap();
    assert_eq!(find("gemini")["prices_checked"].as_str(), gemini.prices_checked.as_deref());
    assert_eq!(find("gemini")["prices_source"].as_str(), gemini.prices_source.as_deref());

    let text = run(false);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("mine ")).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(lines[at + 1].trim(), "The team's own server. · prices of 2026-11-20", "{text}");
}
