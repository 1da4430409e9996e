//! The bad-profile corpus: every file under tests/profiles/bad/ states the errors it must
//! produce in `# expect: [FILE:]LINE:COLUMN MESSAGE` comments, in file order; the loader
//! must report exactly those, at exactly those places.

use std::path::{Path, PathBuf};

use sovereign::profile::{LoadError, load};

const BAD: &str = "tests/profiles/bad";

/// One `# expect:` line: the file (relative to tests/profiles/bad), line, column and a
/// piece of the message.
#[derive(Debug)]
struct Expect {
    file: PathBuf,
    line: u32,
    column: u32,
    message: String,
}

fn expectations(path: &Path) -> Vec<Expect> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# expect: ") else {
            continue;
        };
        let (place, message) = rest.split_once(' ').expect("PLACE MESSAGE");
        let parts: Vec<&str> = place.rsplitn(3, ':').collect();
        let (file, line, column) = match parts.as_slice() {
            [col, line, file] => (Path::new(BAD).join(file), line, col),
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

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(BAD)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn describe(err: &LoadError) -> String {
    err.errors
        .iter()
        .map(|e| format!("  {}: {} [{}]", e.place(), e.message, e.key_path))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn corpus_has_at_least_thirty_bad_profiles() {
    assert!(corpus().len() >= 30, "{} bad profiles", corpus().len());
}

#[test]
fn every_bad_profile_reports_exactly_its_expected_errors() {
    let mut failures = Vec::new();
    for path in corpus() {
        let expected = expectations(&path);
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
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_toml_octal_mode_gets_the_mode_meant_as_its_hint() {
    let err = sovereign::profile::load(Path::new("tests/profiles/bad/mode_toml_octal.toml"))
        .expect_err("a number is not a mode");
    let hint = err.errors[0].hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains("TOML reads 0o644 as the number 420") && hint.contains("mode = \"0644\""),
        "{hint}"
    );
}
