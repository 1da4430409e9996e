//! Render a merged profile for `sovereign show`: TOML-like text with the `file:line`
//! each value came from, or JSON with an origins map.

use serde::Serialize;
use serde_json::{Map, Value};

use super::tree::{Seg, key_path, quote, toml_key};
use super::{Origin, ValidProfile};

/// Where the `# file:line` comments start, so they line up.
const COMMENT_COLUMN: usize = 48;

/// The merged profile as TOML, each value annotated with `# file:line`.
pub fn render_text(vp: &ValidProfile) -> String {
    let value = serde_json::to_value(&vp.profile).unwrap_or(Value::Null);
    let mut out = String::new();
    let files: Vec<String> = vp.sources.iter().map(|p| p.display().to_string()).collect();
    out.push_str(&format!("# merged from {}\n", files.join(", ")));
    if let Value::Object(root) = &value {
        table(vp, root, &mut Vec::new(), &mut out);
    }
    out
}

fn table(vp: &ValidProfile, map: &Map<String, Value>, path: &mut Vec<Seg>, out: &mut String) {
    // Plain keys first: in TOML they belong to the table header above them.
    for (key, value) in map {
        if is_table(value) || is_table_array(path, value) {
            continue;
        }
        path.push(Seg::Key(key.clone()));
        line(
            vp,
            format!("{} = {}", toml_key(key), inline(value)),
            path,
            out,
        );
        path.pop();
    }
    for (key, value) in map {
        path.push(Seg::Key(key.clone()));
        if let Value::Object(sub) = value {
            let has_leaves = sub.values().any(|v| !is_table(v));
            if has_leaves || sub.is_empty() {
                out.push('\n');
                line(vp, format!("[{}]", key_path(path)), path, out);
            }
            table(vp, sub, path, out);
        } else if is_table_array(&path[..path.len() - 1], value) {
            for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                let header = format!("[[{}]]", key_path(path));
                path.push(Seg::Index(i));
                out.push('\n');
                line(vp, header, path, out);
                if let Value::Object(sub) = item {
                    table(vp, sub, path, out);
                }
                path.pop();
            }
        }
        path.pop();
    }
}

fn is_table(value: &Value) -> bool {
    value.is_object()
}

/// Arrays of tables at the top level (`[[checks]]`) get headers; deeper ones stay inline
/// (`vdevs = [{ type = "mirror", ... }]`), as people write them.
fn is_table_array(parent: &[Seg], value: &Value) -> bool {
    parent.is_empty()
        && value
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_object))
}

fn line(vp: &ValidProfile, text: String, path: &[Seg], out: &mut String) {
    let pad = COMMENT_COLUMN.saturating_sub(text.chars().count()).max(1);
    out.push_str(&text);
    out.push_str(&" ".repeat(pad));
    match vp.origin(&key_path(path)) {
        Some(origin) => out.push_str(&format!("# {}:{}", origin.file.display(), origin.line)),
        // Written by no file: the format's default for a key of a declared table.
        None => out.push_str("# default"),
    }
    out.push('\n');
}

/// A value as an inline TOML value.
fn inline(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            if map.is_empty() {
                return "{}".into();
            }
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), inline(v)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
        Value::Null => "\"\"".into(),
        other => other.to_string(),
    }
}

/// `show --json`: the files read, the merged profile and where each value came from.
#[derive(Debug, Serialize)]
pub struct ShowJson<'a> {
    /// Every file that contributed, the named one first.
    pub files: &'a [std::path::PathBuf],
    /// The merged, typed profile.
    pub profile: &'a super::Profile,
    /// Key path -> file, line, column.
    pub origins: &'a std::collections::BTreeMap<String, Origin>,
}

impl<'a> ShowJson<'a> {
    pub fn new(vp: &'a ValidProfile) -> Self {
        ShowJson {
            files: &vp.sources,
            profile: &vp.profile,
            origins: &vp.origins,
        }
    }
}
