//! System memory as Linux describes it in /proc/meminfo.

use serde::{Deserialize, Serialize};

/// System memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Installed memory the kernel manages, in bytes.
    pub total_bytes: u64,
    /// Memory available to new processes right now, in bytes. A volatile reading: it
    /// changes from one run to the next, so it is listed in `Facts::volatile` and left
    /// out of anything compared between runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
}

/// Parse /proc/meminfo; `None` when it has no MemTotal line.
pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            kib.checked_mul(1024)
        })
    };
    Some(Memory {
        total_bytes: field("MemTotal")?,
        available_bytes: field("MemAvailable"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_total_and_available_in_bytes() {
        let m = parse_meminfo(
            "MemTotal:       24684084 kB\nMemFree:        19819480 kB\nMemAvailable:   23265072 kB\n",
        )
        .unwrap();
        assert_eq!(m.total_bytes, 24684084 * 1024);
        assert_eq!(m.available_bytes, Some(23265072 * 1024));
    }

    #[test]
    fn an_old_kernel_without_memavailable_still_has_a_total() {
        let m = parse_meminfo("MemTotal: 1024 kB\n").unwrap();
        assert_eq!((m.total_bytes, m.available_bytes), (1 << 20, None));
        assert_eq!(parse_meminfo("garbage"), None);
    }
}
