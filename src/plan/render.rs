//! Rendering a plan: human text, JSON (the documented format) and DOT (`--graph`).
//!
//! Pure functions of a [`Plan`]: snapshot-tested with literal plans.

use std::fmt::Write;

use super::{Action, Change, Plan, Summary};

/// Colours for human text; `false` gives plain text (tests, pipes, NO_COLOR).
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn action(self, c: &Change, text: &str) -> String {
        let code = match c.action {
            _ if c.not_applicable.is_some() => "2",
            Action::Create | Action::Adopt => "32",
            Action::Update => "33",
            Action::Replace | Action::Delete => "31",
            Action::Keep => "2",
        };
        self.paint(code, text)
    }
}

/// The plan as people read it. Pending additive changes first, destructive ones in a
/// group of their own, then what is kept or not applicable, then one summary line.
pub fn text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    if let Some(i) = &plan.interrupted {
        writeln!(out, "{} {}", style.paint("33", "note:"), i.describe()).unwrap();
    }
    for u in &plan.unmanaged {
        writeln!(out, "{} {}", style.paint("33", "note:"), u.note).unwrap();
    }
    if !out.is_empty() {
        out.push('\n');
    }
    type Filter = Box<dyn Fn(&Change) -> bool>;
    let groups: [(&str, Filter); 4] = [
        (
            "Changes:",
            Box::new(|c: &Change| c.is_pending() && !c.flags.destructive),
        ),
        (
            "Destructive changes (data is lost):",
            Box::new(|c: &Change| c.is_pending() && c.flags.destructive),
        ),
        (
            "Kept (would lose data; not changed without --allow-destroy):",
            Box::new(|c: &Change| c.action == Action::Keep && c.not_applicable.is_none()),
        ),
        (
            "Not applicable on this machine (listed, not done):",
            Box::new(|c: &Change| c.not_applicable.is_some()),
        ),
    ];
    for (title, filter) in groups.iter() {
        let members: Vec<&Change> = plan.changes.iter().filter(|c| filter(c)).collect();
        if members.is_empty() {
            continue;
        }
        writeln!(out, "{}", style.paint("1", title)).unwrap();
        for c in members {
            change(&mut out, c, style);
        }
        out.push('\n');
    }
    out.push_str(&summary_line(&plan.summary));
    out
}

fn change(out: &mut String, c: &Change, style: Style) {
    let head = format!("{:>3} {}", c.action.glyph(), c.address);
    let mut tags = Vec::new();
    if c.flags.destructive {
        tags.push("destructive");
    }
    if c.flags.reboot {
        tags.push("needs reboot");
    }
    if c.flags.sensitive {
        tags.push("sensitive");
    }
    let not_applicable = c
        .not_applicable
        .as_ref()
        .map(|why| format!("not applicable: {why}"));
    if let Some(na) = &not_applicable {
        tags.push(na);
    }
    let tags = if tags.is_empty() {
        String::new()
    } else {
        format!(" ({})", tags.join(", "))
    };
    writeln!(out, "  {}{tags}", style.action(c, &head)).unwrap();
    if let Some(r) = &c.reason {
        writeln!(out, "        # {r}").unwrap();
    }
    for f in &c.fields {
        writeln!(
            out,
            "        {}: {} -> {}",
            f.name,
            f.before.as_deref().unwrap_or("(none)"),
            f.after.as_deref().unwrap_or("(none)")
        )
        .unwrap();
    }
    if let Some(diff) = &c.diff {
        for line in diff.lines() {
            let painted = if line.starts_with("+++") || line.starts_with("---") {
                style.paint("1", line)
            } else if line.starts_with('+') {
                style.paint("32", line)
            } else if line.starts_with('-') {
                style.paint("31", line)
            } else if line.starts_with("@@") {
                style.paint("36", line)
            } else {
                line.to_string()
            };
            writeln!(out, "        {painted}").unwrap();
        }
    }
}

/// `Plan: 1 to create, ...` or `No changes.`
pub fn summary_line(s: &Summary) -> String {
    if s.pending == 0 {
        if s.keep == 0 && s.not_applicable == 0 {
            return "No changes: the machine matches the profile.".to_string();
        }
        // Something differs that apply will not change: never say it matches.
        let mut line = "No changes to apply.".to_string();
        if s.keep > 0 {
            line.push_str(&format!(
                " {} kept: the machine differs from the profile there (see above).",
                s.keep
            ));
        }
        if s.not_applicable > 0 {
            line.push_str(&format!(
                " {} not applicable here (see above).",
                s.not_applicable
            ));
        }
        return line;
    }
    let mut parts = vec![
        format!("{} to create", s.create),
        format!("{} to update", s.update),
        format!("{} to replace", s.replace),
        format!("{} to delete", s.delete),
    ];
    if s.adopt > 0 {
        parts.push(format!("{} to adopt", s.adopt));
    }
    let mut line = format!("Plan: {}.", parts.join(", "));
    if s.destructive > 0 {
        line.push_str(&format!(" {} destructive.", s.destructive));
    }
    if s.keep > 0 {
        line.push_str(&format!(" {} kept.", s.keep));
    }
    if s.not_applicable > 0 {
        line.push_str(&format!(" {} not applicable.", s.not_applicable));
    }
    line
}

