//! The limits on client grammars and JSON schemas, in one place, and the checks that
//! enforce them before anything is compiled.
//!
//! Why: llguidance's Lark and JSON-schema compilers recurse once per rule reference, group
//! and subschema, and a stack overflow aborts the whole daemon (it cannot be caught like a
//! panic). Measured with llguidance 1.9.1 on a 2 MiB thread (Rust's and tokio's default
//! stack), release and debug alike, it overflows at a chain of about 640 rules, about 40
//! rules whose references each sit in 27 nested groups, about 310 nested `properties`,
//! about 500 nested `items` and about 190 `$ref` hops that each pass through an object
//! property. The limits below stay about 5x under the cheapest of these: the deepest compile
//! they let through (a chain of 127 rules) needs about 450 KiB of stack.
//!
//! Every violation is a 400 naming the limit and the value given. Every check here is
//! iterative (explicit stacks, never recursion on client input), so a hostile input cannot
//! overflow our stack either, and linear in the input's size (the `$ref` walk is bounded by
//! [`MAX_EXPANDED_SUBSCHEMAS`]).
//!
//! **The Lark scanner is a guard, not a parser.** It follows llguidance's lexer only where
//! text hides other text (strings, regexes, comments, special tokens, the JSON after
//! `%llguidance`/`%json`/`%regex`), since there a difference could hide a rule reference.
//! Everything else it over-approximates: every name in a rule body is a reference, every
//! bracket is nesting, and the chain depth is taken from every rule, not only `start`.
//!
//! **The depths are estimates of llguidance's recursion.** Both walks follow llguidance's
//! own order and memoization (a rule or a `$ref` string is expanded once; one already on
//! the stack is a cycle, which llguidance resolves lazily, so it adds nothing). A first
//! visit in another order than llguidance's can under-count a cycle's length (by at most a
//! factor of about 2); the 5x margin covers that.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::super::error::ApiError;

/// Bytes of GBNF or Lark text. The grammar is held as characters and scanned several
/// times; 128 KiB is far beyond any hand-written grammar (llama.cpp's json.gbnf is under
/// 1 KiB) and keeps every pass over it in the microseconds.
pub const MAX_GRAMMAR_BYTES: usize = 128 * 1024;

/// Bytes of a JSON schema written as compact JSON. llguidance compiles every subschema
/// into grammar nodes (and gives up itself past 50,000 of them); 128 KiB is an order of
/// magnitude beyond real structured-output schemas.
pub const MAX_SCHEMA_BYTES: usize = 128 * 1024;

/// Nesting: groups `( [ {` in a grammar (our GBNF reader recurses once per group, and a
/// stacked repetition operator such as `x*?` adds a group in the Lark it writes), and
/// objects and arrays inside each other in a schema (every walk over a schema, ours and
/// llguidance's, descends once per level). llguidance's Lark parser refuses more than 30
/// itself; 64 keeps our own recursion trivially small.
pub const MAX_NESTING: usize = 64;

/// Rule and terminal definitions in a grammar. Each is compiled to grammar nodes and a
/// lexer entry; 1024 is far beyond generated grammars (llama.cpp's converter writes a few
/// rules per schema property). The chain depth, not this count, is what guards the stack.
pub const MAX_RULES: usize = 1024;

/// The deepest chain of rule references in a grammar, where each reference counts 1 and
/// 1 more for every group around it: llguidance's Lark compiler recurses through both.
/// Overflow comes at about 640 plain references; 128 is 5x under it and far beyond real
/// grammars (llama.cpp's json.gbnf is 8 deep; recursion back into a rule adds nothing).
pub const MAX_RULE_DEPTH: usize = 128;

/// The deepest chain of schema subschemas counting `$ref` hops, the "effective depth"
/// llguidance's schema compiler recurses through (`$defs` is flat, so neither serde's
/// nesting limit nor [`MAX_NESTING`] sees a chain `d0 -> d1 -> ... -> d500`). A level costs
/// up to about 6.5 KiB of stack there; 64 levels stay 5x under a 2 MiB stack.
pub const MAX_REF_DEPTH: usize = 64;

/// Subschemas the `$ref` walk may visit, counting each `$ref` string's expansion once as
/// llguidance does. llguidance gives up past 50,000 compiled subschemas itself, so twice
/// that never refuses a schema it would compile; it bounds our walk on hostile schemas
/// (thousands of `$ref` spellings of one large subtree each expand it again).
pub const MAX_EXPANDED_SUBSCHEMAS: usize = 100_000;

/// Values in one `enum`. Each becomes an alternative in the grammar and the lexer;
/// 4096 covers real enumerations (country codes, product catalogues) with room.
pub const MAX_ENUM: usize = 4096;

/// Bytes of one `pattern` regex or `patternProperties` key. The lexer is built from the
/// regex's derivatives, whose cost grows with its length; a real pattern is a line.
pub const MAX_PATTERN_BYTES: usize = 4096;

/// The request parameter for grammar errors.
const GRAMMAR: &str = "grammar";
/// The request parameter for schema errors.
const SCHEMA: &str = "response_format.json_schema.schema";

