//! Value types of the profile language: sizes, durations and file modes.
//!
//! Each parses from the string a user writes and prints back the same way, so a
//! resolved profile round-trips and a plan shows values as the user wrote them.

use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Durations are the daemon's type too (TTLs, deadlines): defined once, in its crate.
pub use sovereign_inference::units::Duration;

/// A byte count written with a binary unit as ZFS writes them: `"64G"` is 64 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

const SIZE_UNITS: [(char, u32); 7] = [
    ('B', 0),
    ('K', 10),
    ('M', 20),
    ('G', 30),
    ('T', 40),
    ('P', 50),
    ('E', 60),
];

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hint = "write a whole number followed by a unit, e.g. \"64G\", \"16K\", \"512M\" (B, K, M, G, T, P, E; binary)";
        if s.is_empty() {
            return Err(format!("empty size; {hint}"));
        }
        if s.chars().any(char::is_whitespace) {
            return Err(format!("size {s:?} contains whitespace; {hint}"));
        }
        let upper = s.to_ascii_uppercase();
        // Accept "64G", "64GB" and "64GiB" alike: ZFS prints the first.
        let trimmed = upper
            .strip_suffix("IB")
            .or_else(|| {
                upper
                    .strip_suffix('B')
                    .filter(|r| r.ends_with(|c: char| c.is_ascii_alphabetic()))
            })
            .unwrap_or(&upper);
        let unit = trimmed.chars().last().filter(|c| c.is_ascii_alphabetic());
        let Some(unit) = unit else {
            return Err(format!("size {s:?} has no unit; {hint}"));
        };
        let digits = &trimmed[..trimmed.len() - 1];
        let Some(&(_, shift)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("size {s:?} has an unknown unit {unit:?}; {hint}"));
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "size {s:?} is not a whole non-negative number; {hint}"
            ));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("size {s:?} is too large"))?;
        n.checked_mul(1u64 << shift)
            .map(Size)
            .ok_or_else(|| format!("size {s:?} is too large (at most 16E)"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0B");
        }
        for &(unit, shift) in SIZE_UNITS.iter().rev() {
            let div = 1u64 << shift;
            if self.0 % div == 0 {
                let n = self.0 / div;
                return if unit == 'B' {
                    write!(f, "{n}B")
                } else {
                    write!(f, "{n}{unit}")
                };
            }
        }
        unreachable!("every size is a whole number of bytes")
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9]+([BbKkMmGgTtPpEe]|[KkMmGgTtPpEe][Ii]?[Bb])$",
            "description": "A size with a binary unit as ZFS writes it: \"64G\" is 64 GiB. Units: B, K, M, G, T, P, E.",
            "examples": ["64G", "16K", "512M"]
        })
    }
}

/// Unix permission bits written as an octal string: `"0644"`, `"0600"`, `"1777"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(pub u32);

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hint = "write the mode as an octal string of 3 or 4 digits, e.g. \"0644\" or \"0600\"";
        if let Some(c) = s.chars().find(|c| !('0'..='7').contains(c)) {
            return Err(format!(
                "mode {s:?} is not octal: {c:?} is not a digit from 0 to 7; {hint}"
            ));
        }
        // chmod's spelling with a leading zero before four digits ("07777") is the same mode.
        let digits = if s.len() == 5 {
            s.strip_prefix('0').unwrap_or(s)
        } else {
            s
        };
        if !(3..=4).contains(&digits.len()) {
            return Err(format!(
                "mode {s:?} has {} digits, but a mode has 3 or 4 (setuid, setgid and sticky bits first); {hint}",
                s.len()
            ));
        }
        u32::from_str_radix(digits, 8)
            .map(Mode)
            .map_err(|_| format!("mode {s:?} is not an octal permission; {hint}"))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Mode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Mode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^0?[0-7]{3,4}$",
            "description": "Unix permission bits as an octal string, e.g. \"0644\". Applied exactly, whatever the umask.",
            "examples": ["0644", "0600", "0755"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!("64G".parse::<Size>().unwrap().bytes(), 64 << 30);
        assert_eq!("16K".parse::<Size>().unwrap().bytes(), 16 << 10);
        assert_eq!("1GiB".parse::<Size>().unwrap().bytes(), 1 << 30);
        assert_eq!("512B".parse::<Size>().unwrap().bytes(), 512);
        assert_eq!("64G".parse::<Size>().unwrap().to_string(), "64G");
        assert_eq!(Size(1536).to_string(), "1536B");
    }

    #[test]
    fn bad_sizes_are_refused_with_a_reason() {
        for (bad, why) in [
            ("40 G", "whitespace"),
            ("64", "no unit"),
            ("-1G", "not a whole non-negative"),
            ("1.5G", "not a whole non-negative"),
            ("12Q", "unknown unit"),
            ("99999999E", "too large"),
            ("", "empty"),
        ] {
            let err = bad.parse::<Size>().unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn modes_are_octal_strings() {
        assert_eq!("0644".parse::<Mode>().unwrap().0, 0o644);
        assert_eq!("755".parse::<Mode>().unwrap().to_string(), "0755");
        assert_eq!("07777".parse::<Mode>().unwrap().0, 0o7777);
        for bad in ["0844", "64", "16444", "007777", "rw-r--r--"] {
            assert!(bad.parse::<Mode>().is_err(), "{bad:?} should fail");
        }
        let e = "0849".parse::<Mode>().unwrap_err();
        assert!(e.contains("'8'"), "{e}");
    }
}
