//! `ember-bridge`: carries Ember channels over Zenoh, as a route table says.
//!
//! ```text
//! ember-bridge --config <route-table.toml>    run until SIGTERM or SIGINT
//! ember-bridge --check  <route-table.toml>    parse and check the table, then exit
//! ```
//!
//! Start-up: the table is read and checked, `SIGTERM`/`SIGINT` are blocked (before Zenoh
//! starts its threads, which inherit the mask) and taken through a signalfd, the session
//! and every route start, `READY=1` goes to systemd (when started by it), and `ready` is
//! printed on standard output. A signal stops every route, closes the session, removes
//! what the bridge created and exits 0. Exit codes: 0 clean, 1 start-up failed, 2 usage.

use std::process::ExitCode;

use ember_bridge::Bridge;
use ember_bridge::config::RouteTable;
use ember_linux::signal::{self, SIGINT, SIGTERM, SigSet, SignalFd};
use ember_linux::systemd::{self, State};

const USAGE: &str = "usage: ember-bridge --config <route-table.toml> | --check <route-table.toml> | --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (check_only, path) = match args.as_slice() {
        [flag, path] if flag == "--config" || flag == "-c" => (false, path),
        [flag, path] if flag == "--check" => (true, path),
        [flag] if flag == "--version" || flag == "-V" => {
            println!("ember-bridge {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let table = match RouteTable::load(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ember-bridge: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if check_only {
        if let Err(e) = table.zenoh_config() {
            eprintln!("ember-bridge: {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("ok: board {:?}, {} routes", table.board, table.routes.len());
        return ExitCode::SUCCESS;
    }
    let set = SigSet::of(&[SIGTERM, SIGINT]);
    let mut signals = match signal::block(set).and_then(|_| SignalFd::new(set, false)) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("ember-bridge: signalfd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bridge = match Bridge::start(&table) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ember-bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = systemd::notify(&[State::Ready, State::Status("bridging")]) {
        eprintln!("ember-bridge: sd_notify: {e}");
    }
    println!("ready");
    let got = loop {
        match signals.recv_timeout(None) {
            Ok(info) => break info.signal,
            Err(ember_linux::Error::Os(rustix::io::Errno::INTR)) => continue,
            Err(e) => {
                eprintln!("ember-bridge: signalfd: {e}");
                break 0;
            }
        }
    };
    let _ = systemd::notify(&[State::Stopping]);
    bridge.stop();
    eprintln!("ember-bridge: stopped (signal {got})");
    ExitCode::SUCCESS
}