/// Refuse a grammar text (GBNF or Lark) longer than [`MAX_GRAMMAR_BYTES`].
pub fn check_grammar_bytes(text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_GRAMMAR_BYTES {
        return Err(ApiError::bad(
            GRAMMAR,
            format!(
                "grammar: {} bytes exceed the limit of {MAX_GRAMMAR_BYTES} bytes",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Where a Lark text came from, for the limits and the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LarkSource {
    /// The client wrote it (a `grammar` starting with `%llguidance`).
    Lark,
    /// [`super::gbnf::to_lark`] wrote it from the client's GBNF: it has one rule more
    /// (`start`), its size follows from the GBNF's, and rule names are shown as in the GBNF.
    Gbnf,
}

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// What [`scan_lark`] measured in a Lark text; all over-approximations (see the module
/// documentation).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LarkScan {
    /// Rule and terminal definitions (lines that start with a name).
    pub rules: usize,
    /// The deepest nesting of `(`, `[` and `{` outside strings, regexes and comments.
    pub nesting: usize,
    /// Where the nesting first reached that depth.
    pub nesting_at: Pos,
    /// The deepest chain of rule references ([`MAX_RULE_DEPTH`] explains the count).
    pub depth: usize,
    /// The rule at the head of that chain, as the Lark text names it.
    pub deepest: String,
    /// Where a `%json` directive is: a schema embedded in the grammar, which would bypass
    /// the schema keyword check and the schema limits.
    pub json_at: Option<Pos>,
}

impl LarkScan {
    /// Refuse the grammar when a measure is past its limit.
    pub fn check(&self, source: LarkSource) -> Result<(), ApiError> {
        let rules = match source {
            LarkSource::Lark => self.rules,
            LarkSource::Gbnf => self.rules.saturating_sub(1),
        };
        if rules > MAX_RULES {
            return Err(ApiError::bad(
                GRAMMAR,
                format!("grammar: {rules} rules exceed the limit of {MAX_RULES}"),
            ));
        }
        if self.nesting > MAX_NESTING {
            let Pos { line, col } = self.nesting_at;
            let lark = match source {
                LarkSource::Lark => "",
                LarkSource::Gbnf => " of the Lark the GBNF converts to",
            };
            return Err(ApiError::bad(
                GRAMMAR,
                format!(
                    "grammar: {} nested groups at line {line}, column {col}{lark} exceed the limit of {MAX_NESTING}",
                    self.nesting
                ),
            ));
        }
        if self.depth > MAX_RULE_DEPTH {
            let name = match source {
                LarkSource::Lark => self.deepest.clone(),
                LarkSource::Gbnf => gbnf_name(&self.deepest),
            };
            return Err(ApiError::bad(
                GRAMMAR,
                format!(
                    "grammar: the rule references from {name:?} nest {} deep (each reference counts 1, and 1 more for each group around it), beyond the limit of {MAX_RULE_DEPTH}",
                    self.depth
                ),
            ));
        }
        Ok(())
    }
}

/// The GBNF name of a rule [`super::gbnf::to_lark`] named (`g-my_rule` is `myRule`); its
/// `start` only refers to `root`.
fn gbnf_name(lark: &str) -> String {
    let Some(name) = lark.strip_prefix("g-") else {
        return if lark == "start" {
            "root".into()
        } else {
            lark.into()
        };
    };
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Size (for [`LarkSource::Lark`]), scan and check a Lark text; the scan comes back so the
/// caller can look at [`LarkScan::json_at`].
pub fn check_lark(text: &str, source: LarkSource) -> Result<LarkScan, ApiError> {
    if source == LarkSource::Lark {
        check_grammar_bytes(text)?;
    }
    let scan = scan_lark(text);
    scan.check(source)?;
    Ok(scan)
}

/// One rule or terminal as the scanner saw it.
struct Node<'a> {
    /// The name as defined (`?`/`!` prefixes dropped, as llguidance does).
    name: &'a str,
    /// The deepest bracket nesting in its body.
    nest: usize,
    /// Names in its body, with the nesting at each.
    refs: Vec<(&'a str, usize)>,
}

/// llguidance's `%` keywords, longest first so a prefix never wins over a longer one.
const KEYWORDS: &[&str] = &[
    "%llguidance",
    "%override",
    "%declare",
    "%ignore",
    "%import",
    "%regex",
    "%json",
    "%lark",
    "%if",
];

/// Measure a Lark text (see [`LarkScan`]); never fails, one pass plus a walk of the rule
/// graph.
pub fn scan_lark(text: &str) -> LarkScan {
    let b = text.as_bytes();
    // Node 0 holds what belongs to no rule: directives (`%ignore X` compiles X too) and
    // anything before the first definition.
    let mut nodes: Vec<Node> = vec![Node {
        name: "",
        nest: 0,
        refs: Vec::new(),
    }];
    let mut rules = 0usize;
    let mut current = 0usize;
    let mut depth = 0usize;
    let mut nesting = 0usize;
    let mut nesting_off = 0usize;
    let mut json_off: Option<usize> = None;
    // The next token starts an item: after a newline, and after `%lark {`.
    let mut item_start = true;
    // The next name is a definition: after `%override`.
    let mut def_next = false;
    // The last token was `%lark`, so a `{` opens a nested grammar.
    let mut lark_open = false;
    let mut i = 0usize;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'\n' => {
                item_start = true;
                lark_open = false;
                def_next = false;
                i += 1;
                continue;
            }
            b'#' => {
                i = line_end(b, i);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = line_end(b, i);
                continue;
            }
            _ => {}
        }
        let was_item_start = std::mem::replace(&mut item_start, false);
        let was_lark_open = std::mem::replace(&mut lark_open, false);
        if let Some(end) = name_end(b, i) {
            let raw = &text[i..end];
            let name = raw.trim_start_matches('!').trim_start_matches('?');
            if was_item_start || def_next {
                def_next = false;
                rules += 1;
                nodes.push(Node {
                    name,
                    nest: 0,
                    refs: Vec::new(),
                });
                current = nodes.len() - 1;
            } else {
                nodes[current].refs.push((name, depth));
            }
            i = end;
            continue;
        }
        match c {
            b'"' => i = string_end(b, i),
            b'/' => i = regex_end(b, i),
            b'<' => i = special_end(b, i),
            b'0'..=b'9' | b'+' | b'-' => i = number_end(b, i),
            b'%' => {
                let rest = &text[i..];
                match KEYWORDS.iter().find(|k| rest.starts_with(**k)) {
                    Some(k) => {
                        if was_item_start {
                            current = 0;
                        }
                        i += k.len();
                        match *k {
                            "%json" | "%llguidance" | "%regex" => {
                                if *k == "%json" && json_off.is_none() {
                                    json_off = Some(i - k.len());
                                }
                                i = json_end(b, i);
                            }
                            "%lark" => lark_open = true,
                            "%override" => def_next = true,
                            _ => {}
                        }
                    }
                    None => i += 1,
                }
            }
            b'(' | b'[' | b'{' => {
                // A repetition range (`x{2,3}`, `x{,4}`) nests nothing, as in llguidance.
                if let Some(end) = range_end(b, i).filter(|_| c == b'{') {
                    i = end;
                    continue;
                }
                depth += 1;
                if depth > nesting {
                    nesting = depth;
                    nesting_off = i;
                }
                let node = &mut nodes[current];
                node.nest = node.nest.max(depth);
                if c == b'{' && was_lark_open {
                    item_start = true;
                }
                i += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            // A continuation line (`| more`) and every other byte: nothing to measure.
            _ => i += 1,
        }
    }
    let (chain, deepest) = deepest_chain(&nodes);
    let mut positions = vec![nesting_off];
    positions.extend(json_off);
    let found = line_cols(text, &positions);
    LarkScan {
        rules,
        nesting,
        nesting_at: found[0],
        depth: chain,
        deepest: match deepest {
            0 => "(a directive)".to_string(),
            _ => nodes[deepest].name.to_string(),
        },
        json_at: json_off.map(|_| found[1]),
    }
}

/// The longest chain through the rule graph ([`MAX_RULE_DEPTH`] says how it counts), and
/// the node at its head. Iterative depth-first, each rule finished once; a reference to a
/// rule on the stack is a cycle and adds nothing.
fn deepest_chain(nodes: &[Node]) -> (usize, usize) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate().skip(1) {
        index.entry(n.name).or_insert(i);
    }
    // A name defined twice is one node with both bodies: more edges, never fewer.
    let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); nodes.len()];
    let mut nest: Vec<usize> = vec![0; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let at = match i {
            0 => 0,
            _ => index.get(n.name).copied().unwrap_or(i),
        };
        nest[at] = nest[at].max(n.nest);
        edges[at].extend(
            n.refs
                .iter()
                .filter_map(|(name, site)| index.get(name).map(|t| (*t, *site))),
        );
    }
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; nodes.len()];
    let mut value = vec![0usize; nodes.len()];
    // (node, next edge, best so far, nesting at the reference that entered it)
    let mut stack: Vec<(usize, usize, usize, usize)> = Vec::new();
    for root in 0..nodes.len() {
        if state[root] != NEW {
            continue;
        }
        state[root] = OPEN;
        stack.push((root, 0, nest[root], 0));
        while let Some(top) = stack.last_mut() {
            let (node, next, best, _) = *top;
            if let Some(&(to, site)) = edges[node].get(next) {
                top.1 += 1;
                match state[to] {
                    DONE => top.2 = best.max(site + value[to]),
                    OPEN => {}
                    _ => {
                        state[to] = OPEN;
                        stack.push((to, 0, nest[to], site));
                    }
                }
                continue;
            }
            let Some((node, _, best, site)) = stack.pop() else {
                break;
            };
            value[node] = 1 + best;
            state[node] = DONE;
            if let Some(parent) = stack.last_mut() {
                parent.2 = parent.2.max(site + value[node]);
            }
        }
    }
    let mut deepest = 0;
    for (i, v) in value.iter().enumerate() {
        if *v > value[deepest] {
            deepest = i;
        }
    }
    (value[deepest], deepest)
}

