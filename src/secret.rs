//! Keys, held so they cannot leak by accident: Debug and Display print `***`,
//! and text that came back from a provider can be scrubbed of them.

use std::fmt;

/// A secret string, such as an API key read from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Read the variable `name`. `None` when it is unset or empty.
    pub fn from_env(name: &str) -> Option<Self> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty()).map(|v| Self(v.trim().to_string()))
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced by `***`, also
    /// where a server quoted it in JSON with escapes (`sk-proj\/abc`,
    /// `\u0073k-...`): a body is redacted before and after it is decoded.
    pub fn redact(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            match spelled_at_start(rest, &self.0) {
                Some(len) => {
                    out.push_str("***");
                    rest = &rest[len..];
                }
                None => {
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        out
    }
}

/// How many bytes at the start of `text` spell `key`, each character either
/// as itself or as a JSON escape of it.
fn spelled_at_start(text: &str, key: &str) -> Option<usize> {
    let mut pos = 0;
    for want in key.chars() {
        let rest = text.get(pos..)?;
        pos += match rest.strip_prefix('\\') {
            // An escape first: `\\` is one backslash of the key, not two.
            Some(escaped) if matches!(want, '/' | '\\' | '"') && escaped.starts_with(want) => 2,
            Some(escaped) if unicode_escape(escaped) == Some(want) => 6,
            _ if rest.starts_with(want) => want.len_utf8(),
            _ => return None,
        };
    }
    Some(pos)
}

/// The character an escape `\uXXXX` names, given what follows its backslash.
fn unicode_escape(escaped: &str) -> Option<char> {
    char::from_u32(u32::from_str_radix(escaped.strip_prefix('u')?.get(..4)?, 16).ok()?)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("sk-test-1234567890");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.redact("bad key sk-test-1234567890 given"), "bad key *** given");
        assert_eq!(s.expose(), "sk-test-1234567890");
    }

    #[test]
    fn a_key_quoted_with_json_escapes_is_redacted() {
        let s = Secret::new("sk-proj/abc\"def\\1234");
        for (text, want) in [
            (r#"{"message":"invalid key Bearer sk-proj\/abc\"def\\1234"}"#, r#"{"message":"invalid key Bearer ***"}"#),
            (r#"key \u0073k-proj\u002Fabc\u0022def\u005c1234!"#, "key ***!"),
            ("decoded sk-proj/abc\"def\\1234 and again sk-proj/abc\"def\\1234", "decoded *** and again ***"),
            ("not it: sk-proj\\/abc", "not it: sk-proj\\/abc"),
            ("cut off: sk-proj\\u00", "cut off: sk-proj\\u00"),
            ("é sk-proj/abc\"def\\1234é", "é ***é"),
        ] {
            assert_eq!(s.redact(text), want, "{text}");
        }
    }
}
