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
//!
//! This library is the command itself: `emberctl`'s `main` calls [`run`]. It is not a
//! stable API; it exists so that the fuzz targets (`fuzz/`) can reach the command's
//! parsers (endpoint URIs, the D-Bus text format, `dbus decode`'s capture reader).

mod bench;
mod cli;
mod dbus;
mod ls;
mod spec;
mod uri;
mod xfer;

#[doc(hidden)]
pub mod fuzzing;

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
  completions  print the completion script of a shell: emberctl completions bash (zsh, fish)
  man       print the manual page, emberctl(1), in roff: emberctl man | man -l -

endpoints (send, recv, ls): pipe: (or -), fifo:/path, mq:/name, uds:/path,
  uds-abstract:name, uds-seqpacket:/path, uds-dgram:/path, uds-dgram-abstract:name,
  shm-ring:name, shm-seqlock:name, shm-broadcast:name

exit status: 0 success, 1 the operation failed (timeout, unreachable endpoint, remote
  error), 2 bad usage or malformed input
";

const BENCH_USAGE: &str = "\
usage: emberctl bench [--quick | --full] [--json] [--only <name>] [--size <bytes>] [--cpus <a,b>] [--sweep <name>] [--csv <file>]

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
  --sweep <name>  how cost grows instead of the fixed rows: size (8 B to 1 MiB through the
                  SPSC ring, a pipe, a seqpacket socket and a queue, against their raw
                  loops and memcpy), readers (broadcast readers 1 to 16, with the records
                  lapped readers lost), inflight (rpc requests in flight 1 to 32), or all;
                  `cargo xtask bench --sweep` draws them as SVG
  --csv <file>    write the rows as CSV to <file> too
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

/// Runs `emberctl` with `args` (the arguments after the program name) and returns its exit
/// status.
pub fn run(args: &[String]) -> ExitCode {
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
        "completions" => {
            return match rest.first().filter(|_| rest.len() == 1).and_then(|sh| spec::completions(sh)) {
                Some(script) => {
                    print!("{script}");
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("emberctl completions: takes one shell: {}", spec::SHELLS.join(", "));
                    ExitCode::from(2)
                }
            };
        }
        "man" => {
            if let Some(extra) = rest.first() {
                eprintln!("emberctl man: unexpected `{extra}`");
                return ExitCode::from(2);
            }
            print!("{}", spec::man_page(env!("CARGO_PKG_VERSION"), usage_of));
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