/// The end of the line at `i` (the index of its `\n`, or the end).
fn line_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|c| *c == b'\n')
        .map_or(b.len(), |n| i + n)
}

/// The end of a name at `i`, as llguidance's lexer reads names: a rule is
/// `!?[_?]?[a-z][_a-z0-9-]*`, a terminal `_?[A-Z][_A-Z0-9-]*` (so `fooBar` is two names).
fn name_end(b: &[u8], i: usize) -> Option<usize> {
    let at = |k: usize| b.get(k).copied().unwrap_or(0);
    let mut k = i;
    if at(k) == b'!' {
        k += 1;
    }
    if matches!(at(k), b'_' | b'?') {
        k += 1;
    }
    if at(k).is_ascii_lowercase() {
        k += 1;
        while matches!(at(k), b'_' | b'-' | b'a'..=b'z' | b'0'..=b'9') {
            k += 1;
        }
        return Some(k);
    }
    let mut k = i;
    if at(k) == b'_' {
        k += 1;
    }
    if at(k).is_ascii_uppercase() {
        k += 1;
        while matches!(at(k), b'_' | b'-' | b'A'..=b'Z' | b'0'..=b'9') {
            k += 1;
        }
        return Some(k);
    }
    None
}

/// The end of a repetition range at `i` (`{` then digits, commas and spaces, then `}`),
/// or `None` when the brace opens something else.
fn range_end(b: &[u8], i: usize) -> Option<usize> {
    let mut k = i + 1;
    while b.get(k).is_some_and(|c| matches!(c, b' ' | b'\t')) {
        k += 1;
    }
    if !b.get(k).is_some_and(|c| c.is_ascii_digit() || *c == b',') {
        return None;
    }
    while b
        .get(k)
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, b',' | b' ' | b'\t'))
    {
        k += 1;
    }
    (b.get(k) == Some(&b'}')).then_some(k + 1)
}

/// The end of a string literal at `i` (`"..."`, JSON escapes, an optional `i` flag). A
/// string cannot span lines: at a newline it ends (llguidance refuses it anyway).
fn string_end(b: &[u8], i: usize) -> usize {
    let mut k = i + 1;
    while k < b.len() {
        match b[k] {
            b'\\' if b.get(k + 1).is_some_and(|c| *c != b'\n') => k += 2,
            b'"' => {
                k += 1;
                if b.get(k) == Some(&b'i') {
                    k += 1;
                }
                return k;
            }
            b'\n' => return k,
            _ => k += 1,
        }
    }
    b.len()
}

