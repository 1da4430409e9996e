//! `[services]` and `[inference]` end to end: the real binary against a temporary root,
//! real files and a real model cache. This machine's PID 1 is not systemd (and `--root`
//! keeps units away from a running systemd anyway), so every systemctl step is planned,
//! marked not applicable and skipped, and the rest is really done.
#![allow(clippy::disallowed_methods)]

mod engine_support;

use engine_support::Env;

/// Why systemd steps cannot run in these tests, as the plan says it.
fn expected_reason(env: &Env) -> String {
    if std::path::Path::new("/run/systemd/system").is_dir() {
        format!(
            "the unit files are written under --root {}",
            std::fs::canonicalize(env.root()).unwrap().display()
        )
    } else {
        "PID 1 is not systemd".into()
    }
}

fn profile(sha: &str, conf: &str) -> String {
    format!(
        r#"
[files."/etc/backup.conf"]
content = "{conf}"

[services.backup]
unit = "[Unit]\nDescription=backup for {{{{ host.name }}}}\n\n[Service]\nExecStart=/usr/bin/true\n"
restart_on = ["/etc/backup.conf"]

[host]
name = "forge"

[inference]
listen = "127.0.0.1:18080"
api_key_file = "/etc/sovereign/api-key"
slots = 2
ctx = 2048

[inference.models.tiny]
source = "/srv/models/tiny.gguf"
sha256 = "{sha}"
context = 1024
ttl = "10m"
preload = true
"#
    )
}

#[test]
fn services_and_inference_apply_with_systemd_steps_not_applicable_then_settle() {
    let env = Env::new();
    let sha = env.tiny_model_at("/srv/models/tiny.gguf");
    let p = env.profile("p.toml", &profile(&sha, "keep = 7\\n"));
    let why = expected_reason(&env);

    let plan = env.plan(&p);
    plan.ok();
    for line in [
        "+ files.file:/etc/systemd/system/backup.service".to_string(),
        "+ files.file:/etc/systemd/system/sovereign-inference.service".to_string(),
        "+ inference.model:tiny".to_string(),
        "+ files.file:/etc/sovereign/inference/models.toml".to_string(),
        format!("+ services.service:backup (not applicable: {why}"),
        format!("+ services.service:sovereign-inference (not applicable: {why}"),
        "# would run: systemctl daemon-reload; systemctl enable --now backup.service".to_string(),
    ] {
        assert!(
            plan.stderr.contains(&line),
            "{line:?} not in:\n{}",
            plan.stderr
        );
    }
    assert!(!env.at("/etc/systemd").exists(), "plan touched the disk");
    assert!(
        !env.at("/var/lib/sovereign/models").exists(),
        "plan created the model cache"
    );

    let json = env.run(&["plan", "--json", p.to_str().unwrap()]);
    json.ok();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    // Pending: 1 managed file, 2 units, the model, models.toml; the 2 service steps are not.
    assert_eq!(json["summary"]["pending"], 5, "{json:#}");
    assert_eq!(json["summary"]["not_applicable"], 2, "{json:#}");
    let na: Vec<&serde_json::Value> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["not_applicable"].is_string())
        .collect();
    assert_eq!(na.len(), 2);
    assert!(na.iter().all(|c| c["action"] == "create"));

    let apply = env.apply(&p);
    apply.ok();
    assert!(
        apply.stderr.contains(&format!(
            "skipped services.service:sovereign-inference (create): not applicable: {why}"
        )),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stderr.contains(
            "inference daemon answers on 127.0.0.1:18080 and lists its models: skipped (not applicable:"
        ),
        "{}",
        apply.stderr
    );
    assert!(
        apply
            .stderr
            .contains("service backup.service is active: skipped (not applicable:"),
        "{}",
        apply.stderr
    );

    // What was really done: the units and the options file on disk, the model cached.
    assert_eq!(
        env.read("/etc/systemd/system/backup.service"),
        "[Unit]\nDescription=backup for forge\n\n[Service]\nExecStart=/usr/bin/true\n"
    );
    let unit = env.read("/etc/systemd/system/sovereign-inference.service");
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_sovereign")).unwrap();
    let unit = unit.replace(&exe.display().to_string(), "[SOVEREIGN]");
    insta::assert_snapshot!("inference_unit_on_disk", unit);
    assert_eq!(
        env.read("/etc/sovereign/inference/models.toml"),
        "# Managed by sovereign from the profile's [inference.models]; edits are overwritten.\n\
         [models.tiny]\ncontext = 1024\nttl = \"10m\"\npreload = true\n"
    );
    let manifest = env.read("/var/lib/sovereign/models/manifests/tiny.json");
    assert!(manifest.contains(&sha), "{manifest}");
    assert!(
        env.at(&format!("/var/lib/sovereign/models/blobs/sha256-{sha}"))
            .is_file()
    );

    // Idempotent: only the not-applicable steps remain, and they are not changes.
    env.assert_no_changes(&p);
    let again = env.plan(&p);
    assert!(
        again.stderr.contains("2 not applicable here (see above)"),
        "{}",
        again.stderr
    );
    let apply2 = env.apply(&p);
    apply2.ok();
    assert!(
        apply2.stderr.contains("Nothing to apply"),
        "{}",
        apply2.stderr
    );

    // A changed file the service names: on systemd it restarts; here the service step
    // stays not applicable while the file itself changes.
    let p2 = env.profile("p.toml", &profile(&sha, "keep = 8\\n"));
    let plan = env.plan(&p2);
    assert!(
        plan.stderr.contains("~ files.file:/etc/backup.conf"),
        "{}",
        plan.stderr
    );
    env.apply(&p2).ok();
    env.assert_no_changes(&p2);

    // Dropped: units, options file and the model sovereign pulled all go.
    let empty = env.profile("p.toml", "[host]\nname = \"forge\"\n");
    let plan = env.plan(&empty);
    for line in [
        "- files.file:/etc/systemd/system/backup.service",
        "- files.file:/etc/systemd/system/sovereign-inference.service",
        "- inference.model:tiny",
        "- files.file:/etc/sovereign/inference/models.toml",
    ] {
        assert!(
            plan.stderr.contains(line),
            "{line:?} not in:\n{}",
            plan.stderr
        );
    }
    env.apply(&empty).ok();
    assert!(!env.at("/etc/systemd/system/backup.service").exists());
    assert!(
        !env.at("/etc/systemd/system/sovereign-inference.service")
            .exists()
    );
    assert!(!env.at("/etc/sovereign/inference/models.toml").exists());
    assert!(
        !env.at("/var/lib/sovereign/models/manifests/tiny.json")
            .exists()
    );
    // The source it was pulled from is the user's: untouched.
    assert!(env.at("/srv/models/tiny.gguf").is_file());
    env.assert_no_changes(&empty);
}

