//! The rules of `[files]` a schema cannot say: absolute normalized paths, content xor
//! template, templates that exist and parse, one owner per path (a file another section
//! writes is not also a `[files]` entry), and no daemon key in a profile.

use crate::domain::requests::unit_file_path;
use crate::profile::diagnostics::Issue;
use crate::profile::rules::{
    Context, Rendering, absolute_normalized, inline_template, kp, rendered as rendered_at,
    table_at, template_name,
};
use crate::profile::templates::Source;
use crate::profile::tree::{Node, quote, toml_key};
use crate::profile::{INFERENCE_MODELS_FILE, INFERENCE_UNIT};

pub fn check(root: &Node, cx: &Context<'_>, out: &mut Vec<Issue>) {
    let Some(files) = table_at(root, &["files"]) else {
        return;
    };
    for (path, entry) in files {
        let here = kp(&["files", path]);
        if let Err(why) = absolute_normalized(path) {
            out.push(
                Issue::new(
                    &entry.key_loc,
                    &here,
                    format!("file path {} {why}", quote(path)),
                )
                .label("not an absolute, normalized path")
                .hint("key files by their absolute path, e.g. [files.\"/etc/motd\"]"),
            );
        }
        owners(root, path, entry, &here, out);
        let Some(spec) = entry.node.table() else {
            continue;
        };
        let what = format!("file {}", quote(path));
        match (spec.get("content"), spec.get("template")) {
            (Some(_), Some(template)) => out.push(
                Issue::new(
                    &template.key_loc,
                    &here,
                    format!("file {} sets both content and template", quote(path)),
                )
                .label("second source of content")
                .hint("give exactly one of `content` or `template`"),
            ),
            (None, None) => out.push(
                Issue::new(
                    &entry.key_loc,
                    &here,
                    format!("file {} sets neither content nor template", quote(path)),
                )
                .label("no content")
                .hint("give exactly one of `content = \"...\"` or `template = \"name.j2\"`"),
            ),
            (Some(content), None) => inline_template(
                cx,
                &content.node,
                &kp(&["files", path, "content"]),
                &format!("the content of {what}"),
                out,
            ),
            (None, Some(template)) => template_name(
                cx,
                &template.node,
                &kp(&["files", path, "template"]),
                &what,
                out,
            ),
        }
    }
}

/// A path another section writes has that section as its owner: a `[files]` entry for it
/// would be a second one (plan refuses the pair). The daemon's key file is no managed file
/// at all: its content would be the key, written in the profile.
fn owners(
    root: &Node,
    path: &str,
    entry: &crate::profile::tree::Entry,
    here: &str,
    out: &mut Vec<Issue>,
) {
    let service = table_at(root, &["services"])
        .into_iter()
        .flatten()
        .find(|(name, _)| unit_file_path(name) == path);
    let inference = root.get("inference");
    let other = if let Some((name, _)) = service {
        Some((
            format!("the unit file [services.{name}] writes"),
            format!(
                "drop this [files] entry and give the unit as services.{name}'s `unit` or `template`"
            ),
        ))
    } else if inference.is_some() && path == unit_file_path(INFERENCE_UNIT) {
        Some((
            "the unit file [inference] writes for the daemon".to_string(),
            format!(
                "drop this [files] entry; to change the daemon's unit, put your own {} in templates/ next to the profile",
                crate::profile::INFERENCE_UNIT_TEMPLATE
            ),
        ))
    } else if inference.is_some() && path == INFERENCE_MODELS_FILE {
        Some((
            "the options file [inference] writes for the daemon".to_string(),
            "drop this [files] entry; the options come from [inference.models.NAME] (context, gpu_layers, ttl, preload)".to_string(),
        ))
    } else {
        table_at(root, &["inference", "cards"])
            .into_iter()
            .flatten()
            .map(|(name, _)| name)
            .find(|name| crate::profile::inference_card_file(name) == path)
            .map(|card| {
                (
                    format!(
                        "the Card file [inference.cards.{}] writes for the daemon",
                        toml_key(card)
                    ),
                    "drop this [files] entry; the Card's content comes from its `file`".to_string(),
                )
            })
    };
    if let Some((owner, hint)) = other {
        out.push(
            Issue::new(
                &entry.key_loc,
                here,
                format!(
                    "file {} is also {owner}: one file has one owner",
                    quote(path)
                ),
            )
            .label("written twice")
            .hint(hint),
        );
    }
    let key_file = inference
        .and_then(|i| i.node.get("api_key_file"))
        .and_then(|k| k.node.str());
    if key_file == Some(path) {
        out.push(
            Issue::new(
                &entry.key_loc,
                here,
                format!(
                    "file {} is inference.api_key_file: the daemon's key would be written in the profile",
                    quote(path)
                ),
            )
            .label("the daemon's key file")
            .hint("secrets come from files or the environment, never from profiles: drop this [files] entry and provision the key file out of band, readable only by root (mode 0600)"),
        );
    }
}

/// Each file's `content` or `template`, rendered with the profile's own values.
pub fn rendered(cx: &Rendering<'_>, out: &mut Vec<Issue>) {
    for (path, spec) in &cx.profile.files {
        let what = format!("the content of file {}", quote(path));
        if let Some(text) = &spec.content {
            rendered_at(
                cx,
                &["files", path, "content"],
                Source::Inline(text),
                &what,
                out,
            );
        }
        if let Some(name) = &spec.template {
            rendered_at(
                cx,
                &["files", path, "template"],
                Source::Named(name),
                &what,
                out,
            );
        }
    }
}
