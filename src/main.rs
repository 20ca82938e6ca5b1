//! The `higgs` binary: everything lives in `cli`.
fn main() -> std::process::ExitCode {
    higgs_engine::cli::main()
}
