//! The profile's `[services]` section: what one systemd service may declare.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One systemd service. Give exactly one of `unit` or `template`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// The unit file's content (`[Unit]`, `[Service]`, `[Install]`), rendered as a minijinja
    /// template with the profile and the detected facts as context, like a managed file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,

    /// A unit template under templates/ (next to the profile or the project's), rendered
    /// with the same context as `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,

    /// Start the service at boot (`systemctl enable`). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,

    /// Keep the service running (`systemctl start`); false keeps it stopped. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<bool>,

    /// Absolute paths of files the service reads (usually managed files); when one changes,
    /// the service is restarted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_on: Vec<String>,
}
