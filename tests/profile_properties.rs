//! Properties of `validate`, over profiles generated from the format's own pieces (each
//! key given a value from a mix of the forms operators write, right and wrong):
//!
//! 1. validate-then-plan: whatever `validate` accepts, `plan` accepts, under a temporary
//!    root, with the template files and file vdevs the profile names made first;
//! 2. the JSON Schema and the validator agree: a profile the schema refuses is refused,
//!    and one `validate` accepts the schema accepts;
//! 3. `validate` never panics, whatever the TOML.
//!
//! Bounded cases, so CI stays fast; `PROPTEST_CASES=N` runs more.
// Tests build their own worlds (files, folders) directly.
#![allow(clippy::disallowed_methods)]

use std::fmt::Write as _;
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::select;
use sovereign::host::RealHost;
use sovereign::host::fs::Root;
use sovereign::plan::resolve::Resolved;
use sovereign::planner::{self, PlanOptions};

/// A generated profile and the files it needs beside it.
#[derive(Debug, Clone)]
struct Case {
    toml: String,
    /// templates/NAME -> content, next to the profile.
    templates: Vec<(String, String)>,
    /// Whether it declares a pool on a file vdev (made before planning).
    pool: bool,
}

/// Mostly one of the forms the format takes, sometimes a mistake: a profile has many
/// values, and one mistake among them makes validate refuse it, so most must be right for
/// the property to reach plan.
fn mostly<T: Clone + std::fmt::Debug + 'static>(
    right: &[T],
    wrong: &[T],
) -> impl Strategy<Value = T> {
    prop_oneof![12 => select(right.to_vec()), 1 => select(wrong.to_vec())]
}

fn maybe(line: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), line]
}

fn host() -> impl Strategy<Value = String> {
    maybe(
        mostly(
            &["\"forge\"", "\"forge-01\""],
            &["\"-bad\"", "\"a_b\"", "7"],
        )
        .prop_map(|n| format!("[host]\nname = {n}\n\n")),
    )
}

/// Text as a template would hold it: plain, the profile's values, the facts, broken.
fn template_text() -> impl Strategy<Value = &'static str> {
    mostly(
        &[
            "plain text\\n",
            "host {{ host.name }}\\n",
            "{{ facts.archetype }} with {{ facts.cpu.cores }} cores\\n",
            "{% if facts.gpus %}gpu{% endif %}\\n",
        ],
        &["{{ host.nmae }}\\n", "{% if %}\\n", "{{ unclosed\\n"],
    )
}

fn files() -> impl Strategy<Value = (String, Vec<(String, String)>)> {
    let entry = (
        mostly(
            &["/etc/motd", "/srv/app/a.conf", "/srv/app/b.conf"],
            &[
                "etc/relative",
                "/etc/../escape",
                "/etc/systemd/system/web.service",
            ],
        ),
        prop_oneof![
            template_text().prop_map(|t| (format!("content = \"{t}\""), None)),
            (
                mostly(&["motd.j2"], &["missing.j2", "../outside.j2"]),
                template_text()
            )
                .prop_map(|(name, t)| (
                    format!("template = \"{name}\""),
                    Some((name.to_string(), t.replace("\\n", "\n")))
                )),
        ],
        maybe(
            mostly(&["\"0644\"", "\"0600\""], &["\"644\"", "\"0999\"", "644"])
                .prop_map(|m| format!("mode = {m}\n")),
        ),
        maybe(
            mostly(&["\"root\"", "\"daemon\""], &["\"root\""])
                .prop_map(|o| format!("owner = {o}\n")),
        ),
    );
    prop::collection::vec(entry, 0..3).prop_map(|entries| {
        let mut text = String::new();
        let mut templates = Vec::new();
        let mut seen = Vec::new();
        for (path, (body, template), mode, owner) in entries {
            if seen.contains(&path) {
                continue;
            }
            seen.push(path);
            write!(text, "[files.\"{path}\"]\n{body}\n{mode}{owner}\n").unwrap();
            // A template file is there unless its name says it is missing or outside.
            if let Some((name, content)) = template {
                if name == "motd.j2" {
                    templates.push((name, content));
                }
            }
        }
        (text, templates)
    })
}

