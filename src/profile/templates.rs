//! Where a profile's templates are, and whether they parse: the one lookup `plan` loads
//! templates with and `validate` checks them with.
//!
//! For `template = "motd.j2"`, sovereign looks in `templates/` next to the profile file,
//! then in `templates/` of each parent folder up to the filesystem root (so
//! `profiles/x.toml` finds the project's `templates/`). The first match wins. A name is
//! relative to `templates/` and never leaves it.

use std::path::{Component, Path, PathBuf};

/// Why a template name was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name is absolute or has a `..` component: it would leave `templates/`.
    Leaves(&'static str),
    /// The name is empty.
    Empty,
    /// No `templates/` folder above the profile holds it; the folders searched, nearest
    /// first.
    NotFound(Vec<PathBuf>),
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::Leaves(why) => write!(
                f,
                "{why}: a template name is relative to templates/ and has no '..'"
            ),
            Lookup::Empty => write!(f, "the template name is empty"),
            Lookup::NotFound(searched) => write!(
                f,
                "not found; looked in {}",
                searched
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Why `name` may not name a template: it is empty, absolute or leaves `templates/`.
pub fn check_name(name: &str) -> Result<(), Lookup> {
    if name.is_empty() {
        return Err(Lookup::Empty);
    }
    let path = Path::new(name);
    if path.is_absolute() || name.starts_with('/') {
        return Err(Lookup::Leaves("it is an absolute path"));
    }
    if name.split('/').any(|c| c == "..")
        || path.components().any(|c| matches!(c, Component::ParentDir))
    {
        return Err(Lookup::Leaves("it has a '..' component"));
    }
    Ok(())
}

/// The file `name` names, for a profile in `profile_dir` (empty: the current folder).
/// Reads only the file system's view of the `templates/` folders above the profile.
pub fn find(profile_dir: &Path, name: &str) -> Result<PathBuf, Lookup> {
    check_name(name)?;
    let dir = if profile_dir.as_os_str().is_empty() {
        std::env::current_dir().unwrap_or_default()
    } else {
        std::fs::canonicalize(profile_dir).unwrap_or_else(|_| profile_dir.to_path_buf())
    };
    let mut searched = Vec::new();
    for ancestor in dir.ancestors() {
        let candidate = ancestor.join("templates").join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        searched.push(ancestor.join("templates"));
    }
    Err(Lookup::NotFound(searched))
}

/// Whether inline text is a template at all: text without `{{`, `{%` or `{#` is taken as
/// it is, and never parsed.
pub fn has_syntax(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// A template that does not parse: where in its text and why, in minijinja's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line in the template, when minijinja names one.
    pub line: Option<usize>,
    /// Byte range in the template's text, when minijinja names one.
    pub range: Option<std::ops::Range<usize>>,
    /// What is wrong ("unexpected end of input, expected end of variable block").
    pub detail: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "syntax error on line {line}: {}", self.detail),
            None => write!(f, "syntax error: {}", self.detail),
        }
    }
}

/// Parse `text` with the environment `plan` renders with (nothing is rendered: values the
/// machine supplies are not known here).
pub fn parse(text: &str) -> Result<(), SyntaxError> {
    let env = crate::domain::template::environment(&Default::default())
        .expect("an environment without templates always builds");
    match env.template_from_str(text) {
        Ok(_) => Ok(()),
        Err(err) => Err(SyntaxError {
            line: err.line(),
            range: err.range(),
            detail: err
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| err.kind().to_string()),
        }),
    }
}

/// Why a template that parses cannot be rendered with the profile: a value the profile does
/// not define (`{{ host.nmae }}`), an unknown filter, a wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// 1-based line in the template, when minijinja names one.
    pub line: Option<usize>,
    /// minijinja's words.
    pub detail: String,
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

