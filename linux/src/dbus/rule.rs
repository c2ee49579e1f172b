//! Match rules built from typed fields, not by string concatenation: what
//! [`ConnectionWith::add_match_rule`](super::ConnectionWith::add_match_rule) sends to the
//! bus's `AddMatch`, and a client-side [`MatchRule::matches`] for the messages that come.
//!
//! # Text form (D-Bus specification, "Match Rules")
//!
//! ```text
//!   type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',
//!   member='NameOwnerChanged',path='/org/freedesktop/DBus',arg0='org.example.Sensor'
//! ```
//!
//! Comma-separated `key='value'` pairs. A value is quoted with apostrophes and has no other
//! escapes: an apostrophe inside a value closes the quote, is written as `\'`, and the quote
//! reopens (`it's` is `'it'\''s'`). Names are checked ([`crate::core::dbus::names`]) before
//! anything is written, so a bad interface or path is [`Error::InvalidName`] here, not a
//! `MatchRuleInvalid` error from the bus later. At most [`MAX_ARGS`] `argN` keys, N below
//! 64 (the specification's limit). The text is written into a caller's buffer; a rule
//! longer than it is [`Error::TooLarge`] (dbus-daemon refuses rules over 1024 bytes,
//! [`MAX_RULE_LEN`]).
//!
//! # Panics
//!
//! Nothing here panics.
//!
//! # Example
//!
//! ```
//! use ember_linux::dbus::rule::MatchRule;
//! use ember_linux::core::dbus::MessageType;
//!
//! let rule = MatchRule::signal()
//!     .interface("org.example.Sensor")
//!     .member("Reading")
//!     .arg(0, "it's hot");
//! let mut buf = [0u8; 256];
//! assert_eq!(
//!     rule.write(&mut buf).unwrap(),
//!     r"type='signal',interface='org.example.Sensor',member='Reading',arg0='it'\''s hot'"
//! );
//! assert_eq!(rule.kind(), Some(MessageType::Signal));
//! ```

use crate::core::dbus::names::{is_bus_name, is_interface_name, is_member_name, is_object_path};
use crate::core::dbus::{Message, MessageType};
use crate::{Error, Result};

/// Most `argN` keys in one rule.
pub const MAX_ARGS: usize = 8;

/// The longest rule dbus-daemon accepts (its `DBUS_MAXIMUM_MATCH_RULE_LENGTH`).
pub const MAX_RULE_LEN: usize = 1024;

