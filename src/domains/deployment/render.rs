//! What `[inference]` turns into on disk: the daemon's systemd unit (from
//! templates/sovereign-inference.service.j2, with `--card` for each Card) and the
//! per-model options file the unit passes with `--models`. Pure functions of the profile section: snapshot-tested.

use anyhow::{Context, anyhow};
use serde::Serialize;

use crate::inference::cache::MODELS_DIR;
use crate::inference::model_options::{GpuLayers as ServeGpuLayers, ModelOptions, ModelsFile};
use crate::profile::{GpuLayers, Inference};

/// The unit's template name; a profile's own templates/ may override the project's.
pub const UNIT_TEMPLATE: &str = crate::profile::INFERENCE_UNIT_TEMPLATE;
/// The project's copy, used when no templates/ folder above the profile has one.
pub const UNIT_TEMPLATE_TEXT: &str =
    include_str!("../../../templates/sovereign-inference.service.j2");

/// Defaults `serve` would use, written out so the unit says what runs.
pub const DEFAULT_LISTEN: &str = crate::inference::limits::LISTEN;
pub const DEFAULT_SLOTS: u32 = crate::inference::limits::SLOTS.kind.default_value() as u32;
pub const DEFAULT_CTX: u32 = crate::inference::limits::CONTEXT.kind.default_value() as u32;

/// models.toml for `section`: one table per declared model, only the options it sets, in
/// the daemon's own format ([`ModelsFile`]), so what apply writes is what `serve` reads.
pub fn models_toml(section: &Inference) -> anyhow::Result<String> {
    let models = section
        .models
        .iter()
        .map(|(name, m)| {
            let options = ModelOptions {
                context: m.context,
                gpu_layers: m.gpu_layers.map(|g| match g {
                    GpuLayers::Count(n) => ServeGpuLayers::Count(n),
                    GpuLayers::Auto(_) => ServeGpuLayers::Auto,
                }),
                ttl: m.ttl,
                preload: m.preload,
            };
            (name.clone(), options)
        })
        .collect();
    let body =
        toml::to_string(&ModelsFile { models }).context("cannot write the models file as TOML")?;
    Ok(format!(
        "# Managed by sovereign from the profile's [inference.models]; edits are overwritten.\n{body}"
    ))
}

/// What the unit template sees.
#[derive(Debug, Serialize)]
struct UnitContext<'a> {
    exe: &'a str,
    listen: &'a str,
    slots: u32,
    ctx: u32,
    threads: Option<u32>,
    max_loaded: Option<u32>,
    models_file: &'a str,
    api_key_file: Option<&'a str>,
    models_dir: String,
    /// The client bounds the profile sets, as `serve` flags (` --header-timeout 5s`).
    client_flags: String,
    /// LimitNOFILE: one descriptor per connection of the cap, and headroom.
    nofile: u64,
    /// TimeoutStopSec, in seconds: the daemon's shutdown deadline and time to exit.
    stop_timeout: u64,
    /// The Cards served, each as `serve --card NAME=FILE` takes it.
    cards: Vec<CardFlag>,
}

/// One `--card NAME=FILE`: the machine path apply writes the Card to (under `--root` the
/// unit still names the path the daemon will read on the machine).
#[derive(Debug, Serialize)]
struct CardFlag {
    name: String,
    file: String,
}

/// The `serve` flags for the client bounds and switches `section` sets, in the daemon's order.
fn client_flags(section: &Inference) -> String {
    use crate::inference::limits::{
        BODY_TIMEOUT, COMPILE_TIMEOUT, HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS,
        SHUTDOWN_TIMEOUT,
    };
    let mut out = String::new();
    let mut flag = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            out.push_str(&format!(" --{name} {v}"));
        }
    };
    let secs = |d: Option<crate::profile::units::Duration>| {
        d.map(|d| format!("{}s", d.as_std().as_secs()))
    };
    flag(HEADER_TIMEOUT.flag, secs(section.header_timeout));
    flag(BODY_TIMEOUT.flag, secs(section.body_timeout));
    flag(IDLE_TIMEOUT.flag, secs(section.idle_timeout));
    flag(
        MAX_CONNECTIONS.flag,
        section.max_connections.map(|n| n.to_string()),
    );
    flag(SHUTDOWN_TIMEOUT.flag, secs(section.shutdown_timeout));
    flag(COMPILE_TIMEOUT.flag, secs(section.grammar_compile_timeout));
    if section.prompt_cache == Some(false) {
        out.push_str(&format!(
            " --{}",
            crate::inference::limits::PROMPT_CACHE.off_flag
        ));
    }
    out
}

