//! Profile errors as diagnostics: `file:line:column`, the source line with a caret,
//! the key path and a hint, rendered by miette and serializable for `validate --json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use serde::Serialize;

use super::tree::Loc;

/// The text of every file a load read, in load order; [`Loc::file`] indexes it.
#[derive(Debug, Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
}

/// One file a load read.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as shown to the user (the named profile, or an import joined to its importer).
    pub path: PathBuf,
    /// The file's text, shared with every diagnostic that quotes it.
    pub text: Arc<String>,
    /// Byte offset of the start of each line, for offset -> line:column.
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path,
            text: Arc::new(text),
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line as u32 + 1, column as u32 + 1)
    }
}

impl Sources {
    pub fn add(&mut self, path: PathBuf, text: String) -> usize {
        self.files.push(SourceFile::new(path, text));
        self.files.len() - 1
    }

    pub fn path(&self, file: usize) -> &Path {
        &self.files[file].path
    }

    /// `file:line:column` of a location.
    pub fn place(&self, loc: &Loc) -> String {
        let (line, column) = self.files[loc.file].line_col(loc.span.start);
        format!("{}:{line}:{column}", self.path(loc.file).display())
    }

    /// Turn a finding into a diagnostic that carries its source text.
    pub fn error(&self, issue: Issue) -> ProfileError {
        let file = &self.files[issue.loc.file];
        let (line, column) = file.line_col(issue.loc.span.start);
        let len = issue.loc.span.end.saturating_sub(issue.loc.span.start);
        ProfileError {
            file: file.path.clone(),
            line: Some(line),
            column: Some(column),
            key_path: issue.key_path,
            message: issue.message,
            hint: issue.hint,
            label: issue.label,
            source: Some(NamedSource::new(
                file.path.display().to_string(),
                match (&issue.masked, issue.sensitive) {
                    (Some(span), _) => Arc::new(masked(&file.text, span.clone())),
                    (None, true) => Arc::new(masked(&file.text, issue.loc.span.clone())),
                    (None, false) => file.text.clone(),
                },
            )),
            span: (issue.loc.span.start, len).into(),
        }
    }
}

/// `text` with every character in `span` replaced by `*`s of the same byte length, so
/// positions after it stay where they were.
fn masked(text: &str, span: std::ops::Range<usize>) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if span.contains(&i) && !matches!(c, '"' | '\'' | '\n') {
            out.extend(std::iter::repeat_n('*', c.len_utf8()));
        } else {
            out.push(c);
        }
    }
    out
}

/// A finding before it is tied to its source text: what the loader, the schema check and
/// the rules produce.
#[derive(Debug, Clone)]
pub struct Issue {
    /// Where the caret goes.
    pub loc: Loc,
    /// The TOML key path of the offending key or value ("" for the top level).
    pub key_path: String,
    /// What is wrong, naming the key and the value.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The short text under the caret.
    pub label: String,
    /// The value under the caret may be a secret: the quoted source line masks it.
    pub sensitive: bool,
    /// Another span of the same file to mask where the source is quoted (the value of a
    /// key the caret points at).
    pub masked: Option<std::ops::Range<usize>>,
}

impl Issue {
    pub fn new(loc: &Loc, key_path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            loc: loc.clone(),
            key_path: key_path.into(),
            message: message.into(),
            hint: None,
            label: "here".into(),
            sensitive: false,
            masked: None,
        }
    }

    /// Mask `span` (a value that may be a secret, away from the caret) wherever the
    /// source line is quoted.
    pub fn mask(mut self, span: std::ops::Range<usize>) -> Self {
        self.masked = Some(span);
        self
    }

    /// Mask the value under the caret wherever the source line is quoted.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }
}

/// One error of a profile, at one place in one file.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileError {
    /// The file, as the user's paths name it.
    pub file: PathBuf,
    /// 1-based line; absent when the file itself could not be read.
    pub line: Option<u32>,
    /// 1-based column in characters; absent when the file itself could not be read.
    pub column: Option<u32>,
    /// The TOML key path ("" for the top level or the file as a whole).
    pub key_path: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// Text under the caret.
    #[serde(skip)]
    pub label: String,
    /// The file's text, for the quoted source line.
    #[serde(skip)]
    pub source: Option<NamedSource<Arc<String>>>,
    /// Byte span of the caret.
    #[serde(skip)]
    pub span: miette::SourceSpan,
}

impl ProfileError {
    /// An error about a whole file that has no text to quote (it could not be read).
    pub fn file_level(file: &Path, message: String, hint: Option<String>) -> Self {
        ProfileError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            key_path: String::new(),
            message,
            hint,
            label: String::new(),
            source: None,
            span: (0, 0).into(),
        }
    }

    /// `file:line:column`, or the file alone.
    pub fn place(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.file.display()),
            _ => self.file.display().to_string(),
        }
    }
}

/// Rendered as `key.path: message`, so the key path shows in every report.
impl std::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key_path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key_path, self.message)
        }
    }
}

impl std::error::Error for ProfileError {}

impl Diagnostic for ProfileError {
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.label.clone()),
            self.span,
        ))))
    }
}

/// Why a profile (or a fleet file, which shares the profile's diagnostics) could not be
/// loaded: every error of the file and the files it names, in file order (the named file
/// first, then the others as they were loaded; by position within a file).
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{} is not a valid {what}: {}", profile.display(), count(errors.len()))]
pub struct LoadError {
    /// The file the user named: the profile, or the fleet file.
    pub profile: PathBuf,
    /// What that file is, for the message: [`LoadError::PROFILE`] or "fleet file".
    #[serde(skip)]
    pub what: &'static str,
    /// Every file that was read, in load order.
    pub files: Vec<PathBuf>,
    /// Every error found, in file order.
    pub errors: Vec<ProfileError>,
}

impl LoadError {
    /// The `what` of a profile's errors.
    pub const PROFILE: &'static str = "profile";
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 error".into()
    } else {
        format!("{n} errors")
    }
}

impl Diagnostic for LoadError {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.errors.iter().map(|e| e as &dyn Diagnostic)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_character_columns() {
        let file = SourceFile::new("p.toml".into(), "a = 1\nné = \"x\"\n".into());
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(4), (1, 5));
        assert_eq!(file.line_col(6), (2, 1));
        // "né" is 3 bytes, 2 characters: the '=' is the 4th character.
        assert_eq!(file.line_col(10), (2, 4));
    }
}
