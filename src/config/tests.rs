use std::io::Write;
use std::path::Path;

use super::load::parse_scalar;
use super::*;

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn load_file(text: &str) -> (Result<Config, ConfigError>, tempfile::NamedTempFile) {
    let f = write_config(text);
    let sources = ConfigSources { file: Some(f.path().to_path_buf()), ..ConfigSources::default() };
    (Config::load(&sources), f)
}

#[test]
fn builtin_has_every_shipped_profile_with_prices_and_provenance() {
    let cfg = Config::builtin().unwrap();
    for (name, _) in SHIPPED_PROFILES {
        let p = cfg.provider(name).unwrap_or_else(|| panic!("profile {name} missing"));
        assert!(p.protocol.is_some(), "{name}: protocol");
        assert!(p.prices_checked.is_some() && p.prices_source.is_some(), "{name}: provenance");
        let model = p.model.as_deref().unwrap_or_else(|| panic!("{name}: default model"));
        if p.protocol.is_some_and(|p| p.is_speech()) {
            let per_minute = p.model_profile(model).and_then(|m| m.audio_usd_per_minute);
            assert!(per_minute.is_some(), "{name}: price a minute of {model}");
        } else if p.protocol != Some(Protocol::LlamaLocal) {
            assert!(p.price_for(model).is_some(), "{name}: price of {model}");
        }
    }
    assert_eq!(cfg.sampling.fps, 1.0);
    assert_eq!(cfg.router.chain, ["local"]);
}

#[test]
fn the_documented_user_file_loads_and_adds_a_provider() {
    let (cfg, _f) = load_file(
        r#"
[router]
chain = ["gemini", "openai", "local"]

[budget]
max_usd_per_request = 0.25

[sampling]
fps = 1.0
max_frames = 64
width = 512

[providers.myserver]
protocol = "openai"
base_url = "http://127.0.0.1:8080/v1"
api_key_env = "MYSERVER_KEY"
model = "some-vision-model"
[providers.myserver.price]
input_per_mtok = 0.15
output_per_mtok = 0.60
"#,
    );
    let cfg = cfg.unwrap();
    assert_eq!(cfg.router.chain, ["gemini", "openai", "local"]);
    let p = cfg.provider("myserver").unwrap();
    assert_eq!(p.protocol, Some(Protocol::Openai));
    assert_eq!(p.price_for("some-vision-model").unwrap().output_per_mtok, 0.60);
    assert_eq!(p.auth_scheme(), AuthScheme::Bearer);
}

#[test]
fn a_user_section_overrides_one_key_of_a_shipped_profile() {
    let shipped = Config::builtin().unwrap();
    let (cfg, _f) = load_file("[providers.openai]\nmodel = \"gpt-4o\"\n");
    let cfg = cfg.unwrap();
    let (a, b) = (shipped.provider("openai").unwrap(), cfg.provider("openai").unwrap());
    assert_eq!(b.model.as_deref(), Some("gpt-4o"));
    assert_eq!(a.base_url, b.base_url, "the rest of the profile stays");
    assert_eq!(a.models, b.models);
}

#[test]
fn an_unknown_key_names_the_key_and_the_file() {
    let (err, f) = load_file("[sampling]\nfsp = 2.0\n");
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("sampling.fsp") || msg.contains("`fsp`"), "{msg}");
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");

    let (err, _f) = load_file("[providers.openai]\nmodle = \"x\"\n");
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("providers.openai") && msg.contains("modle"), "{msg}");
}