#[test]
fn a_pinned_model_already_cached_is_no_change() {
    let env = Env::new();
    let sha = env.tiny_model_at("/srv/models/tiny.gguf");
    // Cached beforehand by `model pull`, under the same name.
    let pull = env.run(&[
        "model",
        "pull",
        env.at("/srv/models/tiny.gguf").to_str().unwrap(),
        "--sha256",
        &sha,
        "--name",
        "tiny",
    ]);
    pull.ok();
    let p = env.profile(
        "p.toml",
        &format!(
            "[inference.models.tiny]\nsource = \"https://example.invalid/tiny.gguf\"\nsha256 = \"{sha}\"\n"
        ),
    );
    let plan = env.plan(&p);
    plan.ok();
    assert!(
        !plan.stderr.contains("inference.model:tiny"),
        "{}",
        plan.stderr
    );
    env.apply(&p).ok();
    env.assert_no_changes(&p);
    // Never pulled by sovereign, so dropping it leaves the cache alone.
    let empty = env.profile("p.toml", "");
    env.apply(&empty).ok();
    assert!(
        env.at("/var/lib/sovereign/models/manifests/tiny.json")
            .is_file()
    );
}

#[test]
fn a_wrong_pin_fails_the_apply_naming_the_model() {
    let env = Env::new();
    env.tiny_model_at("/srv/models/tiny.gguf");
    let p = env.profile(
        "p.toml",
        &format!(
            "[inference.models.tiny]\nsource = \"/srv/models/tiny.gguf\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        ),
    );
    let apply = env.apply(&p);
    assert_eq!(apply.code, Some(1), "{}", apply.stderr);
    assert!(
        apply
            .stderr
            .contains("inference.models.tiny: cannot pull /srv/models/tiny.gguf"),
        "{}",
        apply.stderr
    );
    assert!(
        !env.at("/var/lib/sovereign/models/manifests/tiny.json")
            .exists()
    );
}

#[test]
fn a_managed_file_that_is_also_a_unit_file_is_refused_naming_both_owners() {
    let env = Env::new();
    let p = env.profile(
        "p.toml",
        r#"
[files."/etc/systemd/system/backup.service"]
content = "[Service]\nExecStart=/bin/false\n"

[services.backup]
unit = "[Service]\nExecStart=/usr/bin/true\n"
"#,
    );
    let plan = env.plan(&p);
    assert_ne!(plan.code, Some(0), "{}", plan.stderr);
    // Found when the profile is loaded, at the [files] key, naming both owners.
    assert!(
        plan.stderr.contains(
            "file \"/etc/systemd/system/backup.service\" is also the unit file [services.backup] writes: one file has one owner"
        ) && plan.stderr.contains("p.toml:2:8"),
        "{}",
        plan.stderr
    );
    assert!(!env.at("/etc/systemd").exists(), "nothing was written");
}

#[test]
fn a_model_named_in_name_tag_form_validates_pulls_and_settles() {
    let env = Env::new();
    let sha = env.tiny_model_at("/srv/models/tiny.gguf");
    let p = env.profile(
        "p.toml",
        &format!(
            "[inference.models.\"tiny-coder:7b\"]\nsource = \"/srv/models/tiny.gguf\"\nsha256 = \"{sha}\"\n"
        ),
    );
    env.run(&["validate", p.to_str().unwrap()]).ok();
    let apply = env.apply(&p);
    apply.ok();
    assert!(
        env.at("/var/lib/sovereign/models/manifests/tiny-coder:7b.json")
            .is_file(),
        "{}",
        apply.stderr
    );
    env.assert_no_changes(&p);
    let ls = env.run(&["model", "ls", "--json"]);
    ls.ok();
    assert!(ls.stdout.contains("\"tiny-coder:7b\""), "{}", ls.stdout);
}
