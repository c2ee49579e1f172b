//! `ember`: the command-line face of Ember.
//!
//! - `ember bench`: measures Ember's mechanisms and prints one table of latencies,
//!   throughputs and ratios against baselines measured in the same run.
//!
//! Later releases add `ember ls`, `ember send` and `ember recv` (see `docs/cli.md`).

mod bench;

use std::process::ExitCode;

const USAGE: &str = "\
usage: ember <command> [options]

commands:
  bench     measure Ember's mechanisms against same-run baselines
  help      print this text

ember bench [--quick | --full] [--json] [--only <name>] [--size <bytes>] [--cpus <a,b>]
  --quick         short run, about 10 s (the default)
  --full          more samples per row (what `cargo xtask bench` runs)
  --json          machine-readable output on stdout (the table goes away)
  --only <name>   only rows whose mechanism starts with <name> (codec, crc32c, shm, pipe,
                  packet-pipe, eventfd, rtrb, mq, sysv-mq, fifo, signal, uds-stream,
                  uds-seqpacket, uds-dgram, tcp, udp; a row family such as uds-stream-flood/)
  --size <bytes>  one payload size instead of the default set
  --cpus <a,b>    pin the measuring thread(s) to these CPUs (default: the first two allowed)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => match bench::Options::parse(&args[1..]) {
            Ok(opts) => bench::run(&opts),
            Err(e) => {
                eprintln!("ember bench: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        // The other process of a cross-process benchmark (spawned by `ember bench`).
        Some("__peer") => match bench::peer(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ember bench peer: {e}");
                ExitCode::FAILURE
            }
        },
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            println!("ember {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("ember: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
