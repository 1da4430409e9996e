//! Cards: a task-specialised behaviour spec in a JSON file (`cards/sql.json`): the base
//! model pinned by digest, LoRA adapters, a system prompt, sampling (optionally locked),
//! a constraint on every answer and a chat template.
//!
//! [`load`] reads a Card (at most [`MAX_CARD_BYTES`]) and reports every error at once, each
//! as `FILE:LINE:COLUMN: message` at the offending value (or key), sorted by place:
//!
//! 1. serde_json parses the text first; its recursion limit (128) bounds the nesting of
//!    everything after it, and its error is the syntax error's place;
//! 2. `locate.rs` builds jsonc-parser's syntax tree of the same text, which maps any JSON
//!    pointer to a line and column;
//! 3. `shape.rs` checks the value against the Card's own generated schema
//!    ([`schema`], what `sovereign schema --card` prints), every error at once;
//! 4. `rules.rs` checks what a schema cannot say, through the daemon's own checks where one
//!    exists (a response is checked as a request's `response_format` or `grammar` is).
//!
//! Ranges are the daemon's: [`crate::validate`] and [`crate::limits`] define them once for
//! requests, the Card schema and these checks. [`resolve`] then looks the Card's models up
//! in the model cache. The daemon serves Cards through [`crate::card_request`].

mod format;
mod locate;
mod resolve;
mod rules;
mod sampling;
mod shape;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

pub use format::{
    ADAPTER_SCALE, ADAPTER_SCALE_DEFAULT, Adapter, Base, CardFile, CardSampling, MAX_ADAPTERS,
    Response, SHA256_PATTERN, schema,
};
pub use locate::Pos;
pub use resolve::{Cached, Resolution, resolve};
pub use sampling::Setting;

use crate::grammar::{self, GrammarSpec};
use locate::{Lines, Tree};

/// The largest Card file read: settings, a prompt, a schema or grammar (each at most
/// 128 KiB, as in a request) and a template fit with room.
pub const MAX_CARD_BYTES: u64 = 1 << 20;

/// A Card file that passed every check.
#[derive(Debug, Clone)]
pub struct Card {
    /// The file it was read from, as given.
    pub path: PathBuf,
    /// What the file says (sha256s in lowercase).
    pub spec: CardFile,
    /// `response` as the daemon holds a request's constraint, checked, not compiled.
    pub constraint: Option<GrammarSpec>,
    /// Where the values later checks report on are (base, adapters), by JSON pointer.
    places: BTreeMap<String, Pos>,
}

impl Card {
    /// Where the value at a JSON pointer is in the file (`/base/model`, `/adapters/0/sha256`).
    pub fn place(&self, pointer: &str) -> Option<Pos> {
        self.places.get(pointer).copied()
    }

    /// An error about the value at `pointer`, placed in the Card's file.
    pub fn error_at(&self, pointer: &str, message: String) -> CardError {
        CardError {
            file: self.path.clone(),
            at: self.place(pointer),
            pointer: pointer.to_string(),
            message,
        }
    }
}

/// One error of a Card, at one place in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardError {
    /// The file, as given.
    pub file: PathBuf,
    /// Line and column of the offending value or key; absent for the file as a whole.
    #[serde(flatten)]
    pub at: Option<Pos>,
    /// The JSON pointer of the offending value ("" for the whole Card).
    pub pointer: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl std::fmt::Display for CardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some(at) => write!(f, "{}:{at}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every error of a Card, sorted by place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardErrors {
    pub file: PathBuf,
    pub errors: Vec<CardError>,
}

impl std::fmt::Display for CardErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for CardErrors {}

impl CardErrors {
    fn one(file: &Path, at: Option<Pos>, message: String) -> Self {
        CardErrors {
            file: file.to_path_buf(),
            errors: vec![CardError {
                file: file.to_path_buf(),
                at,
                pointer: String::new(),
                message,
            }],
        }
    }
}

/// A problem found by a check, at a byte offset of the text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Problem {
    offset: usize,
    /// The JSON pointer it is about.
    pointer: String,
    message: String,
}

impl Problem {
    fn new(offset: usize, pointer: &str, message: String) -> Self {
        Problem {
            offset,
            pointer: pointer.to_string(),
            message,
        }
    }
}

/// Read, parse and check the Card at `path`.
pub fn load(path: &Path) -> Result<Card, CardErrors> {
    let text = read(path)?;
    parse(path, &text)
}