#[test]
fn a_bad_value_names_the_key_and_the_file() {
    for (text, key) in [
        ("[sampling]\nfps = \"fast\"\n", "sampling.fps"),
        ("[sampling]\nfps = -1.0\n", "sampling.fps"),
        ("[sampling]\nwidth = 4\n", "sampling.width"),
        ("[providers.x]\nprotocol = \"grpc\"\n", "providers.x.protocol"),
        ("[providers.x]\nprotocol = \"openai\"\napi_key_env = \"sk-123 secret\"\n", "providers.x.api_key_env"),
        ("[budget]\nmax_usd_per_request = -2\n", "budget.max_usd_per_request"),
    ] {
        let (err, f) = load_file(text);
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains(key), "{text}: {msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        assert!(!msg.contains("sk-123"), "a misplaced key is not echoed: {msg}");
    }
}

#[test]
fn a_chain_naming_an_unknown_provider_is_an_error() {
    let (err, _f) = load_file("[router]\nchain = [\"nosuch\"]\n");
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("router.chain") && msg.contains("nosuch"), "{msg}");
}

#[test]
fn syntax_errors_and_missing_files_name_the_file() {
    let (err, f) = load_file("[sampling\n");
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains(&f.path().display().to_string()) && msg.contains("TOML"), "{msg}");

    let sources = ConfigSources { file: Some("/nonexistent/vidgate.toml".into()), ..Default::default() };
    let msg = Config::load(&sources).unwrap_err().to_string();
    assert!(msg.contains("/nonexistent/vidgate.toml"), "{msg}");
}

#[test]
fn flags_override_the_file() {
    let f = write_config("[sampling]\nfps = 2.0\nwidth = 320\n");
    let sources =
        ConfigSources { file: Some(f.path().to_path_buf()), ..Default::default() }.with_override("sampling.fps", 0.5);
    let cfg = Config::load(&sources).unwrap();
    assert_eq!(cfg.sampling.fps, 0.5);
    assert_eq!(cfg.sampling.width, 320);

    let bad = ConfigSources::default().with_override("sampling.width", 3);
    let msg = Config::load(&bad).unwrap_err().to_string();
    assert!(msg.contains("command-line flag") && msg.contains("sampling.width"), "{msg}");
}

