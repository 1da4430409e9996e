//! Loading a profile: read the named file and its imports, merge them, check the merged
//! tree against the schema and the rules, and only when nothing is wrong, type it.
//!
//! Every error of every file is collected and reported together, in file order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use toml::de::DeTable;

use super::diagnostics::{Issue, ProfileError, Sources};
use super::merge::{self, Conflict};
use super::tree::{self, Kind, Loc, Node, Seg, key_path};
use super::{Origin, Profile, ValidProfile, rules, validate};

pub use super::diagnostics::LoadError;

/// Load, merge and validate the profile at `path`.
pub fn load(path: &Path) -> Result<ValidProfile, LoadError> {
    let mut loader = Loader::default();
    let root_path = normalize(path);
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            return Err(LoadError {
                profile: root_path.clone(),
                what: LoadError::PROFILE,
                files: Vec::new(),
                errors: vec![ProfileError::file_level(
                    &root_path,
                    format!("cannot read profile {}: {err}", root_path.display()),
                    Some(
                        "check the path; profiles are TOML files such as profiles/demo.toml".into(),
                    ),
                )],
            });
        }
    };
    let mut chain = Vec::new();
    let merged = loader.load_text(root_path.clone(), text, &mut chain);
    loader.finish(root_path, merged)
}

/// One TOML file parsed into a tree, with what the parse found.
pub(crate) struct Parsed {
    /// The file's index in the [`Sources`].
    pub file: usize,
    /// Its values; where the file has syntax errors, what the parser recovered (a guess).
    pub tree: Node,
    /// TOML syntax errors: where there are any, they are the only trustworthy findings
    /// about this file.
    pub syntax: Vec<Issue>,
    /// Values the tree cannot hold (integers beyond 64 bits).
    pub issues: Vec<Issue>,
}

/// Add a file to `sources` and parse it into a tree that keeps every value's place: the
/// one TOML reader of profiles and fleet files, so both report syntax the same way.
pub(crate) fn parse_file(sources: &mut Sources, shown: PathBuf, text: String) -> Parsed {
    let file = sources.add(shown, text);
    let source = sources.files[file].text.clone();
    let (doc, errors) = DeTable::parse_recoverable(&source);
    let syntax = errors
        .iter()
        .map(|err| {
            let span = err.span().unwrap_or(0..0);
            let message = err.message().trim_end().to_string();
            syntax_issue(&source, file, span, &message)
        })
        .collect();
    let mut overflow = Vec::new();
    let tree = tree::from_document(&doc, file, &mut overflow);
    let issues = overflow
        .into_iter()
        .map(|loc| {
            let at = tree::path_to(&tree, &loc)
                .map(|p| key_path(&p))
                .unwrap_or_default();
            Issue::new(&loc, at, "integer does not fit in 64 bits")
                .label("too large")
                .hint("integers range from -9223372036854775808 to 9223372036854775807; sizes are strings such as \"64G\"")
        })
        .collect();
    Parsed {
        file,
        tree,
        syntax,
        issues,
    }
}

/// The state of one load: what was read and what was found.
#[derive(Default)]
struct Loader {
    /// Every file read, in load order; issue locations index it.
    sources: Sources,
    /// Files already loaded (by canonical path) and their merged trees, so a file imported
    /// twice (a diamond) is read, parsed and reported once.
    done: HashMap<PathBuf, Option<Node>>,
    /// Everything found so far.
    issues: Vec<Issue>,
    /// TOML syntax errors, kept apart: in a file that has them, the parser's recovery
    /// guesses, so only they are reported for that file.
    syntax: Vec<Issue>,
    /// Files with TOML syntax errors.
    broken: HashSet<usize>,
}

/// One file on the current import chain: its canonical path (for cycles) and shown path.
struct Link {
    canonical: PathBuf,
    shown: PathBuf,
}

impl Loader {
    /// Load an imported file named at `via`.
    fn load_import(&mut self, shown: PathBuf, via: &Loc, chain: &mut Vec<Link>) -> Option<Node> {
        let chain_text = |extra: &Path| {
            chain
                .iter()
                .map(|l| l.shown.display().to_string())
                .chain(std::iter::once(extra.display().to_string()))
                .collect::<Vec<_>>()
                .join(" -> ")
        };
        let canonical = match std::fs::canonicalize(&shown) {
            Ok(c) => c,
            Err(err) => {
                self.issues.push(
                    Issue::new(
                        via,
                        "imports",
                        format!(
                            "cannot read imported file {}: {err} (import chain: {})",
                            shown.display(),
                            chain_text(&shown)
                        ),
                    )
                    .label("imported here")
                    .hint("import paths are relative to the importing file's directory"),
                );
                return None;
            }
        };
        if chain.iter().any(|l| l.canonical == canonical) {
            self.issues.push(
                Issue::new(
                    via,
                    "imports",
                    format!("import cycle: {}", chain_text(&shown)),
                )
                .label("closes an import cycle")
                .hint("remove one of the imports; shared values belong in a fragment both import"),
            );
            return None;
        }
        if let Some(done) = self.done.get(&canonical) {
            return done.clone();
        }
        let text = match std::fs::read_to_string(&shown) {
            Ok(t) => t,
            Err(err) => {
                self.issues.push(
                    Issue::new(
                        via,
                        "imports",
                        format!("cannot read imported file {}: {err}", shown.display()),
                    )
                    .label("imported here"),
                );
                return None;
            }
        };
        let merged = self.load_text(shown, text, chain);
        self.done.insert(canonical, merged.clone());
        merged
    }

