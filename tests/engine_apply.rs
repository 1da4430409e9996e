//! The plan/apply engine end to end: saved plans, the lock, failed and killed applies,
//! generations, rollback and health-checked automatic rollback. Real binary, real files,
//! real processes, temporary roots.
#![allow(clippy::disallowed_methods)]

mod engine_support;

use std::time::{Duration, Instant};

use engine_support::{Env, files_profile, to_run};

const ROLLED_BACK: i32 = 3;

#[test]
fn plan_json_graph_and_exit_codes() {
    let env = Env::new();
    let p = env.profile(
        "p.toml",
        &format!(
            "{}\n[inference]\nslots = 2\n",
            files_profile(&[("/etc/a", "a\n"), ("/etc/b", "b\n")])
        ),
    );
    let json = env.run(&["plan", "--json", p.to_str().unwrap()]);
    json.ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["format_version"], 1);
    // The two files, the daemon's options file and its unit; starting it is not
    // applicable under --root.
    assert_eq!(v["summary"]["create"], 4);
    assert_eq!(v["summary"]["not_applicable"], 1);
    assert_eq!(v["changes"][0]["address"], "files.file:/etc/a");
    assert_eq!(v["changes"][0]["action"], "create");
    assert!(v.get("unmanaged").is_none(), "{v:#}");

    let text = env.plan(&p);
    assert!(
        text.stderr
            .contains("+ services.service:sovereign-inference (not applicable:"),
        "{}",
        text.stderr
    );
    let graph = env.run(&["plan", "--graph", p.to_str().unwrap()]);
    assert!(
        graph.stdout.starts_with("digraph plan {"),
        "{}",
        graph.stdout
    );
    assert!(graph.stdout.contains("\"files.file:/etc/a\""));

    let r = env.run(&["plan", "--detailed-exitcode", p.to_str().unwrap()]);
    assert_eq!(r.code, Some(2));
    env.apply(&p).ok();
    env.assert_no_changes(&p);
}

#[test]
fn apply_without_a_terminal_needs_yes_and_a_second_apply_records_nothing() {
    let env = Env::new();
    let p = env.profile("p.toml", &files_profile(&[("/etc/a", "a\n")]));
    let r = env.run(&["apply", p.to_str().unwrap()]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("pass --yes"), "{}", r.stderr);
    assert!(!env.at("/etc/a").exists());

    env.apply(&p).ok();
    let again = env.apply(&p);
    again.ok();
    assert!(again.stderr.contains("No changes"), "{}", again.stderr);
    assert_eq!(env.generations().as_array().unwrap().len(), 1);
    env.assert_no_changes(&p);
}

