//! The fleet file: the bad-fleet corpus (every file under tests/fleets/bad/ states the
//! errors it must produce in `# expect: [FILE:]LINE:COLUMN MESSAGE` comments, in file
//! order), a good fleet loading to the typed `Fleet` with `[defaults]` merged, and
//! `sovereign validate --fleet` and `sovereign schema --fleet` as a user runs them.
#![allow(clippy::disallowed_methods)]

mod corpus_support;

use std::path::{Path, PathBuf};

use corpus_support::{clean, describe};
use std::process::{Command, Output};
use std::time::Duration;

use miette::{GraphicalReportHandler, GraphicalTheme};
use sovereign::fleet::load::load_with_profiles;
use sovereign::fleet::{Fleet, Host, StrictHostKeys, load};

const BAD: &str = "tests/fleets/bad";

fn corpus() -> Vec<PathBuf> {
    corpus_support::corpus(BAD)
}

#[test]
fn the_corpus_covers_every_contract_of_the_format() {
    let names: Vec<String> = corpus()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for needed in [
        "unknown_key_top",
        "unknown_key_host",
        "unknown_key_defaults",
        "host_without_profile",
        "profile_missing",
        "duplicate_host",
        "parallel_zero",
        "strict_host_keys_no",
        "tag_invalid",
        "address_in_defaults",
        "port_invalid",
    ] {
        assert!(
            names.iter().any(|n| n == needed),
            "no {needed}.toml in {BAD}"
        );
    }
}

