//! The value tree of a profile before it is typed: every node remembers where it was written.
//!
//! Files are parsed with toml's span-preserving parser into [`Node`]s; imports are
//! merged as trees (so each value keeps its own origin through the merge), the merged
//! tree is checked against the schema and the rules, and only then deserialized into
//! the typed [`super::Profile`].

use std::ops::Range;

use indexmap::IndexMap;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A place in one source file: the file's index in [`super::diagnostics::Sources`] and a byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// Index of the file in the loader's source list (load order).
    pub file: usize,
    /// Byte range of the key or value in that file.
    pub span: Range<usize>,
}

/// One value of the tree and where it was written.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    /// Where the value itself was written (for a table: its header or inline braces).
    pub loc: Loc,
}

/// A key of a table with the place the key was written.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where the key was written; errors about the key itself (unknown, bad name) point here.
    pub key_loc: Loc,
    pub node: Node,
}

/// The TOML value kinds.
#[derive(Debug, Clone)]
pub enum Kind {
    Table(IndexMap<String, Entry>),
    Array(Vec<Node>),
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
}

impl Node {
    pub fn table(&self) -> Option<&IndexMap<String, Entry>> {
        match &self.kind {
            Kind::Table(t) => Some(t),
            _ => None,
        }
    }

    pub fn array(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match &self.kind {
            Kind::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The entry at `key` if this is a table that has it.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.table().and_then(|t| t.get(key))
    }

    /// Walk a chain of table keys.
    pub fn get_path(&self, keys: &[&str]) -> Option<&Entry> {
        let (first, rest) = keys.split_first()?;
        let mut entry = self.get(first)?;
        for key in rest {
            entry = entry.node.get(key)?;
        }
        Some(entry)
    }

    /// Equal values, wherever they were written.
    pub fn same_value(&self, other: &Node) -> bool {
        match (&self.kind, &other.kind) {
            (Kind::Table(a), Kind::Table(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, e)| b.get(k).is_some_and(|o| e.node.same_value(&o.node)))
            }
            (Kind::Array(a), Kind::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_value(y))
            }
            (Kind::String(a), Kind::String(b)) => a == b,
            (Kind::Integer(a), Kind::Integer(b)) => a == b,
            (Kind::Float(a), Kind::Float(b)) => a == b,
            (Kind::Bool(a), Kind::Bool(b)) => a == b,
            (Kind::Datetime(a), Kind::Datetime(b)) => a == b,
            _ => false,
        }
    }

    /// How the value reads in a message: `integer 64`, `string "64"`, `a table`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Table(_) => "a table".into(),
            Kind::Array(_) => "an array".into(),
            Kind::String(s) => format!("string {}", quote(&preview(s))),
            Kind::Integer(i) => format!("integer {i}"),
            Kind::Float(f) => format!("float {f:?}"),
            Kind::Bool(b) => format!("boolean {b}"),
            Kind::Datetime(d) => format!("date-time {d}"),
        }
    }

    /// Convert to JSON, the shape serde deserializes the typed profile from.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Table(t) => Value::Object(
                t.iter()
                    .map(|(k, e)| (k.clone(), e.node.to_json()))
                    .collect(),
            ),
            Kind::Array(a) => Value::Array(a.iter().map(Node::to_json).collect()),
            Kind::String(s) => Value::String(s.clone()),
            Kind::Integer(i) => Value::from(*i),
            Kind::Float(f) => Value::from(*f),
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Datetime(d) => Value::String(d.clone()),
        }
    }
}

fn preview(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// A TOML basic string literal for `s`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
pub fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { key.to_string() } else { quote(key) }
}

/// `storage.datasets."tank/models".properties.recordsize`, `checks[0].name`; "" for the root.
pub fn key_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&toml_key(k));
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The key path of the node written at `loc`, if the tree holds one.
pub fn path_to(root: &Node, loc: &Loc) -> Option<Vec<Seg>> {
    fn walk(node: &Node, loc: &Loc, path: &mut Vec<Seg>) -> bool {
        if node.loc == *loc && !path.is_empty() {
            return true;
        }
        match &node.kind {
            Kind::Table(t) => t.iter().any(|(k, e)| {
                path.push(Seg::Key(k.clone()));
                let found = walk(&e.node, loc, path);
                if !found {
                    path.pop();
                }
                found
            }),
            Kind::Array(items) => items.iter().enumerate().any(|(i, item)| {
                path.push(Seg::Index(i));
                let found = walk(item, loc, path);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = Vec::new();
    walk(root, loc, &mut path).then_some(path)
}

/// Convert a parsed document into a tree whose locations point into file `file`.
/// Integers that do not fit an i64 are reported through `overflow`.
pub fn from_document(doc: &Spanned<DeTable<'_>>, file: usize, overflow: &mut Vec<Loc>) -> Node {
    let span = doc.span();
    Node {
        kind: Kind::Table(convert_table(doc.get_ref(), file, overflow)),
        loc: Loc {
            file,
            span: span.start..span.start,
        },
    }
}

fn convert_table(
    table: &DeTable<'_>,
    file: usize,
    overflow: &mut Vec<Loc>,
) -> IndexMap<String, Entry> {
    let mut out = IndexMap::with_capacity(table.len());
    for (key, value) in table.iter() {
        let key_loc = Loc {
            file,
            span: key.span(),
        };
        let node = convert_value(value, file, overflow);
        out.insert(key.get_ref().to_string(), Entry { key_loc, node });
    }
    out
}

fn convert_value(value: &Spanned<DeValue<'_>>, file: usize, overflow: &mut Vec<Loc>) -> Node {
    let loc = Loc {
        file,
        span: value.span(),
    };
    let kind = match value.get_ref() {
        DeValue::String(s) => Kind::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Kind::Integer(n),
            Err(_) => {
                overflow.push(loc.clone());
                Kind::Integer(0)
            }
        },
        DeValue::Float(f) => Kind::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Kind::Bool(*b),
        DeValue::Datetime(d) => Kind::Datetime(d.to_string()),
        DeValue::Array(a) => {
            Kind::Array(a.iter().map(|v| convert_value(v, file, overflow)).collect())
        }
        DeValue::Table(t) => Kind::Table(convert_table(t, file, overflow)),
    };
    Node { kind, loc }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_quote_what_toml_would() {
        let path = [
            Seg::Key("storage".into()),
            Seg::Key("datasets".into()),
            Seg::Key("tank/models".into()),
            Seg::Key("properties".into()),
            Seg::Key("recordsize".into()),
        ];
        assert_eq!(
            key_path(&path),
            r#"storage.datasets."tank/models".properties.recordsize"#
        );
        assert_eq!(
            key_path(&[
                Seg::Key("checks".into()),
                Seg::Index(2),
                Seg::Key("name".into())
            ]),
            "checks[2].name"
        );
        assert_eq!(toml_key("a\"b"), r#""a\"b""#);
    }

    #[test]
    fn spans_survive_conversion() {
        let text = "[host]\nname = \"x\"\n";
        let (doc, errors) = DeTable::parse_recoverable(text);
        assert!(errors.is_empty());
        let tree = from_document(&doc, 0, &mut Vec::new());
        let name = tree.get_path(&["host", "name"]).unwrap();
        assert_eq!(&text[name.node.loc.span.clone()], "\"x\"");
        assert_eq!(&text[name.key_loc.span.clone()], "name");
    }
}