#[test]
fn scalars_parse_like_toml() {
    assert_eq!(parse_scalar("2"), toml::Value::Integer(2));
    assert_eq!(parse_scalar("0.5"), toml::Value::Float(0.5));
    assert_eq!(parse_scalar("true"), toml::Value::Boolean(true));
    assert_eq!(parse_scalar("http://x/v1"), toml::Value::String("http://x/v1".into()));
    assert_eq!(parse_scalar(r#"["a","b"]"#), toml::Value::Array(vec!["a".into(), "b".into()]));
}

#[test]
fn local_sampling_settings_parse_and_default_to_greedy() {
    let local = Config::builtin().unwrap().providers.remove("local").unwrap();
    assert_eq!((local.temperature, local.top_k, local.seed), (None, None, None), "greedy unless configured");
    assert_eq!(local.json_grammar, None, "the grammar is on unless turned off");

    let (cfg, _f) = load_file(
        "[providers.local]\ntemperature = 0.7\ntop_k = 20\ntop_p = 0.9\nmin_p = 0.1\nrepeat_penalty = 1.1\n\
         repeat_last_n = 128\nseed = 42\njson_grammar = false\n",
    );
    let p = cfg.unwrap().providers.remove("local").unwrap();
    assert_eq!(
        (p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.repeat_last_n, p.seed),
        (Some(0.7), Some(20), Some(0.9), Some(0.1), Some(1.1), Some(128), Some(42))
    );
    assert_eq!(p.json_grammar, Some(false));
    assert_eq!(p.gpu_layers, Some(0), "the rest of the shipped profile stays");

    // Integers are numbers too, and the ends of each range are allowed.
    let (cfg, _f) = load_file(
        "[providers.local]\ntemperature = 1\ntop_p = 0\nmin_p = 1\nrepeat_last_n = 0\ntop_k = 0\nseed = 4294967294\n",
    );
    let p = cfg.unwrap().providers.remove("local").unwrap();
    assert_eq!((p.temperature, p.top_p, p.min_p, p.seed), (Some(1.0), Some(0.0), Some(1.0), Some(u32::MAX - 1)));
}

#[test]
fn a_bad_sampling_value_names_the_profile_the_key_the_value_and_the_range() {
    for (line, key, why) in [
        ("temperature = -0.5", "temperature", "-0.5 is not a finite number ≥ 0"),
        ("temperature = nan", "temperature", "NaN is not a finite number ≥ 0"),
        ("temperature = inf", "temperature", "inf is not a finite number ≥ 0"),
        ("top_p = 1.5", "top_p", "1.5 is outside [0, 1]"),
        ("top_p = -0.1", "top_p", "-0.1 is outside [0, 1]"),
        ("min_p = 2.0", "min_p", "2 is outside [0, 1]"),
        ("min_p = -0.01", "min_p", "-0.01 is outside [0, 1]"),
        ("repeat_penalty = 0.0", "repeat_penalty", "0 is not a finite number > 0"),
        ("repeat_penalty = -1.2", "repeat_penalty", "-1.2 is not a finite number > 0"),
        ("seed = 4294967295", "seed", "4294967295 is outside 0..=4294967294"),
        ("seed = -1", "seed", "integer `-1`, expected u32"),
        ("top_k = -40", "top_k", "integer `-40`, expected u32"),
        ("repeat_last_n = -1", "repeat_last_n", "integer `-1`, expected u32"),
        ("temperature = \"hot\"", "temperature", "\"hot\""),
        ("json_grammar = \"no\"", "json_grammar", "expected a boolean"),
        ("json_grammar = 0", "json_grammar", "expected a boolean"),
    ] {
        let (err, f) = load_file(&format!("[providers.mine]\nprotocol = \"llama_local\"\n{line}\n"));
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains(&format!("key `providers.mine.{key}`")), "{line}: {msg}");
        assert!(msg.contains(why), "{line}: {msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{line}: {msg}");
    }

    // A flag or variable is checked the same way.
    let bad = ConfigSources::default().with_override("providers.local.top_p", 1.5);
    let msg = Config::load(&bad).unwrap_err().to_string();
    assert!(msg.contains("command-line flag") && msg.contains("providers.local.top_p") && msg.contains("1.5"), "{msg}");
}

#[test]
fn a_token_lifetime_out_of_range_names_its_key_and_limit() {
    for (line, why) in [
        ("token_lifetime_s = 0.5", "0.5 is outside 1..=43200 seconds"),
        ("token_lifetime_s = 86400", "86400 is outside 1..=43200 seconds"),
        ("token_lifetime_s = nan", "NaN is outside 1..=43200 seconds"),
    ] {
        let (err, _f) = load_file(&format!("[providers.vertex]\n{line}\n"));
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("key `providers.vertex.token_lifetime_s`") && msg.contains(why), "{line}: {msg}");
    }
    let (ok, _f) = load_file("[providers.vertex]\ntoken_lifetime_s = 1\n");
    assert_eq!(ok.unwrap().providers["vertex"].token_lifetime_s, Some(1.0));
}

#[test]
fn inline_max_bytes_is_capped_at_the_apis_inline_limit() {
    // A file of 100 MB makes a request of 133 MB: its base64 must fit the 100 MB.
    let (err, f) = load_file("[providers.gemini]\ninline_max_bytes = 100000000\n");
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("key `providers.gemini.inline_max_bytes`"), "{msg}");
    assert!(msg.contains("100000000 is over 74000000 bytes, the largest file whose base64 fits"), "{msg}");
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    let (ok, _f) = load_file("[providers.gemini]\ninline_max_bytes = 74000000\n");
    assert_eq!(ok.unwrap().providers["gemini"].inline_max_bytes, Some(74_000_000));
    assert_eq!(Config::builtin().unwrap().providers["gemini"].inline_max_bytes, Some(DEFAULT_INLINE_BYTES));
}

