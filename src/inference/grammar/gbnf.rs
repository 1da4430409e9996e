//! GBNF (llama.cpp's grammar format, as its server takes it) converted to llguidance's Lark
//! syntax, which has no GBNF reader. Everything GBNF's parser accepts converts, except
//! token references (`<[123]>`, `<name>`, `!`), which are refused by name.
//!
//! Names map one-to-one: `g-` prefix, an upper-case letter becomes `_` and its lower case
//! (Lark rule names are lower case), so `root` is `g-root` and `myRule` is `g-my_rule`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

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
    /// Rules referenced, with where they were first referenced.
    used: BTreeMap<String, (usize, usize)>,
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
    let chars: Vec<char> = gbnf.chars().collect();
    let mut p = Parser {
        src: &chars,
        pos: 0,
        used: BTreeMap::new(),
    };
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut defined: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    p.space(true);
    while p.peek().is_some() {
        let at = p.line_col();
        let name = p.name()?;
        if defined.insert(name.clone(), at).is_some() {
            return Err(p.syntax_at(at, format!("rule {name:?} is defined twice")));
        }
        p.space(false);
        if !p.eat_str("::=") {
            return Err(p.syntax(format!("expected ::= after the rule name {name:?}")));
        }
        p.space(true);
        let body = p.alternates(false)?;
        match p.peek() {
            None => {}
            Some('\r') | Some('\n') => {}
            Some(c) => return Err(p.syntax(format!("expected the end of the line, found {c:?}"))),
        }
        p.space(true);
        rules.push((name, body));
    }
    if !defined.contains_key("root") {
        return Err(GbnfError::Syntax {
            line: 1,
            col: 1,
            message: "the grammar has no root rule (root ::= ...)".into(),
        });
    }
    if let Some((name, (line, col))) = p.used.iter().find(|(n, _)| !defined.contains_key(*n)) {
        return Err(GbnfError::Syntax {
            line: *line,
            col: *col,
            message: format!("the rule {name:?} is used but never defined"),
        });
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

    fn line_col(&self) -> (usize, usize) {
        let before = &self.src[..self.pos.min(self.src.len())];
        let line = before.iter().filter(|c| **c == '\n').count() + 1;
        let col = before.iter().rev().take_while(|c| **c != '\n').count() + 1;
        (line, col)
    }

    fn syntax(&self, message: String) -> GbnfError {
        self.syntax_at(self.line_col(), message)
    }

    fn syntax_at(&self, (line, col): (usize, usize), message: String) -> GbnfError {
        GbnfError::Syntax { line, col, message }
    }

    fn unsupported(&self, construct: &str) -> GbnfError {
        let (line, col) = self.line_col();
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

    fn alternates(&mut self, nested: bool) -> Result<String, GbnfError> {
        let mut alts = vec![self.sequence(nested)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(alts.join(" | "))
    }

    fn sequence(&mut self, nested: bool) -> Result<String, GbnfError> {
        // Each item with whether it already carries a repetition operator.
        let mut items: Vec<(String, bool)> = Vec::new();
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
                    self.pos += 1;
                    self.space(true);
                    let inner = self.alternates(true)?;
                    if self.peek() != Some(')') {
                        return Err(self.syntax("expected ) to close the group".into()));
                    }
                    self.pos += 1;
                    format!("({inner})")
                }
                '<' => return Err(self.unsupported("a token reference (<...>)")),
                '!' => return Err(self.unsupported("a negated token (!...)")),
                '*' | '+' | '?' | '{' => {
                    let Some((last, has_op)) = items.pop() else {
                        return Err(self.syntax(format!("{c:?} follows nothing")));
                    };
                    let base = if has_op { format!("({last})") } else { last };
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
                    items.push((item, true));
                    self.space(nested);
                    continue;
                }
                c if is_word(c) => {
                    let at = self.line_col();
                    let name = self.name()?;
                    self.used.entry(name.clone()).or_insert(at);
                    lark_name(&name)
                }
                _ => break,
            };
            items.push((item, false));
            self.space(nested);
        }
        if items.is_empty() {
            // An empty alternative matches the empty string.
            return Ok("\"\"".into());
        }
        Ok(items
            .into_iter()
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
            .join(" "))
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

    #[test]
    fn token_references_are_refused_by_name() {
        for g in ["root ::= <[1234]>", "root ::= \"a\" !<think>"] {
            let e = to_lark(g).unwrap_err();
            assert!(matches!(e, GbnfError::Unsupported { .. }), "{g}: {e}");
            assert!(e.to_string().contains("not supported"), "{e}");
        }
    }
}
