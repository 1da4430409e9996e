//! Managed files end to end: the real binary against a temporary root, real files.
#![allow(clippy::disallowed_methods)]

mod engine_support;

use std::os::unix::fs::{PermissionsExt, symlink};

use engine_support::{Env, files_profile};

fn mode(env: &Env, logical: &str) -> u32 {
    std::fs::metadata(env.at(logical))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn files_are_created_changed_and_removed_with_the_folders_sovereign_made() {
    let env = Env::new();
    std::fs::create_dir_all(env.at("/etc")).unwrap();
    let v1 = env.profile(
        "p.toml",
        "[files.\"/etc/app/conf.d/main.conf\"]\ncontent = \"port = 1\\n\"\nmode = \"0777\"\n",
    );
    let plan = env.plan(&v1);
    plan.ok();
    assert!(
        plan.stderr
            .contains("+ files.file:/etc/app/conf.d/main.conf"),
        "{}",
        plan.stderr
    );
    assert!(plan.stderr.contains("+port = 1"), "{}", plan.stderr);
    assert!(!env.at("/etc/app").exists(), "plan touched the disk");

    env.apply(&v1).ok();
    assert_eq!(env.read("/etc/app/conf.d/main.conf"), "port = 1\n");
    // 0777 survives whatever the umask is: the mode is set exactly.
    assert_eq!(mode(&env, "/etc/app/conf.d/main.conf"), 0o777);
    env.assert_no_changes(&v1);

    let v2 = env.profile(
        "p.toml",
        "[files.\"/etc/app/conf.d/main.conf\"]\ncontent = \"port = 2\\n\"\nmode = \"0640\"\n",
    );
    let plan = env.plan(&v2);
    assert!(
        plan.stderr
            .contains("~ files.file:/etc/app/conf.d/main.conf"),
        "{}",
        plan.stderr
    );
    assert!(plan.stderr.contains("-port = 1"), "{}", plan.stderr);
    assert!(plan.stderr.contains("+port = 2"), "{}", plan.stderr);
    assert!(
        plan.stderr.contains("mode: 0777 -> 0640"),
        "{}",
        plan.stderr
    );
    env.apply(&v2).ok();
    assert_eq!(env.read("/etc/app/conf.d/main.conf"), "port = 2\n");
    assert_eq!(mode(&env, "/etc/app/conf.d/main.conf"), 0o640);
    env.assert_no_changes(&v2);

    let empty = env.profile("p.toml", "");
    let plan = env.plan(&empty);
    assert!(
        plan.stderr
            .contains("- files.file:/etc/app/conf.d/main.conf"),
        "{}",
        plan.stderr
    );
    env.apply(&empty).ok();
    assert!(
        !env.at("/etc/app").exists(),
        "folders sovereign created are removed"
    );
    assert!(
        env.at("/etc").exists(),
        "a folder that was there before stays"
    );
    env.assert_no_changes(&empty);
}

#[test]
fn a_file_that_existed_is_backed_up_and_put_back() {
    let env = Env::new();
    std::fs::create_dir_all(env.at("/etc")).unwrap();
    std::fs::write(env.at("/etc/hosts"), "127.0.0.1 original\n").unwrap();
    std::fs::set_permissions(env.at("/etc/hosts"), std::fs::Permissions::from_mode(0o600)).unwrap();

    let p = env.profile(
        "p.toml",
        &files_profile(&[("/etc/hosts", "127.0.0.1 managed\n")]),
    );
    let plan = env.plan(&p);
    assert!(
        plan.stderr.contains("<= files.file:/etc/hosts"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("-127.0.0.1 original"),
        "{}",
        plan.stderr
    );
    env.apply(&p).ok();
    assert_eq!(env.read("/etc/hosts"), "127.0.0.1 managed\n");
    env.assert_no_changes(&p);

    let empty = env.profile("p.toml", "");
    env.apply(&empty).ok();
    assert_eq!(env.read("/etc/hosts"), "127.0.0.1 original\n");
    assert_eq!(mode(&env, "/etc/hosts"), 0o600);
    env.assert_no_changes(&empty);
}

#[test]
fn a_path_that_escapes_the_root_through_a_symlink_is_refused() {
    let env = Env::new();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), env.at("/etc")).unwrap();
    let p = env.profile("p.toml", &files_profile(&[("/etc/motd", "hi\n")]));
    for args in [&["plan"][..], &["apply", "--yes"][..]] {
        let mut full = args.to_vec();
        full.push(p.to_str().unwrap());
        let r = env.run(&full);
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(r.stderr.contains("escapes the root"), "{}", r.stderr);
    }
    assert!(!outside.path().join("motd").exists());
}

