//! Loading, in layers: built-in defaults < the profiles in `providers/`
//! < the user's file < environment (`VIDGATE__SECTION__KEY`) < command-line flags.
//!
//! Each layer is checked on its own before merging, so an unknown key or a bad
//! value is reported with the key and the file (or variable) it came from.

use std::fmt;
use std::path::{Path, PathBuf};

use super::check::ConfigError;
use super::{Config, SHIPPED_PROFILES};

/// Where the user's file and flags come from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// `--config FILE`: must exist.
    pub file: Option<PathBuf>,
    /// Read `VIDGATE__*` variables (and `$VIDGATE_CONFIG`).
    pub use_env: bool,
    /// Look for `./vidgate.toml` and the platform config file.
    pub discover_files: bool,
    /// Command-line overrides as (`section.key`, TOML value text).
    pub overrides: Vec<(String, String)>,
}

impl ConfigSources {
    /// What the CLI uses: everything, with `--config` if given.
    pub fn standard(file: Option<PathBuf>) -> Self {
        Self { file, use_env: true, discover_files: true, overrides: Vec::new() }
    }

    pub fn with_override(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.overrides.push((key.to_string(), value.to_string()));
        self
    }
}

impl Config {
    /// Built-in defaults and shipped profiles only.
    pub fn builtin() -> Result<Self, ConfigError> {
        Self::load(&ConfigSources::default())
    }

    /// Merge every layer named by `sources`.
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        let defaults = toml::to_string(&Config::default()).map_err(|e| ConfigError::Merge(e.to_string()))?;
        builder = builder.add_source(config::File::from_str(&defaults, config::FileFormat::Toml));

        for (name, text) in SHIPPED_PROFILES {
            let origin = format!("providers/{name}.toml (built in)");
            let table = parse_toml(text, &origin)?;
            check_profile(name, &table, &origin)?;
            let wrapped = wrap_profile(name, table);
            builder = builder.add_source(config::File::from_str(&wrapped, config::FileFormat::Toml));
        }

        if let Some(path) = user_file(sources)? {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::Read { origin: origin.clone(), source })?;
            let table = parse_toml(&text, &origin)?;
            check_layer(toml::Value::Table(table.clone()), &origin)?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }

        if sources.use_env {
            let env = env_layer();
            for (var, key, value) in &env {
                let table = nest(key, value.clone());
                check_layer(toml::Value::Table(table), &format!("environment variable {var}"))?;
                builder = builder
                    .set_override(key.as_str(), toml_to_config(value))
                    .map_err(|e| ConfigError::Merge(e.to_string()))?;
            }
        }

        for (key, text) in &sources.overrides {
            let origin = format!("command-line flag for `{key}`");
            let value = parse_scalar(text);
            check_layer(toml::Value::Table(nest(key, value.clone())), &origin)?;
            builder = builder
                .set_override(key.as_str(), toml_to_config(&value))
                .map_err(|e| ConfigError::Merge(e.to_string()))?;
        }

        let merged = builder.build().map_err(|e| ConfigError::Merge(e.to_string()))?;
        let mut config: Config = serde_path_to_error::deserialize(merged).map_err(|e| ConfigError::Key {
            origin: "(merged)".into(),
            key: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;
        config.fill_known_models();
        config.check_references().map_err(|e| e.into_error("(merged)"))?;
        Ok(config)
    }
}