fn services() -> impl Strategy<Value = String> {
    let entry = (
        mostly(
            &["web", "backup"],
            &["a/b", "web.service", "sovereign-inference"],
        ),
        mostly(
            &[
                "[Service]\\nExecStart=/bin/true\\n",
                "[Unit]\\nDescription={{ host.name }}\\n",
            ],
            &["[Unit]\\nDescription={% broken\\n"],
        ),
        maybe(
            mostly(
                &["[\"/srv/app/a.conf\"]", "[\"/etc/other.conf\"]"],
                &["[\"relative\"]"],
            )
            .prop_map(|r| format!("restart_on = {r}\n")),
        ),
        maybe(mostly(&["true", "false"], &["\"yes\""]).prop_map(|e| format!("enable = {e}\n"))),
    );
    prop::collection::vec(entry, 0..3).prop_map(|entries| {
        let mut text = String::new();
        let mut seen = Vec::new();
        for (name, unit, restart_on, enable) in entries {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            write!(
                text,
                "[services.\"{name}\"]\nunit = \"{unit}\"\n{restart_on}{enable}\n"
            )
            .unwrap();
        }
        text
    })
}

fn inference() -> impl Strategy<Value = String> {
    let daemon = (
        maybe(
            mostly(
                &["\"127.0.0.1:8080\"", "\"0.0.0.0:8080\"", "\"[::1]:9000\""],
                &["\"localhost:80\"", "\"1.2.3.4:70000\""],
            )
            .prop_map(|l| format!("listen = {l}\n")),
        ),
        maybe(
            mostly(&["\"/etc/sovereign/api-key\""], &["\"rel/key\""])
                .prop_map(|k| format!("api_key_file = {k}\n")),
        ),
        maybe(
            mostly(&["1", "4", "256"], &["0", "300", "8589934592", "2.0"])
                .prop_map(|v| format!("slots = {v}\n")),
        ),
        maybe(mostly(&["64", "4096"], &["10", "2000000"]).prop_map(|v| format!("context = {v}\n"))),
        maybe(mostly(&["1", "3"], &["0", "2000"]).prop_map(|v| format!("max_loaded = {v}\n"))),
        maybe(
            mostly(&["\"10s\"", "\"1m\""], &["\"0s\"", "\"1h\"", "10"])
                .prop_map(|v| format!("header_timeout = {v}\n")),
        ),
    );
    let model = (
        mostly(
            &["tiny", "tiny:7b", "coder"],
            &["../x", "a b", ":7b", "card-sql-adapter-0"],
        ),
        mostly(
            &[
                "\"/srv/models/tiny.gguf\"",
                "\"https://example.invalid/m.gguf\"",
            ],
            &["\"models/rel.gguf\""],
        ),
        maybe(
            mostly(
                &["\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\""],
                &["\"xyz\""],
            )
            .prop_map(|s| format!("sha256 = {s}\n")),
        ),
        maybe(
            mostly(&["\"10m\"", "\"2h\""], &["\"0s\"", "\"400d\""])
                .prop_map(|t| format!("ttl = {t}\n")),
        ),
        maybe(
            mostly(&["\"auto\"", "10"], &["-1", "\"all\""])
                .prop_map(|g| format!("gpu_layers = {g}\n")),
        ),
    );
    // Cards, from the files `materialize` writes next to the profile.
    let card = (
        mostly(&["sql", "chat:7b"], &["tiny", "a b"]),
        mostly(
            &[
                "\"cards/tiny.json\"",
                "\"cards/coder.json\"",
                "\"cards/lora.json\"",
            ],
            &["\"cards/broken.json\"", "\"cards/none.json\""],
        ),
    );
    maybe(
        (
            daemon,
            prop::collection::vec(model, 0..3),
            prop::collection::vec(card, 0..3),
        )
            .prop_map(
                |((listen, key, slots, context, max_loaded, header), models, cards)| {
                    let mut text =
                        format!("[inference]\n{listen}{key}{slots}{context}{max_loaded}{header}\n");
                    let mut seen = Vec::new();
                    for (name, source, sha, ttl, gpu) in models {
                        if seen.contains(&name) {
                            continue;
                        }
                        seen.push(name);
                        write!(
                            text,
                            "[inference.models.\"{name}\"]\nsource = {source}\n{sha}{ttl}{gpu}\n"
                        )
                        .unwrap();
                    }
                    let mut seen = Vec::new();
                    for (name, file) in cards {
                        if seen.contains(&name) {
                            continue;
                        }
                        seen.push(name);
                        write!(text, "[inference.cards.\"{name}\"]\nfile = {file}\n\n").unwrap();
                    }
                    text
                },
            ),
    )
}

