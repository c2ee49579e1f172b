//! journald's native protocol (`systemd.io/JOURNAL_NATIVE_PROTOCOL`), client side.
//!
//! One datagram per entry, to the `AF_UNIX`/`SOCK_DGRAM` socket
//! `/run/systemd/journal/socket`. The payload is the entry's fields, each ended by a
//! newline: `NAME=value\n` when the value has no newline, otherwise the binary form `NAME\n`,
//! the value's length as a 64-bit little-endian integer, the value, `\n`. Field names are
//! 1 to 64 characters of `A`–`Z`, `0`–`9` and `_`, not starting with a digit or `_` (those
//! are journald's trusted fields).
//!
//! The entry is built in a [`JOURNAL_MAX`]-byte stack buffer: the message is cut (at a
//! character boundary) to what fits, and a field that does not fit is left out. The
//! protocol's other form for large entries (an empty datagram carrying a sealed memfd) is
//! not used: an entry of this size always fits in one datagram.
//!
//! When the socket is not there (no journald: a container, an initramfs, a test) the entry
//! goes to stderr instead, as `<N>message` lines (`sd-daemon(3)`'s prefixes, which journald
//! reads back when stderr is connected to it).

use core::fmt::{self, Write as _};
use std::io::Write as _;

use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

use crate::error::{Error, Result};

/// Where journald listens for native-protocol datagrams.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The size of the stack buffer an entry is built in (and so the largest datagram sent).
pub const JOURNAL_MAX: usize = 8192;

/// The longest field name journald accepts.
const FIELD_NAME_MAX: usize = 64;

/// Room kept for the message when optional fields are added.
const MESSAGE_RESERVE: usize = 1024;

/// A syslog priority (`PRIORITY=`, and the `<N>` prefix of the stderr fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Priority {
    /// 0: the system is unusable.
    Emergency = 0,
    /// 1: act now.
    Alert = 1,
    /// 2: critical conditions.
    Critical = 2,
    /// 3: errors.
    Error = 3,
    /// 4: warnings.
    Warning = 4,
    /// 5: normal but significant.
    Notice = 5,
    /// 6: informational.
    Info = 6,
    /// 7: debugging.
    Debug = 7,
}

/// Where [`Journal::send`] delivered an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// To journald, as one datagram.
    Journal,
    /// To stderr, with `<N>` prefixes (the journal socket is not there).
    Stderr,
}

/// Whether `name` is a field name journald accepts from a client.
pub fn field_name_is_valid(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= FIELD_NAME_MAX
        && !b[0].is_ascii_digit()
        && b[0] != b'_'
        && b.iter().all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// A journal client: an unbound datagram socket and the address of journald's socket.
#[derive(Debug)]
pub struct Journal {
    sock: OwnedFd,
    addr: SocketAddrUnix,
    identifier: heapless::String<FIELD_NAME_MAX>,
}

/// The entry under construction, in a fixed buffer.
struct Entry<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Entry<'_> {
    fn room(&self) -> usize {
        self.buf.len() - self.len
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Appends a field if it fits with `keep` bytes to spare; whether it did.
    fn field(&mut self, name: &str, value: &[u8], keep: usize) -> bool {
        let binary = value.contains(&b'\n');
        let need = name.len() + if binary { 1 + 8 } else { 1 } + value.len() + 1;
        if need + keep > self.room() {
            return false;
        }
        self.push(name.as_bytes());
        if binary {
            self.push(b"\n");
            self.push(&(value.len() as u64).to_le_bytes());
        } else {
            self.push(b"=");
        }
        self.push(value);
        self.push(b"\n");
        true
    }

    /// Appends `MESSAGE` formatted from `args`, cut to the room left.
    fn message(&mut self, args: fmt::Arguments<'_>) {
        // "MESSAGE\n" + 8 length bytes + at least one byte of value + "\n".
        const HEAD: usize = b"MESSAGE\n".len() + 8;
        if self.room() < HEAD + 2 {
            return;
        }
        let start = self.len;
        self.push(b"MESSAGE\n");
        self.push(&[0; 8]);
        let value_start = self.len;
        let end = self.buf.len() - 1;
        let mut w = Cut { buf: &mut self.buf[value_start..end], len: 0 };
        let _ = w.write_fmt(args);
        let n = w.len;
        let value = value_start..value_start + n;
        if self.buf[value.clone()].contains(&b'\n') {
            self.buf[value_start - 8..value_start].copy_from_slice(&(n as u64).to_le_bytes());
            self.len = value.end;
        } else {
            // The text form: "MESSAGE=" and the value moved up over the length.
            self.buf[start..start + 8].copy_from_slice(b"MESSAGE=");
            self.buf.copy_within(value.clone(), start + 8);
            self.len = start + 8 + n;
        }
        self.push(b"\n");
    }
}

/// A `fmt::Write` into a fixed buffer that keeps what fits, cut at a character boundary.
struct Cut<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl fmt::Write for Cut<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() { Err(fmt::Error) } else { Ok(()) }
    }
}