/// A plan run while an apply holds the lock says an apply is running, never that it was
/// interrupted. The running apply is staged: the journal of a stopped one is given the pid
/// of a live process, which the lock file names as its holder (what a running apply leaves).
#[test]
fn a_plan_beside_a_running_apply_says_it_is_running() {
    let env = Env::new();
    let p = env.profile(
        "p.toml",
        &files_profile(&[("/etc/a", "a\n"), ("/etc/b", "b\n")]),
    );
    let r = apply_with_hook(&env, &p, "SOVEREIGN_TEST_STOP_AFTER_STEP", 1);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    #[allow(clippy::disallowed_methods)]
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let state = env.root().join("var/lib/sovereign");
    let journal = state.join("journal/1.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let begin: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let dead = begin["pid"].as_u64().unwrap();
    let text = text.replacen(
        &format!("\"pid\":{dead}"),
        &format!("\"pid\":{}", live.id()),
        1,
    );
    std::fs::write(&journal, text).unwrap();
    std::fs::write(
        state.join("lock"),
        format!("pid {}\nstarted 2026-12-06T00:00:00Z\n", live.id()),
    )
    .unwrap();

    let plan = env.plan(&p);
    let _ = live.kill();
    let _ = live.wait();
    plan.ok();
    assert!(
        plan.stderr.contains(&format!(
            "an apply is running (generation 1, pid {}",
            live.id()
        )),
        "{}",
        plan.stderr
    );
    assert!(!plan.stderr.contains("interrupted"), "{}", plan.stderr);
    // Once that process is gone, the same journal is an interrupted apply again.
    let plan = env.plan(&p);
    assert!(
        plan.stderr.contains("an interrupted apply (generation 1"),
        "{}",
        plan.stderr
    );
}

#[test]
fn a_plan_saved_under_a_bare_file_name_lands_in_the_current_folder() {
    let env = Env::new();
    let p = env.profile("p.toml", &files_profile(&[("/etc/a", "a\n")]));
    let out = env
        .cmd(&["plan", p.to_str().unwrap(), "-o", "tonight.plan"])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = env.dir.path().join("tonight.plan");
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(file["format_version"], 1);
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".sovereign-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    env.run(&["apply", "--yes", saved.to_str().unwrap()]).ok();
    assert_eq!(env.read("/etc/a"), "a\n");
}

#[test]
fn a_saved_plan_applies_and_a_stale_one_is_refused() {
    let env = Env::new();
    let p = env.profile("p.toml", &files_profile(&[("/etc/a", "a\n")]));
    let saved = env.dir.path().join("a.plan");
    env.run(&["plan", p.to_str().unwrap(), "-o", saved.to_str().unwrap()])
        .ok();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(file["format_version"], 1);
    assert!(file["tool_version"].is_string());
    assert!(file["observed"]["files.file:/etc/a"].is_string());

    // The machine changes under the saved plan: refused, naming what changed.
    std::fs::create_dir_all(env.at("/etc")).unwrap();
    std::fs::write(env.at("/etc/a"), "someone else\n").unwrap();
    let r = env.run(&["apply", saved.to_str().unwrap()]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("stale"), "{}", r.stderr);
    assert!(
        r.stderr.contains("files.file:/etc/a changed"),
        "{}",
        r.stderr
    );
    assert_eq!(env.read("/etc/a"), "someone else\n");

    // A fresh plan applies; then a profile edit makes it stale too.
    env.run(&["plan", p.to_str().unwrap(), "-o", saved.to_str().unwrap()])
        .ok();
    env.run(&["apply", saved.to_str().unwrap()]).ok();
    assert_eq!(env.read("/etc/a"), "a\n");
    env.assert_no_changes(&p);
    env.run(&["plan", p.to_str().unwrap(), "-o", saved.to_str().unwrap()])
        .ok();
    env.profile("p.toml", &files_profile(&[("/etc/a", "b\n")]));
    let r = env.run(&["apply", saved.to_str().unwrap()]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("profile"), "{}", r.stderr);
}

#[test]
fn a_concurrent_apply_is_refused_naming_the_holder() {
    let env = Env::new();
    let slow = env.profile(
        "slow.toml",
        &format!(
            "{}\n[[checks]]\nname = \"slow\"\ncommand = [\"sleep\", \"3\"]\n",
            files_profile(&[("/etc/a", "a\n")])
        ),
    );
    let first = env
        .cmd(&["apply", "--yes", slow.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lock = env.at("/var/lib/sovereign/lock");
    let wanted = format!("pid {}", first.id());
    let start = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&wanted)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the first apply never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let other = env.profile("other.toml", &files_profile(&[("/etc/b", "b\n")]));
    let r = env.apply(&other);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("another sovereign apply"), "{}", r.stderr);
    assert!(r.stderr.contains(&wanted), "{}", r.stderr);
    assert!(r.stderr.contains("started"), "{}", r.stderr);
    assert!(!env.at("/etc/b").exists());
    let done = to_run(first.wait_with_output().unwrap());
    done.ok();
    // The kernel released the lock with the process.
    env.apply(&other).ok();
    env.assert_no_changes(&other);
}

#[test]
fn a_failing_step_stops_and_a_rerun_converges() {
    let env = Env::new();
    let p = env.profile(
        "p.toml",
        &files_profile(&[("/etc/a", "a\n"), ("/etc/b", "b\n"), ("/etc/c", "c\n")]),
    );
    let r = apply_with_hook(&env, &p, "SOVEREIGN_TEST_FAIL_STEP", 2);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("files.file:/etc/b failed"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("1 of 3 changes were made"),
        "{}",
        r.stderr
    );
    assert!(env.at("/etc/a").exists());
    assert!(!env.at("/etc/c").exists());
    assert_eq!(env.generations()[0]["outcome"], "failed");

    env.apply(&p).ok();
    assert_eq!(env.read("/etc/c"), "c\n");
    assert_eq!(env.generations()[1]["outcome"], "succeeded");
    env.assert_no_changes(&p);
}

#[test]
fn a_killed_apply_is_reported_and_the_next_apply_converges() {
    let env = Env::new();
    std::fs::create_dir_all(env.at("/etc")).unwrap();
    std::fs::write(env.at("/etc/taken"), "original\n").unwrap();
    let p = env.profile(
        "p.toml",
        &files_profile(&[
            ("/etc/a", "a\n"),
            ("/etc/b", "b\n"),
            ("/etc/taken", "managed\n"),
            ("/opt/x/y", "y\n"),
        ]),
    );
    let r = apply_with_hook(&env, &p, "SOVEREIGN_TEST_STOP_AFTER_STEP", 2);
    assert_ne!(
        r.code,
        Some(0),
        "the process was meant to die: {}",
        r.stderr
    );

    let plan = env.plan(&p);
    plan.ok();
    assert!(
        plan.stderr.contains("an interrupted apply (generation 1"),
        "{}",
        plan.stderr
    );
    assert!(plan.stderr.contains("2 of 4 steps done"), "{}", plan.stderr);

    let apply = env.apply(&p);
    apply.ok();
    assert!(
        apply.stderr.contains("interrupted apply"),
        "{}",
        apply.stderr
    );
    env.assert_no_changes(&p);
    let gens = env.generations();
    assert_eq!(gens[0]["outcome"], "failed");
    assert_eq!(gens[1]["outcome"], "succeeded");

    // Ownership survived the crash: dropping everything restores and removes exactly.
    let empty = env.profile("e.toml", "");
    env.apply(&empty).ok();
    assert_eq!(env.read("/etc/taken"), "original\n");
    assert!(!env.at("/etc/a").exists() && !env.at("/opt").exists());
    env.assert_no_changes(&empty);
}

#[test]
fn rollback_returns_to_an_earlier_generation() {
    let env = Env::new();
    let v1 = env.profile("v1.toml", &files_profile(&[("/etc/a", "one\n")]));
    let v2 = env.profile(
        "v2.toml",
        &files_profile(&[("/etc/a", "two\n"), ("/etc/b", "b\n")]),
    );
    env.apply(&v1).ok();
    env.apply(&v2).ok();

    let r = env.run(&["rollback"]);
    assert_eq!(r.code, Some(1), "confirmation is needed: {}", r.stderr);
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);

    env.run(&["rollback", "1", "--yes"]).ok();
    assert_eq!(env.read("/etc/a"), "one\n");
    assert!(!env.at("/etc/b").exists());
    env.assert_no_changes(&v1);
    let gens = env.generations();
    assert_eq!(gens[2]["rollback_to"], 1);
    assert_eq!(gens[2]["outcome"], "succeeded");

    // The default target: the last succeeded generation before the current one (2).
    env.run(&["rollback", "--yes"]).ok();
    assert_eq!(env.read("/etc/a"), "two\n");
    env.assert_no_changes(&v2);
}