/// The change order as Graphviz DOT: one node per change, an edge from each dependency.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::from("digraph plan {\n  rankdir=LR;\n  node [shape=box];\n");
    for c in &plan.changes {
        writeln!(
            out,
            "  {} [label={}];",
            quote(&c.address.to_string()),
            quote(&format!(
                "{} {}{}",
                c.action.glyph(),
                c.address,
                if c.not_applicable.is_some() {
                    " (not applicable)"
                } else {
                    ""
                }
            ))
        )
        .unwrap();
    }
    for c in &plan.changes {
        for d in &c.depends_on {
            writeln!(
                out,
                "  {} -> {};",
                quote(&d.to_string()),
                quote(&c.address.to_string())
            )
            .unwrap();
        }
    }
    out.push('}');
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Address, FieldChange, Interrupted, Unmanaged};

    fn sample() -> Plan {
        let mut create = Change::new(Address::new("files", "file", "/etc/motd"), Action::Create)
            .field(FieldChange::new(
                "content",
                None,
                Some("sha256:0123456789ab (9 bytes)".into()),
            ))
            .field(FieldChange::new("mode", None, Some("0644".into())));
        create.diff =
            Some("--- /etc/motd (now)\n+++ /etc/motd (profile)\n@@ -0,0 +1 @@\n+hello\n".into());
        let mut secret = Change::new(Address::new("files", "file", "/etc/key"), Action::Update)
            .field(FieldChange::hidden("content", true, true));
        secret.flags.sensitive = true;
        let mut forced = Change::new(Address::new("files", "file", "/etc/edited"), Action::Update)
            .reason("edited by hand since the last apply");
        forced.flags.destructive = true;
        let kept = Change::new(Address::new("files", "file", "/etc/hand"), Action::Keep)
            .reason("edited by hand; pass --allow-destroy");
        let mut dataset = Change::new(
            Address::new("storage", "dataset", "tank/models"),
            Action::Create,
        );
        dataset.depends_on = vec![Address::new("storage", "pool", "tank")];
        let pool = Change::new(Address::new("storage", "pool", "tank"), Action::Create);
        let mut service = Change::new(
            Address::new("services", "service", "sovereign-inference"),
            Action::Create,
        )
        .field(FieldChange::new("enabled", None, Some("yes".into())))
        .field(FieldChange::new("active", None, Some("started".into())))
        .not_applicable("PID 1 is not systemd");
        service.reason = Some("would run systemctl daemon-reload, enable and start".into());
        let mut plan = Plan::new(
            vec![create, secret, forced, kept, dataset, pool, service],
            vec![Unmanaged {
                section: "inference".into(),
                note: "[inference] is declared but not managed by this version of sovereign".into(),
            }],
        );
        plan.interrupted = Some(Interrupted {
            generation: 4,
            pid: 4242,
            started: "2026-01-01T00:00:00Z".into(),
            steps_done: 2,
            steps_total: 5,
            in_progress: Some(Address::new("files", "file", "/etc/x")),
            running: false,
        });
        plan
    }

    #[test]
    fn text_groups_destructive_and_kept_changes_apart() {
        insta::assert_snapshot!(text(&sample(), Style { color: false }));
    }

    #[test]
    fn json_is_the_documented_format() {
        insta::assert_json_snapshot!(sample());
    }

    #[test]
    fn dot_orders_dependencies() {
        insta::assert_snapshot!(dot(&sample()));
    }

    #[test]
    fn an_empty_plan_says_no_changes() {
        let plan = Plan::new(Vec::new(), Vec::new());
        assert_eq!(
            text(&plan, Style { color: false }),
            "No changes: the machine matches the profile."
        );
    }

    #[test]
    fn the_summary_counts_only_pending_changes() {
        let s = sample().summary;
        assert_eq!(
            (s.pending, s.destructive, s.keep, s.create, s.not_applicable),
            (5, 1, 1, 3, 1)
        );
    }

    #[test]
    fn a_plan_with_only_not_applicable_changes_has_no_changes() {
        let change = Change::new(
            Address::new("services", "service", "sovereign-inference"),
            Action::Update,
        )
        .not_applicable("PID 1 is not systemd");
        let plan = Plan::new(vec![change], Vec::new());
        assert!(!plan.has_pending());
        let text = text(&plan, Style { color: false });
        assert!(
            text.contains(
                "~ services.service:sovereign-inference (not applicable: PID 1 is not systemd)"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("No changes to apply. 1 not applicable here (see above)."),
            "{text}"
        );
    }
}
