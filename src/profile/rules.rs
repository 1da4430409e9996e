//! Rules the schema cannot say: names, references between sections and semantic checks
//! (absolute normalized paths, content xor template, vdev group sizes, sha256 digests, listen addresses, non-empty check commands,
//! unit names, key files named by path, templates that exist and parse).
//!
//! The rules read the merged tree, not the typed profile, so they run even when the
//! schema check found errors elsewhere; a value of the wrong type is skipped here (the
//! schema check has reported it).

use std::path::Path;

use std::collections::BTreeMap;

use indexmap::IndexMap;

use super::Profile;
use super::diagnostics::{Issue, Sources};
use super::suggest;
use super::templates::{self, Lookup};
use super::tree::{Entry, Loc, Node, Seg, key_path, quote};

/// What the rules may read besides the merged tree: the profile's own files, and where
/// its templates are looked up. Nothing here reads the machine.
pub struct Context<'a> {
    /// The folder of the profile the user named (empty: the current folder); its
    /// `templates/` and those above it hold the templates the profile names.
    pub profile_dir: &'a Path,
    /// The text of every profile file read, indexed by [`Loc::file`], to place an error
    /// inside a string value.
    pub sources: &'a Sources,
    /// Files the rules read besides the profile's own (a Card), added to the sources after
    /// the rules run, so that an error inside one is placed and quoted like a profile's.
    pub read: std::cell::RefCell<Vec<(std::path::PathBuf, String)>>,
}

impl<'a> Context<'a> {
    pub fn new(profile_dir: &'a Path, sources: &'a Sources) -> Self {
        Context {
            profile_dir,
            sources,
            read: Default::default(),
        }
    }

    /// Keep the text of a file the rules read (a Card) for its errors: the [`Loc::file`]
    /// an [`Issue`] inside it takes.
    pub fn add_file(&self, path: std::path::PathBuf, text: String) -> usize {
        let mut read = self.read.borrow_mut();
        read.push((path, text));
        self.sources.files.len() + read.len() - 1
    }
}

/// Check every rule over the merged profile tree.
pub fn check_rules(root: &Node, cx: &Context<'_>) -> Vec<Issue> {
    let mut out = Vec::new();
    host(root, &mut out);
    checks(root, &mut out);
    // Each section's own rules live with its domain.
    crate::domains::check_sections(root, cx, &mut out);
    out
}

/// `template = NAME` at `value` (a string node; other types are the schema's to report):
/// the name stays under templates/, the file is found the way plan finds it, and it parses
/// with the environment plan renders with. `what` names the owner in messages
/// (`file "/etc/motd"`).
pub(crate) fn template_name(
    cx: &Context<'_>,
    value: &Node,
    at: &str,
    what: &str,
    out: &mut Vec<Issue>,
) {
    let Some(name) = value.str() else { return };
    let found = match templates::find(cx.profile_dir, name) {
        Ok(found) => found,
        Err(Lookup::Leaves(why)) => {
            out.push(
                Issue::new(
                    &value.loc,
                    at,
                    format!("template {} of {what} leaves templates/: {why}", quote(name)),
                )
                .label("outside templates/")
                .hint("name a file under templates/ next to the profile (or the project's templates/), relative to that folder, e.g. template = \"motd.j2\"; copy a file kept elsewhere into it"),
            );
            return;
        }
        Err(Lookup::Empty) => {
            out.push(
                Issue::new(&value.loc, at, format!("template of {what} is empty"))
                    .label("no template name")
                    .hint("name a file under templates/, e.g. template = \"motd.j2\""),
            );
            return;
        }
        Err(Lookup::NotFound(searched)) => {
            let shown: Vec<String> = searched
                .iter()
                .take(3)
                .map(|p| p.display().to_string())
                .chain((searched.len() > 3).then(|| "...".to_string()))
                .collect();
            out.push(
                Issue::new(
                    &value.loc,
                    at,
                    format!(
                        "template {} of {what} is in no templates/ folder next to or above the profile",
                        quote(name)
                    ),
                )
                .label("no such template")
                .hint(format!(
                    "put {name} in templates/ next to the profile or in the project's templates/, or fix the name (looked in {})",
                    shown.join(", ")
                )),
            );
            return;
        }
    };
    let text = match std::fs::read_to_string(&found) {
        Ok(text) => text,
        Err(err) => {
            out.push(
                Issue::new(
                    &value.loc,
                    at,
                    format!(
                        "template {} of {what} cannot be read ({}): {err}",
                        quote(name),
                        found.display()
                    ),
                )
                .label("unreadable template")
                .hint("a template is a UTF-8 text file readable by the user running sovereign"),
            );
            return;
        }
    };
    if let Err(err) = templates::parse(&text) {
        out.push(
            Issue::new(
                &value.loc,
                at,
                format!(
                    "template {} of {what} has a {err} (in {})",
                    quote(name),
                    found.display()
                ),
            )
            .label("template with a syntax error")
            .hint(TEMPLATE_HINT),
        );
    }
}

