//! The storage domain end to end through the `sovereign` binary on real zfs-fuse pools:
//! apply, idempotent re-plan, kept datasets exit 0, a failing check rolls storage back,
//! and `sovereign snapshot` on a controlled clock.

mod storage_support;

use storage_support::*;

fn profile(pool: &str, compression: &str, with_extra: bool, check: &str) -> String {
    let extra = if with_extra {
        format!("[storage.datasets.\"{pool}/extra\"]\n")
    } else {
        String::new()
    };
    format!(
        r#"
[storage.pools.{pool}]
vdevs = ["/vdev/{pool}.img"]
filesystem = {{ mountpoint = "/mnt/{pool}" }}

[storage.datasets."{pool}/data"]
properties = {{ compression = "{compression}" }}
snapshots = "rolling"

{extra}
[storage.snapshot_policies.rolling]
hourly = 1

{check}
"#
    )
}

const FAILING_CHECK: &str = "[[checks]]\nname = \"always fails\"\ncommand = [\"false\"]\n";

#[test]
fn apply_replan_keep_rollback_and_snapshot_through_the_binary() {
    let mut w = World::new();
    let pool = w.pool("cli");
    w.file_vdev(&format!("/vdev/{pool}.img"), 96);
    let data = format!("{pool}/data");

    let first = w.profile_file("first.toml", &profile(&pool, "off", true, ""));
    let f = first.to_str().unwrap();
    let plan = w.bin(&["plan", f]);
    assert_eq!(plan.code, Some(0), "{}", plan.stderr);
    assert!(
        plan.stderr.contains(&format!("storage.pool:{pool}")),
        "{}",
        plan.stderr
    );
    let r = w.bin(&["apply", "--yes", f]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(zget(&data, "compression"), "off");
    let again = w.bin(&["plan", "--detailed-exitcode", f]);
    assert_eq!(
        again.code,
        Some(0),
        "no changes after apply:\n{}",
        again.stderr
    );

    // The profile drops a dataset: it is kept, and a plan with only kept entries exits 0.
    let fewer = w.profile_file("fewer.toml", &profile(&pool, "off", false, ""));
    let fw = fewer.to_str().unwrap();
    let kept = w.bin(&["plan", "--detailed-exitcode", fw]);
    assert_eq!(kept.code, Some(0), "{}", kept.stderr);
    assert!(
        kept.stderr
            .contains(&format!("storage.dataset:{pool}/extra")),
        "{}",
        kept.stderr
    );
    let r = w.bin(&["apply", "--yes", fw]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(exists(&format!("{pool}/extra")));

    // A failing check after a property change rolls the change back.
    let failing = w.profile_file(
        "failing.toml",
        &profile(&pool, "gzip", false, FAILING_CHECK),
    );
    let r = w.bin(&["apply", "--yes", failing.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "rolled back:\n{}", r.stderr);
    assert_eq!(
        zget(&data, "compression"),
        "off",
        "the rollback restored the property"
    );
    let back = w.bin(&["plan", "--detailed-exitcode", fw]);
    assert_eq!(back.code, Some(0), "{}", back.stderr);

    // The snapshot command on a controlled clock, JSON on stdout.
    let snap = w.bin(&["snapshot", "--json", "--now", "2026-11-24T10:00:00Z", fw]);
    assert_eq!(snap.code, Some(0), "{}", snap.stderr);
    let report: serde_json::Value = serde_json::from_str(&snap.stdout).unwrap();
    assert_eq!(
        report["taken"],
        serde_json::json!([format!("{data}@sovereign-hourly-20261124T100000Z")])
    );
    let snap = w.bin(&["snapshot", "--json", "--now", "2026-11-24T11:00:00Z", fw]);
    let report: serde_json::Value = serde_json::from_str(&snap.stdout).unwrap();
    assert_eq!(
        report["pruned"],
        serde_json::json!([format!("{data}@sovereign-hourly-20261124T100000Z")])
    );

    // With --allow-destroy the kept dataset goes; then nothing is left to do.
    let r = w.bin(&["apply", "--yes", "--allow-destroy", fw]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!exists(&format!("{pool}/extra")));
    let done = w.bin(&["plan", "--detailed-exitcode", fw]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
}
