//! How a request is authorised, settled once from a profile: no key, a bearer
//! key, a key in a named header, or a bearer token read from a variable or
//! made by a command (Vertex AI), fetched again before it expires and once
//! more when a server refuses it. The executor applies it.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderName;
use tokio::time::Instant;

use super::{ErrorClass, ProviderError, SetupError};
use crate::config::{AuthScheme, ProviderProfile, DEFAULT_TOKEN_LIFETIME_S};
use crate::secret::Secret;

/// How long a token command may run.
const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// A token whose expiry is stated is fetched again this long before it, at
/// most (a tenth of what it has left, for a short-lived one).
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Tokens remembered to be scrubbed from text: the one in use and the last.
const REMEMBERED: usize = 2;
/// How long a failed fetch stands: the callers who waited on it, and any
/// that come meanwhile, get its error instead of running the command again.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);

/// The credentials of one provider.
#[derive(Debug)]
pub enum Auth {
    None,
    /// `Authorization: Bearer KEY`.
    Bearer(Secret),
    /// `NAME: KEY`, e.g. `api-key` (Azure), `x-goog-api-key` (Gemini), `x-api-key`.
    Header(HeaderName, Secret),
    /// `Authorization: Bearer TOKEN`, the token fetched when first needed,
    /// again before it expires, and again when a server refuses it.
    Token(TokenSource),
}

/// A bearer token from a variable, else from a command's output: the token
/// alone, or JSON with the token and when it expires (`gcloud auth
/// print-access-token --format=json`, an OAuth token answer).
pub struct TokenSource {
    env: Option<String>,
    command: Option<Vec<String>>,
    /// How long a token is used when its source does not say.
    lifetime: Duration,
    /// The token in use, and the last fetch that failed. Held while a new
    /// one is fetched, so that callers who need one meanwhile wait for that
    /// fetch instead of starting theirs.
    current: tokio::sync::Mutex<Current>,
    /// The tokens handed out lately, newest last, for scrubbing text without waiting.
    recent: Mutex<Vec<Secret>>,
}

#[derive(Default)]
struct Current {
    held: Option<Held>,
    failed: Option<Box<Failed>>,
}

struct Held {
    token: Secret,
    /// When to fetch the next one.
    renew_at: Instant,
}

/// A fetch that failed, and when.
struct Failed {
    error: ProviderError,
    at: Instant,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let program = self.command.as_deref().and_then(<[String]>::first);
        f.debug_struct("TokenSource")
            .field("env", &self.env)
            .field("command", &program)
            .field("lifetime", &self.lifetime)
            .field("token", &"***")
            .finish()
    }
}

impl TokenSource {
    /// Tokens from `env`, else from `command`, each used for `lifetime`
    /// unless the command's output says when it expires.
    pub fn new(env: Option<String>, command: Option<Vec<String>>, lifetime: Duration) -> Self {
        Self { env, command, lifetime, current: tokio::sync::Mutex::default(), recent: Mutex::new(Vec::new()) }
    }

    /// The token source `profile` names (`token_env`, `token_command`, `token_lifetime_s`).
    pub fn from_profile(profile: &ProviderProfile) -> Self {
        let lifetime = crate::timecode::seconds(profile.token_lifetime_s.unwrap_or(DEFAULT_TOKEN_LIFETIME_S));
        Self::new(profile.token_env.clone(), profile.token_command.clone(), lifetime)
    }

    /// The token in use, fetched anew when it is due.
    pub(super) async fn token(&self, provider: &str) -> Result<Secret, ProviderError> {
        let mut current = self.current.lock().await;
        if let Some(held) = current.held.as_ref().filter(|h| Instant::now() < h.renew_at) {
            return Ok(held.token.clone());
        }
        self.renew(&mut current, provider).await
    }

