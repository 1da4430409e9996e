//! `sovereign card`: task Cards, JSON files that configure inference for one task (base
//! model, adapters, system prompt, sampling, a constraint on every answer). The format is
//! `sovereign schema --card`; the checks live in the daemon's crate (`inference::card`).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use super::client::{Client, ServerArgs};
use super::output::table;
use super::{CmdResult, Output, exit, report};
use crate::inference::card::{self, Cached, Card, CardError, Resolution};

/// Task Cards: check one and show what its requests would run with; list and try the
/// Cards the running daemon serves.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    Show(ShowArgs),
    Ls(LsArgs),
    Test(TestArgs),
}

const LS_EXAMPLES: &str = "\
Examples:
  sovereign card ls
  sovereign card ls --json | jq '.cards[].name'
  sovereign card ls --server http://gpu-box:8080 --api-key-file ~/.config/sovereign/key";

/// List the Cards the running daemon serves: base, adapters, lock, response, description.
#[derive(Debug, clap::Args)]
#[command(after_help = LS_EXAMPLES)]
pub struct LsArgs {
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

const TEST_EXAMPLES: &str = "\
Examples:
  sovereign card test sql --prompt 'the ten largest tables'
  sovereign card test extract --prompt 'Ann, 34, Oslo' --json

Sends one chat request naming the Card to the running daemon and checks the answer
against the Card's response: parsed as JSON and validated against its schema (a grammar
is enforced by the daemon while it decodes). Exit status 1 when the answer does not
follow the schema or the daemon refuses the request.";