#[test]
fn every_setting_that_becomes_a_wait_is_bounded() {
    let mut cases = Vec::new();
    for key in [
        "limits.probe_timeout_s",
        "limits.extract_timeout_s",
        "retry.max_wait_s",
        "fetch.timeout_s",
        "fetch.connect_timeout_s",
        "fetch.stall_timeout_s",
        "router.cooldown_s",
    ] {
        let (section, name) = key.split_once('.').unwrap();
        for (value, shown) in
            [("1e300", "1000000000"), ("inf", "inf"), ("nan", "NaN"), ("-1.0", "-1"), ("604800.5", "604800.5")]
        {
            cases.push((format!("[{section}]\n{name} = {value}\n"), key.to_string(), shown));
        }
    }
    for key in ["timeout_s", "file_timeout_s"] {
        for (value, shown) in [("1e300", "1000000000"), ("inf", "inf"), ("0.0", "0"), ("-5.0", "-5")] {
            cases.push((
                format!("[providers.mine]\nprotocol = \"openai\"\n{key} = {value}\n"),
                format!("providers.mine.{key}"),
                shown,
            ));
        }
    }
    for (text, key, shown) in cases {
        let (err, f) = load_file(&text);
        let msg = err.expect_err(&text).to_string();
        assert!(msg.contains(&format!("key `{key}`")), "{text}: {msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        assert!(msg.contains("604800] seconds"), "the allowed range: {msg}");
        assert!(msg.contains(&format!("`: {shown}")), "the value: {msg}");
    }
    // The bounds themselves are accepted.
    let (cfg, _f) = load_file("[limits]\nextract_timeout_s = 604800\n[router]\ncooldown_s = 0\n");
    assert_eq!(cfg.unwrap().limits.extract_timeout_s, 604800.0);
}

#[test]
fn a_custom_profile_finds_a_known_models_data_by_its_name() {
    let shipped = Config::builtin().unwrap();
    let known = shipped.provider("gemini").unwrap().model_profile("gemini-2.5-flash").unwrap().clone();
    let (cfg, _f) = load_file(
        "[providers.mygem]\nprotocol = \"gemini\"\nbase_url = \"https://gemini.example\"\n\
         api_key_env = \"MYGEM_KEY\"\nmodel = \"gemini-2.5-flash\"\n",
    );
    let cfg = cfg.unwrap();
    let p = cfg.provider("mygem").unwrap();
    assert_eq!(p.price_for("gemini-2.5-flash"), known.price, "the shipped price");
    assert_eq!(p.model_profile("gemini-2.5-flash"), Some(&known), "limits and token rules too");
    assert_eq!(p.models.len(), 1, "only the model it names, not the whole catalogue");

    // On the same base URL as a shipped profile, that profile's entry is taken.
    let (cfg, _f) = load_file(
        "[providers.myvertex]\nprotocol = \"gemini\"\nbase_url = \"https://aiplatform.googleapis.com\"\n\
         model = \"gemini-2.5-flash\"\n",
    );
    let p = cfg.unwrap().providers.remove("myvertex").unwrap();
    assert_eq!(p.model_profile("gemini-2.5-flash").unwrap().max_images_per_request, Some(3000));
    assert_eq!(known.max_images_per_request, Some(3600));
}

