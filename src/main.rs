//! The `sovereign` binary: a thin shell around [`sovereign::cli`].

fn main() -> std::process::ExitCode {
    sovereign::cli::main()
}