/// Render the daemon's unit. `exe` is the sovereign binary the unit runs; `template` is
/// the template's source text.
pub fn unit(
    section: &Inference,
    template: &str,
    exe: &str,
    models_file: &str,
) -> anyhow::Result<String> {
    let env = crate::domain::template::environment(&Default::default())?;
    let context = UnitContext {
        exe,
        listen: section.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
        slots: section.slots.unwrap_or(DEFAULT_SLOTS),
        ctx: section.context.unwrap_or(DEFAULT_CTX),
        threads: section.threads,
        max_loaded: section.max_loaded,
        models_file,
        api_key_file: section.api_key_file.as_deref(),
        models_dir: format!("/{MODELS_DIR}"),
        client_flags: client_flags(section),
        nofile: crate::inference::limits::nofile_for(
            section.max_connections.map_or(
                crate::inference::limits::MAX_CONNECTIONS
                    .kind
                    .default_value(),
                u64::from,
            ),
        ),
        // The daemon's deadline, then ten seconds to end what is left and exit, before
        // systemd's SIGKILL.
        stop_timeout: section.shutdown_timeout.map_or(
            crate::inference::limits::SHUTDOWN_TIMEOUT
                .kind
                .default_value(),
            |d| d.as_std().as_secs(),
        ) + 10,
        cards: section
            .cards
            .keys()
            .map(|name| CardFlag {
                name: name.clone(),
                file: crate::profile::inference_card_file(name),
            })
            .collect(),
    };
    env.render_str(
        template,
        minijinja::Value::from(minijinja::value::Serde(&context)),
    )
    .map_err(|e| anyhow!("{e:#}"))
    .with_context(|| format!("template {UNIT_TEMPLATE:?} cannot be rendered"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{AutoKeyword, ModelSpec};
    use std::collections::BTreeMap;

    fn section() -> Inference {
        let mut models = BTreeMap::new();
        models.insert(
            "tiny".to_string(),
            ModelSpec {
                source: "/var/lib/sovereign/demo/tiny.gguf".into(),
                sha256: Some("ab".repeat(32)),
                context: Some(2048),
                gpu_layers: Some(GpuLayers::Auto(AutoKeyword::Auto)),
                ttl: Some("10m".parse().unwrap()),
                preload: true,
            },
        );
        models.insert(
            "coder".to_string(),
            ModelSpec {
                source: "https://example.org/coder.gguf".into(),
                sha256: None,
                context: None,
                gpu_layers: Some(GpuLayers::Count(20)),
                ttl: None,
                preload: false,
            },
        );
        Inference {
            listen: Some("127.0.0.1:8080".into()),
            api_key_file: Some("/etc/sovereign/api-key".into()),
            slots: Some(2),
            context: Some(4096),
            threads: Some(8),
            max_loaded: Some(1),
            models,
            header_timeout: Some("5s".parse().unwrap()),
            max_connections: Some(2000),
            ..Default::default()
        }
    }

    #[test]
    fn the_unit_is_hardened_and_keeps_the_key_off_argv() {
        let text = unit(
            &section(),
            UNIT_TEMPLATE_TEXT,
            "/usr/local/bin/sovereign",
            "/etc/sovereign/inference/models.toml",
        )
        .unwrap();
        insta::assert_snapshot!(text);
        let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(!exec.contains("api-key"), "{exec}");
        for line in [
            "DynamicUser=yes",
            "LoadCredential=api-key:/etc/sovereign/api-key",
            "ReadOnlyPaths=/var/lib/sovereign/models",
            "Restart=on-failure",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn without_a_key_file_there_is_no_credential_and_defaults_are_written_out() {
        let bare = Inference::default();
        let text = unit(&bare, UNIT_TEMPLATE_TEXT, "/s", "/m.toml").unwrap();
        assert!(!text.contains("LoadCredential"), "{text}");
        assert!(
            text.contains(
                "ExecStart=/s serve --listen 127.0.0.1:8080 --slots 4 --context 4096 --models /m.toml\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn prompt_cache_false_turns_prefix_reuse_off_in_the_daemons_flags() {
        let off = Inference {
            prompt_cache: Some(false),
            ..Default::default()
        };
        let text = unit(&off, UNIT_TEMPLATE_TEXT, "/s", "/m.toml").unwrap();
        let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(exec.contains(" --no-prompt-cache "), "{exec}");
        let on = Inference {
            prompt_cache: Some(true),
            ..Default::default()
        };
        let text = unit(&on, UNIT_TEMPLATE_TEXT, "/s", "/m.toml").unwrap();
        assert!(!text.contains("prompt-cache"), "{text}");
    }

    #[test]
    fn each_card_is_served_from_the_file_apply_writes() {
        let mut section = section();
        for name in ["sql", "tiny:chat"] {
            section.cards.insert(
                name.into(),
                crate::profile::CardSpec {
                    file: format!("cards/{name}.json"),
                },
            );
        }
        let text = unit(&section, UNIT_TEMPLATE_TEXT, "/s", "/m.toml").unwrap();
        let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(
            exec.ends_with(
                " --models /m.toml --card sql=/etc/sovereign/inference/cards/sql.json --card tiny:chat=/etc/sovereign/inference/cards/tiny:chat.json"
            ),
            "{exec}"
        );
        let bare = unit(&Inference::default(), UNIT_TEMPLATE_TEXT, "/s", "/m.toml").unwrap();
        assert!(!bare.contains("--card"), "{bare}");
    }

    #[test]
    fn models_toml_has_only_the_options_each_model_sets() {
        let text = models_toml(&section()).unwrap();
        insta::assert_snapshot!(text);
        // What apply writes, the daemon reads back as written.
        let read = ModelsFile::parse(&text, "models.toml").unwrap();
        assert_eq!(read.models.len(), section().models.len());
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            parsed["models"]["tiny"]["gpu_layers"].as_str(),
            Some("auto")
        );
        assert_eq!(
            parsed["models"]["coder"]["gpu_layers"].as_integer(),
            Some(20)
        );
        assert!(parsed["models"]["coder"].get("preload").is_none());
    }
}
