//! The `vocc` command line: a thin layer over the compiler and the runtime.
//!
//! Exit codes: 0 when all is well, 1 when the input has errors, 2 on usage errors or
//! internal failures.

mod autoscale;
mod cli;
mod run;

use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_broken_pipe();
    cli::main()
}

/// A reader that stops early (`vocc status | head -1`) closes standard output; the
/// commands' output then fails with a broken pipe. vocc's own writes stop quietly on
/// it (`cli::write_stdout`); this catches the rest, which Rust's `println!` turns into
/// a panic, and exits as quietly instead of printing a backtrace.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
