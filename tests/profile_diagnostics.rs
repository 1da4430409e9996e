//! The rendered diagnostic a user reads: file:line:column, the source line with a caret,
//! the key path and a hint, for every error at once (snapshot, no colour).

use std::path::Path;

use miette::{GraphicalReportHandler, GraphicalTheme};
use sovereign::profile::load;

fn render(path: &str) -> String {
    let err = load(Path::new(path)).expect_err("invalid profile");
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(80)
        .render_report(&mut out, &err)
        .unwrap();
    out
}

#[test]
fn all_errors_render_with_source_caret_key_path_and_hint() {
    insta::assert_snapshot!("many_errors", render("tests/profiles/bad/many_errors.toml"));
}

#[test]
fn an_import_cycle_names_the_chain() {
    insta::assert_snapshot!(
        "import_cycle",
        render("tests/profiles/bad/import_cycle.toml")
    );
}
