//! How a request is authorised, settled once from a profile: no key, a bearer
//! key, a key in a named header, or a bearer token read from a variable or
//! made by a command and cached (Vertex AI). The executor applies it.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderName;

use super::{ErrorClass, ProviderError, SetupError};
use crate::config::{AuthScheme, ProviderProfile};
use crate::secret::Secret;

/// How long a token command may run.
const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The credentials of one provider.
#[derive(Debug)]
pub enum Auth {
    None,
    /// `Authorization: Bearer KEY`.
    Bearer(Secret),
    /// `NAME: KEY`, e.g. `api-key` (Azure), `x-goog-api-key` (Gemini), `x-api-key`.
    Header(HeaderName, Secret),
    /// `Authorization: Bearer TOKEN`, the token fetched on first use and kept.
    Token(TokenSource),
}

/// A bearer token from a variable, else from a command's output.
#[derive(Debug, Default)]
pub struct TokenSource {
    pub env: Option<String>,
    pub command: Option<Vec<String>>,
    cached: Mutex<Option<Secret>>,
}

impl TokenSource {
    pub fn new(env: Option<String>, command: Option<Vec<String>>) -> Self {
        Self { env, command, cached: Mutex::new(None) }
    }

    fn cached(&self) -> Option<Secret> {
        self.cached.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The token, fetched once.
    async fn token(&self, provider: &str) -> Result<Secret, ProviderError> {
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let token = self.fetch(provider).await?;
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        Ok(token)
    }

    async fn fetch(&self, provider: &str) -> Result<Secret, ProviderError> {
        let fail = |message: String| ProviderError::new(provider, ErrorClass::FallBack, message);
        if let Some(token) = self.env.as_deref().and_then(Secret::from_env) {
            return Ok(token);
        }
        let Some((program, args)) = self.command.as_deref().and_then(|c| c.split_first()) else {
            return Err(fail(format!("no bearer token: {} is not set", self.env.as_deref().unwrap_or("token_env"))));
        };
        let output = tokio::time::timeout(
            TOKEN_COMMAND_TIMEOUT,
            tokio::process::Command::new(program).args(args).kill_on_drop(true).output(),
        )
        .await
        .map_err(|_| fail(format!("the token command `{program}` took over 30 s")))?
        .map_err(|e| fail(format!("cannot run the token command `{program}`: {e}")))?;
        let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() || token.is_empty() {
            return Err(fail(format!("the token command `{program}` gave no token ({})", output.status)));
        }
        Ok(Secret::new(token))
    }
}

impl Auth {
    /// The credentials `profile` names: its scheme, with the key from
    /// `api_key_env`, or for a bearer scheme with `token_env` or
    /// `token_command` set, a token from those.
    ///
    /// # Errors
    /// The key's variable is not named, or not set.
    pub fn from_profile(name: &str, profile: &ProviderProfile) -> Result<Self, SetupError> {
        let scheme = profile.auth_scheme();
        if scheme == AuthScheme::Bearer && (profile.token_env.is_some() || profile.token_command.is_some()) {
            return Ok(Auth::Token(TokenSource::new(profile.token_env.clone(), profile.token_command.clone())));
        }
        Ok(match scheme {
            AuthScheme::None => Auth::None,
            AuthScheme::Bearer => Auth::Bearer(api_key(name, profile)?),
            AuthScheme::ApiKeyHeader => Auth::Header(HeaderName::from_static("api-key"), api_key(name, profile)?),
            AuthScheme::GoogApiKey => Auth::Header(HeaderName::from_static("x-goog-api-key"), api_key(name, profile)?),
        })
    }

    /// Add the credentials to a request.
    pub(super) async fn apply(
        &self,
        builder: reqwest::RequestBuilder,
        provider: &str,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        Ok(match self {
            Auth::None => builder,
            Auth::Bearer(key) => builder.bearer_auth(key.expose()),
            Auth::Header(name, key) => builder.header(name, key.expose()),
            Auth::Token(source) => builder.bearer_auth(source.token(provider).await?.expose()),
        })
    }

    /// `text` without the key or token in it.
    pub fn redact(&self, text: &str) -> String {
        match self {
            Auth::Bearer(key) | Auth::Header(_, key) => key.redact(text),
            Auth::Token(source) => match source.cached() {
                Some(token) => token.redact(text),
                None => text.to_string(),
            },
            Auth::None => text.to_string(),
        }
    }
}

/// The key in the variable that `providers.NAME.api_key_env` names.
///
/// # Errors
/// The variable is not named, or not set, saying which config key to fix.
pub fn api_key(name: &str, profile: &ProviderProfile) -> Result<Secret, SetupError> {
    let fail = |message: String| SetupError { provider: name.to_string(), message };
    let var = profile.api_key_env.as_deref().ok_or_else(|| fail(format!("providers.{name}.api_key_env is not set")))?;
    Secret::from_env(var)
        .ok_or_else(|| fail(format!("the environment variable {var} (providers.{name}.api_key_env) is not set")))
}
