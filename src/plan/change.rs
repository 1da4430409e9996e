//! The vocabulary of a plan: addresses, actions, field changes and flags.
//!
//! These are pure data. A domain's `diff` produces [`Change`]s; the renderer prints
//! them; the executor runs the pending ones. Nothing here touches the machine.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Names one resource: `files.file:/etc/motd`, `storage.dataset:tank/models`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Address {
    /// The domain that owns the resource (`files`, `storage`).
    pub domain: String,
    /// The kind of resource inside the domain (`file`, `dataset`, `pool`).
    pub kind: String,
    /// The resource's own name (a path, a dataset name).
    pub name: String,
}

impl Address {
    pub fn new(domain: &str, kind: &str, name: impl Into<String>) -> Self {
        Address {
            domain: domain.to_string(),
            kind: kind.to_string(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}:{}", self.domain, self.kind, self.name)
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.to_string()
    }
}

impl TryFrom<String> for Address {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let (head, name) = s
            .split_once(':')
            .ok_or_else(|| format!("address {s:?} has no ':' (expected domain.kind:name)"))?;
        let (domain, kind) = head
            .split_once('.')
            .ok_or_else(|| format!("address {s:?} has no '.' (expected domain.kind:name)"))?;
        Ok(Address::new(domain, kind, name))
    }
}

/// What a change does. A closed set: the renderer, the executor and `--detailed-exitcode`
/// all match on it exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Make a resource that does not exist.
    Create,
    /// Change a resource in place.
    Update,
    /// Destroy and recreate a resource (a property that cannot change in place).
    Replace,
    /// Remove a resource sovereign manages and the profile no longer declares.
    Delete,
    /// Take over a resource that exists but sovereign does not manage yet (backed up first
    /// where the domain can).
    Adopt,
    /// Would update or delete, but data would be lost: listed, not done (`--allow-destroy`).
    Keep,
}

impl Action {
    /// Whether apply carries a change of this action out. `Keep` is listed only (and so
    /// is any change marked [`Change::not_applicable`]).
    pub fn is_pending(self) -> bool {
        match self {
            Action::Create | Action::Update | Action::Replace | Action::Delete | Action::Adopt => {
                true
            }
            Action::Keep => false,
        }
    }

    /// The glyph printed in front of the address (Terraform's, plus two of ours).
    pub fn glyph(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Adopt => "<=",
            Action::Keep => "!",
        }
    }

    /// A word for summaries and messages.
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Adopt => "adopt",
            Action::Keep => "keep",
        }
    }
}

/// One field of a resource, before and after. `None` means absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field's name (`content`, `mode`, `owner`, `recordsize`).
    pub name: String,
    /// The value now; `(sensitive)` when hidden.
    pub before: Option<String>,
    /// The value the change leads to; `(sensitive)` when hidden.
    pub after: Option<String>,
}

/// The text that replaces a hidden value everywhere: plans, diffs, logs.
pub const SENSITIVE: &str = "(sensitive)";

impl FieldChange {
    pub fn new(name: &str, before: Option<String>, after: Option<String>) -> Self {
        FieldChange {
            name: name.to_string(),
            before,
            after,
        }
    }

    /// A field whose values are never shown.
    pub fn hidden(name: &str, before: bool, after: bool) -> Self {
        FieldChange {
            name: name.to_string(),
            before: before.then(|| SENSITIVE.to_string()),
            after: after.then(|| SENSITIVE.to_string()),
        }
    }
}

/// Properties of a change people must notice before they confirm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    /// Data is lost when this change runs (only with `--allow-destroy`).
    #[serde(default)]
    pub destructive: bool,
    /// The change takes effect only after a reboot.
    #[serde(default)]
    pub reboot: bool,
    /// Values are hidden: fields show `(sensitive)` and no diff is printed.
    #[serde(default)]
    pub sensitive: bool,
}

/// One step of a plan: what happens to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The resource.
    pub address: Address,
    /// What happens to it.
    pub action: Action,
    /// Field-level before -> after, in a stable order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// A unified diff of the content (`-old` / `+new` lines); `None` when there is no text
    /// content or it is sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Flags people must notice.
    #[serde(default)]
    pub flags: Flags,
    /// Why, for people only: never read by apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Changes that must run before this one (ordering and `--graph`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Address>,
    /// Why this change cannot be carried out on this machine (a systemd step where PID 1
    /// is not systemd). The action still says what it would do; apply skips it and says
    /// so, and it never counts as pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
    /// The typed operation the domain's diff decided, for its apply (see [`Op`]).
    #[serde(skip)]
    pub op: Op,
}

/// The typed operation a domain's `diff` stores in a change for its `apply` to carry out,
/// so that apply never rebuilds what to do from the text shown to people. Not part of the
/// plan's data: never serialized (a saved plan is planned again before it runs) and never
/// compared.
#[derive(Clone, Default)]
pub struct Op(Option<Arc<dyn Any + Send + Sync>>);

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Op(..)"
        } else {
            "Op(none)"
        })
    }
}

impl PartialEq for Op {
    fn eq(&self, _: &Op) -> bool {
        true
    }
}

impl Eq for Op {}

impl Change {
    pub fn new(address: Address, action: Action) -> Self {
        Change {
            address,
            action,
            fields: Vec::new(),
            diff: None,
            flags: Flags::default(),
            reason: None,
            depends_on: Vec::new(),
            not_applicable: None,
            op: Op::default(),
        }
    }

    /// Store the typed operation apply carries out.
    pub fn with_op<T: Any + Send + Sync>(mut self, op: T) -> Self {
        self.op = Op(Some(Arc::new(op)));
        self
    }

    /// The typed operation of `T` that diff stored; an error when there is none (a change
    /// not made by this domain's diff).
    pub fn op<T: Any>(&self) -> anyhow::Result<&T> {
        self.op
            .0
            .as_deref()
            .and_then(|op| op.downcast_ref::<T>())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: the change carries no operation of its domain (it was not made by this domain's plan)",
                    self.address
                )
            })
    }

    pub fn field(mut self, f: FieldChange) -> Self {
        self.fields.push(f);
        self
    }

    pub fn reason(mut self, r: impl Into<String>) -> Self {
        self.reason = Some(r.into());
        self
    }

    /// Attach a unified diff of the content (or none).
    pub fn with_diff(mut self, diff: Option<String>) -> Self {
        self.diff = diff;
        self
    }

    /// Mark the change as one this machine cannot carry out, saying why.
    pub fn not_applicable(mut self, why: impl Into<String>) -> Self {
        self.not_applicable = Some(why.into());
        self
    }

    pub fn is_pending(&self) -> bool {
        self.action.is_pending() && self.not_applicable.is_none()
    }
}
