//! The bad-file corpora's runner, shared by profiles (tests/profiles/bad) and fleet files
//! (tests/fleets/bad): every file states the errors it must produce in `# expect:
//! [FILE:]LINE:COLUMN MESSAGE` comments, in file order, and the loader must report
//! exactly those, at exactly those places, each with a hint.
//!
//! JSON has no comments, so a JSON file of a corpus (tests/cards/bad) states them in a
//! sidecar instead: `NAME.expect` beside `NAME.json`, one `LINE:COLUMN MESSAGE` a line.

#![allow(dead_code)] // each corpus test uses a different part

use std::path::{Component, Path, PathBuf};

use sovereign::profile::LoadError;

/// One `# expect:` line: the file (relative to the corpus folder), line, column and a
/// piece of the message.
#[derive(Debug)]
pub struct Expect {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// `a/b/../c` as `a/c`: the loader shows paths cleaned, and so must the expectations.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The `# expect:` lines of `path`, a file of the corpus folder `dir`.
pub fn expectations(dir: &str, path: &Path) -> Vec<Expect> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# expect: ") else {
            continue;
        };
        let (place, message) = rest.split_once(' ').expect("PLACE MESSAGE");
        let parts: Vec<&str> = place.rsplitn(3, ':').collect();
        let (file, line, column) = match parts.as_slice() {
            [col, line, file] => (clean(&Path::new(dir).join(file)), line, col),
            [col, line] => (path.to_path_buf(), line, col),
            _ => panic!("bad expectation {rest:?} in {}", path.display()),
        };
        out.push(Expect {
            file,
            line: line.parse().unwrap(),
            column: column.parse().unwrap(),
            message: message.to_string(),
        });
    }
    out
}

/// The expectations of a file that cannot hold comments: its sidecar `NAME.expect`, one
/// `LINE:COLUMN MESSAGE` a line (blank lines and `#` lines are skipped).
pub fn sidecar_expectations(path: &Path) -> Vec<Expect> {
    let sidecar = path.with_extension("expect");
    let text =
        std::fs::read_to_string(&sidecar).unwrap_or_else(|e| panic!("{}: {e}", sidecar.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (place, message) = l.split_once(' ').expect("LINE:COLUMN MESSAGE");
            let (line, column) = place.split_once(':').expect("LINE:COLUMN");
            Expect {
                file: path.to_path_buf(),
                line: line.parse().unwrap(),
                column: column.parse().unwrap(),
                message: message.to_string(),
            }
        })
        .collect()
}

/// The corpus folder's TOML files, sorted.
pub fn corpus(dir: &str) -> Vec<PathBuf> {
    files(dir, "toml")
}

/// The corpus folder's files with the extension `ext`, sorted.
pub fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// What a loader reported against what `path` expects: `None` when they agree exactly
/// (as many errors, in the same order, at the same places, each message containing the
/// expected text), else both lists for the failure message. `got` is (line, column,
/// message) per error.
pub fn differs(path: &Path, expected: &[Expect], got: &[(u32, u32, String)]) -> Option<String> {
    let same = got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .all(|((line, column, message), want)| {
                *line == want.line && *column == want.column && message.contains(&want.message)
            });
    if same {
        return None;
    }
    let show = |rows: Vec<String>| rows.join("\n");
    Some(format!(
        "{}:\n expected:\n{}\n got:\n{}",
        path.display(),
        show(
            expected
                .iter()
                .map(|e| format!("  {}:{} {}", e.line, e.column, e.message))
                .collect()
        ),
        show(
            got.iter()
                .map(|(l, c, m)| format!("  {l}:{c} {m}"))
                .collect()
        ),
    ))
}

/// Every error of a load, one line each, for failure messages.
pub fn describe(err: &LoadError) -> String {
    err.errors
        .iter()
        .map(|e| format!("  {}: {} [{}]", e.place(), e.message, e.key_path))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Load every file of `dir` with `load` and return what differs from its expectations
/// (empty: the corpus holds).
pub fn check<T>(dir: &str, load: impl Fn(&Path) -> Result<T, LoadError>) -> Vec<String> {
    let mut failures = Vec::new();
    for path in corpus(dir) {
        let expected = expectations(dir, &path);
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        let err = match load(&path) {
            Ok(_) => {
                failures.push(format!("{}: loaded without errors", path.display()));
                continue;
            }
            Err(err) => err,
        };
        let matches = err.errors.len() == expected.len()
            && err.errors.iter().zip(&expected).all(|(got, want)| {
                got.file == want.file
                    && got.line == Some(want.line)
                    && got.column == Some(want.column)
                    && got.message.contains(&want.message)
            });
        if !matches {
            failures.push(format!(
                "{}:\n expected:\n{}\n got:\n{}",
                path.display(),
                expected
                    .iter()
                    .map(|e| format!(
                        "  {}:{}:{}: {}",
                        e.file.display(),
                        e.line,
                        e.column,
                        e.message
                    ))
                    .collect::<Vec<_>>()
                    .join("\n"),
                describe(&err)
            ));
        }
        for e in err.errors.iter().filter(|e| e.hint.is_none()) {
            failures.push(format!(
                "{}: error without a hint: {}",
                path.display(),
                e.message
            ));
        }
    }
    failures
}
