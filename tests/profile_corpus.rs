//! The bad-profile corpus: every file under tests/profiles/bad/ states the errors it must
//! produce in `# expect: [FILE:]LINE:COLUMN MESSAGE` comments, in file order; the loader
//! must report exactly those, at exactly those places.

mod corpus_support;

use std::path::Path;

use sovereign::profile::load;

const BAD: &str = "tests/profiles/bad";

fn corpus() -> Vec<std::path::PathBuf> {
    corpus_support::corpus(BAD)
}

#[test]
fn corpus_has_at_least_thirty_bad_profiles() {
    assert!(corpus().len() >= 30, "{} bad profiles", corpus().len());
}

#[test]
fn every_bad_profile_reports_exactly_its_expected_errors() {
    let failures = corpus_support::check(BAD, load);
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
