//! Versioned prompt templates from `prompts/`, compiled in and overridable from
//! a directory (`prompts_dir` in config). Every report records `name@version`
//! of the templates that produced it.

use std::path::Path;

/// The templates shipped in `prompts/`.
const BUILT_IN: &[(&str, &str)] = &[
    ("ask", include_str!("../prompts/ask.md")),
    ("chunk", include_str!("../prompts/chunk.md")),
    ("find", include_str!("../prompts/find.md")),
    ("frame", include_str!("../prompts/frame.md")),
    ("repair", include_str!("../prompts/repair.md")),
    ("story", include_str!("../prompts/story.md")),
    ("timeline", include_str!("../prompts/timeline.md")),
];

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("prompt `{0}`: no such template (known: ask, chunk, find, frame, repair, story, timeline)")]
    Unknown(String),
    #[error("prompt {origin}: {message}")]
    Malformed { origin: String, message: String },
    #[error("prompt {origin}: cannot read it: {source}")]
    Read { origin: String, source: std::io::Error },
    #[error("prompt `{name}`: no value for `{{{{{placeholder}}}}}`")]
    Missing { name: String, placeholder: String },
}

/// One template: front matter with `name` and `version`, then the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub version: u32,
    body: String,
}

impl Template {
    /// Parse a template file's text.
    ///
    /// # Errors
    /// Missing or malformed front matter, named with `origin`.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PromptError> {
        let bad = |message: &str| PromptError::Malformed { origin: origin.to_string(), message: message.to_string() };
        let rest = text.strip_prefix("---\n").ok_or_else(|| bad("does not start with `---` front matter"))?;
        let (front, body) = rest.split_once("\n---\n").ok_or_else(|| bad("front matter is not closed by `---`"))?;
        let mut name = None;
        let mut version = None;
        for line in front.lines() {
            match line.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("name", v)) => name = Some(v.to_string()),
                Some(("version", v)) => {
                    version = Some(v.parse::<u32>().map_err(|_| bad("version is not a whole number"))?)
                }
                _ => {}
            }
        }
        Ok(Self {
            name: name.ok_or_else(|| bad("front matter has no `name`"))?,
            version: version.ok_or_else(|| bad("front matter has no `version`"))?,
            body: body.trim().to_string(),
        })
    }

    /// `name@version`, as reports record it.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The body with each `{{key}}` replaced by its value, in one pass, so a
    /// value (which may be text from a video) is never itself expanded.
    ///
    /// # Errors
    /// A placeholder with no value.
    pub fn render(&self, values: &[(&str, &str)]) -> Result<String, PromptError> {
        let mut out = String::with_capacity(self.body.len());
        let mut rest = self.body.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let key = &after[..end];
            let value = values
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or_else(|| PromptError::Missing { name: self.name.clone(), placeholder: key.to_string() })?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The template called `name`: from `dir` when it holds `NAME.md`, else built in.
///
/// # Errors
/// An unknown name, or an override that cannot be read or parsed.
pub fn load(name: &str, dir: Option<&Path>) -> Result<Template, PromptError> {
    if let Some(path) = dir.map(|d| d.join(format!("{name}.md"))).filter(|p| p.is_file()) {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(&path).map_err(|source| PromptError::Read { origin: origin.clone(), source })?;
        return Template::parse(&text, &origin);
    }
    let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name).ok_or_else(|| PromptError::Unknown(name.to_string()))?;
    Template::parse(text, &format!("prompts/{name}.md (built in)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_template_parses_and_names_itself() {
        for (name, _) in BUILT_IN {
            let t = load(name, None).unwrap();
            assert_eq!(&t.name, name);
            assert!(t.version >= 1);
            assert!(t.body.to_lowercase().contains("instruction"), "{name} says on-screen text is not an instruction");
        }
    }

    #[test]
    fn rendering_fills_placeholders_once_and_refuses_missing_ones() {
        let t = load("frame", None).unwrap();
        let text = t.render(&[("time", "{{time}} 00:01.000")]).unwrap();
        assert!(text.contains("{{time}} 00:01.000"), "a value is not expanded again");
        let err = t.render(&[]).unwrap_err().to_string();
        assert!(err.contains("{{time}}"), "{err}");
        assert_eq!(t.id(), "frame@1");
    }

    #[test]
    fn a_directory_overrides_a_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("frame.md"), "---\nname: frame\nversion: 7\n---\nAt {{time}}: what?\n").unwrap();
        let t = load("frame", Some(dir.path())).unwrap();
        assert_eq!((t.version, t.render(&[("time", "1s")]).unwrap().as_str()), (7, "At 1s: what?"));
        assert_eq!(load("story", Some(dir.path())).unwrap(), load("story", None).unwrap(), "others stay built in");
        std::fs::write(dir.path().join("ask.md"), "no front matter").unwrap();
        assert!(load("ask", Some(dir.path())).unwrap_err().to_string().contains("ask.md"));
        assert!(load("nope", None).is_err());
    }
}
