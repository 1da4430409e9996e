//! Where a value of the Card file is: JSON pointers to line and column, through
//! jsonc-parser's syntax tree (every node carries its byte range).
//!
//! The tree is built only after serde_json has read the same text, whose recursion limit
//! (128) bounds the nesting of everything here; lookups walk one pointer at a time and
//! the one whole-tree walk ([`Tree::duplicate_keys`]) keeps its own stack.

use jsonc_parser::ast::{Object, Value};
use jsonc_parser::common::Ranged;
use jsonc_parser::{CollectOptions, ParseOptions};
use serde::Serialize;

/// A place in the file: 1-based line, and 1-based column in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Byte offsets to positions.
pub struct Lines<'t> {
    text: &'t str,
    /// Byte offset of each line's first character.
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    pub fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    /// The position of byte `offset` (clamped to the text, and to a character boundary).
    pub fn pos(&self, offset: usize) -> Pos {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    /// The byte offset of a position (the inverse of [`Lines::pos`]).
    pub fn offset(&self, at: Pos) -> usize {
        let Some(&start) = self.starts.get((at.line as usize).saturating_sub(1)) else {
            return self.text.len();
        };
        self.text[start..]
            .char_indices()
            .nth((at.column as usize).saturating_sub(1))
            .map_or(self.text.len(), |(i, _)| start + i)
    }

    /// The position of serde_json's `line` and `column`, which counts bytes (0 when the
    /// error is at a line's very start).
    pub fn serde_pos(&self, line: usize, column: usize) -> Pos {
        let Some(&start) = self.starts.get(line.saturating_sub(1)) else {
            return self.pos(self.text.len());
        };
        self.pos(start + column.saturating_sub(1))
    }
}

/// The syntax tree of a Card's text.
pub struct Tree<'t> {
    root: Value<'t>,
}

impl<'t> Tree<'t> {
    /// Parse strict JSON. `text` must already have passed serde_json (see the module docs);
    /// an error here is the byte offset and what is wrong.
    pub fn parse(text: &'t str) -> Result<Tree<'t>, (usize, String)> {
        let strict = ParseOptions {
            allow_comments: false,
            allow_loose_object_property_names: false,
            allow_trailing_commas: false,
            allow_missing_commas: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            allow_unary_plus_numbers: false,
        };
        match jsonc_parser::parse_to_ast(text, &CollectOptions::default(), &strict) {
            Ok(parsed) => match parsed.value {
                Some(root) => Ok(Tree { root }),
                None => Err((0, "the file holds no JSON value".into())),
            },
            Err(e) => Err((e.range().start, e.kind().to_string())),
        }
    }

    /// The value at a JSON pointer (RFC 6901: `/adapters/0/scale`, `~1` for `/`).
    pub fn value(&self, pointer: &str) -> Option<&Value<'t>> {
        let mut at = &self.root;
        for token in tokens(pointer) {
            at = match at {
                Value::Object(o) => &o.get(&token)?.value,
                Value::Array(a) => a.elements.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(at)
    }

    /// The byte offset where the value at `pointer` starts.
    pub fn value_at(&self, pointer: &str) -> Option<usize> {
        self.value(pointer).map(|v| v.start())
    }

    /// The byte offset of the key `key` of the object at `pointer`.
    pub fn key_at(&self, pointer: &str, key: &str) -> Option<usize> {
        match self.value(pointer)? {
            Value::Object(o) => o.get(key).map(|p| p.name.start()),
            _ => None,
        }
    }

    /// The keys of the object at `pointer` that are among `keys`, in file order, with
    /// their offsets.
    pub fn keys_among(&self, pointer: &str, keys: &[&str]) -> Vec<(String, usize)> {
        match self.value(pointer) {
            Some(Value::Object(o)) => o
                .properties
                .iter()
                .filter(|p| keys.contains(&p.name.as_str()))
                .map(|p| (p.name.as_str().to_string(), p.name.start()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Every key written twice in one object: the pointer of the object, the key, and the
    /// offsets of its first and its repeated occurrence. JSON leaves duplicates undefined
    /// and serde_json keeps the last silently, so a Card refuses them.
    pub fn duplicate_keys(&self) -> Vec<Duplicate> {
        let mut out = Vec::new();
        let mut stack: Vec<(String, &Value<'t>)> = vec![(String::new(), &self.root)];
        while let Some((pointer, value)) = stack.pop() {
            match value {
                Value::Object(o) => {
                    out.extend(duplicates_in(&pointer, o));
                    for p in &o.properties {
                        stack.push((format!("{pointer}/{}", escape(p.name.as_str())), &p.value));
                    }
                }
                Value::Array(a) => {
                    for (i, v) in a.elements.iter().enumerate() {
                        stack.push((format!("{pointer}/{i}"), v));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// A key written twice in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The object's JSON pointer.
    pub object: String,
    pub key: String,
    pub first: usize,
    pub again: usize,
}

fn duplicates_in(pointer: &str, o: &Object<'_>) -> Vec<Duplicate> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for p in &o.properties {
        let name = p.name.as_str();
        match seen.get(name) {
            Some(&first) => out.push(Duplicate {
                object: pointer.to_string(),
                key: name.to_string(),
                first,
                again: p.name.start(),
            }),
            None => {
                seen.insert(name, p.name.start());
            }
        }
    }
    out
}

/// The reference tokens of a JSON pointer, unescaped.
pub fn tokens(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
}

/// One key as a JSON pointer token.
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as people read a key path: `adapters[0].scale`, `sampling.stop[2]`,
/// "the card" for the root.
pub fn key_path(pointer: &str) -> String {
    let mut out = String::new();
    for token in tokens(pointer) {
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    if out.is_empty() {
        "the card".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_character_columns() {
        let lines = Lines::new("{\n  \"né\": 1\n}");
        assert_eq!(lines.pos(0), Pos { line: 1, column: 1 });
        assert_eq!(lines.pos(2), Pos { line: 2, column: 1 });
        // "né" is 3 bytes and 2 characters: the 1 is the 9th character.
        assert_eq!(lines.pos(11), Pos { line: 2, column: 9 });
        // serde_json counts bytes; the same place.
        assert_eq!(lines.serde_pos(2, 10), Pos { line: 2, column: 9 });
    }

    #[test]
    fn pointers_find_values_and_keys() {
        let text = "{\"a\": {\"b/c\": [1, {\"d\": true}]}}";
        let tree = Tree::parse(text).unwrap();
        assert_eq!(
            tree.value_at("/a/b~1c/1/d"),
            Some(text.find("true").unwrap())
        );
        assert_eq!(
            tree.key_at("/a", "b/c"),
            Some(text.find("\"b/c\"").unwrap())
        );
        assert_eq!(tree.value_at("/a/x"), None);
        assert_eq!(key_path("/a/b~1c/1/d"), "a.b/c[1].d");
        assert_eq!(key_path(""), "the card");
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        let text = "{\"a\": 1, \"b\": [{\"x\": 1, \"x\": 2}], \"a\": 3}";
        let tree = Tree::parse(text).unwrap();
        let mut d = tree.duplicate_keys();
        d.sort_by_key(|d| d.again);
        let keys: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.object.as_str(), d.key.as_str()))
            .collect();
        assert_eq!(keys, [("/b/0", "x"), ("", "a")]);
    }
}
