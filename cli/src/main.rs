//! `emberctl`: the command-line face of Ember.
//!
//! - `emberctl bench`: measures Ember's mechanisms and prints one table of latencies,
//!   throughputs and ratios against baselines measured in the same run.
//! - `emberctl ls`: the Ember objects on this machine (shm segments, message queues, FIFOs and
//!   sockets), decoded.
//! - `emberctl send` / `emberctl recv`: frames on any endpoint given as a URI.
//! - `emberctl dbus`: call, emit, monitor, and decode captured messages.
//!
//! `docs/cli.md` documents every command with real output.

mod bench;
mod cli;
mod dbus;
mod ls;
mod uri;
mod xfer;

use std::process::ExitCode;

const USAGE: &str = "\
usage: emberctl <command> [options]

commands:
  bench     measure Ember's mechanisms against same-run baselines
  ls        list the Ember objects on this machine (shm segments, queues, FIFOs, sockets)
  send      send frames to an endpoint: emberctl send mq:/sensor 'hello'
  recv      receive frames from an endpoint and print them: emberctl recv mq:/sensor
  dbus      D-Bus: call, emit, monitor, decode
  help      print this text, or a command's: emberctl help <command> (or emberctl <command> --help)

endpoints (send, recv, ls): pipe: (or -), fifo:/path, mq:/name, uds:/path,
  uds-abstract:name, uds-seqpacket:/path, uds-dgram:/path, uds-dgram-abstract:name,
  shm-ring:name, shm-seqlock:name, shm-broadcast:name

exit status: 0 success, 1 the operation failed (timeout, unreachable endpoint, remote
  error), 2 bad usage or malformed input
";

const BENCH_USAGE: &str = "\
usage: emberctl bench [--quick | --full] [--json] [--only <name>] [--size <bytes>] [--cpus <a,b>]

Moves messages between two real processes over every mechanism and prints one table:
latency percentiles of per-iteration samples, messages/s, MB/s, and the ratio to a
baseline measured in the same run.

  --quick         short run, about 15 s (the default)
  --full          more samples per row (what `cargo xtask bench` runs)
  --json          machine-readable output on stdout (the table goes away)
  --only <name>   only rows whose mechanism starts with <name> (codec, crc32c, shm, pipe,
                  packet-pipe, eventfd, rtrb, mq, sysv-mq, fifo, signal, uds-stream,
                  uds-seqpacket, uds-dgram, tcp, udp, sync, rpc, dbus; a row family such
                  as uds-stream-flood/)
  --size <bytes>  one payload size instead of the default set
  --cpus <a,b>    pin the measuring thread(s) to these CPUs (default: the first two allowed)
  --samples <n>   samples per row instead of the mode's (for tests; small is imprecise)
";

/// The help text of `command`.
fn usage_of(command: &str) -> Option<&'static str> {
    Some(match command {
        "bench" => BENCH_USAGE,
        "ls" => ls::USAGE,
        "send" => xfer::SEND_USAGE,
        "recv" => xfer::RECV_USAGE,
        "dbus" => dbus::USAGE,
        _ => return None,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first().map(String::as_str) else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    if let Some(usage) = usage_of(command)
        && rest.iter().any(|a| a == "--help" || a == "-h")
    {
        print!("{usage}");
        return ExitCode::SUCCESS;
    }
    let result = match command {
        "bench" => {
            return match bench::Options::parse(rest) {
                Ok(opts) => {
                    if cfg!(debug_assertions) {
                        eprintln!(
                            "emberctl bench: warning: this emberctl is a debug build (no optimisation); its figures \
                             are not Ember's. Build it with `cargo build --release -p ember-ipc-cli`."
                        );
                    }
                    bench::run(&opts)
                }
                Err(e) => {
                    eprintln!("emberctl bench: {e}\n\n{BENCH_USAGE}");
                    ExitCode::from(2)
                }
            };
        }
        // The other process of a cross-process benchmark (spawned by `emberctl bench`).
        "__peer" => {
            return match bench::peer(rest) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("emberctl bench peer: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        "ls" => ls::run(rest),
        "send" => xfer::send(rest),
        "recv" => xfer::recv(rest),
        "dbus" => dbus::run(rest),
        "help" | "--help" | "-h" => {
            match rest.first().map(|c| usage_of(c)) {
                None => print!("{USAGE}"),
                Some(Some(u)) => print!("{u}"),
                Some(None) => {
                    eprintln!("emberctl help: no command `{}`\n\n{USAGE}", rest[0]);
                    return ExitCode::from(2);
                }
            }
            return ExitCode::SUCCESS;
        }
        "--version" | "-V" => {
            println!("emberctl {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("emberctl: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(command, usage_of(command).unwrap_or(USAGE)),
    }
}