/// The end of a regex literal at `i` (`/(\\.|[^/\\])+/[imslux]*`; `//` is a comment and
/// handled before). A regex can span lines, as in llguidance's lexer; an unterminated one
/// is refused there, so where it ends here does not matter.
fn regex_end(b: &[u8], i: usize) -> usize {
    let mut k = i + 1;
    while k < b.len() {
        match b[k] {
            b'\\' => k += 2,
            b'/' => {
                k += 1;
                while b.get(k).is_some_and(|c| b"imslux".contains(c)) {
                    k += 1;
                }
                return k;
            }
            _ => k += 1,
        }
    }
    b.len()
}

/// The end of a special token at `i` (`<[^<>\s]+>`), or just past the `<` when it is none.
fn special_end(b: &[u8], i: usize) -> usize {
    let mut k = i + 1;
    while k < b.len()
        && !matches!(
            b[k],
            b'<' | b'>' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c
        )
    {
        k += 1;
    }
    if k > i + 1 && b.get(k) == Some(&b'>') {
        k + 1
    } else {
        i + 1
    }
}

/// The end of a number at `i`, as llguidance reads them (`0x1F`, `-1.5e3`), so the letters
/// after one (`1else`) start a name as they do there.
fn number_end(b: &[u8], i: usize) -> usize {
    let at = |k: usize| b.get(k).copied().unwrap_or(0);
    let digits = |mut k: usize| {
        while at(k).is_ascii_digit() {
            k += 1;
        }
        k
    };
    if at(i) == b'0' && matches!(at(i + 1), b'x' | b'X') && at(i + 2).is_ascii_hexdigit() {
        let mut k = i + 2;
        while at(k).is_ascii_hexdigit() {
            k += 1;
        }
        return k;
    }
    let mut k = i;
    if matches!(at(k), b'+' | b'-') {
        k += 1;
    }
    let int_end = digits(k);
    if int_end == k {
        // A lone sign: an operator or nothing llguidance lexes.
        return i + 1;
    }
    k = int_end;
    if at(k) == b'.' {
        k = digits(k + 1);
    }
    if matches!(at(k), b'e' | b'E') {
        let mut e = k + 1;
        if matches!(at(e), b'+' | b'-') {
            e += 1;
        }
        let end = digits(e);
        if end > e {
            k = end;
        }
    }
    k
}

/// The end of the JSON value after `%llguidance`, `%json` or `%regex` at `i` (llguidance
/// reads one JSON value there, across lines). Strings and brackets are followed so nothing
/// inside counts as grammar; a malformed value is refused by llguidance anyway.
fn json_end(b: &[u8], i: usize) -> usize {
    let mut k = i;
    while b
        .get(k)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    {
        k += 1;
    }
    let mut open = 0usize;
    while k < b.len() {
        match b[k] {
            b'"' => {
                k += 1;
                while k < b.len() && b[k] != b'"' {
                    k += if b[k] == b'\\' { 2 } else { 1 };
                }
                k += 1;
            }
            b'{' | b'[' => {
                open += 1;
                k += 1;
            }
            b'}' | b']' => {
                open = open.saturating_sub(1);
                k += 1;
            }
            // A scalar ends at what cannot continue it.
            c if open == 0 && !(c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-')) => {
                return k;
            }
            _ => k += 1,
        }
        if open == 0 && matches!(b.get(k.wrapping_sub(1)), Some(b'}' | b']' | b'"')) {
            return k.min(b.len());
        }
    }
    b.len()
}

/// 1-based line and column (in characters) of each byte offset, in one pass.
fn line_cols(text: &str, offsets: &[usize]) -> Vec<Pos> {
    let mut out = vec![Pos { line: 1, col: 1 }; offsets.len()];
    let mut line = 1;
    let mut col = 1;
    for (off, c) in text.char_indices() {
        for (k, want) in offsets.iter().enumerate() {
            if *want == off {
                out[k] = Pos { line, col };
            }
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    out
}

/// Check a JSON schema against every schema limit: its size as compact JSON, its nesting,
/// enum and pattern sizes, then its depth counting `$ref` hops.
pub fn check_schema(schema: &Value) -> Result<(), ApiError> {
    check_shape(schema)?;
    check_ref_depth(schema)
}

/// What a schema position holds, for the keyword checks: only a schema's own keywords
/// are keywords (a property named `enum` is not one).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A schema: its keys are keywords.
    Schema,
    /// A map of names to schemas (`properties`, `$defs`, ...).
    Map,
    /// `patternProperties`: a map whose keys are regexes.
    Patterns,
    /// A list of schemas (`anyOf`, `prefixItems`, ...).
    List,
    /// Anything else (`const`, `enum`, `required`, annotations): data.
    Data,
}

/// What a schema keyword's value holds.
fn keyword_kind(key: &str, value: &Value) -> Kind {
    match key {
        "properties" | "$defs" | "definitions" | "dependentSchemas" => Kind::Map,
        "patternProperties" => Kind::Patterns,
        "anyOf" | "allOf" | "oneOf" | "prefixItems" => Kind::List,
        "items" if value.is_array() => Kind::List,
        "items"
        | "additionalProperties"
        | "additionalItems"
        | "not"
        | "if"
        | "then"
        | "else"
        | "contains"
        | "propertyNames"
        | "unevaluatedProperties"
        | "unevaluatedItems" => Kind::Schema,
        _ => Kind::Data,
    }
}

/// One step of a JSON pointer, kept borrowed until a message needs it.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn pointer(path: &[Step]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Step::Key(k) => {
                out.push('/');
                out.push_str(&k.replace('~', "~0").replace('/', "~1"));
            }
            Step::Index(i) => {
                let _ = write!(out, "/{i}");
            }
        }
    }
    if out.is_empty() {
        "the root (\"\")".into()
    } else {
        format!("{out:?}")
    }
}

/// Counts bytes written, to size numbers as serde_json writes them.
struct Count(usize);

impl std::fmt::Write for Count {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// The length of `s` as a JSON string, quotes included, escaped as serde_json does.
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|c| match c {
            b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// The length of a scalar (or an empty container's brackets) as compact JSON.
fn json_scalar_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => {
            let mut c = Count(0);
            let _ = write!(c, "{n}");
            c.0
        }
        Value::String(s) => json_str_len(s),
        // Brackets, and a comma between each two entries.
        Value::Array(a) => 2 + a.len().saturating_sub(1),
        // Brackets, commas, and each key with its quotes and colon.
        Value::Object(o) => {
            2 + o.len().saturating_sub(1) + o.keys().map(|k| json_str_len(k) + 1).sum::<usize>()
        }
    }
}