/// One `argN` key: `arg3='x'` ([`ArgMatch::Str`]), `arg3path='/a/'`
/// ([`ArgMatch::Path`]) or `arg0namespace='org.example'` ([`ArgMatch::Namespace`]).
///
/// `Send` and `Sync`: borrowed strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgMatch<'a> {
    /// The argument is this string.
    Str(&'a str),
    /// The argument (a string or object path) is this path, or one of the two is a prefix of
    /// the other ending in `/`.
    Path(&'a str),
    /// The argument (a string, argument 0 only) is this bus or interface name or below it.
    Namespace(&'a str),
}

/// A match rule (see the [module docs](self)). Build it with [`MatchRule::signal`] (or
/// [`MatchRule::any`] and [`MatchRule::kind`]) and the setters; every field is optional.
///
/// `Send` and `Sync`: borrowed strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatchRule<'a> {
    kind: Option<MessageType>,
    sender: Option<&'a str>,
    interface: Option<&'a str>,
    member: Option<&'a str>,
    path: Option<&'a str>,
    path_namespace: Option<&'a str>,
    destination: Option<&'a str>,
    args: [Option<(u8, ArgMatch<'a>)>; MAX_ARGS],
    too_many_args: bool,
}

impl<'a> MatchRule<'a> {
    /// A rule that matches every message (narrow it with the setters).
    pub fn any() -> MatchRule<'a> {
        MatchRule::default()
    }

    /// A rule for signals (`type='signal'`).
    pub fn signal() -> MatchRule<'a> {
        MatchRule { kind: Some(MessageType::Signal), ..MatchRule::default() }
    }

    /// Only messages of this type.
    pub fn of_type(mut self, kind: MessageType) -> MatchRule<'a> {
        self.kind = Some(kind);
        self
    }

    /// Only messages from this sender (a unique or well-known name).
    pub fn sender(mut self, sender: &'a str) -> MatchRule<'a> {
        self.sender = Some(sender);
        self
    }

    /// Only this interface.
    pub fn interface(mut self, interface: &'a str) -> MatchRule<'a> {
        self.interface = Some(interface);
        self
    }

    /// Only this member (method or signal name).
    pub fn member(mut self, member: &'a str) -> MatchRule<'a> {
        self.member = Some(member);
        self
    }

    /// Only this object path.
    pub fn path(mut self, path: &'a str) -> MatchRule<'a> {
        self.path = Some(path);
        self
    }

    /// Only this object path and the paths below it (`path_namespace`).
    pub fn path_namespace(mut self, path: &'a str) -> MatchRule<'a> {
        self.path_namespace = Some(path);
        self
    }

    /// Only messages to this destination (a unique name; for monitors and eavesdropping).
    pub fn destination(mut self, destination: &'a str) -> MatchRule<'a> {
        self.destination = Some(destination);
        self
    }

    /// Only messages whose string argument `n` (0 to 63) is `value` (`argN='value'`).
    pub fn arg(self, n: u8, value: &'a str) -> MatchRule<'a> {
        self.arg_match(n, ArgMatch::Str(value))
    }

    /// Only messages whose argument `n` matches `m`. More than [`MAX_ARGS`] of them, or
    /// `n` above 63, makes [`MatchRule::write`] fail with [`Error::InvalidName`].
    pub fn arg_match(mut self, n: u8, m: ArgMatch<'a>) -> MatchRule<'a> {
        match self.args.iter_mut().find(|a| a.is_none_or(|(k, _)| k == n)) {
            Some(slot) => *slot = Some((n, m)),
            None => self.too_many_args = true,
        }
        self
    }

    /// The message type it matches, if one.
    pub fn kind(&self) -> Option<MessageType> {
        self.kind
    }

    /// Checks every field (names, paths, argument numbers): [`Error::InvalidName`] for the
    /// first bad one.
    pub fn check(&self) -> Result<()> {
        let ok = self.sender.is_none_or(|s| is_bus_name(s.as_bytes()))
            && self.interface.is_none_or(|s| is_interface_name(s.as_bytes()))
            && self.member.is_none_or(|s| is_member_name(s.as_bytes()))
            && self.path.is_none_or(|s| is_object_path(s.as_bytes()))
            && self.path_namespace.is_none_or(|s| is_object_path(s.as_bytes()))
            && self.destination.is_none_or(|s| is_bus_name(s.as_bytes()))
            && !self.too_many_args
            && self.args.iter().flatten().all(|&(n, m)| {
                n < 64
                    && match m {
                        ArgMatch::Str(_) => true,
                        ArgMatch::Path(p) => p.starts_with('/'),
                        ArgMatch::Namespace(ns) => {
                            n == 0 && (is_bus_name(ns.as_bytes()) || is_interface_name(ns.as_bytes()))
                        }
                    }
            });
        if ok { Ok(()) } else { Err(Error::InvalidName) }
    }

    /// Writes the rule's text into `buf` and returns it: [`Error::InvalidName`] for a bad
    /// field, [`Error::TooLarge`] when it does not fit.
    pub fn write<'b>(&self, buf: &'b mut [u8]) -> Result<&'b str> {
        self.check()?;
        let mut out = Out { buf, len: 0 };
        let kind = self.kind.map(|k| match k {
            MessageType::MethodCall => "method_call",
            MessageType::MethodReturn => "method_return",
            MessageType::Error => "error",
            MessageType::Signal => "signal",
        });
        let fields = [
            ("type", kind),
            ("sender", self.sender),
            ("interface", self.interface),
            ("member", self.member),
            ("path", self.path),
            ("path_namespace", self.path_namespace),
            ("destination", self.destination),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                out.pair(key, "", v)?;
            }
        }
        let mut args = self.args;
        args.sort_unstable_by_key(|a| a.map_or(u8::MAX, |(n, _)| n));
        for (n, m) in args.into_iter().flatten() {
            let (suffix, v) = match m {
                ArgMatch::Str(v) => ("", v),
                ArgMatch::Path(v) => ("path", v),
                ArgMatch::Namespace(v) => ("namespace", v),
            };
            out.arg_pair(n, suffix, v)?;
        }
        let len = out.len;
        if len > out.buf.len() {
            return Err(Error::TooLarge { len, max: out.buf.len() });
        }
        // Everything written is UTF-8: ASCII keys and the caller's `&str` values.
        core::str::from_utf8(&out.buf[..len]).map_err(|_| Error::InvalidName)
    }

    /// Whether `m` matches the rule, as the bus decides (for a connection that receives
    /// more than one subscription's messages and sorts them). `sender` is compared as
    /// written: a rule on a well-known name matches only messages whose sender field is that
    /// name (the bus itself resolves it to the owner's unique name).
    pub fn matches(&self, m: &Message<'_>) -> bool {
        let eq = |want: Option<&str>, have: Option<&str>| want.is_none_or(|w| have == Some(w));
        let path = m.path().map(|p| p.as_str());
        self.kind.is_none_or(|k| m.message_type() == k)
            && eq(self.sender, m.sender())
            && eq(self.interface, m.interface())
            && eq(self.member, m.member())
            && eq(self.path, path)
            && eq(self.destination, m.destination())
            && self.path_namespace.is_none_or(|ns| path.is_some_and(|p| in_namespace(p, ns)))
            && self.args.iter().flatten().all(|&(n, am)| {
                let arg = m.body().nth(n as usize).and_then(|v| v.ok());
                let s = match arg {
                    Some(crate::core::dbus::Value::Str(s)) => Some(s),
                    Some(crate::core::dbus::Value::Path(p)) if matches!(am, ArgMatch::Path(_)) => Some(p.as_str()),
                    _ => None,
                };
                s.is_some_and(|s| match am {
                    ArgMatch::Str(v) => s == v,
                    ArgMatch::Path(v) => {
                        s == v || (v.ends_with('/') && s.starts_with(v)) || (s.ends_with('/') && v.starts_with(s))
                    }
                    ArgMatch::Namespace(v) => s == v || s.strip_prefix(v).is_some_and(|r| r.starts_with('.')),
                })
            })
    }
}

/// Whether `path` is `ns` or below it.
fn in_namespace(path: &str, ns: &str) -> bool {
    ns == "/" || path == ns || path.strip_prefix(ns).is_some_and(|r| r.starts_with('/'))
}

/// A bounded writer of rule text.
struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Out<'_> {
    /// Appends `bytes` where they fit; past the end only counts them, so that a rule too
    /// long for the buffer reports its whole length.
    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.len + bytes.len();
        if let Some(room) = self.buf.get_mut(self.len..end) {
            room.copy_from_slice(bytes);
        }
        self.len = end;
        Ok(())
    }

    fn quoted(&mut self, value: &str) -> Result<()> {
        self.push(b"'")?;
        for (i, part) in value.split('\'').enumerate() {
            if i > 0 {
                self.push(br"'\''")?;
            }
            self.push(part.as_bytes())?;
        }
        self.push(b"'")
    }

    fn comma(&mut self) -> Result<()> {
        if self.len > 0 { self.push(b",") } else { Ok(()) }
    }

    fn pair(&mut self, key: &str, suffix: &str, value: &str) -> Result<()> {
        self.comma()?;
        self.push(key.as_bytes())?;
        self.push(suffix.as_bytes())?;
        self.push(b"=")?;
        self.quoted(value)
    }

    fn arg_pair(&mut self, n: u8, suffix: &str, value: &str) -> Result<()> {
        self.comma()?;
        self.push(b"arg")?;
        let digits = [b'0' + n / 10, b'0' + n % 10];
        self.push(if n < 10 { &digits[1..] } else { &digits[..] })?;
        self.push(suffix.as_bytes())?;
        self.push(b"=")?;
        self.quoted(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: MatchRule<'_>) -> std::string::String {
        let mut buf = [0u8; MAX_RULE_LEN];
        r.write(&mut buf).unwrap().into()
    }

    #[test]
    fn every_key_in_order_and_quoted() {
        let r = MatchRule::signal()
            .sender("org.freedesktop.DBus")
            .interface("org.freedesktop.DBus")
            .member("NameOwnerChanged")
            .path("/org/freedesktop/DBus")
            .arg(0, "org.example.Sensor");
        assert_eq!(
            text(r),
            "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',path='/org/freedesktop/DBus',arg0='org.example.Sensor'"
        );
        let r = MatchRule::any()
            .of_type(MessageType::MethodCall)
            .path_namespace("/org/example")
            .destination(":1.7")
            .arg_match(12, ArgMatch::Str("x"))
            .arg_match(1, ArgMatch::Path("/a/"))
            .arg_match(0, ArgMatch::Namespace("org.example"));
        assert_eq!(
            text(r),
            "type='method_call',path_namespace='/org/example',destination=':1.7',arg0namespace='org.example',arg1path='/a/',arg12='x'"
        );
        assert_eq!(text(MatchRule::any()), "");
    }

    #[test]
    fn apostrophes_close_and_reopen_the_quote() {
        assert_eq!(text(MatchRule::any().arg(0, "'")), r"arg0=''\'''");
        assert_eq!(text(MatchRule::any().arg(0, "a'b''c")), r"arg0='a'\''b'\'''\''c'");
    }

    #[test]
    fn bad_fields_and_small_buffers_are_typed_errors() {
        let mut buf = [0u8; 64];
        assert_eq!(MatchRule::signal().interface("no dots").write(&mut buf), Err(Error::InvalidName));
        assert_eq!(MatchRule::signal().path("relative").write(&mut buf), Err(Error::InvalidName));
        assert_eq!(MatchRule::signal().member("a.b").write(&mut buf), Err(Error::InvalidName));
        assert_eq!(MatchRule::signal().arg(64, "x").write(&mut buf), Err(Error::InvalidName));
        assert_eq!(
            MatchRule::signal().arg_match(1, ArgMatch::Namespace("org.x")).write(&mut buf),
            Err(Error::InvalidName)
        );
        let mut r = MatchRule::signal();
        for n in 0..=MAX_ARGS as u8 {
            r = r.arg(n, "x");
        }
        assert_eq!(r.write(&mut buf), Err(Error::InvalidName));
        // The same argument twice: the second replaces the first.
        assert_eq!(text(MatchRule::any().arg(3, "a").arg(3, "b")), "arg3='b'");
        let mut small = [0u8; 10];
        assert_eq!(
            MatchRule::signal().write(&mut small),
            Err(Error::TooLarge { len: 13, max: 10 }),
            "the whole rule's length"
        );
    }
}
