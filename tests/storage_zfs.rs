//! The storage domain against real ZFS (zfs-fuse here) on file vdevs: create, change,
//! adopt, keep, destroy, refuse, snapshot, health; after every apply, a plan with no
//! changes.

mod storage_support;

use sovereign::domains::storage::snapshots;
use sovereign::plan::Action;
use storage_support::*;

fn pool_profile(pool: &str, extra: &str) -> String {
    format!(
        r#"
[storage.pools.{pool}]
vdevs = ["/vdev/{pool}.img"]
filesystem = {{ mountpoint = "/mnt/{pool}", compression = "on" }}
{extra}
"#
    )
}

#[test]
fn creates_a_pool_and_nested_datasets_then_plans_nothing() {
    let mut w = World::new();
    let pool = w.pool("create");
    w.file_vdev(&format!("/vdev/{pool}.img"), 96);
    let p = w.profile(&pool_profile(
        &pool,
        &format!(
            r#"
[storage.datasets."{pool}/models/coder"]
properties = {{ recordsize = "64K", atime = "off", "sovereign:role" = "models" }}
"#
        ),
    ));
    let applied = w.apply(&p, false).unwrap();
    let names: Vec<String> = applied.iter().map(|c| c.address.to_string()).collect();
    assert_eq!(
        names,
        [
            format!("storage.pool:{pool}"),
            format!("storage.dataset:{pool}/models"),
            format!("storage.dataset:{pool}/models/coder")
        ]
    );
    let coder = format!("{pool}/models/coder");
    assert_eq!(zget(&coder, "recordsize"), "65536");
    assert_eq!(zget(&coder, "atime"), "off");
    assert_eq!(zget(&coder, "sovereign:role"), "models");
    assert_eq!(
        zget(&coder, "compression"),
        "on",
        "inherited from the pool's root"
    );
    let owner = w.path("/var/lib/sovereign").display().to_string();
    assert_eq!(zget(&coder, "sovereign:owner"), owner);
    // The implicit parent is marked too: sovereign made it.
    assert_eq!(zget(&format!("{pool}/models"), "sovereign:owner"), owner);
    assert_eq!(
        zget(&pool, "mountpoint"),
        w.path(&format!("/mnt/{pool}")).display().to_string()
    );
    w.assert_converged(&p);
    assert!(w.health(&p).iter().all(|h| h.ok), "{:?}", w.health(&p));
}

#[test]
fn a_changed_property_is_updated_after_a_pre_apply_snapshot() {
    let mut w = World::new();
    let pool = w.pool("update");
    w.file_vdev(&format!("/vdev/{pool}.img"), 96);
    let ds = |c: &str| {
        format!(
            "[storage.datasets.\"{pool}/data\"]\nproperties = {{ compression = \"{c}\", quota = \"32M\" }}\n"
        )
    };
    let first = w.profile(&pool_profile(&pool, &ds("off")));
    w.apply(&first, false).unwrap();
    w.assert_converged(&first);

    let second = w.profile(&pool_profile(&pool, &ds("gzip-6")));
    let plan = w.plan(&second, false).unwrap();
    let change = plan.changes.iter().find(|c| c.is_pending()).unwrap();
    assert_eq!(change.action, Action::Update);
    assert_eq!(
        change.address.to_string(),
        format!("storage.dataset:{pool}/data")
    );
    let f = &change.fields[0];
    assert_eq!(
        (f.name.as_str(), f.before.as_deref(), f.after.as_deref()),
        ("compression", Some("off"), Some("gzip-6"))
    );
    let generation = w.generation;
    w.apply(&second, false).unwrap();
    assert_eq!(
        zget(&format!("{pool}/data"), "compression"),
        "gzip",
        "gzip-6 is gzip's default level"
    );
    assert!(
        exists(&format!("{pool}/data@sovereign-pre-{generation}")),
        "the pre-apply snapshot is there"
    );
    w.assert_converged(&second);
}

#[test]
fn an_unmarked_dataset_named_in_the_profile_is_adopted() {
    let mut w = World::new();
    let pool = w.pool("adopt");
    w.file_vdev(&format!("/vdev/{pool}.img"), 96);
    let bare = w.profile(&pool_profile(&pool, ""));
    w.apply(&bare, false).unwrap();
    sh(&[
        "zfs",
        "create",
        "-o",
        "atime=on",
        &format!("{pool}/handmade"),
    ]);

    let p = w.profile(&pool_profile(
        &pool,
        &format!("[storage.datasets.\"{pool}/handmade\"]\nproperties = {{ atime = \"off\" }}\n"),
    ));
    let plan = w.plan(&p, false).unwrap();
    let change = plan.changes.iter().find(|c| c.is_pending()).unwrap();
    assert_eq!(change.action, Action::Adopt);
    w.apply(&p, false).unwrap();
    let handmade = format!("{pool}/handmade");
    assert_eq!(zget(&handmade, "atime"), "off");
    assert_eq!(
        zget(&handmade, "sovereign:owner"),
        w.path("/var/lib/sovereign").display().to_string()
    );
    w.assert_converged(&p);
}

