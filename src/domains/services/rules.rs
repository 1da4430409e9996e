//! The rules of `[services]` a schema cannot say: unit names, unit xor template,
//! units and templates that parse, absolute `restart_on` paths, the name `[inference]`
//! takes.

use crate::profile::diagnostics::Issue;
use crate::profile::rules::{
    Context, Rendering, absolute_normalized, inline_template, kp, rendered as rendered_at,
    table_at, template_name,
};
use crate::profile::templates::Source;
use crate::profile::tree::{Node, Seg, key_path, quote};

/// Why `name` cannot be a systemd unit name (without its ".service" suffix).
pub fn unit_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err("must be 1 to 200 characters long".into());
    }
    if name.ends_with(".service") {
        return Err("ends with \".service\" (the suffix is added)".into());
    }
    if name.starts_with(['.', '-']) {
        return Err("may not start with '.' or '-'".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@')))
    {
        return Err(format!("contains {}", quote(&bad.to_string())));
    }
    Ok(())
}

pub fn check(root: &Node, cx: &Context<'_>, out: &mut Vec<Issue>) {
    let Some(services) = table_at(root, &["services"]) else {
        return;
    };
    for (name, entry) in services {
        let here = kp(&["services", name]);
        if let Err(why) = unit_name(name) {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("service name {} {why}", quote(name)))
                    .label("not a unit name")
                    .hint("use letters, digits, '_', '-', '.', ':' and '@', without \".service\", e.g. [services.backup]"),
            );
        }
        if name == crate::profile::INFERENCE_UNIT && root.get("inference").is_some() {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("service {} is the unit [inference] generates", quote(name)))
                    .label("taken by [inference]")
                    .hint("give this service another name; [inference] declares sovereign-inference itself"),
            );
        }
        let Some(spec) = entry.node.table() else {
            continue;
        };
        match (spec.get("unit"), spec.get("template")) {
            (Some(_), Some(template)) => out.push(
                Issue::new(
                    &template.key_loc,
                    &here,
                    format!("service {} sets both unit and template", quote(name)),
                )
                .label("second source of the unit")
                .hint("give exactly one of `unit` or `template`"),
            ),
            (None, None) => out.push(
                Issue::new(
                    &entry.key_loc,
                    &here,
                    format!("service {} sets neither unit nor template", quote(name)),
                )
                .label("no unit")
                .hint("give `unit = \"[Service]\\nExecStart=...\"` or `template = \"name.service.j2\"`"),
            ),
            (Some(unit), None) => inline_template(
                cx,
                &unit.node,
                &kp(&["services", name, "unit"]),
                &format!("the unit of service {}", quote(name)),
                out,
            ),
            (None, Some(template)) => template_name(
                cx,
                &template.node,
                &kp(&["services", name, "template"]),
                &format!("service {}", quote(name)),
                out,
            ),
        }
        for (i, path) in spec
            .get("restart_on")
            .and_then(|e| e.node.array())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(p) = path.str() else { continue };
            if let Err(why) = absolute_normalized(p) {
                let at = key_path(&[
                    Seg::Key("services".into()),
                    Seg::Key(name.clone()),
                    Seg::Key("restart_on".into()),
                    Seg::Index(i),
                ]);
                out.push(
                    Issue::new(&path.loc, at, format!("restart_on path {} {why}", quote(p)))
                        .label("not an absolute, normalized path")
                        .hint("name the files the service reads by absolute path, e.g. \"/etc/backup.conf\""),
                );
            }
        }
    }
}

/// Each service's `unit` or `template`, rendered with the profile's own values.
pub fn rendered(cx: &Rendering<'_>, out: &mut Vec<Issue>) {
    for (name, spec) in &cx.profile.services {
        let what = format!("the unit of service {}", quote(name));
        if let Some(text) = &spec.unit {
            rendered_at(
                cx,
                &["services", name, "unit"],
                Source::Inline(text),
                &what,
                out,
            );
        }
        if let Some(t) = &spec.template {
            rendered_at(
                cx,
                &["services", name, "template"],
                Source::Named(t),
                &what,
                out,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_bounded() {
        assert!(unit_name("backup").is_ok());
        assert!(unit_name("getty@tty1").is_ok());
        assert!(unit_name("backup.service").is_err());
        assert!(unit_name("a/b").is_err());
    }
}