/// Render `source` (inline text, or a template of `env` by name) with `context`: the
/// profile's own values, as plan will, and the facts' shape with placeholder values (the
/// machine is not read here; see [`crate::profile::rules::check_rendered`]). An error in an expression that reads `facts` depends on the machine
/// plan runs on, so it is plan's to report; any other is the profile's, on every machine.
pub fn render_check(
    env: &minijinja::Environment<'_>,
    context: &minijinja::Value,
    source: Source<'_>,
) -> Result<(), RenderError> {
    let (result, text) = match source {
        Source::Inline(text) => {
            if !has_syntax(text) {
                return Ok(());
            }
            (env.render_str(text, context.clone()), text.to_string())
        }
        Source::Named(name) => {
            let Ok(template) = env.get_template(name) else {
                return Ok(());
            };
            (
                template.render(context.clone()),
                template.source().to_string(),
            )
        }
    };
    let Err(err) = result else { return Ok(()) };
    // The expression that failed, where minijinja says (the innermost error's place).
    let mut cause: &dyn std::error::Error = &err;
    let mut at = err.range();
    while let Some(next) = cause.source() {
        if let Some(m) = next.downcast_ref::<minijinja::Error>() {
            at = m.range().or(at);
        }
        cause = next;
    }
    let detail = err
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| err.kind().to_string());
    if reads_facts(&text, at, &detail) {
        return Ok(());
    }
    Err(RenderError {
        line: err.line(),
        detail,
    })
}

/// Whether the failing expression reads `facts`: the error names it, or the `{{ }}` or
/// `{% %}` block around the place minijinja points at mentions it (its span may cover only
/// `[0]` of `facts.gpus[0].name`). Without a place, any mention in the text counts.
fn reads_facts(text: &str, at: Option<std::ops::Range<usize>>, detail: &str) -> bool {
    if detail.contains("facts") {
        return true;
    }
    let Some(range) = at else {
        return text.contains("facts");
    };
    let start = range.start.min(text.len());
    let end = range.end.clamp(start, text.len());
    let open = text[..start]
        .rfind("{{")
        .into_iter()
        .chain(text[..start].rfind("{%"))
        .max()
        .unwrap_or(0);
    let close = [text[end..].find("}}"), text[end..].find("%}")]
        .into_iter()
        .flatten()
        .min()
        .map_or(text.len(), |i| end + i + 2);
    text.get(open..close)
        .is_some_and(|block| block.contains("facts"))
}

/// What to render: inline text, or a template by name.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Inline(&'a str),
    Named(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), RenderError> {
        let profile: crate::profile::Profile =
            toml::from_str("[host]\nname = \"forge\"\n").unwrap();
        let env = crate::domain::template::environment(&Default::default()).unwrap();
        let cx =
            crate::domain::template::context(&profile, &crate::hardware::Facts::default()).unwrap();
        render_check(&env, &cx, Source::Inline(text))
    }

    #[test]
    fn what_reads_facts_is_plans_to_judge_and_the_rest_is_refused() {
        for machine in [
            "{{ facts.gpus[0].name }}",
            "{{ facts.gpus[0].memory_bytes // 1073741824 }} GiB",
            "{% for g in facts.gpus %}{{ g.name }}{% endfor %}",
            "{{ host.name }} {{ facts.nothing.here }}",
        ] {
            assert_eq!(check(machine), Ok(()), "{machine}");
        }
        for profile in [
            "{{ host.nmae }}",
            "{{ hots.name }}",
            "{{ host.name | no_such_filter }}",
        ] {
            assert!(check(profile).is_err(), "{profile}");
        }
    }

    #[test]
    fn names_stay_under_templates() {
        assert!(check_name("motd.j2").is_ok());
        assert!(check_name("units/web.service.j2").is_ok());
        assert_eq!(
            check_name("../x"),
            Err(Lookup::Leaves("it has a '..' component"))
        );
        assert_eq!(
            check_name("a/../../x"),
            Err(Lookup::Leaves("it has a '..' component"))
        );
        assert_eq!(
            check_name("/etc/passwd"),
            Err(Lookup::Leaves("it is an absolute path"))
        );
        assert_eq!(check_name(""), Err(Lookup::Empty));
    }

    #[test]
    fn syntax_errors_name_their_line() {
        assert!(parse("hello {{ host.name }}\n").is_ok());
        let err = parse("a\nb {{ host.name \n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.to_string().starts_with("syntax error on line 2: "));
        assert!(parse("{% if x %}\n").is_err());
        assert!(!has_syntax("plain { text }"));
        assert!(has_syntax("{# note #}"));
    }
}