const TEMPLATE_HINT: &str = "templates are minijinja: {{ value }}, {% if ... %}...{% endif %}, {% for ... %}...{% endfor %}, {# comment #}; to write {{ or {% literally, wrap the text in {% raw %}...{% endraw %}";

/// Inline text that a domain renders as a template (`content`, `unit`): when it holds
/// template syntax it must parse. The error points where minijinja stopped inside the
/// string when the string is written as its text (no escapes), else at the string.
pub(crate) fn inline_template(
    cx: &Context<'_>,
    value: &Node,
    at: &str,
    what: &str,
    out: &mut Vec<Issue>,
) {
    let Some(text) = value.str() else { return };
    if !templates::has_syntax(text) {
        return;
    }
    if let Err(err) = templates::parse(text) {
        let loc = err
            .range
            .as_ref()
            .and_then(|r| inside_string(cx.sources, value, r.start))
            .unwrap_or_else(|| value.loc.clone());
        out.push(
            Issue::new(&loc, at, format!("{what} has a template {err}"))
                .label("template syntax error")
                .hint(TEMPLATE_HINT),
        );
    }
}

/// Where byte `offset` of the string `value` was written, when the literal between its
/// quotes is its text (no escapes; a multi-line string's first newline dropped).
fn inside_string(sources: &Sources, value: &Node, offset: usize) -> Option<Loc> {
    let text = value.str()?;
    let raw = sources
        .files
        .get(value.loc.file)?
        .text
        .get(value.loc.span.clone())?;
    let quotes = [r#"""""#, "'''", "\"", "'"]
        .into_iter()
        .find(|q| raw.starts_with(q) && raw.ends_with(q) && raw.len() >= 2 * q.len())?;
    let mut start = quotes.len();
    let inner = raw.get(start..raw.len() - quotes.len())?;
    let inner = if quotes.len() == 3 {
        let trimmed = inner
            .strip_prefix("\r\n")
            .or_else(|| inner.strip_prefix('\n'))
            .unwrap_or(inner);
        start += inner.len() - trimmed.len();
        trimmed
    } else {
        inner
    };
    if inner != text || offset > text.len() {
        return None;
    }
    let at = value.loc.span.start + start + offset;
    Some(Loc {
        file: value.loc.file,
        span: at..(at + 1).min(value.loc.span.end),
    })
}

/// What rendering the profile's templates needs, once the typed profile is read.
pub struct Rendering<'a> {
    pub profile: &'a Profile,
    /// The merged tree, to place an error at its value.
    pub tree: &'a Node,
    /// The environment plan renders with, holding every template the profile names that
    /// was found; built once, like the context.
    env: minijinja::Environment<'static>,
    /// The profile as templates see it, with the facts' shape.
    context: minijinja::Value,
}

/// Render every template of the profile with its own values, as plan will: what parses
/// but cannot be rendered on any machine (`{{ host.nmae }}`) is refused here, at the value.
pub fn check_rendered(profile: &Profile, tree: &Node, profile_dir: &Path) -> Vec<Issue> {
    let mut names: Vec<&str> = profile
        .files
        .values()
        .filter_map(|f| f.template.as_deref())
        .chain(
            profile
                .services
                .values()
                .filter_map(|s| s.template.as_deref()),
        )
        .collect();
    names.sort_unstable();
    names.dedup();
    let templates: BTreeMap<String, String> = names
        .into_iter()
        .filter_map(|name| {
            let found = templates::find(profile_dir, name).ok()?;
            Some((name.to_string(), std::fs::read_to_string(found).ok()?))
        })
        .collect();
    // Templates that do not parse are reported as syntax errors already.
    let Ok(env) = crate::domain::template::environment(&templates) else {
        return Vec::new();
    };
    let Ok(context) = crate::domain::template::context(profile, &crate::hardware::Facts::default())
    else {
        return Vec::new();
    };
    let cx = Rendering {
        profile,
        tree,
        env,
        context,
    };
    let mut out = Vec::new();
    crate::domains::check_rendered(&cx, &mut out);
    out
}

/// Render `source`, the value at `keys`, and report what cannot be rendered.
pub(crate) fn rendered(
    cx: &Rendering<'_>,
    keys: &[&str],
    source: templates::Source<'_>,
    what: &str,
    out: &mut Vec<Issue>,
) {
    let Err(err) = templates::render_check(&cx.env, &cx.context, source) else {
        return;
    };
    let Some(entry) = cx.tree.get_path(keys) else {
        return;
    };
    out.push(
        Issue::new(&entry.node.loc, kp(keys), format!("{what} cannot be rendered: {err}"))
            .label("cannot be rendered")
            .hint("templates see the profile's own keys (host.name, inference.listen, ...) and `facts`; check the name, or define the value in the profile"),
    );
}