fn checks() -> impl Strategy<Value = String> {
    maybe(
        (
            mostly(&["[\"true\"]"], &["[]", "\"true\""]),
            maybe(
                mostly(&["\"1s\"", "\"5s\""], &["\"0s\"", "\"soon\""])
                    .prop_map(|t| format!("timeout = {t}\n")),
            ),
        )
            .prop_map(|(command, timeout)| {
                format!("[[checks]]\nname = \"ok\"\ncommand = {command}\n{timeout}\n")
            }),
    )
}

/// A pool on the file vdev the case makes, and datasets in it.
fn storage() -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        Just((String::new(), false)),
        (
            mostly(&["sovprop"], &["mirror1", "log"]),
            mostly(&["\"VDEV\""], &["\"relative.img\""]),
            maybe(
                mostly(&["\"sovprop/a\""], &["\"tank/a\"", "\"sovprop/a/b\""])
                    .prop_map(|d| { format!("[storage.datasets.{d}]\nrecordsize = \"64K\"\n\n") })
            ),
        )
            .prop_map(|(pool, vdev, dataset)| {
                (
                    format!("[storage.pools.{pool}]\nvdevs = [{vdev}]\n\n{dataset}"),
                    true,
                )
            }),
    ]
}

/// A VM under `[forge]`, over a connection no daemon answers (plan must not fail for
/// that), with what validate must catch mixed in.
fn forge() -> impl Strategy<Value = String> {
    maybe(
        (
            mostly(&["\"tcg\"", "\"auto\""], &["\"qemu\""]),
            mostly(&["1", "2"], &["0"]),
            mostly(&["\"64M\"", "\"1G\""], &["\"16M\"", "\"lots\""]),
            maybe(mostly(&["[0]"], &["[]", "[-1]"]).prop_map(|p| format!("pin = {p}\n"))),
            maybe(
                mostly(&["[\"nat\"]"], &["[\"nowhere\"]"])
                    .prop_map(|n| format!("networks = {n}\n")),
            ),
            maybe(
                mostly(
                    &["[{ dataset = \"sovprop/a\", file = \"vm.raw\", size = \"1G\" }]"],
                    &["[{ zvol = \"sovprop/none\" }]", "[{ dataset = \"sovprop/a\", file = \"../x\", size = \"1G\" }]"],
                )
                .prop_map(|d| format!("disks = {d}\n")),
            ),
            maybe(mostly(&["\"stopped\""], &["\"paused\""]).prop_map(|s| format!("state = {s}\n"))),
        )
            .prop_map(|(accel, vcpus, memory, pin, networks, disks, state)| {
                format!(
                    "[forge]\nhypervisor = \"kvm\"\naccel = {accel}\nuri = \"qemu+unix:///system?socket=/nonexistent/sock\"\n\n[forge.vms.vm1]\nvcpus = {vcpus}\nmemory = {memory}\n{pin}{networks}{disks}{state}\n"
                )
            }),
    )
}

fn case() -> impl Strategy<Value = Case> {
    (
        host(),
        files(),
        services(),
        inference(),
        checks(),
        storage(),
        forge(),
    )
        .prop_map(
            |(host, (files, templates), services, inference, checks, (storage, pool), forge)| {
                Case {
                    toml: format!("{host}{files}{services}{inference}{checks}{storage}{forge}"),
                    templates,
                    pool,
                }
            },
        )
}