#[test]
fn every_bad_fleet_reports_exactly_its_expected_errors() {
    let failures = corpus_support::check(BAD, load_with_profiles);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn errors_say_the_file_is_not_a_valid_fleet() {
    let err = load(Path::new("tests/fleets/bad/parallel_zero.toml")).expect_err("parallel = 0");
    assert_eq!(
        err.to_string(),
        "tests/fleets/bad/parallel_zero.toml is not a valid fleet: 1 error"
    );
    let err = load(Path::new("tests/fleets/bad/absent.toml")).expect_err("no such file");
    assert!(
        err.errors[0]
            .message
            .starts_with("cannot read fleet file tests/fleets/bad/absent.toml"),
        "{}",
        err.errors[0].message
    );
}

/// `load` checks that each profile exists; only `load_with_profiles` loads them.
#[test]
fn load_alone_does_not_load_the_profiles() {
    let fleet = load(Path::new("tests/fleets/bad/profile_has_errors.toml"))
        .expect("the fleet file itself is valid");
    assert_eq!(fleet.hosts.len(), 1);
}

fn absolute(rel: &str) -> PathBuf {
    clean(&std::env::current_dir().unwrap().join(rel))
}

#[test]
fn a_good_fleet_loads_with_defaults_merged_into_every_host() {
    let fleet = load(Path::new("tests/fleets/good/fleet.toml")).unwrap_or_else(|e| {
        panic!("{}", describe(&e));
    });
    let gpu_profile = absolute("tests/fleets/profiles/gpu.toml");
    let expected = Fleet {
        path: "tests/fleets/good/fleet.toml".into(),
        parallel: 2,
        confirm_timeout: Duration::from_secs(90),
        strict_host_keys: StrictHostKeys::Yes,
        known_hosts: Some(absolute("tests/fleets/good/known_hosts")),
        hosts: [
            Host {
                name: "gpu-1".into(),
                address: "10.0.0.11".into(),
                user: Some("ops".into()),
                port: Some(2222),
                identity_file: Some(absolute("tests/fleets/good/keys/fleet_ed25519")),
                profile: gpu_profile.clone(),
                root: None,
                tags: vec!["gpu".into()],
            },
            Host {
                name: "gpu-2.lab".into(),
                address: "gpu-2.lab".into(),
                user: Some("ops".into()),
                port: Some(2222),
                identity_file: Some(absolute("tests/fleets/good/keys/fleet_ed25519")),
                profile: gpu_profile.clone(),
                root: Some("/var/tmp/stage".into()),
                tags: vec!["gpu".into(), "staging".into()],
            },
            Host {
                name: "forge".into(),
                address: "forge.lab.example".into(),
                user: Some("root".into()),
                port: Some(22),
                identity_file: Some("/etc/sovereign/forge_key".into()),
                profile: absolute("tests/fleets/profiles/forge.toml"),
                root: None,
                tags: vec!["forge".into()],
            },
        ]
        .into_iter()
        .map(|h| (h.name.clone(), h))
        .collect(),
    };
    assert_eq!(fleet, expected);
    assert_eq!(
        fleet.profiles(),
        [absolute("tests/fleets/profiles/forge.toml"), gpu_profile]
    );
    assert_eq!(fleet.strict_host_keys.as_ssh_option(), "yes");
}

#[test]
fn a_fleet_that_sets_nothing_gets_the_documented_defaults() {
    use sovereign::fleet::file::{
        DEFAULT_CONFIRM_TIMEOUT, DEFAULT_PARALLEL, DEFAULT_STRICT_HOST_KEYS,
    };
    let fleet = load(Path::new("tests/fleets/good/minimal.toml")).unwrap();
    assert_eq!(fleet.parallel, DEFAULT_PARALLEL);
    assert_eq!(fleet.parallel, 10);
    assert_eq!(fleet.confirm_timeout, DEFAULT_CONFIRM_TIMEOUT);
    assert_eq!(fleet.confirm_timeout, Duration::from_secs(30));
    assert_eq!(fleet.strict_host_keys, DEFAULT_STRICT_HOST_KEYS);
    assert_eq!(fleet.strict_host_keys, StrictHostKeys::AcceptNew);
    assert_eq!(fleet.known_hosts, None);
    let solo = &fleet.hosts["solo"];
    assert_eq!(solo.address, "solo", "the name is the address");
    assert_eq!(
        (&solo.user, solo.port, &solo.identity_file, &solo.root),
        (&None, None, &None, &None)
    );
    assert!(solo.tags.is_empty());
}

#[test]
fn load_with_profiles_loads_each_profile_once() {
    let checked = load_with_profiles(Path::new("tests/fleets/good/fleet.toml")).unwrap();
    assert_eq!(checked.profiles.len(), 2);
    assert!(
        checked
            .profiles
            .contains_key(&absolute("tests/fleets/profiles/gpu.toml"))
    );
    assert_eq!(
        checked.files,
        [
            PathBuf::from("tests/fleets/good/fleet.toml"),
            PathBuf::from("tests/fleets/profiles/forge.toml"),
            PathBuf::from("tests/fleets/profiles/gpu.toml"),
        ]
    );
}

fn render(path: &str) -> String {
    let err = load_with_profiles(Path::new(path)).expect_err("invalid fleet");
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(80)
        .render_report(&mut out, &err)
        .unwrap();
    out
}

#[test]
fn fleet_errors_render_as_profile_errors_do() {
    insta::assert_snapshot!(
        "strict_host_keys_no",
        render("tests/fleets/bad/strict_host_keys_no.toml")
    );
    insta::assert_snapshot!(
        "profile_has_errors",
        render("tests/fleets/bad/profile_has_errors.toml")
    );
}

/// Run the binary with colour off.
fn sovereign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .arg("--color")
        .arg("never")
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run sovereign")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_fleet_accepts_a_good_fleet_with_a_summary() {
    let out = sovereign(&["validate", "--fleet", "tests/fleets/good/fleet.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr).trim_end(),
        "tests/fleets/good/fleet.toml is valid: 3 hosts (tags: forge 1, gpu 2, staging 1), 2 profiles"
    );
    let out = sovereign(&["validate", "--fleet", "tests/fleets/good/minimal.toml"]);
    assert_eq!(
        text(&out.stderr).trim_end(),
        "tests/fleets/good/minimal.toml is valid: 1 host, 1 profile"
    );
}

#[test]
fn validate_fleet_json_lists_every_file_read() {
    let out = sovereign(&[
        "validate",
        "--fleet",
        "tests/fleets/good/fleet.toml",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(
        json["files"],
        serde_json::json!([
            "tests/fleets/good/fleet.toml",
            "tests/fleets/profiles/forge.toml",
            "tests/fleets/profiles/gpu.toml"
        ])
    );
    assert_eq!(json["errors"], serde_json::json!([]));
}

#[test]
fn validate_fleet_reports_fleet_and_profile_errors_and_exits_1() {
    let out = sovereign(&["validate", "--fleet", "tests/fleets/bad/port_invalid.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("tests/fleets/bad/port_invalid.toml is not a valid fleet: 3 errors"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[tests/fleets/bad/port_invalid.toml:9:8]"),
        "{stderr}"
    );

    let out = sovereign(&[
        "validate",
        "--json",
        "--fleet",
        "tests/fleets/bad/profile_has_errors.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{json}");
    assert_eq!(errors[0]["file"], "tests/fleets/profiles/broken.toml");
    assert_eq!(errors[0]["line"], 3);
    assert_eq!(errors[0]["column"], 1);
    assert_eq!(errors[0]["key_path"], "host.nmae");
}

#[test]
fn validate_takes_a_profile_or_a_fleet() {
    let neither = sovereign(&["validate"]);
    assert_eq!(neither.status.code(), Some(2), "{}", text(&neither.stderr));
    let both = sovereign(&[
        "validate",
        "tests/fleets/profiles/gpu.toml",
        "--fleet",
        "tests/fleets/good/fleet.toml",
    ]);
    assert_eq!(both.status.code(), Some(2), "{}", text(&both.stderr));
    // A profile alone still validates as before.
    let profile = sovereign(&["validate", "tests/fleets/profiles/gpu.toml"]);
    assert_eq!(profile.status.code(), Some(0), "{}", text(&profile.stderr));
}

fn fleet_schema_from_the_binary() -> serde_json::Value {
    let out = sovereign(&["schema", "--fleet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the schema is JSON")
}

fn toml_as_json(path: &str) -> serde_json::Value {
    let value: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::to_value(value).unwrap()
}

#[test]
fn schema_fleet_accepts_the_good_fleets_and_refuses_what_it_can_say() {
    let schema = fleet_schema_from_the_binary();
    assert_eq!(schema["title"], "sovereign fleet");
    assert_eq!(schema["properties"]["parallel"]["default"], 10);
    let validator = jsonschema::validator_for(&schema).expect("the fleet schema compiles");
    for good in [
        "tests/fleets/good/fleet.toml",
        "tests/fleets/good/minimal.toml",
    ] {
        let json = toml_as_json(good);
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{good}: {errors:?}");
    }
    // What the schema itself can say, an editor says too.
    for bad in [
        "unknown_key_top",
        "unknown_key_host",
        "unknown_key_defaults",
        "parallel_zero",
        "strict_host_keys_no",
        "tag_invalid",
        "address_in_defaults",
        "port_invalid",
        "host_name_invalid",
    ] {
        let json = toml_as_json(&format!("{BAD}/{bad}.toml"));
        assert!(!validator.is_valid(&json), "the schema accepts {bad}.toml");
    }
    // The profile's schema is another one.
    let profile = sovereign(&["schema"]);
    let profile: serde_json::Value = serde_json::from_slice(&profile.stdout).unwrap();
    assert_ne!(profile, schema);
}
