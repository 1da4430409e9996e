//! The registry: every domain this build manages, each in its own folder behind the one
//! interface of [`crate::domain`]. This is the only file that names every domain; no
//! domain imports another (a tidy test holds that), so adding one is a folder and a line.

pub mod deployment;
pub mod files;
pub mod forge;
pub mod network;
pub mod services;
pub mod storage;

use crate::domain::{AnyDomain, Domain, erase};

/// Every domain this build manages, in the order their changes run when no dependency
/// says otherwise. Adding a domain is one line here.
pub fn registry() -> Vec<Box<dyn AnyDomain>> {
    vec![
        erase(files::Files),
        #[cfg(target_os = "linux")]
        erase(storage::Storage),
        #[cfg(target_os = "linux")]
        erase(network::Network),
        erase(forge::Forge),
        erase(deployment::Deployment),
        erase(services::Services),
    ]
}

/// Check every section's own rules (what its schema cannot say) over the merged profile
/// tree; `validate` runs them after the schema. `cx` says where the profile's templates
/// are.
pub fn check_sections(
    root: &crate::profile::tree::Node,
    cx: &crate::profile::rules::Context<'_>,
    out: &mut Vec<crate::profile::diagnostics::Issue>,
) {
    files::rules::check(root, cx, out);
    storage::rules::check(root, out);
    network::rules::check(root, out);
    forge::rules::check(root, out);
    services::rules::check(root, cx, out);
    deployment::rules::check(root, cx, out);
}

/// Render every section's templates with the profile's own values (after the typed profile
/// is read; see [`crate::profile::rules::check_rendered`]).
pub fn check_rendered(
    cx: &crate::profile::rules::Rendering<'_>,
    out: &mut Vec<crate::profile::diagnostics::Issue>,
) {
    files::rules::rendered(cx, out);
    services::rules::rendered(cx, out);
}

/// Move ledger entries written by earlier versions to the domain that owns them now: the
/// unit files (`services` `unit:NAME`) and the daemon's options file (`inference`
/// `file:PATH`) are the files domain's since every file sovereign writes has one
/// lifecycle. Runs before any domain reads its section; a no-op on a current ledger.
pub fn migrate(ledger: &mut crate::state::Ledger) {
    use crate::domain::requests::unit_file_path;
    let mut moved = Vec::new();
    if let Some(services) = ledger.domains.get_mut("services") {
        let units: Vec<String> = services
            .keys()
            .filter(|k| k.starts_with("unit:"))
            .cloned()
            .collect();
        for key in units {
            let entry = services.remove(&key).expect("listed above");
            moved.push((unit_file_path(&key["unit:".len()..]), entry));
        }
    }
    if let Some(inference) = ledger.domains.get_mut("inference") {
        let files: Vec<String> = inference
            .keys()
            .filter(|k| k.starts_with("file:"))
            .cloned()
            .collect();
        for key in files {
            let entry = inference.remove(&key).expect("listed above");
            moved.push((key["file:".len()..].to_string(), entry));
        }
    }
    for (path, old) in moved {
        let entry = files::Entry::File(files::OwnedFile {
            applied_sha256: old
                .get("applied_sha256")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            backup: None,
            sensitive: false,
            remove_after: Vec::new(),
        });
        let value = serde_json::to_value(entry).expect("a ledger entry serializes");
        let section = ledger.domains.entry(files::Files::NAME.into()).or_default();
        section.entry(files::file_key(&path)).or_insert(value);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::state::Ledger;

    #[test]
    fn unit_files_and_the_options_file_move_to_the_files_domain() {
        let mut ledger: Ledger = serde_json::from_value(json!({
            "version": 1,
            "domains": {
                "services": {
                    "unit:web": {"kind": "unit", "applied_sha256": "aa"},
                    "service:web": {"kind": "service", "unit_sha256": "aa", "enabled": true, "started": true}
                },
                "inference": {
                    "file:/etc/sovereign/inference/models.toml": {"kind": "file", "applied_sha256": "bb"},
                    "model:tiny": {"kind": "model", "sha256": "cc", "source": "/m"}
                },
                "files": {"file:/etc/motd": {"kind": "file", "applied_sha256": "dd"}}
            }
        }))
        .unwrap();
        migrate(&mut ledger);
        let files = &ledger.domains["files"];
        assert_eq!(
            files["file:/etc/systemd/system/web.service"],
            json!({"kind": "file", "applied_sha256": "aa"})
        );
        assert_eq!(
            files["file:/etc/sovereign/inference/models.toml"]["applied_sha256"],
            "bb"
        );
        assert!(files.contains_key("file:/etc/motd"));
        assert_eq!(
            ledger.domains["services"].keys().collect::<Vec<_>>(),
            ["service:web"]
        );
        assert_eq!(
            ledger.domains["inference"].keys().collect::<Vec<_>>(),
            ["model:tiny"]
        );
        // Every entry now reads as its domain's type.
        let section = |name: &str| serde_json::to_value(&ledger.domains[name]).unwrap();
        serde_json::from_value::<crate::domain::Owned<files::Entry>>(section("files")).unwrap();
        serde_json::from_value::<crate::domain::Owned<services::Entry>>(section("services"))
            .unwrap();
        serde_json::from_value::<crate::domain::Owned<deployment::Entry>>(section("inference"))
            .unwrap();
        let once = ledger.clone();
        migrate(&mut ledger);
        assert_eq!(ledger, once, "a current ledger is left as it is");
    }
}
