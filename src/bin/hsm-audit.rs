//! The `hsm-audit` command line.

#[global_allocator]
static ALLOCATOR: hsm_audit::Allocator = hsm_audit::Allocator;

fn main() -> std::process::ExitCode {
    hsm_audit::cli::main()
}