#[test]
fn a_custom_profiles_own_values_win_over_the_known_models() {
    let (cfg, _f) = load_file(
        "[providers.mygem]\nprotocol = \"gemini\"\nmodel = \"gemini-2.5-flash\"\n\
         [providers.mygem.models.\"gemini-2.5-flash\"]\nmax_images_per_request = 7\n\
         [providers.mygem.models.\"gemini-2.5-flash\".price]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n\
         [providers.cheap]\nprotocol = \"openai\"\nmodel = \"gpt-4o\"\n\
         [providers.cheap.price]\ninput_per_mtok = 0.5\noutput_per_mtok = 0.75\n",
    );
    let cfg = cfg.unwrap();
    let m = cfg.provider("mygem").unwrap().model_profile("gemini-2.5-flash").unwrap();
    assert_eq!(m.max_images_per_request, Some(7));
    assert_eq!(m.price.map(|p| (p.input_per_mtok, p.output_per_mtok)), Some((1.0, 2.0)));
    assert_eq!(m.video_tokens_per_second, Some(263.0), "what it leaves unset comes from the shipped profile");
    let cheap = cfg.provider("cheap").unwrap();
    assert_eq!(cheap.price_for("gpt-4o").map(|p| p.output_per_mtok), Some(0.75));
    assert_eq!(cheap.model_profile("gpt-4o").unwrap().max_images_per_request, Some(500));
}

#[test]
fn an_unknown_model_gets_no_price_and_a_free_servers_price_is_not_lent() {
    let (cfg, _f) = load_file(
        "[providers.mine]\nprotocol = \"openai\"\nmodel = \"no-such-model\"\n\
         [providers.hosted]\nprotocol = \"openai\"\nmodel = \"Qwen/Qwen2.5-VL-7B-Instruct\"\n\
         [providers.other]\nprotocol = \"openai\"\nmodel = \"gemini-2.5-flash\"\n",
    );
    let cfg = cfg.unwrap();
    assert_eq!(cfg.provider("mine").unwrap().price_for("no-such-model"), None);
    assert!(cfg.provider("mine").unwrap().models.is_empty());
    // vLLM's profile lists this model but prices the whole (local) server at 0.
    assert_eq!(cfg.provider("hosted").unwrap().price_for("Qwen/Qwen2.5-VL-7B-Instruct"), None);
    // Another protocol's model is not this protocol's.
    assert_eq!(cfg.provider("other").unwrap().price_for("gemini-2.5-flash"), None);
}

#[test]
fn a_journal_database_url_is_checked_and_never_holds_a_password() {
    for (toml, key, words) in [
        ("url = \"postgres://u:secret@db/v\"", "journal.url", "password_env"),
        ("url = \"mysql://db/v\"", "journal.url", "not a PostgreSQL URL"),
        ("url = \"postgres://db/v\"\npath = \"j.sqlite3\"", "journal.url", "give one"),
        ("url = \"postgres://db/v\"\npool_size = 0", "journal.pool_size", "1..=64"),
        ("url = \"postgres://db/v?sslmode=prefer\"", "journal.url", "sslmode=verify-full"),
    ] {
        let (err, _f) = load_file(&format!("[journal]\n{toml}\n"));
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains(key) && msg.contains(words), "{toml}: {msg}");
        assert!(!msg.contains("secret"), "{msg}");
    }
    let (ok, _f) = load_file("[journal]\nurl = \"postgres://vidgate@db:5432/v\"\npassword_env = \"PG_PW\"\n");
    let journal = ok.unwrap().journal;
    assert_eq!(
        (journal.url.as_deref(), journal.password_env.as_deref()),
        (Some("postgres://vidgate@db:5432/v"), Some("PG_PW"))
    );
}

#[test]
fn an_empty_journal_path_is_refused_with_its_key() {
    let (err, f) = load_file("[journal]\npath = \"\"\n");
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("journal.path") && msg.contains("empty"), "{msg}");
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    let (ok, _f) = load_file("[journal]\npath = \"j.sqlite3\"\n");
    assert_eq!(ok.unwrap().journal.path, Some(PathBuf::from("j.sqlite3")));
}