#[test]
fn a_failing_check_rolls_the_apply_back_with_exit_status_3() {
    let env = Env::new();
    let v1 = env.profile("v1.toml", &files_profile(&[("/etc/a", "one\n")]));
    env.apply(&v1).ok();
    let bad = env.profile(
        "bad.toml",
        &format!(
            "{}\n[[checks]]\nname = \"service answers\"\ncommand = [\"sh\", \"-c\", \"echo down >&2; exit 7\"]\nretries = 1\ninterval = \"10ms\"\n",
            files_profile(&[("/etc/a", "two\n"), ("/etc/new", "n\n")])
        ),
    );
    let r = env.apply(&bad);
    assert_eq!(r.code, Some(ROLLED_BACK), "{}", r.stderr);
    assert!(r.stderr.contains("service answers"), "{}", r.stderr);
    assert!(r.stderr.contains("status 7"), "{}", r.stderr);
    assert!(
        r.stderr.contains("Rolled back to generation 1"),
        "{}",
        r.stderr
    );
    assert_eq!(env.read("/etc/a"), "one\n");
    assert!(!env.at("/etc/new").exists());
    assert_eq!(env.generations()[1]["outcome"], "rolled_back");
    env.assert_no_changes(&v1);

    // --no-rollback leaves the changes and fails.
    let r = env.run(&["apply", "--yes", "--no-rollback", bad.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(env.read("/etc/a"), "two\n");
}

#[test]
fn a_failing_check_on_the_first_apply_rolls_back_to_nothing() {
    let env = Env::new();
    let bad = env.profile(
        "bad.toml",
        &format!(
            "{}\n[[checks]]\nname = \"never\"\ncommand = [\"false\"]\n",
            files_profile(&[("/srv/x/a", "a\n")])
        ),
    );
    let r = env.apply(&bad);
    assert_eq!(r.code, Some(ROLLED_BACK), "{}", r.stderr);
    assert!(
        r.stderr.contains("the state before the first generation"),
        "{}",
        r.stderr
    );
    assert!(!env.at("/srv").exists());
    let empty = env.profile("e.toml", "");
    env.assert_no_changes(&empty);
}

#[test]
fn host_expect_must_match_the_machine() {
    let env = Env::new();
    let p = env.profile("p.toml", "[host]\nexpect = \"no-such-archetype\"\n");
    let r = env.plan(&p);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("host.expect"), "{}", r.stderr);
}

/// `apply --yes PROFILE` with one of apply's test-only hooks set (stop after step N, a
/// journal full after N records).
fn apply_with_hook(
    env: &Env,
    profile: &std::path::Path,
    hook: &str,
    n: usize,
) -> engine_support::Run {
    to_run(
        env.cmd(&["apply", "--yes", profile.to_str().unwrap()])
            .env(hook, n.to_string())
            .output()
            .unwrap(),
    )
}

/// `/etc/a` ("one") and `n` files `/srv/bI` beside it.
fn a_and_more(n: usize) -> Vec<(String, String)> {
    std::iter::once(("/etc/a".to_string(), "one\n".to_string()))
        .chain((0..n).map(|i| (format!("/srv/b{i}"), format!("b{i}\n"))))
        .collect()
}

/// Owned (path, content) pairs as `files_profile` takes them.
fn pairs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect()
}