#[test]
fn a_zvol_is_a_plan_time_error_on_zfs_fuse() {
    let mut w = World::new();
    let pool = w.pool("zvol");
    w.file_vdev(&format!("/vdev/{pool}.img"), 96);
    let p = w.profile(&pool_profile(
        &pool,
        &format!("[storage.zvols.\"{pool}/vm\"]\nsize = \"16M\"\n"),
    ));
    let dialect = sovereign::domains::storage::detect(&sovereign::host::RealHost).unwrap();
    if dialect.has_zvols() {
        // OpenZFS runs zvols for real (the VM tests); here the plan creates one.
        assert!(w.plan(&p, false).is_ok());
        return;
    }
    let err = w
        .plan(&p, false)
        .err()
        .expect("a zvol on zfs-fuse is refused")
        .to_string();
    assert!(err.contains("cannot create volumes"), "{err}");
    assert!(!exists(&pool), "nothing was created");
}

#[test]
fn a_property_the_dialect_lacks_is_a_plan_time_error() {
    let mut w = World::new();
    let pool = w.pool("dialect");
    w.file_vdev(&format!("/vdev/{pool}.img"), 96);
    let dialect = sovereign::domains::storage::detect(&sovereign::host::RealHost).unwrap();
    let (prop, value) = if dialect.accepts_compression("lz4") {
        ("recordsize", "32M")
    } else {
        ("compression", "lz4")
    };
    let p = w.profile(&pool_profile(
        &pool,
        &format!("[storage.datasets.\"{pool}/x\"]\nproperties = {{ {prop} = \"{value}\" }}\n"),
    ));
    let err = w
        .plan(&p, false)
        .err()
        .expect("refused at plan time")
        .to_string();
    assert!(
        err.contains(&format!("storage.datasets.\"{pool}/x\".properties.{prop}")),
        "{err}"
    );
    assert!(err.contains(&dialect.describe()), "{err}");
    let p = w.profile(&pool_profile(
        &pool,
        &format!("[storage.datasets.\"{pool}/x\"]\nproperties = {{ compresion = \"on\" }}\n"),
    ));
    let err = w.plan(&p, false).err().unwrap().to_string();
    assert!(err.contains("did you mean `compression`"), "{err}");
}

#[test]
fn a_file_vdev_holding_ext4_is_refused_unless_forced() {
    let mut w = World::new();
    let pool = w.pool("ext4");
    let img = w.file_vdev(&format!("/vdev/{pool}.img"), 96);
    sh(&["mkfs.ext4", "-q", "-F", img.to_str().unwrap()]);
    let p = w.profile(&pool_profile(&pool, ""));
    let err = w.plan(&p, false).err().expect("refused").to_string();
    assert!(
        err.contains("refusing to create pool")
            && err.contains("ext4")
            && err.contains("force = true"),
        "{err}"
    );
    assert!(!exists(&pool));

    let forced = w.profile(&pool_profile(&pool, "").replace(
        "compression = \"on\" }",
        "compression = \"on\" }\nforce = true",
    ));
    let plan = w.plan(&forced, false).unwrap();
    assert!(plan.changes[0].flags.destructive, "forcing is flagged");
    w.apply(&forced, false).unwrap();
    assert!(exists(&pool));
    w.assert_converged(&forced);
}

#[test]
fn a_removed_dataset_is_kept_and_destroyed_only_when_allowed() {
    let mut w = World::new();
    let pool = w.pool("destroy");
    w.file_vdev(&format!("/vdev/{pool}.img"), 96);
    let both = w.profile(&pool_profile(
        &pool,
        &format!("[storage.datasets.\"{pool}/keep\"]\n[storage.datasets.\"{pool}/gone/child\"]\n"),
    ));
    w.apply(&both, false).unwrap();
    sh(&["zfs", "snapshot", &format!("{pool}/gone/child@manual")]);

    let fewer = w.profile(&pool_profile(
        &pool,
        &format!("[storage.datasets.\"{pool}/keep\"]\n"),
    ));
    let plan = w.plan(&fewer, false).unwrap();
    assert_eq!(plan.changes.len(), 1, "{:#?}", plan.changes);
    let kept = &plan.changes[0];
    assert_eq!(
        (kept.action, kept.address.to_string()),
        (Action::Keep, format!("storage.dataset:{pool}/gone"))
    );
    assert!(!kept.is_pending(), "kept is not a pending change");
    w.apply(&fewer, false).unwrap();
    assert!(
        exists(&format!("{pool}/gone/child")),
        "kept without --allow-destroy"
    );
    w.assert_converged(&fewer);

    let plan = w.plan(&fewer, true).unwrap();
    let delete = &plan.changes[0];
    assert_eq!(delete.action, Action::Delete);
    let listed: Vec<&str> = delete.fields.iter().map(|f| f.name.as_str()).collect();
    let (gone, child, snap) = (
        format!("{pool}/gone"),
        format!("{pool}/gone/child"),
        format!("{pool}/gone/child@manual"),
    );
    assert_eq!(listed, [snap.as_str(), child.as_str(), gone.as_str()]);
    w.apply(&fewer, true).unwrap();
    assert!(!exists(&gone) && !exists(&child) && !exists(&snap));
    assert!(exists(&format!("{pool}/keep")));
    w.assert_converged(&fewer);
}

