//! What one domain asks of another, through the planner and never by import: files it
//! wants written (the files domain writes them, with the same ownership, backups and
//! recorded folders as `[files]`), and units it wants run (the services domain runs
//! them). A domain that depends on another's resource names it by its [`Address`].

use std::collections::BTreeMap;

use crate::plan::Address;

/// A file a domain wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    /// The absolute path as a profile would write it (relocated under `--root`).
    pub path: String,
    pub content: Vec<u8>,
    /// Permission bits, exact.
    pub mode: u32,
    /// Hide the content in plans.
    pub sensitive: bool,
    /// Who asks, as the profile names it (`inference`, `services.web`), for messages.
    pub by: String,
    /// Changes that must run before the file is removed once nobody asks for it (the
    /// service that reads it is stopped first).
    pub remove_after: Vec<Address>,
}

/// A systemd unit a domain wants run. Its unit file is a [`FileRequest`] of its own,
/// added by [`Requests::unit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRequest {
    /// The unit's name without `.service`.
    pub name: String,
    /// The unit file's content.
    pub unit: Vec<u8>,
    /// `systemctl enable` it.
    pub enable: bool,
    /// Keep it running.
    pub start: bool,
    /// It runs to completion when systemd starts it (at boot): apply enables it but
    /// never starts or stops it. Its process may be a sovereign that plans this very
    /// unit while it is "activating"; stopping it then would kill that process.
    pub oneshot: bool,
    /// Inputs whose change restarts it: an input -> the digest it has after this apply
    /// (`None`: whatever is on the machine, read when planning).
    pub triggers: BTreeMap<String, Option<String>>,
    /// Changes its start waits for.
    pub after: Vec<Address>,
    /// Who asks, as the profile names it.
    pub by: String,
}

impl UnitRequest {
    /// A unit that is enabled and started, with no triggers.
    pub fn new(name: impl Into<String>, unit: impl Into<Vec<u8>>, by: impl Into<String>) -> Self {
        UnitRequest {
            name: name.into(),
            unit: unit.into(),
            enable: true,
            start: true,
            oneshot: false,
            triggers: BTreeMap::new(),
            after: Vec::new(),
            by: by.into(),
        }
    }
}

/// Where a unit's file lives (as a profile writes paths: logical).
pub fn unit_file_path(name: &str) -> String {
    format!("/etc/systemd/system/{name}.service")
}

/// The address of a file the files domain writes.
pub fn file_address(path: &str) -> Address {
    Address::new("files", "file", path)
}

/// The address of a service the services domain runs.
pub fn service_address(name: &str) -> Address {
    Address::new("services", "service", name)
}

/// Everything every domain asks for, gathered by the planner before any domain plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    pub files: Vec<FileRequest>,
    pub units: Vec<UnitRequest>,
}

impl Requests {
    /// Ask for a unit to run, and for its unit file to be written (world-readable, like
    /// the ones packages install, and removed only after the service is stopped).
    pub fn unit(&mut self, unit: UnitRequest) {
        self.files.push(FileRequest {
            path: unit_file_path(&unit.name),
            content: unit.unit.clone(),
            mode: 0o644,
            sensitive: false,
            by: unit.by.clone(),
            remove_after: vec![service_address(&unit.name)],
        });
        self.units.push(unit);
    }

    /// Add another domain's requests.
    pub fn extend(&mut self, other: Requests) {
        self.files.extend(other.files);
        self.units.extend(other.units);
    }
}