pub(crate) fn path_of(keys: &[&str]) -> Vec<Seg> {
    keys.iter().map(|k| Seg::Key(k.to_string())).collect()
}

pub(crate) fn kp(keys: &[&str]) -> String {
    key_path(&path_of(keys))
}

/// The entries of the table at `keys`, when it is a table.
pub(crate) fn table_at<'a>(root: &'a Node, keys: &[&str]) -> Option<&'a IndexMap<String, Entry>> {
    root.get_path(keys)?.node.table()
}

fn host(root: &Node, out: &mut Vec<Issue>) {
    expect(root, out);
    let Some(entry) = root.get_path(&["host", "name"]) else {
        return;
    };
    let Some(name) = entry.node.str() else { return };
    if let Err(why) = hostname(name) {
        out.push(
            Issue::new(&entry.node.loc, "host.name", format!("host name {} {why}", quote(name)))
                .label("not a host name")
                .hint("use letters, digits and '-' (at most 63), not starting or ending with '-', e.g. \"forge-01\""),
        );
    }
}

/// `host.expect` must name an archetype of the hardware database.
fn expect(root: &Node, out: &mut Vec<Issue>) {
    let Some(entry) = root.get_path(&["host", "expect"]) else {
        return;
    };
    let Some(id) = entry.node.str() else { return };
    let known = crate::hardware::archetype_ids();
    if !known.contains(&id) {
        out.push(
            Issue::new(
                &entry.node.loc,
                "host.expect",
                format!(
                    "unknown hardware archetype {}{}",
                    quote(id),
                    suggest::suffix(id, known.iter().copied())
                ),
            )
            .label("not an archetype id")
            .hint(format!("known archetypes: {}", known.join(", "))),
        );
    }
}

fn hostname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("may hold only letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("may not start or end with '-'");
    }
    Ok(())
}

/// Why `path` is not an absolute, normalized path.
pub fn absolute_normalized(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("is not absolute".into());
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err("ends with '/'".into());
    }
    if path.contains("//") {
        return Err("has an empty component ('//')".into());
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        return Err("has a '.' or '..' component".into());
    }
    if path.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    Ok(())
}

fn checks(root: &Node, out: &mut Vec<Issue>) {
    let Some(list) = root.get("checks").and_then(|e| e.node.array()) else {
        return;
    };
    for (i, check) in list.iter().enumerate() {
        let base = vec![Seg::Key("checks".into()), Seg::Index(i)];
        if let Some(name) = check
            .get("name")
            .filter(|n| n.node.str().is_some_and(|s| s.trim().is_empty()))
        {
            let mut p = base.clone();
            p.push(Seg::Key("name".into()));
            out.push(
                Issue::new(&name.node.loc, key_path(&p), "check name is empty")
                    .label("empty name")
                    .hint("name the check, e.g. name = \"inference answers\""),
            );
        }
        if let Some(timeout) = check.get("timeout") {
            let zero = timeout
                .node
                .str()
                .and_then(|s| s.parse::<super::units::Duration>().ok())
                .is_some_and(|d| d.as_std().is_zero());
            if zero {
                let mut p = base.clone();
                p.push(Seg::Key("timeout".into()));
                out.push(
                    Issue::new(
                        &timeout.node.loc,
                        key_path(&p),
                        format!(
                            "check timeout must be at least 1s, not {} (no attempt could finish, so every apply would roll back)",
                            quote(timeout.node.str().unwrap_or_default())
                        ),
                    )
                    .label("zero timeout")
                    .hint("give the time one attempt may take, e.g. timeout = \"30s\", or leave it out for the default, 30s"),
                );
            }
        }
        let Some(command) = check.get("command") else {
            continue;
        };
        let Some(argv) = command.node.array() else {
            continue;
        };
        let mut p = base.clone();
        p.push(Seg::Key("command".into()));
        let empty_program = argv
            .first()
            .and_then(Node::str)
            .is_some_and(|s| s.trim().is_empty());
        if argv.is_empty() || empty_program {
            out.push(
                Issue::new(&command.node.loc, key_path(&p), "check command is empty")
                    .label("no program to run")
                    .hint("give the program and its arguments, e.g. command = [\"curl\", \"-fsS\", \"http://127.0.0.1:8080/health\"]"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_normalized() {
        assert!(absolute_normalized("/etc/motd").is_ok());
        assert!(absolute_normalized("/").is_ok());
        for bad in ["etc/motd", "/etc/../motd", "/etc//motd", "/etc/", "/./x"] {
            assert!(absolute_normalized(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names_are_bounded() {
        assert!(hostname("forge-01").is_ok());
        assert!(hostname("-x").is_err());
    }
}