/// The user's file: `--config`, else `$VIDGATE_CONFIG`, else `./vidgate.toml`,
/// else the platform config dir. An explicitly named file must exist.
fn user_file(sources: &ConfigSources) -> Result<Option<PathBuf>, ConfigError> {
    let must_exist = |path: PathBuf, origin: &str| {
        if path.is_file() {
            Ok(Some(path))
        } else {
            Err(ConfigError::Read {
                origin: format!("{} ({origin})", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            })
        }
    };
    if let Some(path) = &sources.file {
        return must_exist(path.clone(), "--config");
    }
    if sources.use_env {
        if let Some(path) = std::env::var_os("VIDGATE_CONFIG").filter(|p| !p.is_empty()) {
            return must_exist(PathBuf::from(path), "$VIDGATE_CONFIG");
        }
    }
    if sources.discover_files {
        let local = PathBuf::from("vidgate.toml");
        if local.is_file() {
            return Ok(Some(local));
        }
        if let Some(platform) = platform_config_path().filter(|p| p.is_file()) {
            return Ok(Some(platform));
        }
    }
    Ok(None)
}

fn parse_toml(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax { origin: origin.to_string(), message: e.message().to_string() })
}

/// Check one layer alone: unknown keys and bad values, named with their origin.
fn check_layer(value: toml::Value, origin: &str) -> Result<(), ConfigError> {
    let layer: Config = serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Key {
        origin: origin.to_string(),
        key: e.path().to_string(),
        message: e.into_inner().to_string(),
    })?;
    layer.validate().map_err(|e| e.into_error(origin))
}

fn check_profile(name: &str, table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    let wrapped: toml::Table =
        toml::from_str(&wrap_profile(name, table.clone())).map_err(|e| ConfigError::Merge(e.to_string()))?;
    check_layer(toml::Value::Table(wrapped), origin)
}

fn wrap_profile(name: &str, table: toml::Table) -> String {
    let mut providers = toml::Table::new();
    providers.insert(name.to_string(), toml::Value::Table(table));
    let mut root = toml::Table::new();
    root.insert("providers".into(), toml::Value::Table(providers));
    toml::to_string(&root).expect("a TOML table serializes")
}

/// `VIDGATE__SECTION__KEY=value` → (variable, `section.key`, value).
fn env_layer() -> Vec<(String, String, toml::Value)> {
    let mut out: Vec<_> = std::env::vars()
        .filter_map(|(var, value)| {
            let rest = var.strip_prefix("VIDGATE__")?;
            let key = rest.split("__").map(str::to_ascii_lowercase).collect::<Vec<_>>().join(".");
            Some((var, key, parse_scalar(&value)))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A flag or variable's text as a TOML value: numbers, booleans and arrays as
/// such, anything else as a string.
pub(super) fn parse_scalar(text: &str) -> toml::Value {
    let probe = format!("v = {text}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

fn nest(dotted: &str, value: toml::Value) -> toml::Table {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut table = toml::Table::new();
    table.insert(last.to_string(), value);
    for part in parts.into_iter().rev() {
        let mut outer = toml::Table::new();
        outer.insert(part.to_string(), toml::Value::Table(table));
        table = outer;
    }
    table
}

fn toml_to_config(value: &toml::Value) -> config::Value {
    use config::ValueKind;
    let kind = match value {
        toml::Value::String(s) => ValueKind::String(s.clone()),
        toml::Value::Integer(i) => ValueKind::I64(*i),
        toml::Value::Float(f) => ValueKind::Float(*f),
        toml::Value::Boolean(b) => ValueKind::Boolean(*b),
        toml::Value::Datetime(d) => ValueKind::String(d.to_string()),
        toml::Value::Array(items) => ValueKind::Array(items.iter().map(toml_to_config).collect()),
        toml::Value::Table(t) => ValueKind::Table(t.iter().map(|(k, v)| (k.clone(), toml_to_config(v))).collect()),
    };
    config::Value::new(None, kind)
}

/// Where a config file would be found on this platform, for `--help` and errors.
pub fn platform_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "vidgate").map(|d| d.config_dir().join("vidgate.toml"))
}

/// Read a config file alone, for tools that validate a file without merging it.
pub fn check_file(path: &Path) -> Result<(), ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { origin: origin.clone(), source })?;
    check_layer(toml::Value::Table(parse_toml(&text, &origin)?), &origin)
}
