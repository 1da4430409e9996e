//! Loading good profiles: imports merge NixOS-style into the expected profile, and every
//! value keeps the file, line and column it came from.
// Tests build their own worlds (files, folders) directly.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use sovereign::profile::{GpuLayers, Origin, Vdev, VdevKind, load, units::Size};

fn origin(file: &str, line: u32, column: u32) -> Origin {
    Origin {
        file: Path::new("tests/profiles/good").join(file),
        line,
        column,
    }
}

#[test]
fn a_profile_with_imports_merges_into_one_profile() {
    let vp = load(Path::new("tests/profiles/good/workstation.toml")).expect("valid");
    let p = &vp.profile;

    // The named file first, then imports in load order; base.toml (imported twice) once.
    let sources: Vec<String> = vp.sources.iter().map(|s| s.display().to_string()).collect();
    assert_eq!(
        sources,
        [
            "tests/profiles/good/workstation.toml",
            "tests/profiles/good/modules/nest.toml",
            "tests/profiles/good/modules/base.toml",
            "tests/profiles/good/modules/compute.toml",
        ]
    );

    assert_eq!(p.host.as_ref().unwrap().name.as_deref(), Some("forge-01"));
    let storage = p.storage.as_ref().unwrap();
    let tank = &storage.pools["tank"];
    // The importing file overrides the module's ashift; the module's vdevs stay.
    assert_eq!(tank.ashift, Some(13));
    assert_eq!(
        tank.vdevs,
        [Vdev::Group(sovereign::profile::VdevGroup {
            kind: VdevKind::Mirror,
            devices: vec![
                "/dev/disk/by-id/nvme-A".into(),
                "/dev/disk/by-id/nvme-B".into()
            ],
        })]
    );
    assert_eq!(tank.filesystem["compression"].to_zfs(), "lz4");
    let models = &storage.datasets["tank/models"];
    assert_eq!(models.properties["recordsize"].to_zfs(), "1M");
    assert_eq!(models.properties["compression"].to_zfs(), "off");
    assert_eq!(models.snapshots.as_deref(), Some("rolling"));
    assert_eq!(storage.zvols["tank/vms/hunt-01"].size, Size(64 << 30));
    assert_eq!(storage.snapshot_policies["rolling"].hourly, 24);

    let inference = p.inference.as_ref().unwrap();
    assert_eq!(inference.slots, Some(4));
    let coder = &inference.models["coder"];
    assert_eq!(
        coder.gpu_layers,
        Some(GpuLayers::Auto(sovereign::profile::AutoKeyword::Auto))
    );
    assert_eq!(coder.ttl.unwrap().as_std().as_secs(), 1800);
    assert_eq!(p.checks.len(), 1);
    assert_eq!(p.files["/etc/motd"].mode.unwrap().0, 0o644);
}

#[test]
fn every_value_keeps_its_origin_through_the_merge() {
    let vp = load(Path::new("tests/profiles/good/workstation.toml")).expect("valid");
    let cases = [
        ("host.name", origin("workstation.toml", 5, 8)),
        (
            "storage.pools.tank.ashift",
            origin("workstation.toml", 10, 10),
        ),
        (
            "storage.pools.tank.vdevs",
            origin("modules/nest.toml", 5, 1),
        ),
        (
            "storage.pools.tank.vdevs[0].devices[1]",
            origin("modules/nest.toml", 5, 66),
        ),
        (
            "storage.datasets.\"tank/models\".properties.recordsize",
            origin("modules/nest.toml", 10, 29),
        ),
        (
            "storage.snapshot_policies.rolling.daily",
            origin("modules/base.toml", 4, 9),
        ),
        (
            "inference.models.coder.ttl",
            origin("modules/compute.toml", 17, 7),
        ),
        ("checks[0].timeout", origin("workstation.toml", 19, 11)),
        (
            "files.\"/etc/motd\".mode",
            origin("workstation.toml", 14, 8),
        ),
    ];
    for (key, want) in cases {
        assert_eq!(vp.origin(key), Some(&want), "origin of {key}");
    }
    assert_eq!(vp.origin("storage.snapshot_policies.rolling.weekly"), None);
}

#[test]
fn a_large_profile_loads() {
    // 10,000 managed files: the loader's work is linear, so this stays quick.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!(
            "[files.\"/srv/generated/file-{i}.conf\"]\ncontent = \"value {i}\\n\"\nmode = \"0640\"\n\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    let vp = load(&path).expect("valid");
    assert_eq!(vp.profile.files.len(), 10_000);
    assert_eq!(
        vp.origin("files.\"/srv/generated/file-9999.conf\".mode")
            .map(|o| o.line),
        Some(9999 * 4 + 3)
    );
}

#[test]
fn the_importing_file_settles_a_disagreement_between_its_imports() {
    let vp = load(Path::new("tests/profiles/good/settled.toml")).expect("valid");
    let tank = &vp.profile.storage.as_ref().unwrap().pools["tank"];
    assert_eq!(tank.ashift, Some(13));
    assert_eq!(
        vp.origin("storage.pools.tank.ashift"),
        Some(&origin("settled.toml", 5, 10))
    );
    assert_eq!(
        vp.origin("storage.pools.tank.vdevs[0]"),
        Some(&origin("modules/ashift_12.toml", 2, 10))
    );
}

/// Templates are found and parsed at load, the way plan finds them: a `templates/` folder
/// next to the profile (or above it) first, the daemon's unit template included.
#[test]
fn templates_next_to_the_profile_are_found_and_parsed_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/site.j2"),
        "site {{ host.name }}\n",
    )
    .unwrap();
    let profile = profiles.join("forge.toml");
    std::fs::write(
        &profile,
        "[host]\nname = \"forge\"\n\n[files.\"/etc/site\"]\ntemplate = \"site.j2\"\n\n[inference]\n",
    )
    .unwrap();
    load(&profile).expect("the template above the profile is found");

    // A daemon unit template of the profile's own that does not parse is refused at
    // [inference], not at plan.
    std::fs::write(
        dir.path().join("templates/sovereign-inference.service.j2"),
        "[Service]\nExecStart={{ exe }\n",
    )
    .unwrap();
    let err = load(&profile).expect_err("the unit template does not parse");
    assert_eq!(err.errors.len(), 1, "{err:?}");
    let e = &err.errors[0];
    assert_eq!((e.line, e.column), (Some(7), Some(2)), "{e:?}");
    assert!(
        e.message.starts_with("the daemon's unit template ")
            && e.message.contains("has a syntax error on line 2"),
        "{}",
        e.message
    );
    assert!(e.hint.is_some());
}