fn read(path: &Path) -> Result<String, CardErrors> {
    let fail = |message: String| CardErrors::one(path, None, message);
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CARD_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("cannot read the card: {e}")))?;
    if bytes.len() as u64 > MAX_CARD_BYTES {
        return Err(fail(format!(
            "the card is larger than {MAX_CARD_BYTES} bytes (1 MiB), the most a Card may be; \
             a Card holds settings, a prompt and a schema or grammar of at most 128 KiB: \
             trim it"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(e.as_bytes());
        let at = Lines::new(&text).pos(good);
        CardErrors::one(
            path,
            Some(at),
            "the card is not UTF-8 text: save it as UTF-8".into(),
        )
    })
}

/// Parse and check a Card's text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Card, CardErrors> {
    let lines = Lines::new(text);
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let at = lines.serde_pos(e.line(), e.column());
        let full = e.to_string();
        let what = full
            .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
            .unwrap_or(&full);
        let comment = text
            .get(lines.offset(at)..)
            .is_some_and(|t| t.starts_with('/'));
        let message = if what.contains("recursion limit exceeded") {
            "invalid JSON: nested more than 128 levels deep; a Card never needs that".to_string()
        } else if comment {
            format!("invalid JSON: {what}; JSON has no comments (say it in \"description\")")
        } else {
            format!("invalid JSON: {what}")
        };
        CardErrors::one(path, Some(at), message)
    })?;
    let tree = Tree::parse(text).map_err(|(offset, what)| {
        CardErrors::one(
            path,
            Some(lines.pos(offset)),
            format!("invalid JSON: {what}"),
        )
    })?;
    let mut problems = shape::check(&value, &tree);
    let flagged: HashSet<String> = problems.iter().map(|p| p.pointer.clone()).collect();
    problems.extend(rules::check(&value, &tree, &lines, &flagged));
    if !problems.is_empty() {
        problems.sort();
        problems.dedup();
        return Err(CardErrors {
            file: path.to_path_buf(),
            errors: problems
                .into_iter()
                .map(|p| CardError {
                    file: path.to_path_buf(),
                    at: Some(lines.pos(p.offset)),
                    pointer: p.pointer,
                    message: p.message,
                })
                .collect(),
        });
    }
    let mut spec: CardFile = serde_json::from_value(value).map_err(|e| {
        // Every shape serde refuses, the checks above refuse first; this is the backstop.
        CardErrors::one(
            path,
            Some(lines.pos(0)),
            format!("the card does not fit its format: {e}"),
        )
    })?;
    spec.base.sha256.make_ascii_lowercase();
    for a in &mut spec.adapters {
        if let Some(s) = &mut a.sha256 {
            s.make_ascii_lowercase();
        }
    }
    let constraint =
        constraint(&spec).map_err(|message| CardErrors::one(path, Some(lines.pos(0)), message))?;
    let mut places = BTreeMap::new();
    let mut keep = |pointer: String| {
        if let Some(offset) = tree.value_at(&pointer) {
            places.insert(pointer, lines.pos(offset));
        }
    };
    for p in ["", "/base", "/base/model", "/base/sha256"] {
        keep(p.to_string());
    }
    for i in 0..spec.adapters.len() {
        for key in ["", "/model", "/source", "/sha256"] {
            keep(format!("/adapters/{i}{key}"));
        }
    }
    Ok(Card {
        path: path.to_path_buf(),
        spec,
        constraint,
        places,
    })
}

/// The checked response as the daemon's constraint type.
fn constraint(spec: &CardFile) -> Result<Option<GrammarSpec>, String> {
    let Some(response) = &spec.response else {
        return Ok(None);
    };
    let request = match (&response.json_schema, &response.grammar) {
        (Some(schema), None) => serde_json::json!({"response_format": {
            "type": "json_schema",
            "json_schema": {"name": "card", "schema": schema},
        }}),
        (None, Some(text)) => serde_json::json!({ "grammar": text }),
        // The checks refuse both and neither.
        _ => return Ok(None),
    };
    let empty = serde_json::Map::new();
    grammar::from_request(request.as_object().unwrap_or(&empty)).map_err(|e| e.message())
}

/// A number as people write it: `2`, not `2.0` (as the request's messages say it).
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

/// A value for a message: JSON, cut short when long.
fn show_value(v: &Value) -> String {
    const MAX: usize = 72;
    if let Value::String(s) = v {
        if s.chars().count() > MAX {
            let cut: String = s.chars().take(MAX).collect();
            let quoted = Value::String(cut).to_string();
            return format!("{}...\"", &quoted[..quoted.len() - 1]);
        }
    }
    let text = v.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}...")
}

#[cfg(test)]
mod tests;
