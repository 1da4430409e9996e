//! The rules of `[inference]` a schema cannot say: listen addresses, the key file by
//! path, the daemon's own ranges, model names and digests.

use crate::profile::diagnostics::Issue;
use crate::profile::rules::{Context, absolute_normalized, kp, table_at};
use crate::profile::tree::{Node, quote};

pub fn check(root: &Node, cx: &Context<'_>, out: &mut Vec<Issue>) {
    let Some(section) = root.get("inference") else {
        return;
    };
    unit_template(section, cx, out);
    let node = &section.node;
    let key_file = node.get("api_key_file");
    if let Some(listen) = node.get("listen") {
        if let Some(addr) = listen.node.str() {
            match addr.parse::<std::net::SocketAddr>() {
                Err(_) => out.push(
                    Issue::new(&listen.node.loc, "inference.listen", listen_problem(addr))
                        .label("not a socket address")
                        .hint("write an IP address and a port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""),
                ),
                Ok(sock) if !sock.ip().is_loopback() && key_file.is_none() => out.push(
                    Issue::new(
                        &listen.node.loc,
                        "inference.listen",
                        format!("listen address {} is reachable from other machines but no api_key_file is set", quote(addr)),
                    )
                    .label("not loopback")
                    .hint("set inference.api_key_file to a file holding the key, or listen on 127.0.0.1"),
                ),
                Ok(_) => {}
            }
        }
    }
    if let Some(file) = key_file {
        if let Some(path) = file.node.str() {
            // A value with no '/' is most likely the key itself pasted in: never echo it.
            if !path.contains('/') {
                out.push(
                    Issue::new(
                        &file.node.loc,
                        "inference.api_key_file",
                        "api_key_file must name a file holding the key, and this value is not a path (it may be the key itself; it is not shown)",
                    )
                    .label("not a path")
                    .hint("put the key in a file readable only by root (mode 0600) and give its absolute path, e.g. \"/etc/sovereign/api-key\"; a key in a profile is a leaked key")
                    .sensitive(),
                );
            } else if let Err(why) = absolute_normalized(path) {
                // A key may contain '/' (base64 does): never repeat the value.
                out.push(
                    Issue::new(
                        &file.node.loc,
                        "inference.api_key_file",
                        format!(
                            "api_key_file {why} (the value is not shown: it may be the key itself)"
                        ),
                    )
                    .label("not an absolute path")
                    .hint("name the key file by absolute path, e.g. \"/etc/sovereign/api-key\"")
                    .sensitive(),
                );
            }
        }
    }
    client_bounds(node, out);
    if let (Some(old), Some(_)) = (node.get("ctx"), node.get("context")) {
        out.push(
            Issue::new(
                &old.key_loc,
                kp(&["inference", "ctx"]),
                "ctx and context are both given",
            )
            .label("the old spelling of context")
            .hint("give only `context` (`ctx` is its old spelling)"),
        );
    }
    for (name, entry) in table_at(root, &["inference", "models"])
        .into_iter()
        .flatten()
    {
        let here = kp(&["inference", "models", name]);
        if let Err(why) = model_name(name) {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("model name {} {why}", quote(name)))
                    .label("not a model name")
                    .hint(format!("use 1 to {} letters, digits, '_', '-', '.' and ':', not starting with '.', '-' or ':' (clients send this name), e.g. \"coder\" or \"qwen2.5-coder:7b\"", crate::inference::cache::MAX_NAME_LEN)),
            );
        }
        if let Some(source) = entry.node.get("source") {
            if let Some(s) = source.node.str() {
                let ok = s.starts_with("https://") && s.len() > "https://".len()
                    || absolute_normalized(s).is_ok();
                if !ok {
                    out.push(
                        Issue::new(
                            &source.node.loc,
                            kp(&["inference", "models", name, "source"]),
                            format!("model source {} is neither an https URL nor an absolute path", quote(s)),
                        )
                        .label("not a model source")
                        .hint("give \"https://host/path/model.gguf\" or an absolute path such as \"/srv/models/model.gguf\""),
                    );
                }
            }
        }
        if let Some(sha) = entry.node.get("sha256") {
            if let Some(s) = sha.node.str() {
                if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.push(
                        Issue::new(
                            &sha.node.loc,
                            kp(&["inference", "models", name, "sha256"]),
                            match s.chars().find(|c| !c.is_ascii_hexdigit()) {
                                _ if s.to_ascii_lowercase().starts_with("sha256:") => "sha256 must be 64 hex digits, without the \"sha256:\" prefix".to_string(),
                                Some(c) => format!("sha256 must be 64 hex digits, and {} is not one", quote(&c.to_string())),
                                None => format!("sha256 must be 64 hex digits, found {} character(s)", s.chars().count()),
                            },
                        )
                        .label("not a sha256 digest")
                        .hint("copy the digest `sha256sum model.gguf` prints (64 characters 0-9, a-f)"),
                    );
                }
            }
        }
        if let Some(ttl) = entry.node.get("ttl") {
            let secs = ttl
                .node
                .str()
                .and_then(|s| s.parse::<crate::profile::units::Duration>().ok())
                .map(|d| d.as_std().as_secs());
            let range = crate::inference::limits::TTL_SECS;
            if let Some(secs) = secs.filter(|s| !range.contains(s)) {
                out.push(
                    Issue::new(
                        &ttl.node.loc,
                        kp(&["inference", "models", name, "ttl"]),
                        format!(
                            "ttl must be between {}s and {}s, not {secs}s (the daemon refuses it: a zero TTL would unload the model at once)",
                            range.start(),
                            range.end()
                        ),
                    )
                    .label("out of range")
                    .hint("give the idle time before the model is unloaded, e.g. \"30m\", or leave ttl out to keep it loaded"),
                );
            }
        }
    }
}

