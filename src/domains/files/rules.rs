//! The rules of `[files]` a schema cannot say: absolute normalized paths, content xor
//! template.

use crate::profile::diagnostics::Issue;
use crate::profile::rules::{absolute_normalized, kp, table_at};
use crate::profile::tree::{Node, quote};

pub fn check(root: &Node, out: &mut Vec<Issue>) {
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
        let Some(spec) = entry.node.table() else {
            continue;
        };
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
            _ => {}
        }
    }
}
