use std::io::Write;

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
        if p.protocol != Some(Protocol::LlamaLocal) {
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