/// A container being walked: its entries left, its kind, and its depth.
enum Frame<'a> {
    Object(serde_json::map::Iter<'a>, Kind),
    Array(std::iter::Enumerate<std::slice::Iter<'a, Value>>, Kind),
}

/// What the next step of [`check_shape`]'s walk is.
enum Next<'a> {
    /// Visit a value at this step from its container, of this kind.
    Visit(Step<'a>, &'a Value, Kind),
    /// The container on top is done.
    Up,
}

/// Size, nesting, enum and pattern limits in one iterative walk over every value.
fn check_shape(schema: &Value) -> Result<(), ApiError> {
    let mut size = json_scalar_len(schema);
    // The deepest nesting seen, and where it first went past the limit.
    let mut deepest = 0usize;
    let mut too_deep_at = String::new();
    // The first enum or pattern past its limit.
    let mut problem: Option<String> = None;
    // The steps to the container on top of `stack` (the root has none).
    let mut path: Vec<Step> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    match schema {
        Value::Object(o) => stack.push(Frame::Object(o.iter(), Kind::Schema)),
        Value::Array(a) => stack.push(Frame::Array(a.iter().enumerate(), Kind::Data)),
        _ => {}
    }
    deepest = deepest.max(stack.len());
    while let Some(top) = stack.last_mut() {
        let next = match top {
            Frame::Object(entries, kind) => match entries.next() {
                Some((k, v)) => {
                    let child = match *kind {
                        Kind::Schema => keyword_kind(k, v),
                        Kind::Map | Kind::Patterns | Kind::List => Kind::Schema,
                        Kind::Data => Kind::Data,
                    };
                    if problem.is_none() {
                        problem = keyword_problem(*kind, k, v).map(|message| {
                            let mut at = path.clone();
                            at.push(Step::Key(k));
                            format!("{message} at {}", pointer(&at))
                        });
                    }
                    Next::Visit(Step::Key(k), v, child)
                }
                None => Next::Up,
            },
            Frame::Array(items, kind) => match items.next() {
                Some((i, v)) => {
                    let child = if *kind == Kind::List {
                        Kind::Schema
                    } else {
                        Kind::Data
                    };
                    Next::Visit(Step::Index(i), v, child)
                }
                None => Next::Up,
            },
        };
        let (step, v, kind) = match next {
            Next::Up => {
                stack.pop();
                path.pop();
                continue;
            }
            Next::Visit(step, v, kind) => (step, v, kind),
        };
        size += json_scalar_len(v);
        let frame = match v {
            Value::Object(o) => Frame::Object(o.iter(), kind),
            Value::Array(a) => Frame::Array(a.iter().enumerate(), kind),
            _ => continue,
        };
        path.push(step);
        stack.push(frame);
        if stack.len() > deepest {
            deepest = stack.len();
            if deepest == MAX_NESTING + 1 {
                too_deep_at = pointer(&path);
            }
        }
    }
    if deepest > MAX_NESTING {
        return Err(ApiError::bad(
            SCHEMA,
            format!(
                "{SCHEMA}: the schema nests {deepest} deep (objects and arrays inside each other) at {too_deep_at}, beyond the limit of {MAX_NESTING}"
            ),
        ));
    }
    if size > MAX_SCHEMA_BYTES {
        return Err(ApiError::bad(
            SCHEMA,
            format!(
                "{SCHEMA}: the schema is {size} bytes as compact JSON, beyond the limit of {MAX_SCHEMA_BYTES} bytes"
            ),
        ));
    }
    match problem {
        Some(message) => Err(ApiError::bad(SCHEMA, format!("{SCHEMA}: {message}"))),
        None => Ok(()),
    }
}

/// An `enum`, `pattern` or `patternProperties` key past its limit, in a schema position.
fn keyword_problem(kind: Kind, key: &str, value: &Value) -> Option<String> {
    match (kind, key, value) {
        (Kind::Schema, "enum", Value::Array(a)) if a.len() > MAX_ENUM => Some(format!(
            "an enum of {} values exceeds the limit of {MAX_ENUM}",
            a.len()
        )),
        (Kind::Schema, "pattern", Value::String(p)) if p.len() > MAX_PATTERN_BYTES => {
            Some(format!(
                "a pattern of {} bytes exceeds the limit of {MAX_PATTERN_BYTES} bytes",
                p.len()
            ))
        }
        (Kind::Patterns, _, _) if key.len() > MAX_PATTERN_BYTES => Some(format!(
            "a patternProperties pattern of {} bytes exceeds the limit of {MAX_PATTERN_BYTES} bytes",
            key.len()
        )),
        _ => None,
    }
}

/// What the `$ref` walk goes into from a subschema.
#[derive(Clone, Copy)]
enum Child<'a> {
    /// A subschema llguidance compiles as part of this one.
    Sub(&'a Value),
    /// A `$ref`, by its string: llguidance expands each string once.
    Ref(&'a str),
}

/// The subschemas and `$ref`s of `v`, in its keys' order (llguidance's order, near enough).
/// `$defs` is not among them: llguidance compiles a definition only through a `$ref`.
fn children<'a>(v: &'a Value, out: &mut Vec<Child<'a>>) {
    let Value::Object(o) = v else {
        return;
    };
    for (k, sub) in o {
        match keyword_kind(k, sub) {
            Kind::Map | Kind::Patterns if k != "$defs" && k != "definitions" => {
                if let Some(m) = sub.as_object() {
                    out.extend(m.values().map(Child::Sub));
                }
            }
            Kind::List => {
                if let Some(a) = sub.as_array() {
                    out.extend(a.iter().map(Child::Sub));
                }
            }
            Kind::Schema => out.push(Child::Sub(sub)),
            _ => {
                if let ("$ref", Some(r)) = (k.as_str(), sub.as_str()) {
                    out.push(Child::Ref(r));
                }
            }
        }
    }
}

