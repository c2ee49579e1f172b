//! `emberctl dbus`: call, emit, monitor and decode, with Ember's own D-Bus client.

pub(crate) mod decode;
mod json;
pub(crate) mod text;

use std::time::{Duration, Instant};

use ember_core::dbus::{Message, MessageType, Signature};
use ember_linux::dbus::{CallError, ConnectionWith, Heap};

use crate::cli::{Failure, Opts};

pub const USAGE: &str = "\
usage: emberctl dbus <call|emit|monitor|decode> [options]

  emberctl dbus call --dest <name> --path <object> --method <interface.Member> [args...]
      Calls a method and prints the reply's values as gdbus does, e.g.
      emberctl dbus call --dest org.freedesktop.DBus --path /org/freedesktop/DBus \\
          --method org.freedesktop.DBus.ListNames
  emberctl dbus emit --path <object> --signal <interface.Member> [args...]
      Emits a signal.
  emberctl dbus monitor [--match <rule>]... [--count <n>]
      Becomes a monitor of the bus, as dbus-monitor does (BecomeMonitor: method calls
      and replies between others show too; match rules with eavesdrop where the bus
      refuses it), and prints each message the rules select (default: every message).
  emberctl dbus decode <file>
      Prints the raw D-Bus messages in a capture file (messages back to back, as
      `dbus-monitor --binary` writes them, a pcap file from `dbus-monitor --pcap`, or a
      pcapng file from `busctl capture`): header fields and body values, either byte
      order. Every good message before a damaged one is printed, then an error naming
      the offset where the damage starts and the rule it breaks (exit status 2).

arguments: one GVariant text value per word, as gdbus takes them: 'text' (a string), 42
  (an int32), 010 (octal), uint32 42, int64 -1, byte 0x10, true, 1.5 (a double), nan,
  inf, objectpath '/a', b'bytes' (an ay ending in NUL), @as ['a', 'b'], {'key': <1>}
  (a{sv}), (1, 'x') (a struct), <'v'> (a variant); escapes \\u00e9, \\n, \\a as GLib's.

bus (call, emit, monitor):
  --session             the session bus, DBUS_SESSION_BUS_ADDRESS (the default)
  --system              the system bus
  --address <address>   a bus address, e.g. unix:path=/run/dbus/system_bus_socket

options:
  --path, --object-path <object>   the object path
  --timeout <seconds>   call: wait this long for the reply (default 25, as libdbus);
                        monitor: stop after this long (default: never); connecting
                        and authenticating: at most this long too (default 10)
  --max-message <bytes> the largest message taken in (default 33554432, 32 MiB, as
                        dbus-daemon's; at most 134217728, the specification's 128 MiB):
                        the receive buffer starts at 64 KiB and grows to what a message
                        needs, up to this
  --count <n>           monitor: stop after n messages
  --json                JSON on standard output, mapped as busctl --json maps values:
                        call: the reply {\"type\":\"<signature>\",\"data\":[...]};
                        emit: {\"serial\":n}; monitor, decode: one object per line and
                        message (type, serial, header fields, signature, body)
";

/// A connection whose receive buffer grows (from 64 KiB) to what a message needs, up to
/// `--max-message`; larger messages are refused and reported.
type Bus = ConnectionWith<Heap>;

/// The default `--max-message`: dbus-daemon's default message limit.
const MAX_MESSAGE_DEFAULT: usize = 32 << 20;

fn connect(o: &Opts) -> Result<Box<Bus>, Failure> {
    let max = o.usize("--max-message")?.unwrap_or(MAX_MESSAGE_DEFAULT);
    if !(4096..=ember_core::dbus::MAX_MESSAGE_LEN).contains(&max) {
        return Err(Failure::usage(format!("--max-message {max}: 4096 to 134217728 bytes")));
    }
    let timeout = o.seconds("--timeout")?.unwrap_or(Duration::from_secs(10));
    let bufs = Heap::growing(65536, max, max);
    let (what, address) = if let Some(a) = o.value("--address") {
        (a.to_string(), a.to_string())
    } else if o.flag("--system") {
        let a = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .unwrap_or_else(|_| ember_linux::dbus::address::SYSTEM_BUS_DEFAULT.into());
        ("the system bus".into(), a)
    } else {
        let Ok(a) = std::env::var("DBUS_SESSION_BUS_ADDRESS") else {
            return Err(Failure::runtime(
                "no session bus: DBUS_SESSION_BUS_ADDRESS is not set (use --system or --address)".into(),
            ));
        };
        ("the session bus".into(), a)
    };
    Bus::connect_with(bufs, &address, timeout)
        .map(Box::new)
        .map_err(|e| Failure::runtime(format!("cannot connect to {what}: {e}")))
}

/// What to say about a message refused for its size.
fn too_large(what: &str, len: usize, max: usize) -> String {
    if len <= ember_core::dbus::MAX_MESSAGE_LEN {
        format!("{what} is {len} bytes, more than --max-message ({max} bytes): raise it, e.g. --max-message {len}")
    } else {
        format!("{what} is {len} bytes, more than D-Bus allows (134217728)")
    }
}

fn bus_opts(args: &[String], flags: &[&str], valued: &[&str]) -> Result<Opts, Failure> {
    let mut f = vec!["--session", "--system"];
    f.extend_from_slice(flags);
    let mut v = vec!["--address", "--path", "--object-path", "--dest", "--timeout", "--max-message"];
    v.extend_from_slice(valued);
    Opts::parse(args, &f, &v)
}

fn path(o: &Opts) -> Result<&str, Failure> {
    o.value("--path")
        .or(o.value("--object-path"))
        .ok_or_else(|| Failure::usage("--path <object path> is required".into()))
}

/// `interface.Member` split at the last dot.
fn member<'a>(o: &'a Opts, option: &str) -> Result<(&'a str, &'a str), Failure> {
    let m = o.value(option).ok_or_else(|| Failure::usage(format!("{option} <interface.Member> is required")))?;
    m.rsplit_once('.')
        .filter(|(i, m)| !i.is_empty() && !m.is_empty())
        .ok_or_else(|| Failure::usage(format!("{option}: `{m}` is not interface.Member")))
}

/// The positional words after the subcommand, parsed as values.
fn values(o: &Opts) -> Result<(Vec<text::Val>, String), Failure> {
    let vals = o.positional[1..]
        .iter()
        .enumerate()
        .map(|(i, a)| text::parse(a, &format!("argument {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::usage)?;
    let sig: String = vals.iter().map(text::Val::signature).collect();
    Signature::new(&sig).map_err(|e| Failure::usage(format!("arguments of signature {sig}: {e}")))?;
    Ok((vals, sig))
}

fn type_name(t: MessageType) -> &'static str {
    match t {
        MessageType::MethodCall => "method_call",
        MessageType::MethodReturn => "method_return",
        MessageType::Error => "error",
        MessageType::Signal => "signal",
    }
}

/// One line of header fields, then the body: how `monitor` and `decode` show a message.
pub fn describe(m: &Message<'_>) -> Result<String, ember_core::dbus::DbusError> {
    let mut s = format!("{} serial={}", type_name(m.message_type()), m.serial());
    let mut field = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v}"));
        }
    };
    field("reply_serial", m.reply_serial().map(|r| r.to_string()).as_deref());
    field("sender", m.sender());
    field("destination", m.destination());
    field("path", m.path().map(|p| p.as_str()));
    field("interface", m.interface());
    field("member", m.member());
    field("error_name", m.error_name());
    field("signature", Some(&format!("'{}'", m.signature().as_str())));
    if m.flags() != 0 {
        s.push_str(&format!(" flags={:#04x}", m.flags()));
    }
    if m.unix_fds() != 0 {
        s.push_str(&format!(" unix_fds={}", m.unix_fds()));
    }
    s.push_str("\n  ");
    text::tuple(m.body(), &mut s)?;
    Ok(s)
}

