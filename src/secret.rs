//! Keys, held so they cannot leak by accident: Debug and Display print `***`,
//! and text that came back from a provider can be scrubbed of them. URLs
//! are scrubbed of the credentials they carry before they are shown or kept.

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
        // The key as itself first: the escape-aware pass below reads `\\` as
        // one escaped backslash, which would miss a key holding two.
        let text = text.replace(&self.0, "***");
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
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

/// `text` with the credentials of every URL in it replaced by `***`: the
/// userinfo of `scheme://user:password@host`, and each query value (where
/// presigned URLs carry their signature). Names of query keys stay, to tell
/// what was there.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        rest = &rest[at + 3..];
        let mut end =
            rest.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`')).unwrap_or(rest.len());
        // Punctuation closing the sentence or a parenthesis is not part of the URL.
        while end > 0 && rest[..end].ends_with([')', ']', ',', '.', ';']) {
            end -= 1;
        }
        out.push_str(&redact_url_rest(&rest[..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A URL after its `scheme://`, with its userinfo and query values hidden.
fn redact_url_rest(url: &str) -> String {
    let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    let (authority, tail) = url.split_at(authority_end);
    let mut out = match authority.rfind('@') {
        Some(at) => format!("***{}", &authority[at..]),
        None => authority.to_string(),
    };
    let Some(q) = tail.find('?') else {
        out.push_str(tail);
        return out;
    };
    out.push_str(&tail[..=q]);
    let query = &tail[q + 1..];
    let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !value.is_empty() => format!("{key}=***"),
            Some(_) => pair.to_string(),
            None if pair.is_empty() => String::new(),
            None => "***".to_string(),
        })
        .collect();
    out.push_str(&pairs.join("&"));
    out.push_str(fragment);
    out
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

    #[test]
    fn urls_lose_their_userinfo_and_query_values() {
        for (text, want) in [
            ("http://user:pw@host/v.mp4", "http://***@host/v.mp4"),
            ("https://u:p@ss@host:8080?x=1", "https://***@host:8080?x=***"),
            (
                "https://b.s3.amazonaws.com/v.mp4?X-Amz-Signature=abc123&X-Amz-Credential=AK%2F1&sig=zz&flag&e=#t=5",
                "https://b.s3.amazonaws.com/v.mp4?X-Amz-Signature=***&X-Amz-Credential=***&sig=***&***&e=#t=5",
            ),
            (
                "error sending request for url (http://a:b@h/x?token=t0k), then \"https://h/y?k=v\".",
                "error sending request for url (http://***@h/x?token=***), then \"https://h/y?k=***\".",
            ),
            ("no url here, just a:b@c?d=e", "no url here, just a:b@c?d=e"),
            ("http://host/path/only", "http://host/path/only"),
            ("trailing ://", "trailing ://"),
            ("http://é:ü@hôst/?q=ç", "http://***@hôst/?q=***"),
        ] {
            assert_eq!(redact_urls(text), want, "{text}");
        }
    }
}