#[test]
fn a_snapshot_policy_takes_and_prunes_with_a_controlled_clock() {
    let mut w = World::new();
    let pool = w.pool("snap");
    w.file_vdev(&format!("/vdev/{pool}.img"), 96);
    let p = w.profile(&pool_profile(
        &pool,
        &format!("[storage.datasets.\"{pool}/data\"]\nsnapshots = \"rolling\"\n[storage.datasets.\"{pool}/other\"]\n[storage.snapshot_policies.rolling]\nhourly = 2\ndaily = 1\n"),
    ));
    w.apply(&p, false).unwrap();
    let data = format!("{pool}/data");
    let policy = p.profile.storage.as_ref().unwrap().snapshot_policies["rolling"].clone();
    let datasets = std::collections::BTreeMap::from([(data.clone(), policy)]);
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let host = sovereign::host::RealHost;

    let first = snapshots::run(&host, at("2026-11-24T10:05:00Z"), &datasets).unwrap();
    assert_eq!(first.taken.len(), 2, "hourly and daily: {first:?}");
    snapshots::run(&host, at("2026-11-24T11:05:00Z"), &datasets).unwrap();
    let third = snapshots::run(&host, at("2026-11-24T12:05:00Z"), &datasets).unwrap();
    assert_eq!(
        third.taken,
        [format!("{data}@sovereign-hourly-20261124T120500Z")]
    );
    assert_eq!(
        third.pruned,
        [format!("{data}@sovereign-hourly-20261124T100500Z")]
    );
    assert!(exists(&format!("{data}@sovereign-hourly-20261124T110500Z")));
    assert!(exists(&format!("{data}@sovereign-daily-20261124T100500Z")));
    let next_day = snapshots::run(&host, at("2026-11-25T00:30:00Z"), &datasets).unwrap();
    assert!(
        next_day
            .pruned
            .contains(&format!("{data}@sovereign-daily-20261124T100500Z")),
        "{next_day:?}"
    );
    // Datasets without a policy are never snapshotted.
    assert_eq!(
        sh(&[
            "zfs",
            "get",
            "-H",
            "-o",
            "name",
            "type",
            "-r",
            &format!("{pool}/other")
        ])
        .lines()
        .count(),
        1
    );
    w.assert_converged(&p);
}

#[test]
fn the_health_check_fails_when_a_dataset_is_not_mounted() {
    let mut w = World::new();
    let pool = w.pool("health");
    w.file_vdev(&format!("/vdev/{pool}.img"), 96);
    let p = w.profile(&pool_profile(
        &pool,
        &format!("[storage.datasets.\"{pool}/data\"]\n"),
    ));
    w.apply(&p, false).unwrap();
    assert!(w.health(&p).iter().all(|h| h.ok));
    sh(&["zfs", "unmount", &format!("{pool}/data")]);
    let failing: Vec<_> = w.health(&p).into_iter().filter(|h| !h.ok).collect();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert!(
        failing[0]
            .detail
            .contains(&format!("{pool}/data is not mounted")),
        "{failing:?}"
    );
}

#[test]
fn the_running_dialect_is_reported_for_detect() {
    let facts = sovereign::domains::storage::dialect_facts(&sovereign::host::RealHost);
    assert_eq!(facts["available"], true, "{facts}");
    let dialect = sovereign::domains::storage::detect(&sovereign::host::RealHost).unwrap();
    assert_eq!(facts["describe"], dialect.describe());
    match dialect {
        sovereign::domains::storage::Dialect::ZfsFuse { pool_version } => {
            assert_eq!(facts["dialect"], "zfs-fuse");
            assert_eq!(facts["pool_version"], pool_version);
            assert_eq!(facts["zvols"], false);
        }
        sovereign::domains::storage::Dialect::Openzfs { .. } => {
            assert_eq!(facts["dialect"], "openzfs")
        }
    }
    assert!(
        sovereign::domains::storage::dialect_line(&sovereign::host::RealHost).starts_with("ZFS: ")
    );
}