fn call(o: &Opts) -> Result<(), Failure> {
    let dest = o.value("--dest").ok_or_else(|| Failure::usage("--dest <bus name> is required".into()))?;
    let path = path(o)?;
    let (iface, member) = member(o, "--method")?;
    let (vals, sig) = values(o)?;
    let timeout = o.seconds("--timeout")?.unwrap_or(Duration::from_secs(25));
    let mut bus = connect(o)?;
    let sig = Signature::new(&sig).map_err(|e| Failure::usage(e.to_string()))?;
    let r = bus.call(dest, path, Some(iface), member, sig, |w| vals.iter().try_for_each(|v| v.write(w)), timeout);
    match r {
        Ok(m) => {
            let mut out = String::new();
            if o.flag("--json") {
                json::body(m.signature(), m.body(), &mut out)
            } else {
                text::tuple(m.body(), &mut out)
            }
            .map_err(|e| Failure::bad_input(format!("the reply: {e}")))?;
            println!("{out}");
            Ok(())
        }
        Err(CallError::Remote { name, message }) => Err(Failure::runtime(format!("{name}: {message}"))),
        Err(CallError::Local(ember_linux::Error::Dbus(ember_core::dbus::DbusError::TooLarge { len, max }))) => {
            Err(Failure::runtime(format!("{dest} {path} {iface}.{member}: {}", too_large("the reply", len, max))))
        }
        Err(e) => Err(Failure::runtime(format!("{dest} {path} {iface}.{member}: {e}"))),
    }
}

fn emit(o: &Opts) -> Result<(), Failure> {
    let path = path(o)?;
    let (iface, member) = member(o, "--signal")?;
    let (vals, sig) = values(o)?;
    let mut bus = connect(o)?;
    let sig = Signature::new(&sig).map_err(|e| Failure::usage(e.to_string()))?;
    let serial = bus
        .emit_signal(path, iface, member, sig, |w| vals.iter().try_for_each(|v| v.write(w)))
        .map_err(|e| Failure::runtime(format!("emit {iface}.{member}: {e}")))?;
    // A round trip to the bus (Peer.Ping) so the signal is routed before we hang up.
    bus.call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        Some("org.freedesktop.DBus.Peer"),
        "Ping",
        Signature::EMPTY,
        |_| Ok(()),
        Duration::from_secs(5),
    )
    .map_err(|e| match e {
        CallError::Remote { name, message } => Failure::runtime(format!("after emitting, Ping: {name}: {message}")),
        e => Failure::runtime(format!("after emitting, Ping: {e}")),
    })?;
    if o.flag("--json") {
        println!("{{\"serial\":{serial}}}");
    }
    Ok(())
}

