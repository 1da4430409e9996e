//! Every example profile in profiles/ loads and validates, imports what exists in
//! modules/, and expects an archetype of the hardware database.

use std::path::{Path, PathBuf};

use sovereign::hardware;

fn files_in(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_profile_is_valid() {
    let profiles = files_in("profiles");
    assert!(profiles.len() >= 5, "profiles/: {profiles:?}");
    for path in profiles {
        let valid = sovereign::profile::load(&path)
            .unwrap_or_else(|e| panic!("{} does not validate: {e:?}", path.display()));
        if let Some(expect) = valid
            .profile
            .host
            .as_ref()
            .and_then(|h| h.expect.as_deref())
        {
            assert!(
                hardware::archetype_ids().contains(&expect),
                "{}: host.expect = {expect:?} is not in hardware/",
                path.display()
            );
        }
    }
}

#[test]
fn there_is_a_profile_for_each_machine_class_of_the_design() {
    for (file, archetype) in [
        ("rtx4090.toml", "rtx-4090"),
        ("2x3090.toml", "2x-rtx-3090"),
        ("m2-ultra.toml", "m2-ultra"),
        ("rtx3060.toml", "rtx-3060"),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("profiles")
            .join(file);
        let valid = sovereign::profile::load(&path)
            .unwrap_or_else(|e| panic!("{file} does not validate: {e:?}"));
        let profile = valid.profile;
        assert_eq!(
            profile.host.as_ref().and_then(|h| h.expect.as_deref()),
            Some(archetype),
            "{file}"
        );
        let inference = profile.inference.as_ref().expect("an [inference] section");
        assert!(!inference.models.is_empty(), "{file} serves no model");
        for (name, model) in &inference.models {
            let sha = model.sha256.as_deref().unwrap_or_default();
            assert!(
                sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "{file}: model {name} has no 64-hex-digit sha256"
            );
        }
        assert!(!profile.checks.is_empty(), "{file} has no health checks");
        assert!(profile.files.contains_key("/etc/motd"), "{file}");
        assert!(
            profile
                .storage
                .as_ref()
                .is_some_and(|s| s.pools.contains_key("tank")),
            "{file} declares the pool the Nest module's datasets live on"
        );
    }
}

#[test]
fn every_import_names_an_existing_module() {
    let mut used = Vec::new();
    for path in files_in("profiles") {
        let text = std::fs::read_to_string(&path).unwrap();
        let value: toml::Value = toml::from_str(&text).unwrap();
        let imports = value.get("imports").and_then(|i| i.as_array());
        for import in imports.into_iter().flatten() {
            let rel = import.as_str().expect("imports are strings");
            let target = path.parent().unwrap().join(rel);
            assert!(
                target.is_file(),
                "{}: import {rel:?} does not exist",
                path.display()
            );
            used.push(target.canonicalize().unwrap());
        }
    }
    for module in files_in("modules") {
        assert!(
            used.contains(&module.canonicalize().unwrap()),
            "{} is imported by no example profile",
            module.display()
        );
    }
}
