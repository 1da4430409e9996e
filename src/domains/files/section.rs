//! The profile's `[files]` section: what one managed file may declare.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::profile::units::Mode;

/// One managed file. Give exactly one of `content` or `template`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// The file's content, rendered as a minijinja template with the profile and the detected
    /// facts as context (`{{ host.name }}`, `{{ facts.cpu.model }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,

    /// A template file under templates/ (relative to the profile's directory or the project's
    /// templates/ folder), rendered with the same context as `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,

    /// Permission bits, applied exactly whatever the umask. Default "0644".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,

    /// Owner user name. Default: the user running sovereign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,

    /// Group name. Default: the primary group of the user running sovereign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,

    /// Hide the content in plans, diffs and logs (shown as "(sensitive)").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}
