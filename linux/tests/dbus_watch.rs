//! Typed match rules and the name watcher against a real private `dbus-daemon`: the bus
//! accepts every rule `MatchRule` writes (apostrophes, argN, path_namespace) and delivers
//! exactly the messages that `MatchRule::matches` says match; a `NameWatcher` reports the
//! owner at start and every change after, in order, with none lost and none stale.
//!
//! Its own `main` (`harness = false`); `cargo xtask test` installs `dbus-daemon` when
//! missing.

mod common;
use common::dbus_daemon::Daemon;

use std::time::Duration;

use ember_core::dbus::{MessageType, Signature};
use ember_linux::Error;
use ember_linux::dbus::rule::{ArgMatch, MatchRule};
use ember_linux::dbus::{Connection, NameWatcher, RequestNameReply};

const T: Duration = Duration::from_secs(5);
const IFACE: &str = "org.ember.Rules";

fn connect(bus: &Daemon) -> Box<Connection> {
    Box::new(Connection::connect(&bus.address).unwrap_or_else(|e| panic!("cannot connect to {}: {e}", bus.address)))
}

/// The `Tick` signals `c` receives within `wait`, as (path, arg0).
fn received(c: &mut Connection, wait: Duration) -> Vec<(String, String)> {
    let mut got = Vec::new();
    loop {
        match c.recv(wait) {
            Ok(m) if m.message_type() == MessageType::Signal && m.member() == Some("Tick") => {
                let arg0: &str = m.body().next_as().unwrap();
                got.push((m.path().unwrap().as_str().to_string(), arg0.to_string()));
            }
            Ok(_) => {}
            Err(Error::TimedOut) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Each rule, subscribed on a connection of its own, gets exactly the signals it matches
/// (the bus decides), and `MatchRule::matches` agrees on every one.
fn rules_the_bus_accepts_and_applies() {
    let bus = Daemon::start();
    let rules = [
        MatchRule::signal().interface(IFACE).member("Tick").arg(0, "it's"),
        MatchRule::signal().interface(IFACE).path_namespace("/a"),
        MatchRule::signal().interface(IFACE).arg_match(0, ArgMatch::Path("/x/")),
        MatchRule::signal().interface(IFACE).arg_match(0, ArgMatch::Namespace("org.ember")),
        MatchRule::signal().interface(IFACE).path("/a/b").arg(0, "plain"),
    ];
    let sent: [(&str, &str); 8] = [
        ("/a", "it's"),
        ("/a/b", "plain"),
        ("/ab", "it's"),
        ("/c", "/x/y"),
        ("/c", "/x"),
        ("/c", "org.ember.Sensor"),
        ("/c", "org.embers"),
        ("/a/b/c", "'"),
    ];
    let mut subscribers: Vec<Box<Connection>> = rules
        .iter()
        .map(|r| {
            let mut c = connect(&bus);
            c.add_match_rule(r, T).unwrap_or_else(|e| panic!("{r:?}: {e:?}"));
            c
        })
        .collect();
    let mut emitter = connect(&bus);
    let sig = Signature::new("s").unwrap();
    for (path, arg) in sent {
        emitter.emit_signal(path, IFACE, "Tick", sig, |w| w.str(arg)).unwrap();
    }
    // A sentinel every rule-less check can wait for is not possible (each rule filters);
    // the bus delivers in order, so a short quiet period after the last send is enough.
    for (rule, c) in rules.iter().zip(&mut subscribers) {
        let got = received(c, Duration::from_millis(300));
        // What the rule says it matches, judged on the same signals as sent.
        let expected: Vec<(String, String)> = sent
            .iter()
            .filter(|(path, arg)| {
                let mut buf = [0u8; 512];
                let b = ember_core::dbus::Builder::signal(path, IFACE, "Tick")
                    .build(&mut buf, 1, sig, |w| w.str(arg))
                    .unwrap()
                    .to_vec();
                let m = ember_core::dbus::Message::parse(&b, b.len()).unwrap();
                rule.matches(&m)
            })
            .map(|(p, a)| (p.to_string(), a.to_string()))
            .collect();
        assert!(!expected.is_empty(), "{rule:?} matches something");
        assert_eq!(got, expected, "{rule:?}");
    }
    // Removing the rule stops the signals.
    let c = &mut subscribers[0];
    c.remove_match_rule(&rules[0], T).unwrap();
    emitter.emit_signal("/a", IFACE, "Tick", sig, |w| w.str("it's")).unwrap();
    assert_eq!(received(c, Duration::from_millis(200)), vec![]);
    // A bad field never reaches the bus.
    assert!(matches!(
        c.add_match_rule(&MatchRule::signal().interface("bad"), T),
        Err(ember_linux::dbus::CallError::Local(Error::InvalidName))
    ));
}

/// The owner at start, then each change in order: taken, replaced in the queue, released,
/// the owner's connection closed.
fn name_watcher_follows_the_owner() {
    let bus = Daemon::start();
    let name = "org.ember.Watched";
    let mut first = connect(&bus);
    assert_eq!(first.request_name(name, 0, T), Ok(RequestNameReply::PrimaryOwner));
    let first_id = first.unique_name().to_string();

    let mut c = connect(&bus);
    let mut w = NameWatcher::start(&mut c, name, T).unwrap();
    assert_eq!(w.owner(), Some(first_id.as_str()));
    assert_eq!(w.name(), name);

    // A second connection queues for the name; the first releases it; the second gets it;
    // then the second leaves the bus; then a third takes it.
    let mut second = connect(&bus);
    assert_eq!(second.request_name(name, 0, T), Ok(RequestNameReply::InQueue));
    let second_id = second.unique_name().to_string();
    first.release_name(name, T).unwrap();
    drop(second);
    let mut third = connect(&bus);
    assert_eq!(third.request_name(name, 0, T), Ok(RequestNameReply::PrimaryOwner));
    let third_id = third.unique_name().to_string();

    let mut changes = Vec::new();
    while changes.len() < 3 {
        let m = c.recv(T).expect("NameOwnerChanged");
        if let Some(ch) = w.update(&m) {
            changes.push((ch.old.map(String::from), ch.new.map(String::from)));
        }
    }
    assert_eq!(
        changes,
        vec![
            (Some(first_id.clone()), Some(second_id.clone())),
            (Some(second_id), None),
            (None, Some(third_id.clone())),
        ]
    );
    assert_eq!(w.owner(), Some(third_id.as_str()));
    w.stop(&mut c, T).unwrap();
}

/// A name nobody owns at start; and a change that happened before the bus answered the
/// start's question (it is older than the answer) does not step the owner back.
fn name_watcher_without_owner_and_stale_changes() {
    let bus = Daemon::start();
    let name = "org.ember.Nobody";
    let mut c = connect(&bus);
    let mut w = NameWatcher::start(&mut c, name, T).unwrap();
    assert_eq!(w.owner(), None);
    let mut owner = connect(&bus);
    assert_eq!(owner.request_name(name, 0, T), Ok(RequestNameReply::PrimaryOwner));
    let m = loop {
        let m = c.recv(T).unwrap();
        if m.member() == Some("NameOwnerChanged") {
            break m;
        }
    };
    let ch = w.update(&m).expect("a change");
    assert_eq!((ch.old, ch.new), (None, Some(owner.unique_name())));
    // The same signal again (or any older one) is stale.
    assert_eq!(w.update(&m), None);
    assert_eq!(w.owner(), Some(owner.unique_name()));
    // A change the bus made before it answered a watcher's start, read after the start
    // returned (it was queued while the start waited), is older than the answer: ignored.
    let stale_name = "org.ember.Stale";
    c.add_match_rule(&MatchRule::signal().member("NameOwnerChanged").arg(0, stale_name), T).unwrap();
    let mut other = connect(&bus);
    assert_eq!(other.request_name(stale_name, 0, T), Ok(RequestNameReply::PrimaryOwner));
    let mut w2 = NameWatcher::start(&mut c, stale_name, T).unwrap();
    assert_eq!(w2.owner(), Some(other.unique_name()));
    let old = loop {
        let m = c.recv(T).expect("the queued NameOwnerChanged");
        if m.member() == Some("NameOwnerChanged") {
            break m.serial();
        }
    };
    let m = c.received().unwrap();
    assert_eq!(m.serial(), old);
    assert_eq!(w2.update(&m), None, "a change older than the start's answer");
    assert_eq!(w2.owner(), Some(other.unique_name()));
    other.release_name(stale_name, T).unwrap();
    let ch = loop {
        let m = c.recv(T).expect("the release");
        if let Some(ch) = w2.update(&m) {
            break (ch.old.map(String::from), ch.new.map(String::from));
        }
    };
    assert_eq!(ch, (Some(other.unique_name().to_string()), None));
    assert_eq!(w2.owner(), None);
    assert!(matches!(
        NameWatcher::start(&mut c, "not a name", T),
        Err(ember_linux::dbus::CallError::Local(Error::InvalidName))
    ));
    w2.stop(&mut c, T).unwrap();
}

fn main() {
    common::main(
        &[
            ("rules_the_bus_accepts_and_applies", rules_the_bus_accepts_and_applies),
            ("name_watcher_follows_the_owner", name_watcher_follows_the_owner),
            ("name_watcher_without_owner_and_stale_changes", name_watcher_without_owner_and_stale_changes),
        ],
        |_| {},
    );
}
