//! The `vocc` command line: a thin layer over the compiler and the runtime.
//!
//! Exit codes: 0 when all is well, 1 when the input has errors, 2 on usage errors or
//! internal failures.

mod cli;
mod run;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
