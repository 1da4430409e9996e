//! Values written the way people write them: durations (`"30s"`, `"1h30m"`) as profiles,
//! flags and the options file take them, and byte counts as the CLI and the daemon's
//! messages print them.

use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time: `"30s"`, `"30m"`, `"2h"`, `"1d"`, or combined `"1h30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

const DURATION_UNITS: [(&str, u64); 6] = [
    ("ms", 0),
    ("s", 1),
    ("m", 60),
    ("h", 3600),
    ("d", 86400),
    ("w", 604800),
];

impl Duration {
    pub fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hint = "write a number with a unit, e.g. \"30s\", \"30m\", \"2h\", \"1d\" or \"1h30m\" (units: ms, s, m, h, d, w)";
        if s.is_empty() {
            return Err(format!("empty duration; {hint}"));
        }
        let mut total_ms: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits_end == 0 {
                return Err(format!(
                    "duration {s:?} is not a whole non-negative number with a unit; {hint}"
                ));
            }
            let n: u64 = rest[..digits_end]
                .parse()
                .map_err(|_| format!("duration {s:?} is too large"))?;
            rest = &rest[digits_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            rest = &rest[unit_end..];
            let ms = match DURATION_UNITS.iter().find(|(u, _)| *u == unit) {
                Some(("ms", _)) => Some(n),
                Some((_, secs)) => n.checked_mul(secs * 1000),
                None if unit.is_empty() => {
                    return Err(format!("duration {s:?} has no unit; {hint}"));
                }
                None => {
                    return Err(format!(
                        "duration {s:?} has an unknown unit {unit:?}; {hint}"
                    ));
                }
            };
            total_ms = ms
                .and_then(|ms| total_ms.checked_add(ms))
                .ok_or_else(|| format!("duration {s:?} is too large"))?;
        }
        Ok(Duration(std::time::Duration::from_millis(total_ms)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        for &(unit, secs) in DURATION_UNITS.iter().rev() {
            let div = if unit == "ms" { 1 } else { secs * 1000 };
            if ms >= div {
                write!(f, "{}{unit}", ms / div)?;
                ms %= div;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d|w))+$",
            "description": "A duration: a whole number with a unit (ms, s, m, h, d, w), e.g. \"30s\", \"30m\", \"2h\", \"1h30m\".",
            "examples": ["30s", "30m", "2h"]
        })
    }
}

/// How [`human_bytes`] writes a count of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteStyle {
    /// llama.cpp's way: the largest binary unit the count reaches, one decimal below 100
    /// and none above ("512 B", "1.5 GiB", "640 MiB"): memory estimates and budgets.
    Short,
    /// The largest binary unit with two decimals ("512 B", "1.50 GiB"): file sizes and
    /// transfers.
    Precise,
    /// Always GiB, one decimal ("24.0 GiB"): a machine's memory, comparable line to line.
    Gib,
}

/// Binary units, each 1024 of the one before.
const BYTE_UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// `n` bytes for people, the one formatter of byte counts.
pub fn human_bytes(n: u64, style: ByteStyle) -> String {
    if style == ByteStyle::Gib {
        return format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64);
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < BYTE_UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    let name = BYTE_UNITS[unit];
    match style {
        _ if unit == 0 => format!("{n} B"),
        ByteStyle::Short if v >= 100.0 => format!("{v:.0} {name}"),
        ByteStyle::Short | ByteStyle::Gib => format!("{v:.1} {name}"),
        ByteStyle::Precise => format!("{v:.2} {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!("30s".parse::<Duration>().unwrap().0.as_secs(), 30);
        assert_eq!("30m".parse::<Duration>().unwrap().0.as_secs(), 1800);
        assert_eq!("1h30m".parse::<Duration>().unwrap().0.as_secs(), 5400);
        assert_eq!("250ms".parse::<Duration>().unwrap().0.as_millis(), 250);
        assert_eq!("1h30m".parse::<Duration>().unwrap().to_string(), "1h30m");
        for bad in ["30", "s", "-3s", "3 s", "3y", ""] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn bytes_read_as_each_style_promises() {
        use ByteStyle::*;
        assert_eq!(human_bytes(512, Short), "512 B");
        assert_eq!(human_bytes(640 << 20, Short), "640 MiB");
        assert_eq!(human_bytes(3 << 29, Short), "1.5 GiB");
        assert_eq!(human_bytes(512, Precise), "512 B");
        assert_eq!(human_bytes(3 << 29, Precise), "1.50 GiB");
        assert_eq!(human_bytes(1536, Precise), "1.50 KiB");
        assert_eq!(human_bytes(24 << 30, Gib), "24.0 GiB");
        assert_eq!(human_bytes(512 << 20, Gib), "0.5 GiB");
    }
}