    /// A token in place of `refused`, which a server just refused: fetched
    /// anew, unless another call already replaced it.
    pub(super) async fn replace(&self, refused: &Secret, provider: &str) -> Result<Secret, ProviderError> {
        let mut current = self.current.lock().await;
        if let Some(held) = current.held.as_ref().filter(|h| h.token != *refused && Instant::now() < h.renew_at) {
            return Ok(held.token.clone());
        }
        self.renew(&mut current, provider).await
    }

    /// A new token, unless a fetch failed lately: then that fetch's error,
    /// for [`FAILURE_BACKOFF`], so that a failing or hanging command runs
    /// once for every caller, not once for each in turn.
    async fn renew(&self, current: &mut Current, provider: &str) -> Result<Secret, ProviderError> {
        if let Some(failed) = current.failed.as_ref().filter(|f| f.at.elapsed() < FAILURE_BACKOFF) {
            return Err(failed.error.clone());
        }
        let (token, life) = match self.fetch(provider).await {
            Ok(fetched) => fetched,
            Err(error) => {
                current.failed = Some(Box::new(Failed { error: error.clone(), at: Instant::now() }));
                return Err(error);
            }
        };
        tracing::debug!(provider, "fetched a bearer token, used for {life:?}");
        current.failed = None;
        current.held = Some(Held { token: token.clone(), renew_at: Instant::now() + life });
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|t| *t != token);
        recent.push(token.clone());
        let over = recent.len().saturating_sub(REMEMBERED);
        recent.drain(..over);
        Ok(token)
    }

    /// Whether the token in use is due to be fetched again (none is held,
    /// or its time is up); `false` while a fetch is under way.
    fn due(&self) -> bool {
        self.current.try_lock().is_ok_and(|c| c.held.as_ref().is_none_or(|h| Instant::now() >= h.renew_at))
    }

    /// `text` without any token handed out lately.
    fn redact(&self, text: &str) -> String {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().fold(text.to_string(), |text, token| token.redact(&text))
    }

    /// A token and how long to use it. A failure is raised before any
    /// request is sent: it costs nothing.
    async fn fetch(&self, provider: &str) -> Result<(Secret, Duration), ProviderError> {
        let fail = |message: String| {
            let mut err = ProviderError::new(provider, ErrorClass::FallBack, message);
            err.not_sent = true;
            err
        };
        if let Some(token) = self.env.as_deref().and_then(Secret::from_env) {
            return Ok((token, self.lifetime));
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
        if !output.status.success() {
            return Err(fail(format!("the token command `{program}` gave no token ({})", output.status)));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        read_token(&String::from_utf8_lossy(&output.stdout), now, self.lifetime)
            .map_err(|why| fail(format!("the token command `{program}` {why}")))
    }
}

/// The token in a command's output, and how long to use it: until shortly
/// before the expiry the output states, else for `lifetime`. `now` is the
/// time in Unix seconds. The output is the token alone, or a JSON object
/// with the token (`access_token`, `token`) and maybe its expiry, in
/// seconds from now (`expires_in`) or as an RFC 3339 time (`expiry`,
/// `expire_time`, `token_expiry`, `expires_at`). The error never quotes the output.
fn read_token(output: &str, now: f64, lifetime: Duration) -> Result<(Secret, Duration), String> {
    let output = output.trim();
    if !output.starts_with('{') {
        if output.is_empty() || output.contains(char::is_whitespace) {
            return Err("gave no token (expected the token alone, or JSON)".into());
        }
        return Ok((Secret::new(output), lifetime));
    }
    let json: serde_json::Value =
        serde_json::from_str(output).map_err(|_| "gave output that starts as JSON but is not JSON".to_string())?;
    let text = |keys: &[&str]| keys.iter().find_map(|k| json.get(*k).and_then(serde_json::Value::as_str));
    let token = text(&["access_token", "accessToken", "token"])
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
        .ok_or("gave JSON without a token (`access_token` or `token`)")?;
    let seconds = |v: &serde_json::Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
    let left = if let Some(value) = ["expires_in", "expiresIn"].iter().find_map(|k| json.get(*k)) {
        Some(seconds(value).filter(|s| s.is_finite()).ok_or("gave an `expires_in` that is not a number of seconds")?)
    } else if let Some(when) = text(&["expiry", "expire_time", "expireTime", "token_expiry", "expires_at"]) {
        Some(crate::timecode::parse_rfc3339(when).ok_or("gave an expiry that is not an RFC 3339 time")? - now)
    } else {
        None
    };
    let life = match left {
        Some(left) => {
            let left = crate::timecode::seconds(left);
            left.saturating_sub(EXPIRY_MARGIN.min(left / 10))
        }
        None => lifetime,
    };
    Ok((Secret::new(token), life))
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
            return Ok(Auth::Token(TokenSource::from_profile(profile)));
        }
        Ok(match scheme {
            AuthScheme::None => Auth::None,
            AuthScheme::Bearer => Auth::Bearer(api_key(name, profile)?),
            AuthScheme::ApiKeyHeader => Auth::Header(HeaderName::from_static("api-key"), api_key(name, profile)?),
            AuthScheme::GoogApiKey => Auth::Header(HeaderName::from_static("x-goog-api-key"), api_key(name, profile)?),
        })
    }

    /// The token to send, for a token source; `None` for fixed credentials.
    pub(super) async fn token(&self, provider: &str) -> Result<Option<Secret>, ProviderError> {
        match self {
            Auth::Token(source) => source.token(provider).await.map(Some),
            _ => Ok(None),
        }
    }

    /// The token to send in place of `refused`, which a server refused
    /// (HTTP 401); `None` for fixed credentials, which no retry can mend.
    pub(super) async fn replace(&self, refused: &Secret, provider: &str) -> Result<Option<Secret>, ProviderError> {
        match self {
            Auth::Token(source) => source.replace(refused, provider).await.map(Some),
            _ => Ok(None),
        }
    }

    /// Whether credentials that were refused may be tried again: a token
    /// source's next token is due.
    pub(super) fn token_due(&self) -> bool {
        matches!(self, Auth::Token(source) if source.due())
    }

    /// Add the credentials to a request: `token` for a token source (from [`Auth::token`]).
    pub(super) fn apply(&self, builder: reqwest::RequestBuilder, token: Option<&Secret>) -> reqwest::RequestBuilder {
        match (self, token) {
            (Auth::Bearer(key), _) => builder.bearer_auth(key.expose()),
            (Auth::Header(name, key), _) => builder.header(name, key.expose()),
            (Auth::Token(_), Some(token)) => builder.bearer_auth(token.expose()),
            (Auth::None | Auth::Token(_), _) => builder,
        }
    }

    /// `text` without the key or token in it.
    pub fn redact(&self, text: &str) -> String {
        match self {
            Auth::Bearer(key) | Auth::Header(_, key) => key.redact(text),
            Auth::Token(source) => source.redact(text),
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

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3000);

    fn read(output: &str) -> Result<(String, Duration), String> {
        read_token(output, 1_796_526_900.0, HOUR).map(|(t, life)| (t.expose().to_string(), life))
    }

    #[test]
    fn a_bare_token_lives_for_the_configured_lifetime() {
        assert_eq!(read("ya29.abc\n"), Ok(("ya29.abc".into(), HOUR)));
        assert!(read("  \n").is_err());
        assert!(read("two words").is_err());
    }

    #[test]
    fn json_output_says_when_the_token_expires() {
        // Used until a minute before its stated expiry, or a tenth of its life when shorter.
        let an_hour = Duration::from_secs(3600 - 60);
        assert_eq!(read(r#"{"access_token": "ya29.a", "expires_in": 3600}"#), Ok(("ya29.a".into(), an_hour)));
        assert_eq!(read(r#"{"access_token": "ya29.a", "expires_in": "3600"}"#), Ok(("ya29.a".into(), an_hour)));
        assert_eq!(read(r#"{"token": "ya29.b", "expiry": "2026-12-06T04:15:00Z"}"#), Ok(("ya29.b".into(), an_hour)));
        assert_eq!(
            read(r#"{"token": "ya29.b", "expire_time": "2026-12-06T05:15:00+01:00"}"#),
            Ok(("ya29.b".into(), an_hour))
        );
        assert_eq!(
            read(r#"{"access_token": "ya29.c", "token_expiry": "2026-12-06T03:15:02Z"}"#),
            Ok(("ya29.c".into(), Duration::from_millis(1800)))
        );
        assert_eq!(read(r#"{"token": "ya29.d"}"#), Ok(("ya29.d".into(), HOUR)), "no expiry: the lifetime");
        assert_eq!(
            read(r#"{"token": "ya29.e", "expiry": "2026-12-06T03:00:00Z"}"#),
            Ok(("ya29.e".into(), Duration::ZERO)),
            "already expired: fetched again next time"
        );
    }

    #[test]
    fn bad_json_output_is_refused_without_quoting_it() {
        for output in [
            r#"{"access_token": "ya29.secret-token", "expires_in": "soon"}"#,
            r#"{"access_token": "ya29.secret-token", "expiry": "next tuesday"}"#,
            r#"{"access_token": "ya29.secret-token""#,
            r#"{"expires_in": 3600, "note": "ya29.secret-token"}"#,
        ] {
            let err = read(output).unwrap_err();
            assert!(!err.contains("secret-token"), "{err}");
        }
    }

    /// A failing command under many callers at once runs once: those who
    /// waited on it get its error, and so does anyone who asks within the
    /// backoff; after it, the command runs again.
    #[tokio::test]
    async fn a_failed_fetch_stands_for_its_waiters_until_the_backoff_ends() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let script = format!("echo run >> '{}'; sleep 0.2; echo 'not logged in' >&2; exit 3", runs.display());
        let source = TokenSource::new(None, Some(vec!["sh".into(), "-c".into(), script]), HOUR);
        let ran = || std::fs::read_to_string(&runs).unwrap_or_default().lines().count();
        let tokens = futures_util::future::join_all((0..6).map(|_| source.token("vertex"))).await;
        for token in tokens {
            let err = token.unwrap_err();
            assert!(err.message.contains("the token command `sh` gave no token") && err.not_sent, "{err}");
        }
        assert_eq!(ran(), 1, "one run for every caller");
        let refused = Secret::new("ya29.old");
        assert!(source.replace(&refused, "vertex").await.is_err());
        assert_eq!(ran(), 1, "not again within the backoff");
        tokio::time::sleep(FAILURE_BACKOFF).await;
        assert!(source.token("vertex").await.is_err());
        assert_eq!(ran(), 2, "again after it");
    }

    #[tokio::test]
    async fn the_token_is_fetched_again_when_due_and_when_refused_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let script = format!(
            "n=$(cat '{0}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{0}'; echo ya29.token-$n",
            count.display()
        );
        let source = TokenSource::new(None, Some(vec!["sh".into(), "-c".into(), script]), Duration::from_millis(300));
        let first = source.token("vertex").await.unwrap();
        assert_eq!(first.expose(), "ya29.token-1");
        assert_eq!(source.token("vertex").await.unwrap(), first, "kept while it lives");
        // Many callers at once while it is due: one fetch for them all.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let tokens = futures_util::future::join_all((0..8).map(|_| source.token("vertex"))).await;
        assert!(tokens.iter().all(|t| t.as_ref().unwrap().expose() == "ya29.token-2"));
        // A refused token is replaced once, however many calls saw it refused.
        let second = tokens[0].clone().unwrap();
        let replaced = futures_util::future::join_all((0..8).map(|_| source.replace(&second, "vertex"))).await;
        assert!(replaced.iter().all(|t| t.as_ref().unwrap().expose() == "ya29.token-3"));
        assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "3");
        let debug = format!("{:?}", Auth::Token(source));
        assert!(!debug.contains("ya29"), "{debug}");
    }
}
