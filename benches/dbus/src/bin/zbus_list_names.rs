//! The size comparison's other side: `linux/examples/dbus_list_names.rs` written with zbus's
//! blocking API. Connects to the bus at the address given (or the session bus's), calls
//! `ListNames` and prints the names. docs/dbus.md gives the build command and the sizes.

fn main() -> std::process::ExitCode {
    let address = std::env::args().nth(1).or_else(|| std::env::var("DBUS_SESSION_BUS_ADDRESS").ok());
    let Some(address) = address else {
        eprintln!("usage: zbus_list_names ADDRESS (or set DBUS_SESSION_BUS_ADDRESS)");
        return std::process::ExitCode::from(2);
    };
    let names = (|| -> zbus::Result<Vec<String>> {
        let c = zbus::blocking::connection::Builder::address(address.as_str())?.build()?;
        let reply = c.call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "ListNames",
            &(),
        )?;
        reply.body().deserialize()
    })();
    match names {
        Ok(names) => {
            for n in names {
                println!("{n}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ListNames: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