    /// Parse one file, load its imports and merge: the imports side by side, then this
    /// file's own values on top.
    fn load_text(&mut self, shown: PathBuf, text: String, chain: &mut Vec<Link>) -> Option<Node> {
        let canonical = std::fs::canonicalize(&shown).unwrap_or_else(|_| shown.clone());
        let Parsed {
            file,
            tree: own,
            mut syntax,
            mut issues,
        } = parse_file(&mut self.sources, shown.clone(), text);
        if !syntax.is_empty() {
            self.broken.insert(file);
        }
        self.syntax.append(&mut syntax);
        self.issues.append(&mut issues);

        let imports = self.import_list(&own);
        chain.push(Link {
            canonical,
            shown: shown.clone(),
        });
        let base_dir = shown.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut merged_imports: Option<Node> = None;
        let mut conflicts = Vec::new();
        for (import, via) in imports {
            let target = normalize(&base_dir.join(&import));
            let Some(mut tree) = self.load_import(target, &via, chain) else {
                continue;
            };
            if let Kind::Table(t) = &mut tree.kind {
                t.shift_remove("imports");
            }
            match &mut merged_imports {
                None => merged_imports = Some(tree),
                Some(acc) => merge::merge_siblings(acc, tree, &mut Vec::new(), &mut conflicts),
            }
        }
        chain.pop();

        for conflict in conflicts {
            if !merge::settles(&own, &conflict.path) {
                let issue = self.conflict_issue(&conflict, &shown);
                self.issues.push(issue);
            }
        }
        match merged_imports {
            Some(mut base) => {
                merge::override_with(&mut base, own);
                Some(base)
            }
            None => Some(own),
        }
    }

