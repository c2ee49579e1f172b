//! A private `dbus-daemon` for the tests that talk to a real bus (the D-Bus tests of
//! `ember-ipc-linux` and the `emberctl dbus` tests of the CLI).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A private `dbus-daemon`, stopped (and its directory removed) on drop.
pub struct Daemon {
    child: Child,
    /// Its directory: the socket, the configuration and `daemon.log`.
    pub dir: String,
    /// Its address, for `Connection::connect` and `--address`.
    pub address: String,
}

impl Daemon {
    /// Starts one (a failure, or a skip where skips are allowed, without `dbus-daemon`).
    pub fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// One that takes messages up to the specification's 128 MiB (`dbus-daemon`'s own
    /// default is 32 MiB) and queues as much per connection.
    #[allow(dead_code)]
    pub fn start_large() -> Daemon {
        Daemon::start_with(
            r#"<limit name="max_message_size">134217728</limit>
  <limit name="max_incoming_bytes">1073741824</limit>
  <limit name="max_outgoing_bytes">1073741824</limit>"#,
        )
    }

    /// One with `extra` added to its configuration (`<limit>` elements, ...).
    pub fn start_with(extra: &str) -> Daemon {
        Daemon::start_listening("unix:path={dir}/bus", &["EXTERNAL"], extra)
    }

    /// One listening on `listen` (`{dir}` stands for its directory), offering the SASL
    /// mechanisms `auth`, with `extra` added to its configuration.
    #[allow(dead_code)]
    pub fn start_listening(listen: &str, auth: &[&str], extra: &str) -> Daemon {
        super::need_tool("dbus-daemon");
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir =
            format!("/tmp/ember-dbus-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        std::fs::create_dir_all(&dir).unwrap();
        let listen = listen.replace("{dir}", &dir);
        let auth: String = auth.iter().map(|a| format!("<auth>{a}</auth>")).collect();
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{listen}</listen>
  {auth}
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  {extra}
</busconfig>
"#
        );
        std::fs::write(format!("{dir}/bus.conf"), config).unwrap();
        let mut child = Command::new("dbus-daemon")
            .args(["--nofork", "--print-address=1", &format!("--config-file={dir}/bus.conf")])
            .stdout(Stdio::piped())
            // It complains that it cannot raise its fd limit in a container; whatever else it
            // says is shown when a connection fails.
            .stderr(std::fs::File::create(format!("{dir}/daemon.log")).unwrap())
            .spawn()
            .expect("dbus-daemon (installed by cargo xtask test)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line.trim().to_string();
        assert!(address.starts_with("unix:path=") || address.starts_with("tcp:"), "{address}");
        Daemon { child, dir, address }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