/// A profile of `files` plus a check that always fails (so apply rolls back).
fn failing(files: &[(&str, &str)]) -> String {
    format!(
        "{}\n[[checks]]\nname = \"never\"\ncommand = [\"false\"]\n",
        files_profile(files)
    )
}

#[test]
fn a_crash_after_the_last_step_is_settled_and_a_failed_apply_rolls_back_only_its_own_change() {
    let env = Env::new();
    let v1 = env.profile("v1.toml", &files_profile(&[("/etc/a", "one\n")]));
    env.apply(&v1).ok();
    let all = a_and_more(5);
    let v2_files = pairs(&all);
    let v2 = env.profile("v2.toml", &files_profile(&v2_files));
    // Killed after its last (5th) step: the machine matches v2, the record does not say so.
    let r = apply_with_hook(&env, &v2, "SOVEREIGN_TEST_STOP_AFTER_STEP", 5);
    assert_ne!(
        r.code,
        Some(0),
        "the process was meant to die: {}",
        r.stderr
    );

    // The next apply changes one file and its check fails.
    let mut v3_files = v2_files.clone();
    v3_files[0] = ("/etc/a", "two\n");
    let v3 = env.profile("v3.toml", &failing(&v3_files));
    let r = env.apply(&v3);
    assert_eq!(r.code, Some(ROLLED_BACK), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("rolled back to generation 2: 1 changes undone"),
        "{}",
        r.stderr
    );
    assert_eq!(env.read("/etc/a"), "one\n");
    for (path, content) in &all[1..] {
        assert_eq!(
            env.read(path),
            *content,
            "{path} is not this apply's to undo"
        );
    }
    let gens = env.generations();
    assert_eq!(gens[1]["outcome"], "succeeded", "{gens:#}");
    assert!(
        gens[1]["notes"].to_string().contains("matched its profile"),
        "the recovering apply records what it found: {gens:#}"
    );
    env.assert_no_changes(&v2);
}