/// A `fmt::Write` to stderr that starts every line with `<N>`.
struct PrefixedLines<'w, W: std::io::Write> {
    out: &'w mut W,
    prefix: [u8; 3],
    at_line_start: bool,
    failed: bool,
}

impl<W: std::io::Write> fmt::Write for PrefixedLines<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for piece in s.split_inclusive('\n') {
            if self.at_line_start {
                self.failed |= self.out.write_all(&self.prefix).is_err();
            }
            self.failed |= self.out.write_all(piece.as_bytes()).is_err();
            self.at_line_start = piece.ends_with('\n');
        }
        if self.failed { Err(fmt::Error) } else { Ok(()) }
    }
}

impl Journal {
    /// A client of journald's socket ([`JOURNAL_SOCKET`]) whose entries carry
    /// `SYSLOG_IDENTIFIER=identifier` (usually the program's name; at most 64 bytes, no
    /// newline, else [`Error::InvalidName`]; empty: none).
    pub fn new(identifier: &str) -> Result<Journal> {
        Journal::with_socket(identifier, JOURNAL_SOCKET)
    }

    /// A client of the journal socket at `path` (tests, or a journald namespace's
    /// `/run/systemd/journal.<namespace>/socket`).
    pub fn with_socket(identifier: &str, path: &str) -> Result<Journal> {
        if identifier.contains(['\n', '\0']) {
            return Err(Error::InvalidName);
        }
        let identifier = heapless::String::try_from(identifier).map_err(|_| Error::InvalidName)?;
        if path.is_empty() || path.len() > crate::uds::MAX_PATH {
            return Err(Error::InvalidName);
        }
        let addr = SocketAddrUnix::new(path).map_err(|_| Error::InvalidName)?;
        let sock = rustix::net::socket_with(AddressFamily::UNIX, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
        Ok(Journal { sock, addr, identifier })
    }

    /// The `SYSLOG_IDENTIFIER` of the entries.
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// Builds the datagram of an entry into `buf`: `PRIORITY`, `SYSLOG_IDENTIFIER`, then
    /// `fields` in order (each left out if it does not fit, keeping room for the message),
    /// then `MESSAGE` (cut to fit). A field with an invalid name
    /// ([`field_name_is_valid`]) is [`Error::InvalidName`]. Returns the length.
    pub fn build_entry(
        &self,
        buf: &mut [u8],
        priority: Priority,
        message: fmt::Arguments<'_>,
        fields: &[(&str, &str)],
    ) -> Result<usize> {
        if fields.iter().any(|(n, _)| !field_name_is_valid(n)) {
            return Err(Error::InvalidName);
        }
        let mut e = Entry { buf, len: 0 };
        let digit = [b'0' + priority as u8];
        let keep = MESSAGE_RESERVE.min(e.room() / 2);
        e.field("PRIORITY", &digit, keep);
        if !self.identifier.is_empty() {
            e.field("SYSLOG_IDENTIFIER", self.identifier.as_bytes(), keep);
        }
        for (name, value) in fields {
            e.field(name, value.as_bytes(), keep);
        }
        e.message(message);
        Ok(e.len)
    }

    /// Sends an entry (see [`Journal::build_entry`]) to journald, or, when its socket is not
    /// there or refuses, writes the message to stderr as `<N>` lines. Allocates nothing.
    pub fn send(&self, priority: Priority, message: fmt::Arguments<'_>, fields: &[(&str, &str)]) -> Result<Delivery> {
        let mut buf = [0u8; JOURNAL_MAX];
        let len = self.build_entry(&mut buf, priority, message, fields)?;
        loop {
            match rustix::net::sendto(&self.sock, &buf[..len], SendFlags::NOSIGNAL, &self.addr) {
                Ok(_) => return Ok(Delivery::Journal),
                Err(Errno::INTR) => {}
                // No journald (ENOENT, ECONNREFUSED, ENOTDIR, EACCES, ...): stderr.
                Err(_) => break,
            }
        }
        let mut err = std::io::stderr().lock();
        let mut w = PrefixedLines {
            out: &mut err,
            prefix: [b'<', b'0' + priority as u8, b'>'],
            at_line_start: true,
            failed: false,
        };
        let _ = w.write_fmt(message);
        let mut failed = w.failed;
        if !w.at_line_start {
            failed |= err.write_all(b"\n").is_err();
        }
        if failed { Err(Error::Os(Errno::IO)) } else { Ok(Delivery::Stderr) }
    }
}

/// A `log::Log` that writes to the journal (feature `log`): `PRIORITY` from the level
/// (error 3, warn 4, info 6, debug and trace 7), `MESSAGE`, `CODE_FILE`, `CODE_LINE`,
/// `CODE_MODULE` (the module path), `TARGET` (the record's target) and
/// `SYSLOG_IDENTIFIER`. Structured key-values are not sent (the `log` crate's `kv`
/// feature is not enabled). Falls back to stderr as [`Journal::send`] does.
#[cfg(feature = "log")]
#[derive(Debug)]
pub struct JournalLogger {
    journal: Journal,
    level: log::LevelFilter,
}

#[cfg(feature = "log")]
impl JournalLogger {
    /// A logger to journald's socket, for records up to `Info`.
    pub fn new(identifier: &str) -> Result<JournalLogger> {
        Ok(JournalLogger { journal: Journal::new(identifier)?, level: log::LevelFilter::Info })
    }

