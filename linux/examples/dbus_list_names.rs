//! A minimal D-Bus client: connects to the session bus (or the address given as the first
//! argument), calls `ListNames` and prints the names. The size benchmark of docs/dbus.md
//! builds it with `--profile min-size` as a static binary.
//!
//! ```sh
//! cargo run -p ember-ipc-linux --example dbus_list_names -- "$DBUS_SESSION_BUS_ADDRESS"
//! ```

use std::time::Duration;

use ember_core::dbus::Signature;
use ember_core::dbus::value::Array;
use ember_linux::dbus::{Connection, bus};

fn main() -> std::process::ExitCode {
    let address = std::env::args().nth(1).or_else(|| std::env::var("DBUS_SESSION_BUS_ADDRESS").ok());
    let Some(address) = address else {
        eprintln!("usage: dbus_list_names ADDRESS (or set DBUS_SESSION_BUS_ADDRESS)");
        return std::process::ExitCode::from(2);
    };
    let mut c: Box<Connection<8192>> = match Connection::connect(&address) {
        Ok(c) => Box::new(c),
        Err(e) => {
            eprintln!("connect: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_secs(5);
    let reply = match c.call(
        bus::DESTINATION,
        bus::PATH,
        Some(bus::INTERFACE),
        "ListNames",
        Signature::EMPTY,
        |_| Ok(()),
        timeout,
    ) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ListNames: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let names: Array = match reply.body().next_as() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("reply: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for name in names.flatten() {
        if let Ok(s) = <&str>::try_from(name) {
            println!("{s}");
        }
    }
    std::process::ExitCode::SUCCESS
}