#[test]
fn journal_keep_days_is_refused_outside_its_range_with_its_key() {
    for bad in ["0", "-3", "36501"] {
        let (err, f) = load_file(&format!("[journal]\nkeep_days = {bad}\n"));
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("journal.keep_days") && msg.contains("outside 1..=36500"), "{bad}: {msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    }
    let (ok, _f) = load_file("[journal]\nkeep_days = 30\n");
    assert_eq!(ok.unwrap().journal.keep_days, Some(30));
    assert_eq!(Config::default().journal.keep_days, None, "kept forever unless asked");
}

#[test]
fn each_section_validates_alone_and_the_whole_names_the_full_key() {
    let sampling = SamplingConfig { fps: 0.0, ..SamplingConfig::default() };
    assert_eq!(sampling.validate().unwrap_err(), Invalid::new("fps", "0 is outside (0, 60]"));
    let config = Config { sampling, ..Config::default() };
    assert_eq!(config.validate().unwrap_err().key, "sampling.fps");

    let mut config = Config::default();
    config.providers.insert("mine".into(), ProviderProfile { top_p: Some(2.0), ..ProviderProfile::default() });
    assert_eq!(config.validate().unwrap_err(), Invalid::new("providers.mine.top_p", "2 is outside [0, 1]"));
    assert_eq!(Config::builtin().unwrap().validate(), Ok(()));
}

#[test]
fn a_task_chain_for_no_task_names_the_file_it_is_in() {
    let (err, f) = load_file("[router.tasks]\nsummarize = [\"local\"]\n");
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("key `router.tasks.summarize`: not a task; the tasks are describe"), "{msg}");
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
}

#[test]
fn a_url_that_is_not_http_is_refused_without_its_credentials() {
    for (text, key) in [
        ("[models]\nbase_url = \"ftp://user:hunter2@mirror.example/hf\"\n", "models.base_url"),
        (
            "[providers.mine]\nprotocol = \"openai\"\nbase_url = \"ftp://user:hunter2@llm.example/v1\"\n",
            "providers.mine.base_url",
        ),
    ] {
        let (err, f) = load_file(text);
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains(&format!("key `{key}`")) && msg.contains("is not an http(s) URL"), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
    let (cfg, _f) = load_file("[models]\nbase_url = \"http://10.0.0.5:8080/hf\"\n");
    assert_eq!(cfg.unwrap().models.base_url, "http://10.0.0.5:8080/hf");
}

#[test]
fn price_provenance_is_a_date_and_a_page() {
    for (line, key, why) in [
        ("prices_checked = \"last week\"", "prices_checked", "`last week` is not a date, YYYY-MM-DD"),
        ("prices_checked = \"2026-11-26T10:00:00Z\"", "prices_checked", "is not a date, YYYY-MM-DD"),
        ("prices_checked = \"2026-13-01\"", "prices_checked", "is not a date, YYYY-MM-DD"),
        ("prices_source = \"the vendor's site\"", "prices_source", "is not an http(s) URL"),
    ] {
        let (err, f) = load_file(&format!("[providers.mine]\nprotocol = \"openai\"\n{line}\n"));
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains(&format!("key `providers.mine.{key}`")) && msg.contains(why), "{line}: {msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    }
    let (cfg, _f) = load_file(
        "[providers.mine]\nprotocol = \"openai\"\nprices_checked = \"2026-11-26\"\n\
         prices_source = \"https://example.com/pricing\"\n",
    );
    assert_eq!(cfg.unwrap().provider("mine").unwrap().prices_checked.as_deref(), Some("2026-11-26"));
}

#[test]
fn every_profile_file_in_providers_is_shipped() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| name.strip_suffix(".toml").map(str::to_string))
        .filter(|name| name != "models")
        .collect();
    files.sort();
    let shipped: Vec<&str> = SHIPPED_PROFILES.iter().map(|(name, _)| *name).collect();
    assert_eq!(shipped, files);
    for (name, text) in SHIPPED_PROFILES {
        assert_eq!(*text, std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap(), "{name}");
    }
}

#[test]
fn a_chain_member_without_a_protocol_names_every_protocol() {
    let (err, _f) = load_file("[router]\nchain = [\"mine\"]\n[providers.mine]\nmodel = \"m\"\n");
    let msg = err.unwrap_err().to_string();
    assert!(
        msg.contains("key `providers.mine.protocol`: missing: one of \"gemini\", \"openai\", \"llama_local\""),
        "{msg}"
    );
}