/// Write the case into `dir`: the profile, its templates, its file vdev.
fn materialize(case: &Case, dir: &Path) -> std::path::PathBuf {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(profiles.join("templates")).unwrap();
    for (name, content) in &case.templates {
        std::fs::write(profiles.join("templates").join(name), content).unwrap();
    }
    // The Cards a case may name (cards/none.json is missing on purpose): on a model the
    // generator declares, at the digest it pins; one with an adapter given by source; and
    // one with an error.
    std::fs::create_dir_all(profiles.join("cards")).unwrap();
    let pin = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for (file, card) in [
        (
            "tiny.json",
            format!(
                "{{\"base\": {{\"model\": \"tiny\", \"sha256\": \"{pin}\"}}, \"system\": \"Be brief.\"}}"
            ),
        ),
        (
            "coder.json",
            format!(
                "{{\"base\": {{\"model\": \"coder\", \"sha256\": \"{pin}\"}}, \"sampling\": {{\"temperature\": 0.2}}}}"
            ),
        ),
        // An adapter given by source: pulled under a derived name, which a model of the
        // generator's may take.
        (
            "lora.json",
            format!(
                "{{\"base\": {{\"model\": \"tiny\", \"sha256\": \"{pin}\"}}, \"adapters\": [{{\"source\": \"/srv/loras/a.gguf\", \"sha256\": \"{pin}\"}}]}}"
            ),
        ),
        (
            "broken.json",
            format!(
                "{{\"base\": {{\"model\": \"tiny\", \"sha256\": \"{pin}\"}}, \"sampling\": {{\"temperature\": 9}}}}"
            ),
        ),
    ] {
        std::fs::write(profiles.join("cards").join(file), card).unwrap();
    }
    // A file vdev's path is relocated under --root, like a managed file's.
    if case.pool {
        std::fs::create_dir_all(dir.join("root/vdevs")).unwrap();
        let f = std::fs::File::create(dir.join("root/vdevs/vdev0.img")).unwrap();
        f.set_len(128 << 20).unwrap();
    }
    let toml = case.toml.replace("VDEV", "/vdevs/vdev0.img");
    let path = profiles.join("p.toml");
    std::fs::write(&path, toml).unwrap();
    std::fs::create_dir_all(dir.join("root")).unwrap();
    path
}

/// `PROPTEST_CASES` when set (a longer hunt), else the bounded count CI runs.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn zfs_answers() -> bool {
    std::process::Command::new("zpool")
        .args(["list", "-H"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn schema_accepts(toml_text: &str) -> Option<bool> {
    let value: toml::Value = toml::from_str(toml_text).ok()?;
    let json = serde_json::to_value(value).ok()?;
    let validator = jsonschema::validator_for(sovereign::profile::schema::profile_schema())
        .expect("the profile schema compiles");
    Some(validator.is_valid(&json))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn whatever_validate_accepts_plan_accepts(case in case()) {
        if case.pool && !zfs_answers() {
            // Storage needs ZFS answering (`cargo xtask setup`); CI has it.
            return Ok(());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = materialize(&case, dir.path());
        let Ok(valid) = sovereign::profile::load(&path) else {
            return Ok(());
        };
        let resolved = Resolved::from_valid(&valid);
        prop_assert!(resolved.is_ok(), "validate accepted, resolve failed: {:#}\n{}", resolved.unwrap_err(), case.toml);
        let root = Root::new(&dir.path().join("root")).unwrap();
        let planned = planner::plan(
            resolved.unwrap(),
            PlanOptions { root, allow_destroy: false },
            &RealHost,
        );
        prop_assert!(
            planned.is_ok(),
            "validate accepted, plan failed: {:#}\n--- profile ---\n{}",
            planned.err().unwrap(),
            case.toml
        );
    }

    #[test]
    fn the_schema_and_the_validator_agree(case in case()) {
        // Editors read the schema; operators run validate. A value the schema refuses is
        // one validate refuses (validate refuses more: what a schema cannot say, such as
        // references between sections, with better words).
        let dir = tempfile::tempdir().unwrap();
        let path = materialize(&case, dir.path());
        let toml_text = std::fs::read_to_string(&path).unwrap();
        let Some(schema_ok) = schema_accepts(&toml_text) else {
            return Ok(());
        };
        let validated = sovereign::profile::load(&path).is_ok();
        prop_assert!(
            schema_ok || !validated,
            "the schema refuses what validate accepts:\n{}",
            toml_text
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn validate_never_panics_whatever_the_toml(
        case in case(),
        cut in 0usize..4096,
        noise in prop::collection::vec(any::<char>(), 0..8),
        at in 0usize..4096,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = materialize(&case, dir.path());
        let mut text = std::fs::read_to_string(&path).unwrap();
        // Cut it anywhere and splice in anything: unclosed strings, stray brackets, NULs.
        let mut chars: Vec<char> = text.chars().collect();
        chars.truncate(cut.min(chars.len()).max(chars.len() / 2));
        let at = at.min(chars.len());
        for (i, c) in noise.into_iter().enumerate() {
            chars.insert(at + i, c);
        }
        text = chars.into_iter().collect();
        std::fs::write(&path, &text).unwrap();
        let result = std::panic::catch_unwind(|| sovereign::profile::load(&path).is_ok());
        prop_assert!(result.is_ok(), "validate panicked on:\n{}", text);
    }
}
