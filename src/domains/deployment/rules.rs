//! The rules of `[inference]` a schema cannot say: listen addresses, the key file by
//! path, the daemon's own ranges, model names and digests, Cards and the models they use.

use crate::profile::diagnostics::Issue;
use crate::profile::rules::{Context, absolute_normalized, kp, table_at};
use crate::profile::tree::{Node, quote};

pub fn check(root: &Node, cx: &Context<'_>, out: &mut Vec<Issue>) {
    let Some(section) = root.get("inference") else {
        return;
    };
    unit_template(section, cx, out);
    cards(root, cx, out);
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

/// `[inference.cards.NAME]`: a name clients can send that no model has, and a Card file
/// that loads as `sovereign card show` loads it, whose errors are reported in the Card at
/// their own places, with the profile's. Its base model and adapters named by `model` must
/// be models the profile pulls, at the digest the profile pins.
fn cards(root: &Node, cx: &Context<'_>, out: &mut Vec<Issue>) {
    let models = table_at(root, &["inference", "models"]);
    let cards_table = table_at(root, &["inference", "cards"]);
    for (name, entry) in cards_table.into_iter().flatten() {
        let here = kp(&["inference", "cards", name]);
        if let Err(why) = model_name(name) {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("card name {} {why}", quote(name)))
                    .label("not a card name")
                    .hint(format!("a Card is served under its name as a model is: use 1 to {} letters, digits, '_', '-', '.' and ':', not starting with '.', '-' or ':', e.g. \"sql\"", crate::inference::cache::MAX_NAME_LEN)),
            );
            continue;
        }
        if models.is_some_and(|m| m.contains_key(name)) {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("card name {} is also a model in [inference.models]: clients could not tell the two apart", quote(name)))
                    .label("a model's name")
                    .hint("give the Card a name of its own, e.g. \"sql\" for a Card on the model \"coder\""),
            );
        }
        let Some(file) = entry.node.get("file") else {
            continue;
        };
        let Some(written) = file.node.str() else {
            continue;
        };
        let at = kp(&["inference", "cards", name, "file"]);
        let path = crate::profile::card_source_path(cx.sources.path(file.node.loc.file), written);
        if let Err(err) = std::fs::metadata(&path) {
            out.push(
                Issue::new(&file.node.loc, &at, format!("card file {} cannot be read: {err}", path.display()))
                    .label("no such card")
                    .hint("the path is relative to the profile file that declares it (or absolute); `sovereign card show FILE` checks a Card"),
            );
            continue;
        }
        match crate::inference::card::load(&path) {
            Err(errors) => card_errors(cx, &path, &errors.errors, &file.node.loc, &here, out),
            Ok(card) => {
                let errors = card_models(name, &card, models, cards_table);
                card_errors(cx, &path, &errors, &file.node.loc, &here, out);
            }
        }
    }
}

