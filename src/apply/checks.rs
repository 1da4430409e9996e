//! The profile's `[[checks]]`: argv commands run through the host after apply, with a
//! timeout, retries and a pause between attempts.

use std::time::Duration;

use crate::domain::HealthResult;
use crate::host::{Cmd, Host};
use crate::profile::Check;

/// How long one attempt may take when the check gives no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between attempts when the check gives no `interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Run every check; each result says what was seen on its last attempt.
pub fn run(checks: &[Check], host: &dyn Host) -> Vec<HealthResult> {
    checks.iter().map(|c| run_one(c, host)).collect()
}

fn run_one(check: &Check, host: &dyn Host) -> HealthResult {
    let name = format!("check {:?}", check.name);
    if check.command.is_empty() {
        return HealthResult {
            name,
            ok: false,
            detail: "its command is empty; give an argv array such as [\"true\"]".into(),
        };
    }
    let timeout = check.timeout.map(|d| d.as_std()).unwrap_or(DEFAULT_TIMEOUT);
    let interval = check
        .interval
        .map(|d| d.as_std())
        .unwrap_or(DEFAULT_INTERVAL);
    let attempts = 1 + check.retries.unwrap_or(0);
    let cmd = Cmd::new(&check.command).timeout(timeout);
    let mut detail = String::new();
    for attempt in 1..=attempts {
        if attempt > 1 {
            std::thread::sleep(interval);
        }
        detail = match host.run(&cmd) {
            Ok(out) if out.success() => {
                return HealthResult {
                    name,
                    ok: true,
                    detail: format!("passed (attempt {attempt} of {attempts})"),
                };
            }
            Ok(out) if out.timed_out => format!(
                "`{}` timed out after {:?} (attempt {attempt} of {attempts})",
                cmd.display(),
                timeout
            ),
            Ok(out) => {
                let stderr = out.stderr_str();
                let last = stderr.lines().last().unwrap_or("").trim();
                format!(
                    "`{}` exited with {} (attempt {attempt} of {attempts}){}",
                    cmd.display(),
                    out.code
                        .map(|c| format!("status {c}"))
                        .unwrap_or_else(|| "a signal".into()),
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(": {last}")
                    }
                )
            }
            Err(e) => format!("{e} (attempt {attempt} of {attempts})"),
        };
    }
    HealthResult {
        name,
        ok: false,
        detail,
    }
}
