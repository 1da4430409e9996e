//! GBNF (llama.cpp's grammar format, as its server takes it) converted to llguidance's Lark
//! syntax, which has no GBNF reader. Everything GBNF's parser accepts converts, except
//! token references (`<[123]>`, `<name>`, `!`), which are refused by name.
//!
//! Names map one-to-one: `g-` prefix, an upper-case letter becomes `_` and its lower case
//! (Lark rule names are lower case), so `root` is `g-root` and `myRule` is `g-my_rule`.
//!
//! The reader recurses once per group, so it refuses groups nested past
//! [`limits::MAX_NESTING`] (a stacked repetition operator, `x*?`, counts as a group: it
//! becomes one in the Lark), grammars past [`limits::MAX_GRAMMAR_BYTES`] and more than
//! [`limits::MAX_RULES`] rules. Positions are kept as offsets and turned into a line and
//! column only for an error, so a large grammar reads in linear time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::limits;

/// Why a grammar does not convert; positions are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GbnfError {
    /// Not valid GBNF.
    Syntax {
        line: usize,
        col: usize,
        message: String,
    },
    /// Valid GBNF that the engine does not support.
    Unsupported {
        line: usize,
        col: usize,
        construct: String,
    },
}

impl std::fmt::Display for GbnfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GbnfError::Syntax { line, col, message } => {
                write!(f, "line {line}, column {col}: {message}")
            }
            GbnfError::Unsupported {
                line,
                col,
                construct,
            } => write!(
                f,
                "line {line}, column {col}: {construct} is not supported; write the text the token stands for instead"
            ),
        }
    }
}

/// A recursive-descent reader over the grammar's characters.
struct Parser<'a> {
    /// The whole grammar.
    src: &'a [char],
    /// The next character to read.
    pos: usize,
    /// Groups open around `pos`: the reader's recursion depth, bounded by the limit.
    depth: usize,
    /// Rules referenced, with the offset of their first reference.
    used: BTreeMap<String, usize>,
}

