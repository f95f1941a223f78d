//! `vocc-host`: the host half of the vocc runtime, the small program a site's hosts run.
//! It is built from the runtime crate alone (no parser, no templates). The control side
//! starts it over SSH, through Slurm or locally, and talks to it in JSON lines on its
//! stdin and stdout.
//!
//!   vocc-host hello      says what it is (and, asked, the sha256 of its binary)
//!   vocc-host receive    receives a file into the host's store (see `relay`)
//!   vocc-host remove     removes files from the host's store (see `hostops`)
//!   vocc-host serve      answers requests line by line until stdin ends: hello, remove,
//!                        and a host's node operations (see `hostops`, `hostnode`)

use std::io;
use std::process::ExitCode;
use vocc_runtime::{hostops, relay};

fn main() -> ExitCode {
    let op = std::env::args().nth(1).unwrap_or_default();
    let stdin = io::stdin();
    let mut input = stdin.lock();
    // A session answers from several threads: it takes stdout's lock per line.
    let result = match op.as_str() {
        "hello" => hostops::serve_hello(&mut input, &mut io::stdout().lock()),
        "receive" => {
            // The transfer reads its control lines on a thread of its own (every wait
            // for one has a deadline), from stdin itself rather than this lock.
            drop(input);
            relay::serve_receive(io::BufReader::new(io::stdin()), &mut io::stdout().lock())
        }
        "remove" => hostops::serve_remove(&mut input, &mut io::stdout().lock()),
        "serve" => hostops::serve(&mut input, &mut io::stdout()),
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