    /// The `imports` of a file, checked: an array of strings. The root file keeps the key in
    /// its tree (the merged profile shows what it imports); an imported file's list is
    /// dropped from its merged tree, so sibling imports never conflict over it.
    fn import_list(&mut self, own: &Node) -> Vec<(String, Loc)> {
        let Some(entry) = own.get("imports") else {
            return Vec::new();
        };
        let mut list = Vec::new();
        match entry.node.array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.str() {
                        Some(s) => list.push((s.to_string(), item.loc.clone())),
                        None => self.issues.push(
                            Issue::new(
                                &item.loc,
                                key_path(&[Seg::Key("imports".into()), Seg::Index(i)]),
                                format!("expected a path string, found {}", item.describe()),
                            )
                            .label("not a path")
                            .hint(
                                "imports = [\"../modules/nest.toml\"]: paths relative to this file",
                            ),
                        ),
                    }
                }
            }
            None => self.issues.push(
                Issue::new(
                    &entry.node.loc,
                    "imports",
                    format!(
                        "expected an array of path strings, found {}",
                        entry.node.describe()
                    ),
                )
                .label("not an array")
                .hint("imports = [\"../modules/nest.toml\"]: paths relative to this file"),
            ),
        }
        list
    }

    fn conflict_issue(&self, conflict: &Conflict, importer: &Path) -> Issue {
        let path = key_path(&conflict.path);
        let shown = |n: &Node| match &n.kind {
            Kind::Table(_) => "a table".to_string(),
            _ => serde_json::to_string(&n.to_json()).unwrap_or_default(),
        };
        Issue::new(
            &conflict.second.loc,
            &path,
            format!(
                "imports disagree: {} sets {} and {} sets {}",
                self.sources.place(&conflict.first.loc),
                shown(&conflict.first),
                self.sources.place(&conflict.second.loc),
                shown(&conflict.second),
            ),
        )
        .label("conflicts with another import")
        .hint(format!(
            "two files imported side by side may not set a value differently: remove it from one of them, or set it in {} to decide",
            importer.display()
        ))
    }

    /// Check the merged tree, then type it when nothing is wrong.
    fn finish(
        mut self,
        root_path: PathBuf,
        merged: Option<Node>,
    ) -> Result<ValidProfile, LoadError> {
        let merged = merged.unwrap_or_else(|| Node {
            kind: Kind::Table(Default::default()),
            loc: Loc {
                file: 0,
                span: 0..0,
            },
        });
        let mut findings = validate::check_profile(&merged);
        for issue in &mut findings.issues {
            toml_octal_mode(issue, &self.sources);
        }
        self.issues.extend(findings.issues);
        self.issues.extend(findings.missing);
        let cx = rules::Context::new(root_path.parent().unwrap_or(Path::new("")), &self.sources);
        let found = rules::check_rules(&merged, &cx);
        for (path, text) in cx.read.into_inner() {
            self.sources.add(path, text);
        }
        self.issues.extend(found);
        // What the parser recovered from a broken file is a guess: report only its syntax.
        let broken = &self.broken;
        self.issues.retain(|i| !broken.contains(&i.loc.file));
        self.issues.append(&mut self.syntax);

        let mut profile = None;
        if self.issues.is_empty() {
            match serde_json::from_value::<Profile>(merged.to_json()) {
                Ok(p) => profile = Some(p),
                Err(err) => self.issues.push(
                    Issue::new(
                        &merged.loc,
                        "",
                        format!("the profile does not match the format: {err}"),
                    )
                    .hint("run `sovereign schema` for the format"),
                ),
            }
        }
        if let Some(p) = &profile {
            let dir = root_path.parent().unwrap_or(Path::new(""));
            self.issues.extend(rules::check_rendered(p, &merged, dir));
        }
        let files: Vec<PathBuf> = self.sources.files.iter().map(|f| f.path.clone()).collect();
        match profile {
            Some(profile) if self.issues.is_empty() => Ok(ValidProfile {
                profile,
                path: root_path,
                sources: files,
                origins: origins(&merged, &self.sources),
            }),
            _ => {
                // File order: load order of files, then position within the file.
                self.issues
                    .sort_by_key(|i| (i.loc.file, i.loc.span.start, i.loc.span.end));
                // The loader and the schema both check `imports`: one report per place.
                self.issues
                    .dedup_by(|a, b| a.loc == b.loc && a.key_path == b.key_path);
                let errors = self
                    .issues
                    .into_iter()
                    .map(|i| self.sources.error(i))
                    .collect();
                Err(LoadError {
                    profile: root_path,
                    what: LoadError::PROFILE,
                    files,
                    errors,
                })
            }
        }
    }
}

/// Where each value of the merged tree came from, keyed by TOML key path. Tables and
/// arrays point at their key; leaves at their value.
fn origins(root: &Node, sources: &Sources) -> BTreeMap<String, Origin> {
    let mut out = BTreeMap::new();
    let mut path = Vec::new();
    collect(root, None, &mut path, sources, &mut out);
    out
}