/// The Lark rule name for a GBNF rule name.
fn lark_name(name: &str) -> String {
    let mut out = String::from("g-");
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// Convert a GBNF grammar (with a `root` rule) into a Lark grammar.
pub fn to_lark(gbnf: &str) -> Result<String, GbnfError> {
    if gbnf.len() > limits::MAX_GRAMMAR_BYTES {
        return Err(GbnfError::Syntax {
            line: 1,
            col: 1,
            message: format!(
                "the grammar is {} bytes, beyond the limit of {} bytes",
                gbnf.len(),
                limits::MAX_GRAMMAR_BYTES
            ),
        });
    }
    let chars: Vec<char> = gbnf.chars().collect();
    let mut p = Parser {
        src: &chars,
        pos: 0,
        depth: 0,
        used: BTreeMap::new(),
    };
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut defined: BTreeMap<String, usize> = BTreeMap::new();
    // Where the first rule past the limit starts, for the error once all are counted.
    let mut too_many_at: Option<usize> = None;
    p.space(true);
    while p.peek().is_some() {
        let at = p.pos;
        let name = p.name()?;
        if defined.insert(name.clone(), at).is_some() {
            return Err(p.syntax_at(at, format!("rule {name:?} is defined twice")));
        }
        if defined.len() > limits::MAX_RULES && too_many_at.is_none() {
            too_many_at = Some(at);
        }
        p.space(false);
        if !p.eat_str("::=") {
            return Err(p.syntax(format!("expected ::= after the rule name {name:?}")));
        }
        p.space(true);
        let (body, _) = p.alternates(false)?;
        match p.peek() {
            None => {}
            Some('\r') | Some('\n') => {}
            Some(c) => return Err(p.syntax(format!("expected the end of the line, found {c:?}"))),
        }
        p.space(true);
        rules.push((name, body));
    }
    if let Some(at) = too_many_at {
        return Err(p.syntax_at(
            at,
            format!(
                "{} rules exceed the limit of {}",
                defined.len(),
                limits::MAX_RULES
            ),
        ));
    }
    if !defined.contains_key("root") {
        return Err(GbnfError::Syntax {
            line: 1,
            col: 1,
            message: "the grammar has no root rule (root ::= ...)".into(),
        });
    }
    if let Some((name, at)) = p.used.iter().find(|(n, _)| !defined.contains_key(*n)) {
        return Err(p.syntax_at(*at, format!("the rule {name:?} is used but never defined")));
    }
    let mut out = String::from("start: g-root\n");
    for (name, body) in rules {
        let _ = writeln!(out, "{}: {body}", lark_name(&name));
    }
    Ok(out)
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src.get(self.pos + n).copied()
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.src.len() >= self.pos + n
            && s.chars()
                .eq(self.src[self.pos..self.pos + n].iter().copied())
        {
            self.pos += n;
            true
        } else {
            false
        }
    }

    /// The 1-based line and column of the offset `at`. It scans from the start, so it is
    /// only called to build an error.
    fn line_col(&self, at: usize) -> (usize, usize) {
        let before = &self.src[..at.min(self.src.len())];
        let line = before.iter().filter(|c| **c == '\n').count() + 1;
        let col = before.iter().rev().take_while(|c| **c != '\n').count() + 1;
        (line, col)
    }

    fn syntax(&self, message: String) -> GbnfError {
        self.syntax_at(self.pos, message)
    }

    fn syntax_at(&self, at: usize, message: String) -> GbnfError {
        let (line, col) = self.line_col(at);
        GbnfError::Syntax { line, col, message }
    }

    fn unsupported(&self, construct: &str) -> GbnfError {
        let (line, col) = self.line_col(self.pos);
        GbnfError::Unsupported {
            line,
            col,
            construct: construct.into(),
        }
    }

    /// Spaces, tabs and `#` comments; newlines too when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => self.pos += 1,
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                '\r' | '\n' if newlines => self.pos += 1,
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Result<String, GbnfError> {
        let start = self.pos;
        while self.peek().is_some_and(is_word) {
            self.pos += 1;
        }
        if start == self.pos {
            let found = self
                .peek()
                .map_or("the end".to_string(), |c| format!("{c:?}"));
            return Err(self.syntax(format!("expected a rule name, found {found}")));
        }
        Ok(self.src[start..self.pos].iter().collect())
    }

    /// Alternatives up to a `)` or the end of the rule, with the deepest group nesting
    /// inside them in the Lark written.
    fn alternates(&mut self, nested: bool) -> Result<(String, usize), GbnfError> {
        let (first, mut depth) = self.sequence(nested)?;
        let mut alts = vec![first];
        while self.peek() == Some('|') {
            self.pos += 1;
            self.space(true);
            let (alt, d) = self.sequence(nested)?;
            alts.push(alt);
            depth = depth.max(d);
        }
        Ok((alts.join(" | "), depth))
    }

    /// Refuse a group (or a stacked operator's parentheses) that takes the nesting past
    /// the limit; `depth` is the nesting it would reach. The message gives the deepest
    /// nesting of the whole grammar, counted without recursion.
    fn nesting(&self, depth: usize) -> Result<(), GbnfError> {
        if depth <= limits::MAX_NESTING {
            return Ok(());
        }
        let total = max_group_depth(self.src).max(depth);
        Err(self.syntax(format!(
            "{total} nested groups exceed the limit of {} (a stacked repetition operator such as x*? counts as a group)",
            limits::MAX_NESTING
        )))
    }

    /// Items up to a `|`, a `)` or the end of the rule, with the deepest group nesting
    /// inside them.
    fn sequence(&mut self, nested: bool) -> Result<(String, usize), GbnfError> {
        // Each item with whether it already carries a repetition operator, and the group
        // nesting inside it.
        let mut items: Vec<(String, bool, usize)> = Vec::new();
        while let Some(c) = self.peek() {
            let item = match c {
                '"' => {
                    self.pos += 1;
                    let mut text = String::new();
                    loop {
                        match self.peek() {
                            None => return Err(self.syntax("unterminated string literal".into())),
                            Some('"') => {
                                self.pos += 1;
                                break;
                            }
                            Some(_) => text.push(self.char()?),
                        }
                    }
                    lark_string(&text)
                }
                '[' => {
                    self.pos += 1;
                    let mut class = String::from("/[");
                    if self.peek() == Some('^') {
                        self.pos += 1;
                        class.push('^');
                    }
                    let mut empty = true;
                    loop {
                        match self.peek() {
                            None => return Err(self.syntax("unterminated character class".into())),
                            Some(']') => {
                                self.pos += 1;
                                break;
                            }
                            Some(_) => {
                                let lo = self.char()?;
                                regex_char(&mut class, lo);
                                if self.peek() == Some('-')
                                    && self.peek_at(1).is_some_and(|c| c != ']')
                                {
                                    self.pos += 1;
                                    let hi = self.char()?;
                                    if hi < lo {
                                        return Err(self.syntax(format!(
                                            "the range {lo:?}-{hi:?} runs backwards"
                                        )));
                                    }
                                    class.push('-');
                                    regex_char(&mut class, hi);
                                }
                                empty = false;
                            }
                        }
                    }
                    if empty {
                        return Err(self.syntax("empty character class".into()));
                    }
                    class.push_str("]/");
                    class
                }
                '.' => {
                    self.pos += 1;
                    "/(?s:.)/".into()
                }
                '(' => {
                    self.nesting(self.depth + 1)?;
                    self.pos += 1;
                    self.depth += 1;
                    self.space(true);
                    let (inner, depth) = self.alternates(true)?;
                    self.depth -= 1;
                    if self.peek() != Some(')') {
                        return Err(self.syntax("expected ) to close the group".into()));
                    }
                    self.pos += 1;
                    items.push((format!("({inner})"), false, depth + 1));
                    self.space(nested);
                    continue;
                }
                '<' => return Err(self.unsupported("a token reference (<...>)")),
                '!' => return Err(self.unsupported("a negated token (!...)")),
                '*' | '+' | '?' | '{' => {
                    let Some((last, has_op, depth)) = items.pop() else {
                        return Err(self.syntax(format!("{c:?} follows nothing")));
                    };
                    let (base, depth) = if has_op {
                        self.nesting(self.depth + depth + 1)?;
                        (format!("({last})"), depth + 1)
                    } else {
                        (last, depth)
                    };
                    let op = if c == '{' {
                        self.braces()?
                    } else {
                        self.pos += 1;
                        c.to_string()
                    };
                    let item = if op == "{0}" {
                        // Zero repetitions: the empty string.
                        "\"\"".to_string()
                    } else {
                        format!("{base}{op}")
                    };
                    items.push((item, true, depth));
                    self.space(nested);
                    continue;
                }
                c if is_word(c) => {
                    let at = self.pos;
                    let name = self.name()?;
                    self.used.entry(name.clone()).or_insert(at);
                    lark_name(&name)
                }
                _ => break,
            };
            items.push((item, false, 0));
            self.space(nested);
        }
        if items.is_empty() {
            // An empty alternative matches the empty string.
            return Ok(("\"\"".into(), 0));
        }
        let depth = items.iter().map(|(_, _, d)| *d).max().unwrap_or(0);
        Ok((
            items
                .into_iter()
                .map(|(i, _, _)| i)
                .collect::<Vec<_>>()
                .join(" "),
            depth,
        ))
    }

    /// `{m}`, `{m,}`, `{m,n}` or `{,n}` (at `{`).
    fn braces(&mut self) -> Result<String, GbnfError> {
        self.pos += 1;
        let num = |p: &mut Self| -> Result<Option<u32>, GbnfError> {
            p.space(false);
            let start = p.pos;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.pos += 1;
            }
            if start == p.pos {
                return Ok(None);
            }
            let s: String = p.src[start..p.pos].iter().collect();
            s.parse()
                .map(Some)
                .map_err(|_| p.syntax(format!("repetition count {s} is too large")))
        };
        let lo = num(self)?;
        self.space(false);
        let (lo, hi) = if self.peek() == Some(',') {
            self.pos += 1;
            (lo.unwrap_or(0), num(self)?)
        } else {
            let lo = lo.ok_or_else(|| self.syntax("expected a number after {".into()))?;
            (lo, Some(lo))
        };
        self.space(false);
        if self.peek() != Some('}') {
            return Err(self.syntax("expected } to close the repetition".into()));
        }
        self.pos += 1;
        Ok(match hi {
            Some(0) => "{0}".into(),
            Some(h) if h < lo => {
                return Err(self.syntax(format!("repetition {{{lo},{h}}} runs backwards")));
            }
            Some(h) if h == lo => format!("{{{lo}}}"),
            Some(h) => format!("{{{lo},{h}}}"),
            None => format!("{{{lo},}}"),
        })
    }

    /// One character of a literal or class, with GBNF's escapes.
    fn char(&mut self) -> Result<char, GbnfError> {
        let Some(c) = self.peek() else {
            return Err(self.syntax("unexpected end of the grammar".into()));
        };
        self.pos += 1;
        if c != '\\' {
            return Ok(c);
        }
        let Some(e) = self.peek() else {
            return Err(self.syntax("unexpected end after \\".into()));
        };
        self.pos += 1;
        let hex = |p: &mut Self, n: usize| -> Result<char, GbnfError> {
            let digits: String = p.src[p.pos..(p.pos + n).min(p.src.len())].iter().collect();
            let v = u32::from_str_radix(&digits, 16)
                .ok()
                .filter(|_| digits.len() == n)
                .and_then(char::from_u32)
                .ok_or_else(|| {
                    p.syntax(format!("\\{e} needs {n} hex digits of a valid character"))
                })?;
            p.pos += n;
            Ok(v)
        };
        match e {
            'x' => hex(self, 2),
            'u' => hex(self, 4),
            'U' => hex(self, 8),
            't' => Ok('\t'),
            'r' => Ok('\r'),
            'n' => Ok('\n'),
            '\\' | '"' | '[' | ']' => Ok(e),
            other => Err(self.syntax(format!("unknown escape \\{other}"))),
        }
    }
}

