//! Carrying out services changes: the [`ServiceOp`] diff decided, through `systemctl` on
//! the host, recorded in the ledger. Unit files are the files domain's.

use anyhow::bail;

use super::systemctl::{self, unit};
use super::{Desired, Entry, ServiceOp, service_key};
use crate::domain::{ApplyContext, LedgerTx};
use crate::plan::Change;

pub fn apply(
    cx: &ApplyContext<'_>,
    _desired: &Desired,
    change: &Change,
    ledger: &mut LedgerTx<'_, Entry>,
) -> anyhow::Result<()> {
    let name = change.address.name.as_str();
    if change.address.kind != "service" {
        bail!(
            "the services domain has no {:?} resources",
            change.address.kind
        );
    }
    if let Some(why) = crate::host::systemd_unusable(cx.root, cx.host) {
        // The plan marks these not applicable; reaching here means the machine changed.
        bail!("{} cannot run here: {why}", change.address);
    }
    let unit = unit(name);
    match change.op::<ServiceOp>()? {
        ServiceOp::Remove => {
            systemctl::run(cx.host, &["disable", "--now", &unit])?;
            ledger.forget(&service_key(name))
        }
        ServiceOp::Converge {
            enable,
            disable,
            verb,
            record,
        } => {
            systemctl::run(cx.host, &["daemon-reload"])?;
            if *enable {
                systemctl::run(cx.host, &["enable", &unit])?;
            } else if *disable {
                systemctl::run(cx.host, &["disable", &unit])?;
            }
            if let Some(verb) = verb {
                systemctl::run(cx.host, &[verb, &unit])?;
            }
            ledger.record_result(&service_key(name), record.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use super::*;
    use crate::domain::requests::service_address;
    use crate::domain::{LedgerSink, Owned};
    use crate::domains::services::DesiredService;
    use crate::domains::services::health::health;
    use crate::host::fs::Root;
    use crate::host::{Cmd, CmdOutput, Host};
    use crate::plan::Action;

    /// A host where PID 1 is systemd: it records each command and answers `systemctl show`
    /// with captured text. Unit tests only (integration tests use the real machine).
    struct SystemdHost {
        show: &'static str,
        ran: Mutex<Vec<String>>,
    }

    impl Host for SystemdHost {
        fn run(&self, cmd: &Cmd) -> io::Result<CmdOutput> {
            self.ran.lock().unwrap().push(cmd.display());
            let is_show = cmd.argv.get(1).is_some_and(|a| a == "show");
            Ok(CmdOutput {
                code: Some(0),
                stdout: if is_show {
                    self.show.into()
                } else {
                    Vec::new()
                },
                stderr: Vec::new(),
                timed_out: false,
            })
        }
        fn has_program(&self, _program: &str) -> bool {
            true
        }
        fn systemd_booted(&self) -> bool {
            true
        }
    }

    struct Sink;

    impl LedgerSink for Sink {
        fn write(&mut self, _: &str, _: Option<serde_json::Value>, _: bool) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn host(show: &'static str) -> SystemdHost {
        SystemdHost {
            show,
            ran: Mutex::new(Vec::new()),
        }
    }

    fn cx<'a>(root: &'a Root, host: &'a SystemdHost) -> ApplyContext<'a> {
        ApplyContext {
            root,
            host,
            state_dir: std::path::Path::new("/nonexistent"),
            generation: 1,
            notes: Box::leak(Box::default()),
        }
    }

    fn converge(verb: &'static str) -> ServiceOp {
        ServiceOp::Converge {
            enable: true,
            disable: false,
            verb: Some(verb),
            record: Entry::Service {
                unit_sha256: "aa".into(),
                triggers: Default::default(),
                enabled: true,
                started: true,
            },
        }
    }

    #[test]
    fn a_new_service_is_reloaded_enabled_and_started_and_recorded() {
        let root = Root::system();
        let h = host("");
        let desired = Desired::new();
        let change = Change::new(service_address("x"), Action::Create).with_op(converge("start"));
        let mut owned = Owned::new();
        let mut sink = Sink;
        let mut tx = LedgerTx::new(&mut owned, &mut sink);
        apply(&cx(&root, &h), &desired, &change, &mut tx).unwrap();
        assert_eq!(
            *h.ran.lock().unwrap(),
            [
                "systemctl daemon-reload",
                "systemctl enable x.service",
                "systemctl start x.service"
            ]
        );
        assert!(matches!(
            owned.get("service:x"),
            Some(Entry::Service {
                started: true,
                enabled: true,
                ..
            })
        ));
    }

    #[test]
    fn a_restart_field_restarts_and_a_dropped_service_is_disabled_now() {
        let root = Root::system();
        let h = host("");
        let desired = Desired::new();
        let restart =
            Change::new(service_address("x"), Action::Update).with_op(converge("restart"));
        let mut owned = Owned::new();
        let mut sink = Sink;
        let mut tx = LedgerTx::new(&mut owned, &mut sink);
        apply(&cx(&root, &h), &desired, &restart, &mut tx).unwrap();
        let drop = Change::new(service_address("x"), Action::Delete).with_op(ServiceOp::Remove);
        apply(&cx(&root, &h), &Desired::new(), &drop, &mut tx).unwrap();
        assert_eq!(
            *h.ran.lock().unwrap(),
            [
                "systemctl daemon-reload",
                "systemctl enable x.service",
                "systemctl restart x.service",
                "systemctl disable --now x.service"
            ]
        );
        assert!(owned.is_empty());
    }

    #[test]
    fn health_reads_one_bulk_show_and_fails_an_inactive_service() {
        let root = Root::system();
        let h = host(
            "Id=x.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\nUnitFileState=enabled\n\n\
             Id=y.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n",
        );
        let mut desired = Desired::new();
        desired.insert("x".into(), DesiredService::new(b"[Service]\n"));
        desired.insert("y".into(), DesiredService::new(b"[Service]\n"));
        let results = health(&cx(&root, &h), &desired);
        assert_eq!(
            *h.ran.lock().unwrap(),
            [
                "systemctl show --property=Id,LoadState,ActiveState,SubState,UnitFileState -- x.service y.service"
            ]
        );
        assert!(!results[0].ok, "{results:?}");
        assert!(results[0].detail.contains("ActiveState=failed"));
        assert!(results[1].ok, "{results:?}");
    }

    #[test]
    fn under_a_root_systemd_steps_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let h = host("");
        let mut desired = Desired::new();
        desired.insert("x".into(), DesiredService::new(b"[Service]\n"));
        let results = health(&cx(&root, &h), &desired);
        assert!(results[0].ok);
        assert!(
            results[0]
                .detail
                .starts_with("skipped (not applicable: the unit files are written under --root"),
            "{results:?}"
        );
        assert!(h.ran.lock().unwrap().is_empty());
    }
}
