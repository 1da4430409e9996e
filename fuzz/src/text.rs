//! Mutations of grammar text (GBNF and Lark): GBNF's and Lark's own tokens inserted,
//! regions wrapped in groups many times over, lines duplicated and dropped, splices from
//! other inputs, and whole structures appended at the sizes where the limits sit (rule
//! chains, nested groups, many rules). The byte-level mutations of [`crate::mutate`] are one
//! choice among them.

use crate::mutate::{self, Rng};

/// Tokens of both syntaxes, and pieces that hide text (strings, classes, regexes, comments).
const TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "\\",
    "|",
    "*",
    "+",
    "?",
    "{2,3}",
    "{0}",
    "{,4}",
    "{3,}",
    "::=",
    ":",
    "\n",
    "\n|",
    "\n  | ",
    "#",
    "# c\n",
    ".",
    "-",
    "^",
    "<[12]>",
    "<think>",
    "!",
    "/",
    "//",
    "/a(b)/i",
    "/[\\/(]/",
    "~",
    "..",
    "->",
    "_",
    "?r",
    "!r",
    "_R",
    "r1R2",
    "1else",
    "\"x\"i",
    "root",
    "r0",
    "r1",
    "ws",
    "start",
    "value",
    "\"x\"",
    "[a-z]",
    "[^\"\\\\]",
    "\\x41",
    "\\u00e9",
    "\\U0001F600",
    "%llguidance {}\n",
    "%json {}",
    "%json{\"type\":\"object\"}",
    "%ignore /[ ]+/\n",
    "%import common.WS\n",
    "%override r1: \"o\"\n",
    "%lark { s: \"n\" }",
    "%regex {\"substring_words\": \"a b\"}",
    "%declare r9\n",
    " ",
    "\t",
    "\r\n",
    "é",
    "\u{0}",
];

/// Repetition counts around the limits (64 groups, 128 deep chains, 1024 rules).
const COUNTS: &[usize] = &[
    2, 3, 10, 30, 63, 64, 65, 100, 127, 128, 129, 700, 1025, 5000,
];

/// A mutant of `parent`: one to four stacked mutations.
pub fn mutant(parent: &[u8], pool: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut data = parent.to_vec();
    for _ in 0..=rng.below(4) {
        mutate_once(&mut data, pool, rng);
    }
    data
}

/// Whether the text is Lark (as the request path decides it).
fn is_lark(data: &[u8]) -> bool {
    String::from_utf8_lossy(data)
        .trim_start()
        .starts_with("%llguidance")
}

/// A random position in `data`, moved back to a UTF-8 character boundary when `data` is
/// text, so insertions keep text valid more often than not.
fn position(data: &[u8], rng: &mut Rng) -> usize {
    let mut at = rng.below(data.len() + 1);
    while at > 0 && at < data.len() && (data[at] & 0xC0) == 0x80 {
        at -= 1;
    }
    at
}

fn pick<'a>(list: &[&'a str], rng: &mut Rng) -> &'a str {
    list[rng.below(list.len())]
}

/// One mutation of grammar text, in place.
pub fn mutate_once(data: &mut Vec<u8>, pool: &[Vec<u8>], rng: &mut Rng) {
    match rng.below(11) {
        0 | 1 => mutate::mutate_once(data, rng),
        2..=4 => {
            let at = position(data, rng);
            data.splice(at..at, pick(TOKENS, rng).bytes());
        }
        5 => {
            // Wrap a region in the same opener and closer many times.
            let (open, close) = [("(", ")"), ("[", "]"), ("{", "}"), ("(", ")*?")][rng.below(4)];
            let n = COUNTS[rng.below(COUNTS.len())];
            let a = position(data, rng);
            let b = a + position(&data[a..], rng);
            data.splice(b..b, close.repeat(n).into_bytes());
            data.splice(a..a, open.repeat(n).into_bytes());
        }
        6 => {
            // A splice from another input.
            if let Some(other) = pool.get(rng.below(pool.len())) {
                let from = position(other, rng);
                let to = (from + 1 + rng.below(200)).min(other.len());
                let at = position(data, rng);
                data.splice(at..at, other[from..to].iter().copied());
            }
        }
        7 => {
            // Duplicate or drop a line.
            let starts: Vec<usize> = std::iter::once(0)
                .chain(
                    data.iter()
                        .enumerate()
                        .filter(|(_, c)| **c == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .filter(|i| *i < data.len())
                .collect();
            if let Some(&s) = starts.get(rng.below(starts.len())) {
                let e = data[s..]
                    .iter()
                    .position(|c| *c == b'\n')
                    .map_or(data.len(), |n| s + n + 1);
                if rng.below(2) == 0 {
                    let line = data[s..e].to_vec();
                    let times = 1 + rng.below(3);
                    for _ in 0..times {
                        data.splice(e..e, line.iter().copied());
                    }
                } else {
                    data.drain(s..e);
                }
            }
        }
        8 => append_structure(data, rng),
        9 => {
            // Point a name at another rule: new references, new cycles.
            let names = ["root", "r0", "r1", "r2", "value", "ws", "start", "R2"];
            let from = pick(&names, rng).as_bytes();
            if let Some(at) = data.windows(from.len()).position(|w| w == from) {
                let to = pick(&names, rng);
                data.splice(at..at + from.len(), to.bytes());
            }
        }
        _ => {
            // Replace a short run with a token.
            if !data.is_empty() {
                let at = position(data, rng).min(data.len() - 1);
                let n = (1 + rng.below(8)).min(data.len() - at);
                data.splice(at..at + n, pick(TOKENS, rng).bytes());
            }
        }
    }
}

/// Append a structure sized at a limit: a chain of rules, each reference in a few groups;
/// many independent rules; or a deeply grouped rule.
fn append_structure(data: &mut Vec<u8>, rng: &mut Rng) {
    let lark = is_lark(data);
    let def = if lark { ":" } else { " ::=" };
    let n = COUNTS[rng.below(COUNTS.len())];
    let prefix = ["c", "r", "x"][rng.below(3)];
    let mut out = String::from("\n");
    match rng.below(3) {
        0 => {
            let groups = [0, 0, 1, 3, 27][rng.below(5)];
            let (open, close) = ("(".repeat(groups), ")".repeat(groups));
            for k in 0..n {
                out.push_str(&format!(
                    "{prefix}{k}{def} {open}\"a\" {prefix}{}{close} | \"b\"\n",
                    k + 1
                ));
            }
            out.push_str(&format!("{prefix}{n}{def} \"c\"\n"));
            // Enter the chain from the grammar's root rule.
            let root = if lark { "start" } else { "root" };
            out.push_str(&format!("{root}{def} {prefix}0\n"));
        }
        1 => {
            for k in 0..n.min(1100) {
                out.push_str(&format!("{prefix}{k}{def} \"v{k}\"\n"));
            }
        }
        _ => {
            out.push_str(&format!(
                "{prefix}0{def} {}\"a\"{}\n",
                "(".repeat(n),
                ")".repeat(n)
            ));
        }
    }
    data.extend_from_slice(out.as_bytes());
}