/// The deepest nesting of `(` in a GBNF grammar, outside literals, classes and comments,
/// counted in one pass (for the message when the reader stops at the limit).
fn max_group_depth(src: &[char]) -> usize {
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while let Some(&c) = src.get(i) {
        match c {
            '"' | '[' => {
                let close = if c == '"' { '"' } else { ']' };
                i += 1;
                while let Some(&d) = src.get(i) {
                    if d == close {
                        break;
                    }
                    i += if d == '\\' { 2 } else { 1 };
                }
            }
            '#' => {
                while src.get(i).is_some_and(|d| *d != '\n') {
                    i += 1;
                }
            }
            '(' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// A Lark string literal (JSON escapes) for `text`.
fn lark_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A character inside a regex class, escaped so nothing is special (`/` included).
fn regex_char(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:x}}}", c as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_literals_classes_and_repetitions_convert() {
        let g = r#"
# a comment
root ::= greeting ws? ("," item){1,3} | "x"*
greeting ::= "hi \"you\"\n" [a-zA-Z_]+ [^0-9] .
item ::= [0-9]{2,} | myRule{,4}
myRule ::= "\x41\u00e9"
ws ::= [ \t]*
"#;
        let l = to_lark(g).unwrap();
        assert!(l.starts_with("start: g-root\n"), "{l}");
        assert!(
            l.contains(r#"g-root: g-greeting g-ws? ("," g-item){1,3} | "x"*"#),
            "{l}"
        );
        assert!(
            l.contains(r#"g-greeting: "hi \"you\"\n" /[a-zA-Z\x{5f}]/+ /[^0-9]/ /(?s:.)/"#),
            "{l}"
        );
        assert!(l.contains("g-item: /[0-9]/{2,} | g-my_rule{0,4}"), "{l}");
        assert!(l.contains("g-my_rule: \"Aé\""), "{l}");
        assert!(l.contains(r"g-ws: /[\x{20}\x{9}]/*"), "{l}");
    }

    #[test]
    fn multi_line_groups_and_stacked_operators() {
        let g = "root ::=\n  \"{\" (\n    \"a\"\n    | \"b\"\n  )*? \"}\"\n";
        let l = to_lark(g).unwrap();
        assert!(l.contains(r#"g-root: "{" (("a" | "b")*)? "}""#), "{l}");
    }

    #[test]
    fn errors_name_line_and_column() {
        for (g, needle) in [
            (
                "root ::= \"a",
                "line 1, column 12: unterminated string literal",
            ),
            ("root ::= a\n", "\"a\" is used but never defined"),
            ("item ::= \"a\"\n", "no root rule"),
            (
                "root ::= \"a\"\nroot ::= \"b\"",
                "line 2, column 1: rule \"root\" is defined twice",
            ),
            ("root ::= [z-a]", "runs backwards"),
            ("root = \"a\"", "expected ::="),
            ("root ::= \"\\q\"", "unknown escape \\q"),
            ("root ::= \"a\"{3,1}", "runs backwards"),
        ] {
            let e = to_lark(g).unwrap_err();
            assert!(matches!(e, GbnfError::Syntax { .. }), "{g}: {e}");
            assert!(e.to_string().contains(needle), "{g}: {e}");
        }
    }

    /// Run `f` on a thread with the 2 MiB stack of tokio's workers and Rust's default.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = |n: usize| format!("root ::= {}\"a\"{}", "(".repeat(n), ")".repeat(n));
        // 100,000 deep is past the size limit too; 60,000 deep is not.
        let e = on_small_stack(move || to_lark(&deep(100_000))).unwrap_err();
        assert!(
            e.to_string().contains("beyond the limit of 131072 bytes"),
            "{e}"
        );
        let e = on_small_stack(move || to_lark(&deep(60_000))).unwrap_err();
        assert!(matches!(e, GbnfError::Syntax { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("line 1, column 74: 60000 nested groups exceed the limit of 64"),
            "{e}"
        );
        // Exactly at the limit converts; one more does not.
        let at = |n: usize| format!("root ::= {}\"a\"{}", "(".repeat(n), ")".repeat(n));
        to_lark(&at(limits::MAX_NESTING)).unwrap();
        assert!(to_lark(&at(limits::MAX_NESTING + 1)).is_err());
        // Stacked operators each add a group in the Lark: bounded the same way.
        let e = on_small_stack(|| to_lark(&format!("root ::= \"a\"{}", "*?".repeat(5000))))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("nested groups exceed the limit of 64"),
            "{e}"
        );
        let l = to_lark(&format!(
            "root ::= \"a\"{}",
            "?".repeat(limits::MAX_NESTING + 1)
        ))
        .unwrap();
        assert_eq!(l.matches('(').count(), limits::MAX_NESTING, "{l}");
    }

    #[test]
    fn rule_count_and_size_are_bounded() {
        let mut g = String::from("root ::= r0\n");
        for k in 0..limits::MAX_RULES {
            g.push_str(&format!("r{k} ::= \"a\"\n"));
        }
        let e = to_lark(&g).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1025, column 1: 1025 rules exceed the limit of 1024"
        );
        // A chain of 700 is within the rule count; its depth is refused by the limits on
        // the Lark it converts to (see limits.rs).
        let mut chain = String::from("root ::= r0\n");
        for k in 0..700 {
            chain.push_str(&format!("r{k} ::= \"a\" r{} | \"b\"\n", k + 1));
        }
        chain.push_str("r700 ::= \"c\"\n");
        to_lark(&chain).unwrap();
        let big = format!("root ::= \"{}\"", "a".repeat(limits::MAX_GRAMMAR_BYTES));
        assert!(
            to_lark(&big)
                .unwrap_err()
                .to_string()
                .contains("beyond the limit")
        );
    }

    #[test]
    fn a_large_grammar_with_many_references_converts_in_linear_time() {
        // 1,000 rules of about 100 bytes, each referring to ten earlier ones: 10,000
        // references in 100 KB. Finding each reference's line and column from the start
        // made this take seconds; now positions are only worked out for an error.
        let mut g = String::from("root ::= r999\nr0 ::= \"x\"\n");
        for k in 1..1000 {
            let refs: Vec<String> = (1..=10).map(|d| format!("r{}", k - k.min(d))).collect();
            g.push_str(&format!(
                "r{k} ::= \"abcdefgh\" ({}) | [0-9]+ \"b\"\n",
                refs.join(" | ")
            ));
        }
        assert!(g.len() > 100_000, "{}", g.len());
        let l = to_lark(&g).unwrap();
        assert!(
            l.contains("g-r999: \"abcdefgh\" (g-r998 | "),
            "{}",
            &l[..200]
        );
    }

    #[test]
    fn token_references_are_refused_by_name() {
        for g in ["root ::= <[1234]>", "root ::= \"a\" !<think>"] {
            let e = to_lark(g).unwrap_err();
            assert!(matches!(e, GbnfError::Unsupported { .. }), "{g}: {e}");
            assert!(e.to_string().contains("not supported"), "{e}");
        }
    }
}
