//! The `hsm-audit` command line.

fn main() -> std::process::ExitCode {
    hsm_audit::cli::main()
}
