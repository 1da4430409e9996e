//! Model names: the only user text that becomes a path in the cache, so a closed,
//! bounded alphabet with no separators and no `..`.

use std::fmt;

/// Longest model name.
pub const MAX_NAME_LEN: usize = 64;

/// A model name that is safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ModelName(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid model name {given:?}: {reason} (names are 1 to {MAX_NAME_LEN} letters, digits, '.', '_', '-' or ':', not starting with '.', '-' or ':')"
)]
pub struct NameError {
    /// The name as given.
    pub given: String,
    /// What rule it breaks.
    pub reason: String,
}

impl ModelName {
    pub fn parse(name: &str) -> Result<ModelName, NameError> {
        let fail = |reason: String| {
            Err(NameError {
                given: name.chars().take(2 * MAX_NAME_LEN).collect(),
                reason,
            })
        };
        if name.is_empty() {
            return fail("it is empty".into());
        }
        if name.len() > MAX_NAME_LEN {
            return fail(format!("it is {} bytes long", name.len()));
        }
        if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\')) {
            return fail(format!("it contains the path separator {c:?}"));
        }
        if name.contains("..") {
            return fail("it contains \"..\"".into());
        }
        // ':' keeps the name:tag form people know from other tools ("qwen2.5-coder:7b");
        // it is an ordinary character in a file name here.
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
        {
            return fail(format!("it contains {c:?}"));
        }
        if name.starts_with(['.', '-', ':']) {
            return fail("it starts with '.', '-' or ':'".into());
        }
        Ok(ModelName(name.to_owned()))
    }

    /// The default name for a source: its last path segment without `.gguf`.
    pub fn from_source(source: &str) -> Result<ModelName, NameError> {
        let without_query = source.split(['?', '#']).next().unwrap_or(source);
        let last = without_query
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(without_query);
        let stem = last
            .strip_suffix(".gguf")
            .or_else(|| last.strip_suffix(".GGUF"))
            .unwrap_or(last);
        ModelName::parse(stem)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "qwen2.5-coder-7b",
            "Llama-3.1_8B.Q4_K_M",
            "a",
            "_x",
            "qwen2.5-coder:7b",
        ] {
            assert_eq!(
                ModelName::parse(ok).map(|n| n.to_string()),
                Ok(ok.to_string())
            );
        }
    }

    #[test]
    fn refuses_paths_and_odd_characters() {
        for (bad, why) in [
            ("", "empty"),
            ("../etc/passwd", "path separator"),
            ("..", "\"..\""),
            ("a..b", "\"..\""),
            (".hidden", "starts with"),
            ("-rf", "starts with"),
            (":7b", "starts with"),
            ("a b", "' '"),
            ("a\\b", "path separator"),
            ("naïve", "'ï'"),
        ] {
            let err = ModelName::parse(bad).expect_err(bad);
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        assert!(ModelName::parse(&"x".repeat(65)).is_err());
        assert!(ModelName::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn derives_a_name_from_a_source() {
        let n = ModelName::from_source("https://example.org/m/coder-7b.Q4_K_M.gguf?download=1");
        assert_eq!(n.map(|n| n.to_string()), Ok("coder-7b.Q4_K_M".into()));
        let n = ModelName::from_source("/srv/models/tiny.gguf");
        assert_eq!(n.map(|n| n.to_string()), Ok("tiny".into()));
    }
}
