//! `vocc-host`: the host half of the vocc runtime, the small program a site's hosts run.
//! It is built from the runtime crate alone (no parser, no templates). The control side
//! starts it over SSH, through Slurm or locally, and talks to it in JSON lines on its
//! stdin and stdout.
//!
//!   vocc-host hello      says what it is (and, asked, the sha256 of its binary)
//!   vocc-host receive    receives a file into the host's store (see `relay`)
//!   vocc-host remove     removes files from the host's store (see `hostops`)
//!   vocc-host serve      answers requests (hello, remove) line by line until stdin ends

use std::io;
use std::process::ExitCode;
use vocc_runtime::{hostops, relay};

fn main() -> ExitCode {
    let op = std::env::args().nth(1).unwrap_or_default();
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let stdout = io::stdout();
    let mut output = stdout.lock();
    let result = match op.as_str() {
        "hello" => hostops::serve_hello(&mut input, &mut output),
        "receive" => {
            // The transfer reads its control lines on a thread of its own (every wait
            // for one has a deadline), from stdin itself rather than this lock.
            drop(input);
            relay::serve_receive(io::BufReader::new(io::stdin()), &mut output)
        }
        "remove" => hostops::serve_remove(&mut input, &mut output),
        "serve" => hostops::serve(&mut input, &mut output),
        _ => {
            eprintln!(
                "vocc-host: unknown operation `{}` (hello, receive, remove, serve)",
                op.escape_debug()
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vocc-host: {op}: {e}");
            ExitCode::FAILURE
        }
    }
}