/// Where a local `$ref` points. llguidance (built without its `referencing` feature) splits
/// `#/a/b` on `/` and looks each segment up as written; RFC 6901 and 3986 unescape `~1` and
/// `%2F` first. When the two disagree both targets count, so a spelling that means one
/// thing here and another there cannot hide a chain.
fn ref_targets<'a>(root: &'a Value, r: &str) -> Vec<&'a Value> {
    let mut out: Vec<&Value> = Vec::with_capacity(2);
    let literal = if r == "#" || r == "#/" {
        Some(root)
    } else {
        r.strip_prefix("#/").and_then(|p| {
            p.split('/').try_fold(root, |at, segment| match at {
                Value::Array(a) => segment.parse::<usize>().ok().and_then(|i| a.get(i)),
                Value::Object(o) => o.get(segment),
                _ => None,
            })
        })
    };
    out.extend(literal);
    let standard = r
        .strip_prefix('#')
        .and_then(percent_decode)
        .and_then(|p| root.pointer(&p));
    if let Some(t) = standard {
        if !out.iter().any(|o| std::ptr::eq(*o, t)) {
            out.push(t);
        }
    }
    out
}

/// `%XX` escapes decoded (a `%` without two hex digits stays); `None` if not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A subschema or `$ref` being walked.
struct Walk<'a> {
    children: Vec<Child<'a>>,
    next: usize,
    /// The deepest child so far, and the first `$ref` on the way to it.
    best: usize,
    best_ref: Option<&'a str>,
    /// The `$ref` string this frame expands (a hop adds no level of its own: the
    /// subschema it lands on does), or `None` for a subschema.
    hop: Option<&'a str>,
}

/// How far a `$ref` string's expansion got.
#[derive(Clone, Copy)]
enum Expansion {
    /// On the walk's stack: a reference to it now is a cycle.
    Open,
    /// Finished, this deep.
    Done(usize),
}