/// Where a Card's models are not the profile's: each model the Card names by cache name
/// must be one `[inference.models]` pulls (and, where both pin a digest, the same one).
/// An adapter given by `source` is pulled by apply under its derived cache name
/// ([`crate::profile::card_adapter_model`]), which must be a model name that no model and
/// no Card of the profile has (the cache and the daemon know one thing by each name).
fn card_models(
    card_name: &str,
    card: &crate::inference::card::Card,
    models: Option<&indexmap::IndexMap<String, crate::profile::tree::Entry>>,
    cards: Option<&indexmap::IndexMap<String, crate::profile::tree::Entry>>,
) -> Vec<crate::inference::card::CardError> {
    let check = |pointer: &str, model: &str, pinned: Option<&str>| {
        let what = if pointer == "/base" {
            "base".to_string()
        } else {
            format!(
                "adapters[{}]",
                pointer.rsplit('/').next().unwrap_or_default()
            )
        };
        let table = crate::profile::tree::toml_key(model);
        let Some(spec) = models.and_then(|m| m.get(model)) else {
            return Some(card.error_at(
                &format!("{pointer}/model"),
                format!("{what}.model {model:?} is not a model the profile pulls: add [inference.models.{table}] with its source and sha256, so that apply puts it in the model cache"),
            ));
        };
        let theirs = spec
            .node
            .get("sha256")
            .and_then(|s| s.node.str())
            .map(str::to_ascii_lowercase);
        match (pinned, theirs) {
            (Some(ours), Some(theirs)) if ours != theirs => Some(card.error_at(
                &format!("{pointer}/sha256"),
                format!("{what}.sha256 pins {ours}, but [inference.models.{table}] pins {theirs}: the Card would never run on the file the profile pulls; pin the same file in both"),
            )),
            _ => None,
        }
    };
    let mut out: Vec<_> = check("/base", &card.spec.base.model, Some(&card.spec.base.sha256))
        .into_iter()
        .collect();
    for (i, adapter) in card.spec.adapters.iter().enumerate() {
        let pointer = format!("/adapters/{i}");
        match (&adapter.model, &adapter.source) {
            (Some(model), _) => out.extend(check(&pointer, model, adapter.sha256.as_deref())),
            (None, Some(_)) => {
                let derived = crate::profile::card_adapter_model(card_name, i);
                let at = format!("{pointer}/source");
                let table = crate::profile::tree::toml_key(&derived);
                if let Err(why) = model_name(&derived) {
                    out.push(card.error_at(&at, format!("adapters[{i}] is pulled into the model cache as {derived:?}, which is not a model name: it {why}; give the Card a shorter name, or declare the adapter as [inference.models.NAME] and name it in the Card as {{\"model\": NAME}}")));
                } else if models.is_some_and(|m| m.contains_key(&derived)) {
                    out.push(card.error_at(&at, format!("adapters[{i}] is pulled into the model cache as {derived:?}, which [inference.models.{table}] also names: the cache holds one file by a name; rename that model")));
                } else if cards.is_some_and(|c| c.contains_key(&derived)) {
                    out.push(card.error_at(&at, format!("adapters[{i}] is pulled into the model cache as {derived:?}, which [inference.cards.{table}] also names: clients could not tell the two apart; rename that Card")));
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// A Card's errors as the profile's: each at its place in the Card file (quoted from it),
/// or, for the file as a whole (too large, not readable), at the profile's `file` value.
fn card_errors(
    cx: &Context<'_>,
    path: &std::path::Path,
    errors: &[crate::inference::card::CardError],
    file_value: &crate::profile::tree::Loc,
    here: &str,
    out: &mut Vec<Issue>,
) {
    let hint = format!(
        "fix the Card; `sovereign card show {}` checks it alone",
        path.display()
    );
    let mut source = None;
    for e in errors {
        let Some(at) = e.at else {
            out.push(
                Issue::new(
                    file_value,
                    here,
                    format!("card file {}: {}", path.display(), e.message),
                )
                .label("this card")
                .hint(&hint),
            );
            continue;
        };
        let (file, text) = source.get_or_insert_with(|| {
            let bytes = std::fs::read(path).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            (cx.add_file(e.file.clone(), text.clone()), text)
        });
        let span = json_token(text, at.line, at.column);
        out.push(
            Issue::new(
                &crate::profile::tree::Loc { file: *file, span },
                here,
                &e.message,
            )
            .label("in the card")
            .hint(&hint),
        );
    }
}

/// The byte span of the JSON token at 1-based `line` and `column` (in characters): a
/// string to its closing quote, a number or literal to its end, else one character.
fn json_token(text: &str, line: u32, column: u32) -> std::ops::Range<usize> {
    let start_of_line = text
        .split_inclusive('\n')
        .take((line as usize).saturating_sub(1))
        .map(str::len)
        .sum::<usize>();
    let rest = &text[start_of_line.min(text.len())..];
    let start = start_of_line
        + rest
            .char_indices()
            .nth((column as usize).saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i);
    let token = &text[start..];
    let len = match token.chars().next() {
        None => 0,
        Some('"') => {
            let mut escaped = false;
            token
                .char_indices()
                .skip(1)
                .find(|&(_, c)| {
                    let end = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end || c == '\n'
                })
                .map_or(token.len(), |(i, c)| i + c.len_utf8())
        }
        Some(c) if c.is_ascii_alphanumeric() || c == '-' => token
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.')))
            .unwrap_or(token.len()),
        Some(c) => c.len_utf8(),
    };
    start..start + len
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

    #[test]
    fn a_card_error_spans_its_json_token() {
        let text = "{\n  \"a\": \"x\\\"y\",\n  \"b\": -1.5e3, \"é\": {}\n}";
        let at = |line, column| {
            let r = json_token(text, line, column);
            text[r].to_string()
        };
        assert_eq!(at(2, 8), "\"x\\\"y\"");
        assert_eq!(at(3, 8), "-1.5e3");
        assert_eq!(at(3, 21), "{");
        assert_eq!(at(3, 3), "\"b\"");
        assert_eq!(at(9, 1), "");
    }
}