/// Run one request through a Card the daemon serves and check the answer against the
/// Card's response.
#[derive(Debug, clap::Args)]
#[command(after_help = TEST_EXAMPLES)]
pub struct TestArgs {
    /// The Card's name, as the daemon serves it.
    pub name: String,
    /// The user message.
    #[arg(long)]
    pub prompt: String,
    /// Print as JSON on stdout: {"card", "answer", "usage", "check": {"ok", "detail"}}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

const SHOW_EXAMPLES: &str = "\
Examples:
  sovereign card show cards/sql.json
  sovereign card show cards/sql.json --json | jq '.card.sampling'
  sovereign --root /srv/box card show cards/sql.json   # the cache under /srv/box

The Card is checked first: every error at once, each as FILE:LINE:COLUMN: message at
the offending value. A valid Card is shown: its base model (name, sha256, whether the
model cache under --root holds it at that digest), its adapters, the sampling its
requests get (the Card's values over the daemon's defaults, each marked card or
default), whether requests may override it, and its response constraint. Exit status 1
when the Card is invalid or a model it names is not in the cache at its digest.

The format: `sovereign schema --card`. `sovereign serve --card NAME=FILE` serves a Card as a model.";

/// Check a Card and show its base model, adapters, effective sampling and response.
#[derive(Debug, clap::Args)]
#[command(after_help = SHOW_EXAMPLES)]
pub struct ShowArgs {
    /// The Card file (JSON), or the name of a Card the running daemon serves (its file is
    /// then read from where the daemon read it).
    #[arg(value_name = "FILE|NAME")]
    pub file: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print as JSON on stdout: {"file", "valid", "errors": [{file, line, column,
    /// pointer, message}], "card"}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: Command, out: &Output) -> CmdResult {
    match command {
        Command::Show(a) => show(a, out),
        Command::Ls(a) => ls(a, out),
        Command::Test(a) => test(a, out),
    }
}

/// The daemon's Cards (`GET /v1/sovereign/cards`).
fn served(server: &ServerArgs) -> miette::Result<Vec<Value>> {
    let client = Client::new(server)?;
    let answer = client
        .get("/v1/sovereign/cards")
        .map_err(|e| e.into_report())?;
    Ok(answer["cards"].as_array().cloned().unwrap_or_default())
}

fn ls(args: LsArgs, out: &Output) -> CmdResult {
    let cards = served(&args.server)?;
    if args.json {
        out.json(&serde_json::json!({ "cards": cards }))?;
        return Ok(exit::OK);
    }
    if cards.is_empty() {
        out.say("the daemon serves no Card (give `sovereign serve --card NAME=FILE`)");
        return Ok(exit::OK);
    }
    let text = |v: &Value| v.as_str().map_or_else(|| "-".to_string(), str::to_string);
    let rows: Vec<Vec<String>> = cards
        .iter()
        .map(|c| {
            let adapters: Vec<String> = c["adapters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let name = a["model"].as_str().or(a["source"].as_str()).unwrap_or("?");
                    format!("{name}@{}", a["scale"])
                })
                .collect();
            let response = match &c["response"] {
                r if r["json_schema"].is_object() || r["json_schema"].is_boolean() => "json_schema",
                r if r["grammar"].is_string() => "grammar",
                _ => "-",
            };
            vec![
                text(&c["name"]),
                text(&c["base"]["model"]),
                if adapters.is_empty() {
                    "-".into()
                } else {
                    adapters.join(",")
                },
                if c["sampling_locked"] == Value::Bool(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                response.into(),
                text(&c["description"]),
            ]
        })
        .collect();
    out.stdout(&table(
        &[
            "NAME",
            "BASE",
            "ADAPTERS",
            "LOCKED",
            "RESPONSE",
            "DESCRIPTION",
        ],
        &rows,
    ))?;
    Ok(exit::OK)
}

fn test(args: TestArgs, out: &Output) -> CmdResult {
    let cards = served(&args.server)?;
    let Some(card) = cards.iter().find(|c| c["name"] == args.name.as_str()) else {
        let names: Vec<&str> = cards.iter().filter_map(|c| c["name"].as_str()).collect();
        return Err(miette::miette!(
            help = "`sovereign card ls` lists them",
            "the daemon serves no Card {:?} (it serves: {})",
            args.name,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    let client = Client::new(&args.server)?;
    let answer = client
        .post(
            "/v1/chat/completions",
            &serde_json::json!({"model": args.name, "messages": [{"role": "user", "content": args.prompt}]}),
        )
        .map_err(|e| e.into_report())?;
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let check = match serde_json::from_value::<card::Response>(card["response"].clone()) {
        Ok(response) => crate::inference::card_request::check_answer(&response, &text),
        // No response constraint: nothing to check the answer against.
        Err(_) => Ok("the Card constrains no answer"),
    };
    if args.json {
        let (ok, detail) = match &check {
            Ok(d) => (true, d.to_string()),
            Err(e) => (false, e.clone()),
        };
        out.json(
            &serde_json::json!({"card": args.name, "answer": text, "usage": answer["usage"],
            "check": {"ok": ok, "detail": detail}}),
        )?;
    } else {
        out.stdout(&format!("{text}\n"))?;
    }
    match check {
        Ok(detail) => {
            if !args.json {
                out.say(detail);
            }
            Ok(exit::OK)
        }
        Err(why) => {
            out.error(&miette::miette!("{why}"));
            Ok(exit::ERROR)
        }
    }
}

fn show(args: ShowArgs, out: &Output) -> CmdResult {
    // A name the daemon serves (no such file here): the file it read.
    let args = if args.file.exists() || args.file.components().count() > 1 {
        args
    } else {
        let name = args.file.to_string_lossy().to_string();
        let cards = served(&args.server)?;
        let Some(file) = cards
            .iter()
            .find(|c| c["name"] == name.as_str())
            .and_then(|c| c["file"].as_str())
        else {
            return Err(miette::miette!(
                help = "give a Card file, or a name from `sovereign card ls`",
                "{name:?} is neither a file nor a Card the daemon serves"
            ));
        };
        ShowArgs {
            file: PathBuf::from(file),
            ..args
        }
    };
    let card = match card::load(&args.file) {
        Ok(card) => card,
        Err(errors) => {
            let problem = CardReport::of(&errors.file, "is not a valid card", &errors.errors);
            if args.json {
                out.json(&Shown {
                    file: &args.file,
                    valid: false,
                    errors: &errors.errors,
                    card: None,
                })?;
                out.error(&miette::Report::new(problem));
                return Ok(exit::ERROR);
            }
            return Err(miette::Report::new(problem));
        }
    };
    let root = out.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let resolution = card::resolve(&card, &root).map_err(report)?;
    if args.json {
        out.json(&Shown {
            file: &args.file,
            valid: true,
            errors: &resolution.errors,
            card: Some(card_json(&card, &resolution)),
        })?;
    } else {
        out.stdout(&render(&card, &resolution))?;
    }
    if resolution.errors.is_empty() {
        return Ok(exit::OK);
    }
    let problem = CardReport::of(
        &card.path,
        "names models the cache does not hold at their digest",
        &resolution.errors,
    );
    out.error(&miette::Report::new(problem));
    Ok(exit::ERROR)
}

/// Every error of a Card as one report: a title and each error on its own line as
/// `FILE:LINE:COLUMN: message`, the form editors and terminals jump from.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{title}")]
struct CardReport {
    title: String,
    #[related]
    errors: Vec<OneError>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{0}")]
struct OneError(String);

impl CardReport {
    fn of(file: &Path, what: &str, errors: &[CardError]) -> CardReport {
        let n = errors.len();
        CardReport {
            title: format!(
                "{} {what}: {n} error{}",
                file.display(),
                if n == 1 { "" } else { "s" }
            ),
            errors: errors.iter().map(|e| OneError(e.to_string())).collect(),
        }
    }
}

/// `card show --json`'s shape.
#[derive(Debug, Serialize)]
struct Shown<'a> {
    /// The file as given.
    file: &'a Path,
    /// Whether the Card passed its checks.
    valid: bool,
    /// Every error: the checks', or for a valid Card the cache's.
    errors: &'a [CardError],
    /// The Card, when it is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    card: Option<Value>,
}

fn card_json(card: &Card, resolution: &Resolution) -> Value {
    let spec = &card.spec;
    let adapters: Vec<Value> = spec
        .adapters
        .iter()
        .zip(&resolution.adapters)
        .map(|(a, cached)| {
            serde_json::json!({
                "model": a.model,
                "source": a.source,
                "sha256": a.sha256,
                "scale": a.scale,
                "cache": cached,
            })
        })
        .collect();
    let sampling: Map<String, Value> = card
        .sampling()
        .into_iter()
        .map(|s| {
            let from = if s.from_card { "card" } else { "default" };
            (
                s.key.to_string(),
                serde_json::json!({"value": s.value, "from": from}),
            )
        })
        .collect();
    serde_json::json!({
        "description": spec.description,
        "base": {
            "model": spec.base.model,
            "sha256": spec.base.sha256,
            "cache": resolution.base,
        },
        "adapters": adapters,
        "sampling": sampling,
        "sampling_locked": spec.sampling_locked,
        "response": spec.response,
        "context": spec.context,
        "system": spec.system,
        "template": spec.template,
        "cache_dir": resolution.cache_dir,
    })
}

/// What the cache holds, in a few words.
fn cache_words(cached: &Cached) -> String {
    match cached {
        Cached::Present { .. } => "in the cache".into(),
        Cached::Absent => "not in the cache".into(),
        Cached::OtherDigest { sha256 } => format!("the cache holds another file ({sha256})"),
        Cached::Missing => "in the cache, but its file is missing".into(),
        Cached::Quarantined => "in the cache, but quarantined as corrupt".into(),
    }
}

/// Text indented under a heading, every line.
fn indented(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn render(card: &Card, resolution: &Resolution) -> String {
    let spec = &card.spec;
    let mut lines = vec![format!("card {}", card.path.display())];
    if let Some(d) = &spec.description {
        lines.push(format!("  {d}"));
    }
    lines.push(format!(
        "base: {} sha256 {} ({})",
        spec.base.model,
        spec.base.sha256,
        cache_words(&resolution.base)
    ));
    if spec.adapters.is_empty() {
        lines.push("adapters: none".into());
    } else {
        lines.push("adapters:".into());
        for (i, (a, cached)) in spec.adapters.iter().zip(&resolution.adapters).enumerate() {
            let origin = match (&a.model, &a.source) {
                (Some(m), _) => format!("model {m}"),
                (None, Some(s)) => format!("source {s}"),
                (None, None) => "-".into(),
            };
            let digest = a.sha256.as_deref().map_or_else(
                || match cached {
                    Some(Cached::Present { sha256 }) => format!("sha256 {sha256} (the cache's)"),
                    _ => "sha256 not pinned".into(),
                },
                |s| format!("sha256 {s}"),
            );
            let state = cached
                .as_ref()
                .map_or_else(|| "not looked up".into(), cache_words);
            lines.push(format!(
                "  {}. {origin}, {digest}, scale {} ({state})",
                i + 1,
                a.scale
            ));
        }
    }
    lines.push(format!(
        "sampling ({}):",
        if spec.sampling_locked {
            "locked: requests may not override it"
        } else {
            "requests may override it"
        }
    ));
    let rows: Vec<Vec<String>> = card
        .sampling()
        .into_iter()
        .map(|s| {
            let value = match (&s.key, &s.value) {
                (&"seed", Value::Null) => "random per request".into(),
                (&"max_tokens", Value::Null) => "what the context leaves".into(),
                (_, v) => v.to_string(),
            };
            let from = if s.from_card { "card" } else { "default" };
            vec![s.key.to_string(), value, from.to_string()]
        })
        .collect();
    lines.push(indented(&super::output::table(
        &["KEY", "VALUE", "FROM"],
        &rows,
    )));
    match &spec.response {
        Some(r) => match (&r.json_schema, &r.grammar, &card.constraint) {
            (Some(schema), _, _) => {
                let text = serde_json::to_string_pretty(schema).unwrap_or_default();
                lines.push("response: every answer is JSON valid against this schema".into());
                lines.push(indented(&text));
            }
            (None, Some(grammar), spec) => {
                let kind = spec.as_ref().map_or("grammar", |s| s.label());
                lines.push(format!(
                    "response: every answer follows this grammar ({kind})"
                ));
                lines.push(indented(grammar));
            }
            (None, None, _) => lines.push("response: free text".into()),
        },
        None => lines.push("response: free text".into()),
    }
    lines.push(match spec.context {
        Some(c) => format!("context: {c} tokens per slot"),
        None => "context: the daemon's".into(),
    });
    match &spec.system {
        Some(s) => {
            lines.push("system prompt:".into());
            lines.push(indented(s));
        }
        None => lines.push("system prompt: none".into()),
    }
    lines.push(match &spec.template {
        Some(t) => format!("chat template: the Card's own ({} bytes)", t.len()),
        None => "chat template: the model's own".into(),
    });
    lines.join("\n")
}