/// Refuse a schema whose subschemas, counting `$ref` hops, nest past [`MAX_REF_DEPTH`].
fn check_ref_depth(root: &Value) -> Result<(), ApiError> {
    let mut memo: HashMap<&str, Expansion> = HashMap::new();
    let mut visits = 1usize;
    let mut first = Vec::new();
    children(root, &mut first);
    let mut stack = vec![Walk {
        children: first,
        next: 0,
        best: 0,
        best_ref: None,
        hop: None,
    }];
    let mut result = (0usize, None);
    while let Some(top) = stack.last_mut() {
        if let Some(child) = top.children.get(top.next).copied() {
            top.next += 1;
            let (frame_children, hop) = match child {
                Child::Sub(v) => {
                    let mut c = Vec::new();
                    children(v, &mut c);
                    (c, None)
                }
                Child::Ref(r) => match memo.get(r) {
                    Some(Expansion::Open) => continue,
                    Some(Expansion::Done(d)) => {
                        if *d > top.best {
                            top.best = *d;
                            top.best_ref = Some(r);
                        }
                        continue;
                    }
                    None => {
                        memo.insert(r, Expansion::Open);
                        let targets = ref_targets(root, r).into_iter().map(Child::Sub);
                        (targets.collect(), Some(r))
                    }
                },
            };
            visits += 1;
            if visits > MAX_EXPANDED_SUBSCHEMAS {
                return Err(ApiError::bad(
                    SCHEMA,
                    format!(
                        "{SCHEMA}: following its $refs, the schema expands to more than {MAX_EXPANDED_SUBSCHEMAS} subschemas, the limit"
                    ),
                ));
            }
            stack.push(Walk {
                children: frame_children,
                next: 0,
                best: 0,
                best_ref: None,
                hop,
            });
            continue;
        }
        let Some(done) = stack.pop() else {
            break;
        };
        let (value, via) = match done.hop {
            Some(r) => {
                memo.insert(r, Expansion::Done(done.best));
                (done.best, Some(r))
            }
            None => (1 + done.best, done.best_ref),
        };
        match stack.last_mut() {
            Some(parent) => {
                if value > parent.best {
                    parent.best = value;
                    parent.best_ref = via;
                }
            }
            None => result = (value, via),
        }
    }
    let (depth, via) = result;
    if depth <= MAX_REF_DEPTH {
        return Ok(());
    }
    let message = match via {
        Some(r) => format!(
            "{SCHEMA}: the $ref chain from {r:?} is {depth} deep (subschemas inside each other, counting each $ref hop), beyond the limit of {MAX_REF_DEPTH}"
        ),
        None => {
            format!("{SCHEMA}: subschemas nest {depth} deep, beyond the limit of {MAX_REF_DEPTH}")
        }
    };
    Err(ApiError::bad(SCHEMA, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// llama.cpp's grammars/json.gbnf.
    const JSON_GBNF: &str = include_str!("../../../../fuzz/corpus/gbnf/ok-json.gbnf");

    fn grammar(text: &str) -> Result<Option<super::super::GrammarSpec>, ApiError> {
        super::super::from_request(json!({ "grammar": text }).as_object().unwrap())
    }

    fn schema(s: Value) -> Result<Option<super::super::GrammarSpec>, ApiError> {
        let body = json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": "t", "schema": s}}});
        super::super::from_request(body.as_object().unwrap())
    }

    fn refused(r: Result<Option<super::super::GrammarSpec>, ApiError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.status(), 400, "{}", e.message());
        e.message()
    }

    /// `rK: "a" rK+1 | "b"` for K below `n`, in Lark or GBNF.
    fn chain(n: usize, gbnf: bool) -> String {
        let (def, head) = if gbnf {
            (" ::=", "root ::= r0\n")
        } else {
            (":", "%llguidance {}\nstart: r0\n")
        };
        let mut g = String::from(head);
        for k in 0..n {
            g.push_str(&format!("r{k}{def} \"a\" r{} | \"b\"\n", k + 1));
        }
        g.push_str(&format!("r{n}{def} \"c\"\n"));
        g
    }

    #[test]
    fn real_grammars_are_far_inside_the_limits() {
        let lark = super::super::gbnf::to_lark(JSON_GBNF).unwrap();
        let scan = scan_lark(&lark);
        assert_eq!(scan.rules, 8, "{lark}");
        assert!(scan.nesting <= 4, "{scan:?}");
        assert!(scan.depth <= 12, "{scan:?}");
        assert_eq!(scan.json_at, None);
        assert!(grammar(JSON_GBNF).unwrap().is_some());
    }

    #[test]
    fn a_long_rule_chain_is_refused_in_lark_and_in_gbnf() {
        let m = refused(grammar(&chain(700, false)));
        assert!(
            m.contains("from \"start\" nest 702 deep") && m.contains("limit of 128"),
            "{m}"
        );
        // GBNF: its `root` comes after the Lark's `start`.
        let m = refused(grammar(&chain(700, true)));
        assert!(m.contains("from \"root\" nest 703 deep"), "{m}");
        // Just inside: start, then r0 .. r126.
        assert!(grammar(&chain(126, false)).unwrap().is_some());
        assert!(grammar(&chain(127, false)).is_err());
    }

    #[test]
    fn groups_around_references_count_toward_the_chain() {
        // 10 rules whose references sit in 27 groups each: 280 deep although 11 rules
        // (40 of them overflow llguidance's stack).
        let mut g = String::from("%llguidance {}\nstart: r0\n");
        for k in 0..10 {
            let (open, close) = ("(".repeat(27), ")".repeat(27));
            g.push_str(&format!("r{k}: {open}\"a\" r{}{close} | \"b\"\n", k + 1));
        }
        g.push_str("r10: \"c\"\n");
        let scan = scan_lark(&g);
        assert_eq!((scan.rules, scan.nesting), (12, 27), "{scan:?}");
        assert!(scan.depth >= 280, "{scan:?}");
        assert!(refused(grammar(&g)).contains("limit of 128"));
    }

    #[test]
    fn recursion_adds_nothing() {
        let g = "%llguidance {}\nstart: value\nvalue: \"[\" value (\",\" value)* \"]\" | item\nitem: value | \"x\"\n";
        let scan = scan_lark(g);
        assert!(scan.depth <= 5, "{scan:?}");
    }

    #[test]
    fn text_that_hides_text_hides_names_as_llguidance_reads_it() {
        // Strings, regexes, comments, special tokens and the %llguidance JSON hold no
        // references and no nesting.
        let g = concat!(
            "%llguidance {\"a\": \"(((( r1 \\\" r2\"}\n",
            "start: \"(( r1 \\\" r2\" /(( r1 [\\/ r2]/ <r1(> # (( r1\n",
            "  | \"x\" // (( r2\n",
            "r1: \"a\"\n",
            "r2: \"b\"\n",
        );
        let scan = scan_lark(g);
        assert_eq!(
            (scan.rules, scan.nesting, scan.depth),
            (3, 0, 1),
            "{scan:?}"
        );
        // What is not hidden counts, split where llguidance's lexer splits: `r1R2` is two
        // names, `1r2` a number then a name, `"a"ir1` a string with its flag then a name,
        // `/a/ir2` a regex with its flag then a name.
        for (body, depth) in [
            ("r1R2", 2),
            ("1r2", 2),
            ("\"a\"ir2", 2),
            ("/a/ir2", 2),
            ("x{2}r2", 2),
            ("(r2)", 3),
        ] {
            let g = format!("start: {body}\nr2: \"b\"\nR2: \"c\"\n");
            assert_eq!(scan_lark(&g).depth, depth, "{body}");
        }
        // A regex can span lines in llguidance's lexer, so the line in it is no definition.
        let g = "start: /a\nr9: b/ r1\nr1: \"x\"\n";
        let scan = scan_lark(g);
        assert_eq!((scan.rules, scan.depth), (2, 2), "{scan:?}");
    }

    #[test]
    fn nesting_and_rule_counts_are_refused_with_the_value_given() {
        let deep = format!(
            "%llguidance {{}}\nstart: {}\"a\"{}\n",
            "(".repeat(100),
            ")".repeat(100)
        );
        let m = refused(grammar(&deep));
        assert!(
            m.contains("100 nested groups at line 2, column 107 exceed the limit of 64"),
            "{m}"
        );
        // A repetition range is no group, in llguidance as in GBNF: 64 groups with one
        // inside is exactly at the limit.
        let at_limit = format!("root ::= {}\"a\"{{2,3}}{}", "(".repeat(64), ")".repeat(64));
        assert!(grammar(&at_limit).unwrap().is_some());
        let mut many = String::from("%llguidance {}\nstart: \"a\"\n");
        for k in 0..MAX_RULES {
            many.push_str(&format!("r{k}: \"a\"\n"));
        }
        let m = refused(grammar(&many));
        assert!(m.contains("1025 rules exceed the limit of 1024"), "{m}");
        let big = format!(
            "%llguidance {{}}\nstart: \"{}\"\n",
            "a".repeat(MAX_GRAMMAR_BYTES)
        );
        let m = refused(grammar(&big));
        assert!(m.contains("bytes exceed the limit of 131072 bytes"), "{m}");
    }

    #[test]
    fn an_embedded_json_schema_is_found_wherever_it_is() {
        for g in [
            "%llguidance {}\nstart: (%json {\"type\": \"object\"})\n",
            "%llguidance {}\nstart: \"a\"|%json{}\n",
        ] {
            assert_eq!(scan_lark(g).json_at.map(|p| p.line), Some(2), "{g}");
            let e = grammar(g).unwrap_err();
            assert!(e.message().contains("%json"), "{}", e.message());
        }
        assert_eq!(scan_lark("start: \"%json {}\"\n").json_at, None);
    }

    /// A schema whose `$defs` chain `d0 -> d1 -> ... -> dN` (dN a string), entered from
    /// the root.
    fn ref_chain(n: usize) -> Value {
        let mut defs = serde_json::Map::new();
        for k in 0..n {
            defs.insert(
                format!("d{k}"),
                json!({"$ref": format!("#/$defs/d{}", k + 1)}),
            );
        }
        defs.insert(format!("d{n}"), json!({"type": "string"}));
        json!({"$defs": defs, "$ref": "#/$defs/d0"})
    }

    #[test]
    fn a_deep_ref_chain_is_refused_and_a_shallow_one_passes() {
        let m = refused(schema(ref_chain(500)));
        assert!(
            m.contains("the $ref chain from \"#/$defs/d0\" is 502 deep")
                && m.contains("limit of 64")
                && m.starts_with("response_format.json_schema.schema: "),
            "{m}"
        );
        assert!(schema(ref_chain(62)).unwrap().is_some());
        assert!(refused(schema(ref_chain(63))).contains("is 65 deep"));
    }

    #[test]
    fn recursive_schemas_pass() {
        let list = json!({
            "$defs": {"node": {"type": "object", "properties": {
                "value": {"type": "integer"},
                "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}
            }}},
            "$ref": "#/$defs/node"
        });
        assert!(schema(list).unwrap().is_some());
        let tree = json!({"type": "object", "properties": {
            "children": {"type": "array", "items": {"$ref": "#"}}
        }});
        assert!(schema(tree).unwrap().is_some());
    }

    #[test]
    fn every_spelling_of_a_ref_expands_again_as_in_llguidance() {
        // llguidance expands each $ref string once: `#/anyOf/0`, `#/anyOf/00`, ... all
        // name the same subschema and each expands it again inside the last.
        let refs: Vec<Value> = (1..=100)
            .map(|n| json!({"$ref": format!("#/anyOf/{}", "0".repeat(n))}))
            .collect();
        let s = json!({"anyOf": [{"anyOf": refs}]});
        let m = refused(schema(s));
        assert!(m.contains("$ref chain from \"#/anyOf/0\""), "{m}");
        // A spelling that means another node under RFC 6901 counts both ways.
        let root = json!({"$defs": {"a~1b": {"type": "string"}, "a/b": {"type": "integer"}}});
        assert_eq!(ref_targets(&root, "#/$defs/a~1b").len(), 2);
        assert_eq!(ref_targets(&root, "#/$defs/a%7E1b").len(), 1);
        assert_eq!(ref_targets(&root, "#").len(), 1);
        assert_eq!(ref_targets(&root, "#/nothing").len(), 0);
    }

    #[test]
    fn the_expansion_budget_bounds_the_walk() {
        let mut any: Vec<Value> = (0..2000).map(|_| json!({"type": "string"})).collect();
        any.extend((1..=100).map(|n| json!({"$ref": format!("#/anyOf/{}", "0".repeat(n))})));
        let s = json!({"anyOf": [{"anyOf": any}]});
        let m = check_schema(&s).unwrap_err().message();
        assert!(m.contains("more than 100000 subschemas"), "{m}");
    }

    #[test]
    fn size_is_compact_json_to_the_byte() {
        // Escapes count as serde_json writes them.
        let base = json!({"description": "", "minimum": -1.5e300, "enum": [null, true, false]});
        let fixed = serde_json::to_string(&base).unwrap().len();
        let pad = "\"\\\n\u{1}é".repeat(1000);
        let pad_len = serde_json::to_string(&pad).unwrap().len() - 2;
        let fill = "a".repeat(MAX_SCHEMA_BYTES - fixed - pad_len);
        let mut s = base.clone();
        s["description"] = Value::String(format!("{pad}{fill}"));
        assert_eq!(serde_json::to_string(&s).unwrap().len(), MAX_SCHEMA_BYTES);
        check_schema(&s).unwrap();
        s["description"] = Value::String(format!("{pad}{fill}a"));
        let m = check_schema(&s).unwrap_err().message();
        assert!(m.contains("131073 bytes as compact JSON"), "{m}");
    }

    #[test]
    fn nesting_is_refused_with_its_depth_and_where() {
        let mut v = json!({"type": "string"});
        for _ in 0..63 {
            v = json!({"items": v});
        }
        check_schema(&v).unwrap();
        let v = json!({"items": v});
        let m = check_schema(&v).unwrap_err().message();
        assert!(m.contains("nests 65 deep"), "{m}");
        assert!(m.contains(&format!("at {:?}", "/items".repeat(64))), "{m}");
        // Far deeper than serde would parse: refused, iteratively, on a small stack.
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let mut v = json!(1);
                // Not json!([v]): it serializes `v` again, recursively.
                for _ in 0..2000 {
                    v = Value::Array(vec![v]);
                }
                let mut s = json!({"const": null});
                s["const"] = v;
                let m = check_schema(&s).unwrap_err().message();
                assert!(m.contains("nests 2001 deep"), "{m}");
                // serde_json drops a Value recursively: take it apart here instead.
                let mut v = s["const"].take();
                while let Value::Array(mut a) = v {
                    v = a.pop().unwrap_or(Value::Null);
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn enums_and_patterns_are_bounded_where_they_are_keywords() {
        let many: Vec<Value> = (0..=MAX_ENUM).map(|i| json!(i)).collect();
        let m = refused(schema(json!({"enum": many.clone()})));
        assert!(
            m.contains("enum of 4097 values exceeds the limit of 4096 at \"/enum\""),
            "{m}"
        );
        check_schema(&json!({"enum": many[..MAX_ENUM].to_vec()})).unwrap();
        // Data that looks like a keyword is data.
        check_schema(&json!({"const": {"enum": many.clone()}})).unwrap();
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        let m = refused(schema(json!({"type": "string", "pattern": long.clone()})));
        assert!(m.contains("pattern of 4097 bytes"), "{m}");
        let m = refused(schema(
            json!({"type": "object", "patternProperties": {long.clone(): {}}}),
        ));
        assert!(m.contains("patternProperties pattern of 4097 bytes"), "{m}");
        check_schema(&json!({"properties": {long: {"type": "string"}}})).unwrap();
    }
}