#[test]
fn server_settings_out_of_range_are_refused_with_their_key() {
    for (text, key) in [
        ("[server]\nbind = \"localhost\"\n", "server.bind"),
        ("[server]\nmax_concurrent_runs = 0\n", "server.max_concurrent_runs"),
        ("[server]\nmax_upload_bytes = 0\n", "server.max_upload_bytes"),
        ("[server]\nmax_inline_video_bytes = 0\n", "server.max_inline_video_bytes"),
        ("[server]\nmax_inline_video_bytes = 2147483648\n", "server.max_inline_video_bytes"),
        ("[server]\nkeep_uploads_hours = nan\n", "server.keep_uploads_hours"),
        ("[server]\nkeep_reports_days = -1.0\n", "server.keep_reports_days"),
        ("[server]\nadmin_key_env = \" \"\n", "server.admin_key_env"),
    ] {
        let (err, _f) = load_file(text);
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains(key), "{text}: {msg}");
    }
    let (ok, _f) = load_file("[server]\nbind = \"0.0.0.0:9000\"\nqueue_length = 0\n");
    let server = ok.unwrap().server;
    assert_eq!((server.bind.as_str(), server.queue_length, server.max_concurrent_runs), ("0.0.0.0:9000", 0, 4));
}

#[test]
fn router_aliases_name_a_task_and_providers_that_exist() {
    let (ok, _f) = load_file(
        "[router.aliases.quick-look]\ntask = \"describe\"\nchain = [\"gemini\"]\n\n[router.aliases.\"team/ask\"]\ntask = \"ask\"\n",
    );
    let cfg = ok.unwrap();
    let quick = &cfg.router.aliases["quick-look"];
    assert_eq!((quick.task.as_str(), quick.chain.clone()), ("describe", vec!["gemini".to_string()]));
    assert!(cfg.router.aliases["team/ask"].chain.is_empty());
    for (text, needle) in [
        ("[router.aliases.x]\ntask = \"summarize\"\n", "key `router.aliases.x.task`: `summarize` is not a task"),
        (
            "[router.aliases.x]\ntask = \"ask\"\nchain = [\"nope\"]\n",
            "key `router.aliases.x.chain`: no provider called `nope`",
        ),
        ("[router.aliases.\"vidgate/fast\"]\ntask = \"ask\"\n", "built-in models"),
        ("[router.aliases.\"a b\"]\ntask = \"ask\"\n", "not a model name"),
        ("[router.aliases.x]\ntask = \"ask\"\nfps = 2\n", "fps"),
    ] {
        let (err, f) = load_file(text);
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains(needle), "{text}: {msg}");
        // Only the merged whole knows the providers; the rest is the file's own fault.
        assert!(needle.contains("nope") || msg.contains(&f.path().display().to_string()), "{msg}");
    }
}

#[test]
fn speech_detector_settings_out_of_range_are_refused_with_their_key() {
    for (text, key) in [
        ("[speech.vad]\nthreshold_db = -1e300\n", "speech.vad.threshold_db"),
        ("[speech.vad]\nthreshold_db = nan\n", "speech.vad.threshold_db"),
        ("[speech.vad]\nmargin_db = 1000.0\n", "speech.vad.margin_db"),
        ("[speech.vad]\nmin_voiced_ms = 999999999\n", "speech.vad.min_voiced_ms"),
        ("[speech.vad]\nmax_segment_ms = 10\n", "speech.vad.max_segment_ms"),
    ] {
        let (err, _f) = load_file(text);
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains(key), "{text}: {msg}");
    }
    let (ok, _f) = load_file("[speech.vad]\nthreshold_db = -60.0\n");
    assert_eq!(ok.unwrap().speech.vad.threshold_db, -60.0);
}