#[test]
fn a_hand_edited_file_is_drift_converged_with_the_edit_kept_aside() {
    let env = Env::new();
    let v1 = env.profile("p.toml", &files_profile(&[("/srv/a.conf", "one\n")]));
    env.apply(&v1).ok();
    std::fs::write(env.at("/srv/a.conf"), "edited by hand\n").unwrap();

    // The same profile: the machine no longer matches it, and plan says so.
    let plan = env.run(&["plan", "--detailed-exitcode", v1.to_str().unwrap()]);
    assert_eq!(plan.code, Some(2), "drift is a change: {}", plan.stderr);
    assert!(
        plan.stderr.contains("~ files.file:/srv/a.conf"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("-edited by hand"),
        "the diff: {}",
        plan.stderr
    );
    assert!(
        !plan.stderr.contains("matches the profile"),
        "{}",
        plan.stderr
    );
    let kept_at = "/var/lib/sovereign/domains/files/edits/";
    assert!(
        plan.stderr.contains(kept_at),
        "plan says where: {}",
        plan.stderr
    );

    let apply = env.apply(&v1);
    apply.ok();
    assert_eq!(env.read("/srv/a.conf"), "one\n");
    assert!(
        apply.stderr.contains(kept_at),
        "apply says where: {}",
        apply.stderr
    );
    let saved: Vec<_> = std::fs::read_dir(env.at(kept_at))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        std::fs::read_to_string(saved[0].path()).unwrap(),
        "edited by hand\n"
    );
    let generations = env.generations();
    let last = generations.as_array().unwrap().last().unwrap();
    assert!(
        last["notes"].to_string().contains("edited by hand"),
        "the generation that replaced it says so: {last}"
    );
    env.assert_no_changes(&v1);

    // Removing a hand-edited file the profile dropped stays behind --allow-destroy.
    std::fs::write(env.at("/srv/a.conf"), "edited again\n").unwrap();
    let empty = env.profile("empty.toml", "");
    let plan = env.run(&["plan", "--detailed-exitcode", empty.to_str().unwrap()]);
    assert_eq!(
        plan.code,
        Some(0),
        "a kept change is not pending: {}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("! files.file:/srv/a.conf"),
        "{}",
        plan.stderr
    );
    assert!(
        !plan.stderr.contains("matches the profile"),
        "{}",
        plan.stderr
    );
    env.apply(&empty).ok();
    assert_eq!(env.read("/srv/a.conf"), "edited again\n", "not removed");
    let forced = env.run(&["apply", "--yes", "--allow-destroy", empty.to_str().unwrap()]);
    forced.ok();
    assert!(forced.stderr.contains("destructive"), "{}", forced.stderr);
    assert!(!env.at("/srv/a.conf").exists());
}

#[test]
fn templates_render_with_facts_and_sensitive_content_never_shows() {
    let env = Env::new();
    let tdir = env.dir.path().join("profiles/templates");
    std::fs::create_dir_all(&tdir).unwrap();
    std::fs::write(
        tdir.join("motd.j2"),
        "host {{ host.name }} ({{ facts.archetype }})\n",
    )
    .unwrap();
    let p = env.profile(
        "p.toml",
        "[host]\nname = \"forge\"\n\n[files.\"/etc/motd\"]\ntemplate = \"motd.j2\"\n\n\
         [files.\"/etc/key\"]\ncontent = \"hunter2-secret\\n\"\nmode = \"0600\"\nsensitive = true\n",
    );
    let plan = env.plan(&p);
    plan.ok();
    assert!(plan.stderr.contains("(sensitive)"), "{}", plan.stderr);
    let json = env.run(&["plan", "--json", p.to_str().unwrap()]);
    json.ok();
    for text in [&plan.stderr, &json.stdout] {
        assert!(!text.contains("hunter2"), "secret leaked:\n{text}");
    }
    env.apply(&p).ok();
    assert!(env.read("/etc/motd").starts_with("host forge ("));
    assert_eq!(env.read("/etc/key"), "hunter2-secret\n");
    let gens = env.run(&["generations"]);
    assert!(!gens.stdout.contains("hunter2"));
    env.assert_no_changes(&p);
}

#[test]
fn an_unknown_owner_or_undefined_variable_is_a_plan_error() {
    let env = Env::new();
    let p = env.profile(
        "p.toml",
        "[files.\"/etc/x\"]\ncontent = \"x\"\nowner = \"no-such-user-sovereign\"\n",
    );
    let r = env.plan(&p);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("no such user"), "{}", r.stderr);
    let p = env.profile("p.toml", &files_profile(&[("/etc/x", "{{ host.nmae }}")]));
    let r = env.plan(&p);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("files.\"/etc/x\".content"),
        "{}",
        r.stderr
    );
}