/// Asks the bus for the messages `rules` select (every message when there are none), as
/// `dbus-monitor` does: `BecomeMonitor` first, which shows every message the bus routes,
/// method calls and replies to other connections included; if the bus refuses it (an old
/// bus, or a policy), match rules with `eavesdrop='true'`, then plain match rules.
fn watch(bus: &mut Bus, rules: &[String]) -> Result<(), Failure> {
    let t = Duration::from_secs(5);
    let sig = Signature::new("asu").map_err(|e| Failure::runtime(e.to_string()))?;
    let became = bus.call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        Some("org.freedesktop.DBus.Monitoring"),
        "BecomeMonitor",
        sig,
        |w| {
            w.array(b's', |w| rules.iter().try_for_each(|r| w.str(r)))?;
            w.u32(0)
        },
        t,
    );
    let refused = match became {
        Ok(_) => return Ok(()),
        Err(CallError::Remote { name, message }) => format!("{name}: {message}"),
        Err(e) => return Err(Failure::runtime(format!("BecomeMonitor: {e}"))),
    };
    let all = ["type='signal'", "type='method_call'", "type='method_return'", "type='error'"].map(String::from);
    let rules = if rules.is_empty() { &all[..] } else { rules };
    for r in rules {
        let eavesdrop = format!("eavesdrop='true',{r}");
        if bus.add_match(&eavesdrop, t).is_ok() {
            continue;
        }
        bus.add_match(r, t).map_err(|e| match e {
            CallError::Remote { name, message } => Failure::runtime(format!(
                "match rule `{r}`: {name}: {message} (and BecomeMonitor was refused: {refused})"
            )),
            e => Failure::runtime(format!("match rule `{r}`: {e}")),
        })?;
    }
    Ok(())
}

fn monitor(o: &Opts, rules: &[String]) -> Result<(), Failure> {
    let count = o.usize("--count")?;
    let deadline = o.seconds("--timeout")?.map(|t| Instant::now() + t);
    let mut bus = connect(o)?;
    watch(&mut bus, rules)?;
    let me = bus.unique_name().to_string();
    let mut seen = 0usize;
    while count.is_none_or(|c| seen < c) {
        let wait = deadline.map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
        let m = match bus.recv(wait) {
            Ok(m) => m,
            Err(ember_linux::Error::TimedOut) if deadline.is_none() => continue,
            Err(ember_linux::Error::TimedOut) => return Ok(()),
            Err(ember_linux::Error::Dbus(ember_core::dbus::DbusError::TooLarge { len, max })) => {
                eprintln!("emberctl dbus monitor: skipped: {}", too_large("a message", len, max));
                continue;
            }
            Err(ember_linux::Error::Dbus(e)) => {
                eprintln!("emberctl dbus monitor: a malformed message was skipped: {e}");
                continue;
            }
            Err(e) => return Err(Failure::runtime(format!("receive: {e}"))),
        };
        // The bus tells us our own name, and takes it back when we become a monitor: not
        // something the user asked to see.
        if matches!(m.member(), Some("NameAcquired" | "NameLost")) && m.destination() == Some(me.as_str()) {
            continue;
        }
        let line = if o.flag("--json") {
            json::message(&m, "").unwrap_or_else(|e| {
                format!(
                    "{{\"error\":{}}}",
                    crate::bench::json_str(&format!("a message whose body cannot be read: {e}"))
                )
            })
        } else {
            describe(&m).unwrap_or_else(|e| format!("(a message whose body cannot be read: {e})"))
        };
        println!("{line}");
        seen += 1;
    }
    Ok(())
}

/// `emberctl dbus`.
pub fn run(args: &[String]) -> Result<(), Failure> {
    let Some(sub) = args.first() else {
        return Err(Failure::usage("which of call, emit, monitor, decode?".into()));
    };
    match sub.as_str() {
        "call" => call(&bus_opts(args, &["--json"], &["--method"])?),
        "emit" => emit(&bus_opts(args, &["--json"], &["--signal"])?),
        "monitor" => {
            // --match may repeat: collect every rule before the usual parsing.
            let mut rules = Vec::new();
            let mut rest = Vec::new();
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if a == "--match" {
                    rules.push(it.next().ok_or_else(|| Failure::usage("--match needs a rule".into()))?.clone());
                } else {
                    rest.push(a.clone());
                }
            }
            let o = bus_opts(&rest, &["--json"], &["--count"])?;
            if o.positional.len() > 1 {
                return Err(Failure::usage(format!("monitor: unexpected `{}`", o.positional[1])));
            }
            monitor(&o, &rules)
        }
        "decode" => decode::run(&args[1..]),
        other => Err(Failure::usage(format!("no subcommand `{other}` (call, emit, monitor, decode)"))),
    }
}