fn collect(
    node: &Node,
    key_loc: Option<&Loc>,
    path: &mut Vec<Seg>,
    sources: &Sources,
    out: &mut BTreeMap<String, Origin>,
) {
    if !path.is_empty() {
        let loc = match (&node.kind, key_loc) {
            (Kind::Table(_) | Kind::Array(_), Some(k)) => k,
            _ => &node.loc,
        };
        let (line, column) = sources.files[loc.file].line_col(loc.span.start);
        out.insert(
            key_path(path),
            Origin {
                file: sources.path(loc.file).to_path_buf(),
                line,
                column,
            },
        );
    }
    match &node.kind {
        Kind::Table(t) => {
            for (k, entry) in t {
                path.push(Seg::Key(k.clone()));
                collect(&entry.node, Some(&entry.key_loc), path, sources, out);
                path.pop();
            }
        }
        Kind::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                collect(item, None, path, sources, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Lexically clean a path: drop `.` components and fold `dir/..` (so messages show
/// `modules/nest.toml`, not `profiles/../modules/./nest.toml`).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                let last = out.components().next_back();
                if matches!(last, Some(Component::Normal(_))) {
                    out.pop();
                } else if !matches!(last, Some(Component::RootDir)) {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// A TOML syntax error as the operator can act on it: where the mistake is, not only
/// where the parser gave up, and what to write.
fn syntax_issue(text: &str, file: usize, span: std::ops::Range<usize>, message: &str) -> Issue {
    let plain = |span, message: String, label: &str, hint: &str| {
        Issue::new(&Loc { file, span }, "", message)
            .label(label)
            .hint(hint)
    };
    // The parser reports an unclosed multi-line string where the file ends: point at the
    // opening quotes instead.
    if message.contains("multi-line") {
        if let Some((at, quotes)) = unclosed_multiline(text.get(..span.start).unwrap_or(text)) {
            return plain(
                at..at + 3,
                format!(
                    "TOML syntax error: this multi-line string is never closed (no matching {quotes})"
                ),
                "opens here",
                "close it with the same three quotes where the text ends",
            );
        }
    }
    if message.contains("duplicate key") {
        let key = text.get(span.clone()).unwrap_or_default().trim();
        let before = text.get(..span.start).unwrap_or(text);
        let first = first_definition(before, key);
        let message = match first {
            Some(line) => format!(
                "TOML syntax error: duplicate key {key:?}; it is first defined on line {line}"
            ),
            None => format!("TOML syntax error: duplicate key {key:?}"),
        };
        return plain(
            span,
            message,
            "defined again",
            "a key or table may be defined once: merge the two definitions, or remove one",
        );
    }
    // A number with a leading zero is almost always a file mode written bare.
    let hint = if message.contains("leading zero") {
        "TOML numbers cannot start with 0; a mode is a quoted octal string, e.g. mode = \"0600\""
    } else {
        "fix the TOML syntax; see https://toml.io for the format"
    };
    plain(span, format!("TOML syntax error: {message}"), "here", hint)
}

/// The byte offset and quotes of the last multi-line string opened and not closed in
/// `text`, skipping comments and single-line strings.
fn unclosed_multiline(text: &str) -> Option<(usize, &'static str)> {
    let b = text.as_bytes();
    let mut open: Option<(usize, &'static str)> = None;
    let mut i = 0;
    while i < b.len() {
        if let Some((_, q)) = open {
            if b[i..].starts_with(q.as_bytes()) {
                open = None;
                i += 3;
                continue;
            }
            if q == "\"\"\"" && b[i] == b'\\' {
                i += 2;
                continue;
            }
            i += 1;
            continue;
        }
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' => {
                let q: &'static str = if b[i] == b'"' { "\"\"\"" } else { "\'\'\'" };
                if b[i..].starts_with(q.as_bytes()) {
                    open = Some((i, q));
                    i += 3;
                    continue;
                }
                // A single-line string: to its closing quote or the end of the line.
                let quote = b[i];
                i += 1;
                while i < b.len() && b[i] != quote && b[i] != b'\n' {
                    if quote == b'"' && b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    open
}

/// The 1-based line where `key` (a table header's name or a key) is first defined in
/// `before`.
fn first_definition(before: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    before.lines().enumerate().find_map(|(n, line)| {
        let l = line.trim();
        let header = l
            .strip_prefix('[')
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').trim());
        let is_key = l
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        (header == Some(key) || header.is_some_and(|h| h.rsplit('.').next() == Some(key)) || is_key)
            .then_some(n + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_lexically() {
        assert_eq!(
            normalize(Path::new("profiles/../modules/./nest.toml")),
            PathBuf::from("modules/nest.toml")
        );
        assert_eq!(
            normalize(Path::new("../a/b.toml")),
            PathBuf::from("../a/b.toml")
        );
        assert_eq!(normalize(Path::new("/x/../y")), PathBuf::from("/y"));
    }
}

#[cfg(test)]
mod syntax_tests {
    use super::*;

    #[test]
    fn syntax_help_never_panics_on_any_text() {
        // Multi-byte characters around quotes, comments and the span's edges.
        for text in [
            "a = \"é\"\"\"é",
            "x = '''ü",
            "# \"\"\"\nk = 'ä'\nv = \"\"\"",
            "\"\"\"",
            "é",
            "",
        ] {
            for start in 0..=text.len() + 2 {
                let span = start..start + 1;
                for message in ["invalid multi-line basic string", "duplicate key", "other"] {
                    let _ = syntax_issue(text, 0, span.clone(), message);
                }
            }
        }
        assert_eq!(
            unclosed_multiline("a = \"\"\"x\"\"\"\nb = '''"),
            Some((16, "'''"))
        );
        assert_eq!(unclosed_multiline("a = \"\"\"x\"\"\""), None);
        assert_eq!(first_definition("[host]\nname = 1\n", "name"), Some(2));
        assert_eq!(first_definition("[a.host]\n", "host"), Some(1));
    }
}

/// `mode = 0o644` is TOML's octal integer: the tree keeps only the number (420), so the
/// schema's hint would suggest "0420". Read how it was written and hint at the mode meant.
fn toml_octal_mode(issue: &mut Issue, sources: &Sources) {
    if !issue.key_path.ends_with("mode") {
        return;
    }
    let Some(file) = sources.files.get(issue.loc.file) else {
        return;
    };
    let Some(written) = file.text.get(issue.loc.span.clone()) else {
        return;
    };
    let Some(digits) = written
        .strip_prefix("0o")
        .or_else(|| written.strip_prefix("0O"))
    else {
        return;
    };
    let digits = digits.replace('_', "");
    issue.hint = Some(format!(
        "TOML reads {written} as the number {}; write the mode as a quoted string: mode = \"0{digits}\"",
        i64::from_str_radix(&digits, 8).unwrap_or_default()
    ));
}