    /// A logger to the journal socket at `path`.
    pub fn with_socket(identifier: &str, path: &str) -> Result<JournalLogger> {
        Ok(JournalLogger { journal: Journal::with_socket(identifier, path)?, level: log::LevelFilter::Info })
    }

    /// Logs records up to `level`.
    pub fn with_level(mut self, level: log::LevelFilter) -> JournalLogger {
        self.level = level;
        self
    }

    /// Makes this the process's logger (`log::set_logger`, with its level as the maximum).
    /// The logger lives for the rest of the process (one allocation, here).
    pub fn install(self) -> core::result::Result<(), log::SetLoggerError> {
        let level = self.level;
        log::set_logger(Box::leak(Box::new(self)))?;
        log::set_max_level(level);
        Ok(())
    }
}

#[cfg(feature = "log")]
impl log::Log for JournalLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let priority = match record.level() {
            log::Level::Error => Priority::Error,
            log::Level::Warn => Priority::Warning,
            log::Level::Info => Priority::Info,
            log::Level::Debug | log::Level::Trace => Priority::Debug,
        };
        let mut line = heapless::String::<12>::new();
        let mut fields: heapless::Vec<(&str, &str), 4> = heapless::Vec::new();
        if let Some(file) = record.file() {
            let _ = fields.push(("CODE_FILE", file));
        }
        if let Some(n) = record.line() {
            let _ = write!(line, "{n}");
            let _ = fields.push(("CODE_LINE", &line));
        }
        if let Some(module) = record.module_path() {
            let _ = fields.push(("CODE_MODULE", module));
        }
        let _ = fields.push(("TARGET", record.target()));
        let _ = self.journal.send(priority, *record.args(), &fields);
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names() {
        for ok in ["MESSAGE", "CODE_LINE", "X1", "A_"] {
            assert!(field_name_is_valid(ok), "{ok}");
        }
        for bad in ["", "_PID", "1X", "lower", "WITH-DASH", &"X".repeat(65)] {
            assert!(!field_name_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn text_and_binary_fields() {
        let j = Journal::with_socket("app", "/nonexistent/socket").unwrap();
        let mut buf = [0u8; 256];
        let n = j
            .build_entry(&mut buf, Priority::Warning, format_args!("disk {}% full", 91), &[("UNIT_X", "a\nb")])
            .unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(b"PRIORITY=4\nSYSLOG_IDENTIFIER=app\nUNIT_X\n");
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\nMESSAGE=disk 91% full\n");
        assert_eq!(&buf[..n], &want[..]);
        let n = j.build_entry(&mut buf, Priority::Error, format_args!("two\nlines"), &[]).unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(b"PRIORITY=3\nSYSLOG_IDENTIFIER=app\nMESSAGE\n");
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(&buf[..n], &want[..]);
        assert_eq!(
            j.build_entry(&mut buf, Priority::Info, format_args!("x"), &[("bad", "v")]),
            Err(Error::InvalidName)
        );
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let j = Journal::with_socket("", "/nonexistent/socket").unwrap();
        let mut buf = [0u8; 64];
        let n = j.build_entry(&mut buf, Priority::Info, format_args!("{}", "é".repeat(100)), &[]).unwrap();
        let text = core::str::from_utf8(&buf[..n]).unwrap();
        let msg = text.strip_prefix("PRIORITY=6\nMESSAGE=").unwrap().strip_suffix('\n').unwrap();
        assert!(!msg.is_empty() && msg.chars().all(|c| c == 'é'), "{text:?}");
        // The cut is made while the binary form's 8-byte length is still in place, so a
        // text-form message ends up to 8 bytes short of the buffer.
        assert_eq!((n, msg.chars().count()), (56, 18));
    }
}
