//! `emberctl ls`: the Ember objects on this machine, like `ipcs` for Ember.

use std::fmt::Write as _;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};

use ember_core::shm::inspect::{self, Counters};
use ember_core::shm::{HeaderRepr, SegmentKind, ShmError};
use ember_linux::mq::{Access, MessageQueue};
use ember_linux::shm::Liveness;

use crate::cli::{Failure, Opts};
use crate::uri::Uri;

pub const USAGE: &str = "\
usage: emberctl ls [--json] [<uri>...]

Lists the Ember objects on this machine: the shared-memory segments in /dev/shm with their
decoded header (kind, capacity, fingerprint, the writer's pid and whether it is alive) and
counters, and the POSIX message queues in /dev/mqueue with their attributes. Files in
/dev/shm that are not Ember segments are counted, not listed.

With URIs (mq:/name, shm-ring:name, shm-seqlock:name, shm-broadcast:name, fifo:/path,
uds:/path, uds-seqpacket:/path, uds-dgram:/path), lists those objects alone, whatever
they are; a socket is shown as listening when a connection to it succeeds.

A seqlock whose fingerprint is 0x5354415455534a31 (\"STATUSJ1\") holds a program's status
as JSON (ember-bridge publishes /ember-bridge.<board>): it is shown with one line per route
it lists, and in --json as the segment's \"status\".

Every object listed is local to this machine, so its senders leave the payload checksum
off by default (the header is always checked; `emberctl send` can force it on):
the JSON says so per object (\"payload_checksum\":\"off\").

options:
  --json    one JSON object on standard output instead of the tables
";

/// Bytes of a segment read to decode it: header, control lines and waiter page (the data
/// area starts at two pages, 128 KiB with the largest pages Linux uses on Arm).
const READ_LIMIT: usize = 256 * 1024;

/// What `emberctl ls` learned about one file in /dev/shm.
pub struct SegmentInfo {
    /// `/name`.
    pub name: String,
    /// File size.
    pub size: u64,
    /// File owner.
    pub uid: u32,
    /// Permission bits.
    pub mode: u32,
    /// The decoded header, or why it could not be decoded.
    pub header: Result<HeaderRepr, ShmError>,
    /// The counters (when the header decoded).
    pub counters: Option<Counters>,
    /// The file starts with Ember's magic: an Ember segment, damaged or not.
    pub magic: bool,
}

/// Reads and decodes the segment `/name` (a regular file in /dev/shm; never follows a
/// symlink, never blocks on a FIFO planted there).
pub fn read_segment(name: &str) -> Result<SegmentInfo, String> {
    let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| format!("{path}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{path}: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!("{path}: not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(READ_LIMIT as u64).read_to_end(&mut bytes).map_err(|e| format!("{path}: {e}"))?;
    let size = meta.len();
    let header = ember_core::shm::layout::peek(&bytes, usize::try_from(size).unwrap_or(usize::MAX));
    let counters = header.as_ref().ok().and_then(|h| inspect::counters(h, &bytes).ok());
    Ok(SegmentInfo {
        name: format!("/{}", name.trim_start_matches('/')),
        size,
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
        header,
        counters,
        magic: bytes.get(..4) == Some(&ember_core::shm::layout::MAGIC.to_ne_bytes()[..]),
    })
}

fn kind_name(k: SegmentKind) -> &'static str {
    match k {
        SegmentKind::SeqLock => "seqlock",
        SegmentKind::Spsc => "spsc-ring",
        SegmentKind::Broadcast => "broadcast",
        SegmentKind::Sync => "sync",
    }
}

fn counters_text(c: &Counters) -> String {
    match *c {
        Counters::SeqLock { seq, len, waiters } => {
            let writing = if seq % 2 == 1 { " (write in progress)" } else { "" };
            format!("version={} len={len} waiters={waiters}{writing}", seq / 2)
        }
        Counters::Spsc { written, consumed, closed, consumer_waiting, producer_waiting, reader_pid } => format!(
            "pending={}B written={written}B consumed={consumed}B{}{}{}{}",
            written.wrapping_sub(consumed),
            if reader_pid != 0 { format!(" receiver-pid={reader_pid}") } else { String::new() },
            if closed { " closed" } else { "" },
            if consumer_waiting { " consumer-asleep" } else { "" },
            if producer_waiting { " producer-asleep(full)" } else { "" },
        ),
        Counters::Broadcast { published, oldest, closed, waiters } => format!(
            "published={published} oldest={oldest} retained={} waiters={waiters}{}",
            published.saturating_sub(oldest),
            if closed { " closed" } else { "" }
        ),
        Counters::Sync => "application layout".to_string(),
    }
}

fn counters_json(c: &Counters) -> String {
    match *c {
        Counters::SeqLock { seq, len, waiters } => {
            format!(r#"{{"version":{},"writing":{},"len":{len},"waiters":{waiters}}}"#, seq / 2, seq % 2 == 1)
        }
        Counters::Spsc { written, consumed, closed, consumer_waiting, producer_waiting, reader_pid } => format!(
            r#"{{"pending_bytes":{},"written_bytes":{written},"consumed_bytes":{consumed},"closed":{closed},"consumer_waiting":{consumer_waiting},"producer_waiting":{producer_waiting},"receiver_pid":{reader_pid}}}"#,
            written.wrapping_sub(consumed)
        ),
        Counters::Broadcast { published, oldest, closed, waiters } => {
            format!(r#"{{"published":{published},"oldest":{oldest},"closed":{closed},"waiters":{waiters}}}"#)
        }
        Counters::Sync => "{}".to_string(),
    }
}

use crate::bench::json_str;

/// The payload checksum a sender on any object `ls` lists writes by default: every one is
/// local (shm, queues, FIFOs, Unix sockets), so `"off"` (docs/wire-format.md §4.4), from
/// the same constant the senders use.
fn payload_checksum() -> &'static str {
    if ember_linux::shm::SpscSender::DEFAULT_INTEGRITY.is_checked() { "on" } else { "off" }
}

/// One listed object, as table cells and as JSON.
struct Line {
    cells: [String; 6],
    /// Empty for a detail line (its object's JSON holds it).
    json: String,
    /// It could not be read at all.
    missing: bool,
}

/// The JSON document in the status seqlock `name` (see
/// [`inspect::STATUS_JSON_FINGERPRINT`]), checked to be JSON; `None` when it cannot be read
/// (not written yet, a writer mid-update for too long, not JSON).
fn status_document(name: &str, h: &HeaderRepr) -> Option<serde_json::Value> {
    if h.kind != SegmentKind::SeqLock || h.fingerprint != inspect::STATUS_JSON_FINGERPRINT {
        return None;
    }
    let mut r = ember_linux::shm::SeqLockReader::open(name, h.fingerprint).ok()?;
    let mut buf = vec![0u8; h.capacity as usize];
    let snap = r.read(&mut buf).ok()?;
    serde_json::from_slice(buf.get(..snap.len)?).ok()
}

/// The table's detail lines of a status document: one per route, when it lists routes
/// (`ember-bridge`'s shape); the state cell of the segment's own line.
fn status_lines(doc: &serde_json::Value) -> (String, Vec<Line>) {
    let field = |v: &serde_json::Value, k: &str| match &v[k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let routes = doc["routes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let state = format!("status of {} (pid {}): {} route(s)", field(doc, "board"), field(doc, "pid"), routes.len());
    let lines = routes
        .iter()
        .map(|r| {
            let c = &r["counters"];
            Line {
                missing: false,
                json: String::new(),
                cells: [
                    format!("  {}", field(r, "channel")),
                    field(r, "direction"),
                    "-".into(),
                    field(r, "key"),
                    field(r, "local"),
                    format!(
                        "in={} out={} dropped={} bad={} lost={}",
                        field(c, "in"),
                        field(c, "out"),
                        field(c, "dropped"),
                        field(c, "bad"),
                        field(c, "lost")
                    ),
                ],
            }
        })
        .collect();
    (state, lines)
}

/// The lines of one segment: its own, then the detail lines of a status document.
fn segment_lines(s: &SegmentInfo) -> Vec<Line> {
    let Ok(h) = &s.header else { return vec![segment_line(s, None)] };
    match status_document(&s.name, h) {
        Some(doc) => {
            let (state, mut details) = status_lines(&doc);
            let mut first = segment_line(s, Some(&doc));
            first.cells[5] = state;
            details.insert(0, first);
            details
        }
        None => vec![segment_line(s, None)],
    }
}

fn segment_line(s: &SegmentInfo, status: Option<&serde_json::Value>) -> Line {
    match &s.header {
        Ok(h) => {
            let alive = Liveness::with_start(h.creator_pid, h.creator_start).is_alive();
            let counters = s.counters.as_ref();
            let status = status.map_or_else(String::new, |d| format!(r#","status":{d}"#));
            Line {
                missing: false,
                cells: [
                    s.name.clone(),
                    kind_name(h.kind).into(),
                    h.capacity.to_string(),
                    format!("{:#018x}", h.fingerprint),
                    format!("{} {}", h.creator_pid, if alive { "alive" } else { "dead" }),
                    counters.map_or_else(|| "counters unreadable".into(), counters_text),
                ],
                json: format!(
                    r#"{{"type":"shm","name":{},"kind":"{}","size":{},"capacity":{},"fingerprint":{},"fingerprint_hex":"{:#018x}","writer_pid":{},"writer_alive":{alive},"uid":{},"mode":"{:04o}","payload_checksum":"{}","counters":{}{status}}}"#,
                    json_str(&s.name),
                    kind_name(h.kind),
                    s.size,
                    h.capacity,
                    h.fingerprint,
                    h.fingerprint,
                    h.creator_pid,
                    s.uid,
                    s.mode,
                    payload_checksum(),
                    counters.map_or_else(|| "null".into(), counters_json)
                ),
            }
        }
        Err(e) => Line {
            missing: false,
            cells: [s.name.clone(), "damaged".into(), "-".into(), "-".into(), "-".into(), format!("header: {e}")],
            json: format!(
                r#"{{"type":"shm","name":{},"size":{},"error":{}}}"#,
                json_str(&s.name),
                s.size,
                json_str(&e.to_string())
            ),
        },
    }
}

fn mq_line(name: &str) -> Line {
    match MessageQueue::open(name, Access::Receive).and_then(|q| q.attributes()) {
        Ok(a) => Line {
            missing: false,
            cells: [
                name.into(),
                "mq".into(),
                format!("{}x{}B", a.max_msgs, a.msg_size),
                "-".into(),
                "-".into(),
                format!("queued={}", a.cur_msgs),
            ],
            json: format!(
                r#"{{"type":"mq","name":{},"max_msgs":{},"msg_size":{},"queued":{},"payload_checksum":"{}"}}"#,
                json_str(name),
                a.max_msgs,
                a.msg_size,
                a.cur_msgs,
                payload_checksum()
            ),
        },
        Err(e) => error_line(name, "mq", &e.to_string()),
    }
}

fn error_line(name: &str, ty: &str, e: &str) -> Line {
    Line {
        missing: true,
        cells: [name.into(), ty.into(), "-".into(), "-".into(), "-".into(), e.into()],
        json: format!(r#"{{"type":"{ty}","name":{},"error":{}}}"#, json_str(name), json_str(e)),
    }
}

/// A FIFO or socket path: what is there, whose, and (sockets) whether someone listens.
fn path_line(uri: &Uri, path: &str, ty: &str) -> Line {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return error_line(path, ty, &e.to_string()),
    };
    use std::os::unix::fs::FileTypeExt as _;
    let ft = meta.file_type();
    let what = if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "other"
    };
    let expected = if matches!(uri, Uri::Fifo(_)) { "fifo" } else { "socket" };
    let mut state = format!("owner uid {} mode {:04o}", meta.uid(), meta.mode() & 0o7777);
    if what != expected {
        let _ = write!(state, ", a {what}, not a {expected}");
    } else if what == "socket" {
        state.push_str(&socket_state(path));
    }
    Line {
        missing: false,
        cells: [path.into(), ty.into(), "-".into(), "-".into(), "-".into(), state.clone()],
        json: format!(
            r#"{{"type":"{ty}","name":{},"file":"{what}","uid":{},"mode":"{:04o}","state":{},"payload_checksum":"{}"}}"#,
            json_str(path),
            meta.uid(),
            meta.mode() & 0o7777,
            json_str(&state),
            payload_checksum()
        ),
    }
}

/// What `/proc/net/unix` says of the socket bound at `path`: its type and whether it
/// listens, read without connecting (a probe connection would be taken by a server that
/// accepts one client, or hang on a full backlog).
fn socket_state(path: &str) -> String {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return ", /proc/net/unix unreadable".into();
    };
    // Num RefCount Protocol Flags Type St Inode Path
    let bound: Vec<(u32, u32)> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 8 && f[7] == path)
                .then(|| (u32::from_str_radix(f[3], 16).unwrap_or(0), u32::from_str_radix(f[4], 16).unwrap_or(0)))
        })
        .collect();
    // __SO_ACCEPTCON: listen() was called.
    const ACCEPTING: u32 = 0x1_0000;
    let ty = |t: u32| match t {
        1 => "stream",
        2 => "datagram",
        5 => "seqpacket",
        _ => "socket",
    };
    if let Some(&(_, t)) = bound.iter().find(|(flags, _)| flags & ACCEPTING != 0) {
        format!(", {} listening", ty(t))
    } else if let Some(&(_, t)) = bound.iter().find(|&&(_, t)| t == 2) {
        format!(", {} bound", ty(t))
    } else if bound.is_empty() {
        ", no socket bound to it (a stale file)".into()
    } else {
        ", bound but not listening".into()
    }
}

fn dir_names(dir: &str) -> Result<Vec<String>, std::io::Error> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir)?.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    Ok(names)
}

/// `emberctl ls`.
pub fn run(args: &[String]) -> Result<(), Failure> {
    let o = Opts::parse_for(args, "ls")?;
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    if o.positional.is_empty() {
        match dir_names("/dev/shm") {
            Ok(names) => {
                let (mut other, mut unreadable) = (0, Vec::new());
                for n in names {
                    match read_segment(&n) {
                        // Ember's magic: listed, damaged or not.
                        Ok(s) if s.magic => lines.extend(segment_lines(&s)),
                        // Another program's segment (or one not initialised yet).
                        Ok(_) => other += 1,
                        Err(e) => unreadable.push(e),
                    }
                }
                if other > 0 {
                    notes.push(format!("{other} other file(s) in /dev/shm are not Ember segments"));
                }
                for e in unreadable {
                    notes.push(format!("cannot read {e}"));
                }
            }
            Err(e) => notes.push(format!("/dev/shm: {e}")),
        }
        match dir_names("/dev/mqueue") {
            Ok(names) => lines.extend(names.iter().map(|n| mq_line(&format!("/{n}")))),
            Err(_) => notes.push(
                "/dev/mqueue is not mounted, so queues cannot be listed (mount -t mqueue none /dev/mqueue, \
                 or name one: emberctl ls mq:/name)"
                    .into(),
            ),
        }
    }
    let named = lines.len();
    for u in &o.positional {
        let uri = Uri::parse(u).map_err(|e| Failure::usage(e.0))?;
        let found = match &uri {
            Uri::Mq(n) => vec![mq_line(n)],
            Uri::ShmRing(n) | Uri::ShmSeqlock(n) | Uri::ShmBroadcast(n) => match read_segment(n) {
                Ok(s) => segment_lines(&s),
                Err(e) => vec![error_line(n, "shm", &e)],
            },
            Uri::Fifo(p) => vec![path_line(&uri, p, "fifo")],
            Uri::Uds(p) | Uri::UdsSeqpacket(p) | Uri::UdsDgram(p) => vec![path_line(&uri, p, "uds")],
            other => {
                return Err(Failure::usage(format!("{other}: nothing to list for this kind of endpoint")));
            }
        };
        lines.extend(found);
    }
    // An object named on the command line that cannot be shown is a failure (exit 1).
    let missing = lines[named..].iter().filter(|l| l.missing).count();
    let result = if missing > 0 {
        Err(Failure::runtime(format!("{missing} of the objects named could not be read")))
    } else {
        Ok(())
    };
    if o.flag("--json") {
        let objs: Vec<&str> = lines.iter().map(|l| l.json.as_str()).filter(|j| !j.is_empty()).collect();
        let notes: Vec<String> = notes.iter().map(|n| json_str(n)).collect();
        println!(r#"{{"objects":[{}],"notes":[{}]}}"#, objs.join(","), notes.join(","));
        return result;
    }
    let head = ["name", "kind", "capacity", "fingerprint", "writer", "state"];
    let mut w = [0usize; 5];
    for cells in std::iter::once(head.map(String::from)).chain(lines.iter().map(|l| l.cells.clone())) {
        for (i, c) in cells.iter().take(5).enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    let row = |out: &mut String, c: &[String]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {:<w4$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        );
    };
    row(&mut out, &head.map(String::from));
    for l in &lines {
        row(&mut out, &l.cells);
    }
    if lines.is_empty() {
        out.push_str("(no Ember objects)\n");
    }
    for n in &notes {
        let _ = writeln!(out, "note: {n}");
    }
    print!("{out}");
    result
}