/// The daemon's unit template, when a templates/ folder above the profile carries its own
/// (plan prefers it to the binary's copy): it must parse.
fn unit_template(section: &crate::profile::tree::Entry, cx: &Context<'_>, out: &mut Vec<Issue>) {
    use crate::profile::templates;
    let name = crate::profile::INFERENCE_UNIT_TEMPLATE;
    let Ok(found) = templates::find(cx.profile_dir, name) else {
        return;
    };
    let problem = match std::fs::read_to_string(&found) {
        Ok(text) => templates::parse(&text).err().map(|e| format!("has a {e}")),
        Err(err) => Some(format!("cannot be read: {err}")),
    };
    if let Some(problem) = problem {
        out.push(
            Issue::new(
                &section.key_loc,
                "inference",
                format!(
                    "the daemon's unit template {} {problem}",
                    found.display()
                ),
            )
            .label("its unit renders from that template")
            .hint(format!("fix {name} in the templates/ folder above the profile, or remove it to use the copy built into sovereign")),
        );
    }
}

/// Why `addr` is not an IP address and port, in the operator's words.
fn listen_problem(addr: &str) -> String {
    let port = addr.rsplit_once(':').map(|(_, p)| p);
    match port {
        Some(p) if p.parse::<u64>().is_ok_and(|n| n > 65_535) => {
            format!("listen address {}: port {p} is beyond 65535", quote(addr))
        }
        Some(p) if !p.is_empty() && p.parse::<u16>().is_ok() => format!(
            "listen address {}: {} is not an IP address (a name is not resolved here)",
            quote(addr),
            quote(addr.rsplit_once(':').map_or(addr, |(h, _)| h))
        ),
        _ => format!("listen address {} is not an address and port", quote(addr)),
    }
}

/// The daemon's bounds on clients (`header_timeout`, `max_connections`, ...): the ranges
/// are the daemon's own ([`crate::inference::limits::BOUNDS`]), so `validate` refuses what
/// `serve` would.
fn client_bounds(section: &Node, out: &mut Vec<Issue>) {
    use crate::inference::limits::{BOUNDS, BoundKind};
    for bound in BOUNDS {
        let Some(entry) = section.get(bound.key) else {
            continue;
        };
        // A value of the wrong type is the schema's to report.
        let value = match bound.kind {
            BoundKind::Seconds { .. } => entry
                .node
                .str()
                .and_then(|s| s.parse::<crate::profile::units::Duration>().ok())
                .map(|d| d.as_std().as_secs()),
            BoundKind::Count { .. } => entry.node.int().map(|n| n.max(0) as u64),
        };
        let Some(value) = value else {
            continue;
        };
        if let Err(why) = bound.check(value) {
            let (min, max) = bound.kind.range();
            let range = match bound.kind {
                BoundKind::Seconds { .. } => format!("from \"{min}s\" to \"{max}s\""),
                BoundKind::Count { .. } => format!("from {min} to {max}"),
            };
            out.push(
                Issue::new(&entry.node.loc, kp(&["inference", bound.key]), why)
                    .label("out of range")
                    .hint(format!(
                        "{}: {range}; leave it out for the default, {}",
                        bound.about,
                        bound.default_text()
                    )),
            );
        }
    }
}

/// The cache's own rule ([`ModelName::parse`]): a name the profile accepts is one the
/// cache and the daemon accept.
fn model_name(name: &str) -> Result<(), String> {
    crate::inference::cache::ModelName::parse(name)
        .map(|_| ())
        .map_err(|e| e.reason.replacen("it ", "", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_bounded() {
        assert!(model_name("qwen2.5-coder:7b").is_ok());
        assert!(model_name("../etc").is_err());
        assert!(model_name("a/b").is_err());
    }
}