#[test]
fn a_failed_apply_after_a_partial_crash_undoes_exactly_its_own_changes() {
    let env = Env::new();
    let v1 = env.profile("v1.toml", &files_profile(&[("/etc/a", "one\n")]));
    env.apply(&v1).ok();
    let all = a_and_more(4);
    let v2 = env.profile("v2.toml", &failing(&pairs(&all)));
    // Killed after 2 of 4 steps: b0 and b1 exist, b2 and b3 do not.
    let r = apply_with_hook(&env, &v2, "SOVEREIGN_TEST_STOP_AFTER_STEP", 2);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    // The recovering apply makes b2 and b3, its check fails: it undoes b2 and b3 only.
    let r = env.apply(&v2);
    assert_eq!(r.code, Some(ROLLED_BACK), "{}", r.stderr);
    assert!(r.stderr.contains("2 changes undone"), "{}", r.stderr);
    assert_eq!(env.read("/srv/b0"), "b0\n");
    assert_eq!(env.read("/srv/b1"), "b1\n");
    assert!(!env.at("/srv/b2").exists());
    assert!(!env.at("/srv/b3").exists());
    let gens = env.generations();
    assert_eq!(gens[1]["outcome"], "failed", "{gens:#}");
    assert!(
        gens[1]["notes"].to_string().contains("still to make"),
        "{gens:#}"
    );
}

#[test]
fn a_journal_that_cannot_be_written_ends_the_generation_failed_and_a_rerun_converges() {
    let env = Env::new();
    let p = env.profile(
        "p.toml",
        &files_profile(&[("/etc/a", "a\n"), ("/etc/b", "b\n"), ("/etc/c", "c\n")]),
    );
    let r = apply_with_hook(&env, &p, "SOVEREIGN_TEST_JOURNAL_FULL_AFTER", 3);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot write the journal"),
        "{}",
        r.stderr
    );
    let gens = env.generations();
    assert_eq!(gens[0]["outcome"], "failed", "never left running: {gens:#}");
    assert!(
        gens[0]["notes"]
            .to_string()
            .contains("cannot write the journal"),
        "it says why: {gens:#}"
    );
    env.apply(&p).ok();
    env.assert_no_changes(&p);
}

#[test]
fn a_write_killed_mid_way_leaves_no_temporary_file_after_recovery() {
    let env = Env::new();
    let p = env.profile(
        "p.toml",
        &files_profile(&[("/etc/a", "a\n"), ("/etc/b", "b\n")]),
    );
    let r = apply_with_hook(&env, &p, "SOVEREIGN_TEST_STOP_AFTER_STEP", 1);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    // As if killed inside step 2's write: its start is journalled, its temporary file is
    // beside the file (with a pid a PID namespace hands out again).
    let journal = env.at("/var/lib/sovereign/journal/1.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str("{\"event\":\"start\",\"step\":2,\"address\":\"files.file:/etc/b\"}\n");
    std::fs::write(&journal, text).unwrap();
    let leftover = env.at("/etc/.b.sovereign-1-0-0");
    std::fs::write(&leftover, "half").unwrap();

    let apply = env.apply(&p);
    apply.ok();
    assert!(!leftover.exists(), "recovery removes it: {}", apply.stderr);
    assert_eq!(env.read("/etc/b"), "b\n");
    let gens = env.generations();
    assert!(
        gens[0]["notes"].to_string().contains(".b.sovereign-1-0-0"),
        "the record says what was removed: {gens:#}"
    );
}
