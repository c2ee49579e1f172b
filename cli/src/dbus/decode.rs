//! `emberctl dbus decode`: raw D-Bus messages from a capture file, checked field by field so
//! that a malformed one is reported at its offset with the rule it breaks.

use ember_core::dbus::value::Reader;
use ember_core::dbus::{DbusError, Endian, Message, Signature, Value};

use crate::cli::{Failure, Opts};

/// The specification's limit on a message.
const MAX_MESSAGE: usize = 128 * 1024 * 1024;
/// ... and on an array (the header field array is one).
const MAX_ARRAY: usize = 64 * 1024 * 1024;

/// The type of a header field's value.
fn variant() -> Signature<'static> {
    Signature::new("v").unwrap_or(Signature::EMPTY)
}

/// A rule broken at an offset of the file.
#[derive(Debug, PartialEq)]
pub struct Malformed {
    /// Byte offset in the file.
    pub offset: usize,
    /// The rule.
    pub rule: String,
}

fn bad(offset: usize, rule: impl Into<String>) -> Malformed {
    Malformed { offset, rule: rule.into() }
}

/// The rule a core error stands for, without the `D-Bus: ` prefix of its message.
fn rule(e: DbusError) -> String {
    let s = e.to_string();
    s.strip_prefix("D-Bus: ").unwrap_or(&s).to_string()
}

const FIELD_NAMES: [&str; 10] = [
    "INVALID",
    "PATH",
    "INTERFACE",
    "MEMBER",
    "ERROR_NAME",
    "REPLY_SERIAL",
    "DESTINATION",
    "SENDER",
    "SIGNATURE",
    "UNIX_FDS",
];

fn field_name(code: u8) -> String {
    FIELD_NAMES.get(code as usize).map_or_else(|| format!("unknown field {code}"), |n| format!("{n} ({code})"))
}

fn u32_at(b: &[u8], at: usize, e: Endian) -> u32 {
    let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    match e {
        Endian::Little => u32::from_le_bytes(w),
        Endian::Big => u32::from_be_bytes(w),
    }
}

/// Decodes the message at the start of `data` (which is the file from offset `base`):
/// its description and its length.
/// The description is in JSON (`decode --json`) when `json`.
pub fn decode_one(data: &[u8], base: usize, json: bool) -> Result<(String, usize), Malformed> {
    let at = |o: usize| base + o;
    if data.len() < 16 {
        return Err(bad(
            at(data.len()),
            format!("truncated: a message starts with a 16-byte fixed header, {} byte(s) left", data.len()),
        ));
    }
    let endian = Endian::from_marker(data[0])
        .ok_or_else(|| bad(at(0), format!("byte order must be 'l' or 'B', found {:#04x}", data[0])))?;
    if !(1..=4).contains(&data[1]) {
        return Err(bad(at(1), format!("message type must be 1 to 4, found {}", data[1])));
    }
    if data[3] != 1 {
        return Err(bad(at(3), format!("protocol version must be 1, found {}", data[3])));
    }
    let body_len = u32_at(data, 4, endian) as usize;
    if body_len > MAX_MESSAGE {
        return Err(bad(at(4), format!("body of {body_len} bytes: a message is at most 128 MiB")));
    }
    if u32_at(data, 8, endian) == 0 {
        return Err(bad(at(8), "the serial must not be 0"));
    }
    let fields_len = u32_at(data, 12, endian) as usize;
    if fields_len > MAX_ARRAY {
        return Err(bad(at(12), format!("header field array of {fields_len} bytes: at most 64 MiB")));
    }
    let fields_end = 16 + fields_len;
    let body_start = fields_end.next_multiple_of(8);
    // Both under 128 MiB (checked above): no overflow, even with a 32-bit usize.
    let total = body_start + body_len;
    if total > MAX_MESSAGE {
        return Err(bad(at(4), format!("message of {total} bytes: at most 128 MiB")));
    }
    if total > data.len() {
        return Err(bad(
            at(data.len()),
            format!("truncated: the header says the message is {total} bytes, {} byte(s) left", data.len()),
        ));
    }
    let msg = &data[..total];
    // The header fields, one at a time, each at its offset.
    let mut r = Reader::new(&msg[..fields_end], endian);
    for _ in 0..4 {
        r.u32().map_err(|e| bad(at(r.position()), rule(e)))?;
    }
    let mut field_at = [None; 10];
    let (mut sig, mut fds) = (Signature::EMPTY, 0u32);
    while !r.is_at_end() {
        let start = r.position().next_multiple_of(8);
        r.align(8).map_err(|e| bad(at(r.position()), format!("header field array: {}", rule(e))))?;
        let code = r.u8().map_err(|e| bad(at(start), format!("header field array: {}", rule(e))))?;
        let v = r
            .value(variant())
            .map_err(|e| bad(at(start), format!("header field {}: {}", field_name(code), rule(e))))?;
        if let Some(slot) = field_at.get_mut(code as usize) {
            *slot = Some(start);
        }
        if let Value::Variant(v) = v {
            match (code, v.value()) {
                (8, Ok(Value::Sig(s))) => sig = s,
                (9, Ok(Value::U32(n))) => fds = n,
                _ => {}
            }
        }
    }
    if msg[fields_end..body_start].iter().any(|&b| b != 0) {
        return Err(bad(at(fields_end), "the padding before the body must be zero"));
    }
    // The body, value by value.
    let mut body = Reader::new(&msg[body_start..], endian).with_fds(fds);
    for (i, t) in sig.types().enumerate() {
        let start = body.position();
        body.value(t).map_err(|e| {
            bad(at(body_start + start), format!("body value {} (type {}): {}", i + 1, t.as_str(), rule(e)))
        })?;
    }
    if !body.is_at_end() {
        return Err(bad(
            at(body_start + body.position()),
            format!(
                "{} byte(s) after the values of the signature '{}' (the header's body length is {body_len})",
                body_len - body.position(),
                sig.as_str()
            ),
        ));
    }
    // What remains: the rules on names and required fields, with the full parser.
    let m = Message::parse(msg, MAX_MESSAGE).map_err(|e| {
        let field = |code: u8| field_at[code as usize].map_or(at(12), at);
        match e {
            DbusError::MissingField(c) => bad(at(12), format!("required header field {} is missing", field_name(c))),
            DbusError::BadField(c) => {
                bad(field(c), format!("header field {}: wrong type, repeated, or a reserved value", field_name(c)))
            }
            DbusError::BadObjectPath => bad(field(1), format!("header field PATH: {}", rule(e))),
            DbusError::BadInterfaceName => bad(field(2), format!("header field INTERFACE: {}", rule(e))),
            DbusError::BadMemberName => bad(field(3), format!("header field MEMBER: {}", rule(e))),
            DbusError::BadErrorName => bad(field(4), format!("header field ERROR_NAME: {}", rule(e))),
            DbusError::BadBusName => bad(at(12), format!("header field DESTINATION or SENDER: {}", rule(e))),
            e => bad(at(0), rule(e)),
        }
    })?;
    let order = if endian == Endian::Little { "little-endian" } else { "big-endian" };
    if json {
        let extra = format!("\"offset\":{base},\"length\":{total},\"byte_order\":\"{order}\",");
        let text = super::json::message(&m, &extra).map_err(|e| bad(at(body_start), rule(e)))?;
        return Ok((text, total));
    }
    let text = super::describe(&m).map_err(|e| bad(at(body_start), rule(e)))?;
    Ok((format!("{total} bytes, {order}: {text}"), total))
}

/// Records of a capture file: the offset of each one's data, and the data; then the damage
/// that stopped the reading, if any.
type Records<'a> = (Vec<(usize, &'a [u8])>, Option<Malformed>);

/// The D-Bus link type of pcap and pcapng (`LINKTYPE_DBUS`).
const LINKTYPE_DBUS: u32 = 231;

/// The messages of a pcap capture (`dbus-monitor --pcap`, link type 231), with their
/// offsets; `None` if `data` is not a pcap file.
fn pcap_records(data: &[u8]) -> Option<Records<'_>> {
    let magic = data.get(..4)?;
    let big = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        _ => return None,
    };
    let word = |at: usize| -> Option<u32> {
        let w: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(if big { u32::from_be_bytes(w) } else { u32::from_le_bytes(w) })
    };
    let mut out = Vec::new();
    let damage = (|| {
        let link = word(20).ok_or_else(|| bad(data.len(), "truncated pcap file header (24 bytes)"))?;
        if link != LINKTYPE_DBUS {
            return Err(bad(20, format!("pcap link type {link}, not D-Bus (231)")));
        }
        let mut pos = 24;
        while pos < data.len() {
            let len = word(pos + 8).ok_or_else(|| bad(pos, "truncated pcap record header (16 bytes)"))? as usize;
            let start = pos + 16;
            let rec = data.get(start..start.saturating_add(len)).ok_or_else(|| {
                bad(data.len(), format!("truncated pcap record: {len} bytes announced at offset {pos}"))
            })?;
            out.push((start, rec));
            pos = start + len;
        }
        Ok(())
    })()
    .err();
    Some((out, damage))
}

/// The messages of a pcapng capture (what `busctl capture` and Wireshark write): sections
/// (either byte order), interface description blocks (each must be link type 231),
/// enhanced and simple packet blocks; other blocks are skipped. `None` if `data` is not
/// pcapng.
fn pcapng_records(data: &[u8]) -> Option<Records<'_>> {
    const SECTION: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
    if data.get(..4)? != SECTION {
        return None;
    }
    let mut out = Vec::new();
    let damage = (|| {
        let mut big = false;
        let mut links: Vec<u32> = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            if data.len() - pos < 12 {
                return Err(bad(pos, format!("truncated pcapng block header: {} byte(s) left", data.len() - pos)));
            }
            if data[pos..pos + 4] == SECTION {
                big = match data[pos + 8..pos + 12] {
                    [0x4d, 0x3c, 0x2b, 0x1a] => false,
                    [0x1a, 0x2b, 0x3c, 0x4d] => true,
                    _ => return Err(bad(pos + 8, "pcapng section header: byte-order magic is not 0x1a2b3c4d")),
                };
                links.clear();
            }
            let word = |at: usize| -> u32 {
                let w = [data[at], data[at + 1], data[at + 2], data[at + 3]];
                if big { u32::from_be_bytes(w) } else { u32::from_le_bytes(w) }
            };
            let (kind, len) = (word(pos), word(pos + 4) as usize);
            if len < 12 || len % 4 != 0 {
                return Err(bad(pos + 4, format!("pcapng block length {len}: a multiple of 4, at least 12")));
            }
            if len > data.len() - pos {
                return Err(bad(
                    data.len(),
                    format!("truncated pcapng block: {len} bytes announced at offset {pos}, {} left", data.len() - pos),
                ));
            }
            if word(pos + len - 4) as usize != len {
                return Err(bad(pos + len - 4, "pcapng block: the trailing length differs from the leading one"));
            }
            let body = &data[pos + 8..pos + len - 4];
            let half = |at: usize| -> u32 {
                let h = [body[at], body[at + 1]];
                u32::from(if big { u16::from_be_bytes(h) } else { u16::from_le_bytes(h) })
            };
            let packet = |iface: u32, at: usize, caplen: usize| -> Result<(usize, &[u8]), Malformed> {
                let link = *links.get(iface as usize).ok_or_else(|| {
                    bad(pos, format!("pcapng packet of interface {iface}, which no interface block describes"))
                })?;
                if link != LINKTYPE_DBUS {
                    return Err(bad(pos, format!("pcapng interface {iface} has link type {link}, not D-Bus (231)")));
                }
                let rec = body.get(at..at.saturating_add(caplen)).ok_or_else(|| {
                    bad(pos, format!("pcapng packet of {caplen} bytes does not fit its block of {len}"))
                })?;
                Ok((pos + 8 + at, rec))
            };
            match kind {
                // Interface description: link type, reserved, snap length, options.
                1 if body.len() >= 8 => links.push(half(0)),
                // Enhanced packet: interface, timestamp (2 words), captured and original length.
                6 if body.len() >= 20 => {
                    let (iface, caplen) = (word(pos + 8), word(pos + 20) as usize);
                    out.push(packet(iface, 20, caplen)?);
                }
                // Simple packet: the original length, the data (of interface 0).
                3 if body.len() >= 4 => {
                    let caplen = (word(pos + 8) as usize).min(body.len() - 4);
                    out.push(packet(0, 4, caplen)?);
                }
                1 | 3 | 6 => return Err(bad(pos, format!("pcapng block of type {kind} too short ({len} bytes)"))),
                _ => {}
            }
            pos += len;
        }
        Ok(())
    })()
    .err();
    Some((out, damage))
}

/// Every message in `data`, described as text, or the first rule broken.
#[cfg(test)]
fn decode_all(data: &[u8]) -> Result<Vec<(usize, String)>, Malformed> {
    match decode_all_as(data, false) {
        (m, None) => Ok(m),
        (_, Some(e)) => Err(e),
    }
}

/// The messages in `data`, described (in JSON when `json`), up to the first damage; and
/// the damage (the first rule broken), if any.
pub fn decode_all_as(data: &[u8], json: bool) -> (Vec<(usize, String)>, Option<Malformed>) {
    let mut out = Vec::new();
    let mut damage = None;
    match pcapng_records(data).or_else(|| pcap_records(data)) {
        Some((records, record_damage)) => {
            for (offset, rec) in records {
                match decode_one(rec, offset, json) {
                    Ok((_, len)) if len != rec.len() => {
                        damage = Some(bad(
                            offset + len,
                            format!("{} byte(s) after the message in its capture record", rec.len() - len),
                        ));
                        break;
                    }
                    Ok((text, _)) => out.push((offset, text)),
                    Err(e) => {
                        damage = Some(e);
                        break;
                    }
                }
            }
            damage = damage.or(record_damage);
        }
        None => {
            let mut pos = 0;
            while pos < data.len() {
                match decode_one(&data[pos..], pos, json) {
                    Ok((text, len)) => {
                        out.push((pos, text));
                        pos += len;
                    }
                    Err(e) => {
                        damage = Some(e);
                        break;
                    }
                }
            }
        }
    }
    if out.is_empty() && damage.is_none() {
        damage = Some(bad(0, "no message: the file is empty"));
    }
    (out, damage)
}

/// `emberctl dbus decode <file>`.
pub fn run(args: &[String]) -> Result<(), Failure> {
    let o = Opts::parse_for(args, "dbus decode")?;
    let [file] = o.positional.as_slice() else {
        return Err(Failure::usage("decode takes one file".into()));
    };
    let data = std::fs::read(file).map_err(|e| Failure::runtime(format!("{file}: {e}")))?;
    let json = o.flag("--json");
    // Every good message first, then where the damage starts.
    let (messages, damage) = decode_all_as(&data, json);
    for (i, (offset, text)) in messages.iter().enumerate() {
        if json {
            println!("{text}");
        } else {
            println!("message {} at offset {offset}: {text}", i + 1);
        }
    }
    match damage {
        None => Ok(()),
        Some(m) => Err(Failure::bad_input(format!(
            "{file}: offset {} ({:#x}): {} (after {} good message(s))",
            m.offset,
            m.offset,
            m.rule,
            messages.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_core::dbus::Builder;

    fn message(endian: Endian) -> Vec<u8> {
        let mut buf = vec![0u8; 1024];
        let b = Builder::method_call("/org/example", "Set")
            .interface("org.example.Sensor")
            .destination("org.example")
            .endian(endian);
        b.build(&mut buf, 7, Signature::new("sua{sv}").unwrap(), |w| {
            w.str("temp")?;
            w.u32(21)?;
            w.array(b'{', |w| {
                w.structure(|w| {
                    w.str("unit")?;
                    w.variant(Signature::new("s").unwrap(), |w| w.str("C"))
                })
            })
        })
        .unwrap()
        .to_vec()
    }

    #[test]
    fn decodes_both_byte_orders() {
        for e in [Endian::Little, Endian::Big] {
            let m = message(e);
            let all = decode_all(&[m.clone(), m.clone()].concat()).unwrap();
            assert_eq!(all.len(), 2);
            assert_eq!(all[1].0, m.len());
            let t = &all[0].1;
            assert!(t.contains("method_call serial=7"), "{t}");
            assert!(t.contains("member=Set") && t.contains("signature='sua{sv}'"), "{t}");
            assert!(t.ends_with("('temp', uint32 21, {'unit': <'C'>})"), "{t}");
        }
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_at_an_offset() {
        let m = message(Endian::Little);
        for n in 0..m.len() {
            let e = decode_all(&m[..n]).unwrap_err();
            assert!(e.offset <= n, "cut at {n}: {e:?}");
        }
        // A flipped bit anywhere: either still a valid message or an error, never a panic.
        for i in 0..m.len() {
            for bit in 0..8 {
                let mut c = m.clone();
                c[i] ^= 1 << bit;
                if let Err(e) = decode_all(&c) {
                    assert!(e.offset <= c.len() && !e.rule.is_empty());
                }
            }
        }
        // A body length near 4 GiB: refused at its offset, no overflow on 32-bit boards.
        let mut c = m.clone();
        c[4..8].copy_from_slice(&0xFFFF_FFF8u32.to_le_bytes());
        assert_eq!(decode_all(&c).unwrap_err().offset, 4);
        let mut c = m.clone();
        c[0] = b'x';
        assert_eq!(decode_all(&c).unwrap_err(), bad(0, "byte order must be 'l' or 'B', found 0x78"));
        let mut c = m.clone();
        c[8..12].copy_from_slice(&[0; 4]);
        assert_eq!(decode_all(&c).unwrap_err().offset, 8);
        let e = decode_all(&m[..m.len() - 1]).unwrap_err();
        assert!(e.rule.starts_with("truncated: the header says"), "{e:?}");
        // Good messages before a damaged one are kept.
        let mut three = [m.clone(), m.clone(), m.clone()].concat();
        three[2 * m.len() + 3] = 9;
        let (good, damage) = decode_all_as(&three, false);
        assert_eq!(good.len(), 2);
        assert_eq!(damage.unwrap().offset, 2 * m.len() + 3);
    }

    /// A pcapng file as `busctl capture` writes it, built here: a section header, an
    /// interface (link type 231), two enhanced packet blocks and one simple packet block,
    /// in either byte order; every truncation an error at an offset after the good ones.
    #[test]
    fn reads_pcapng() {
        let m = message(Endian::Little);
        for big in [false, true] {
            let w = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
            let block = |kind: u32, body: &[u8]| {
                let len = 12 + body.len().next_multiple_of(4);
                let mut b = Vec::new();
                b.extend(w(kind));
                b.extend(w(len as u32));
                b.extend(body);
                b.resize(len - 4, 0);
                b.extend(w(len as u32));
                b
            };
            let mut shb = w(0x1a2b3c4d).to_vec();
            shb.extend(if big { [0, 1, 0, 0] } else { [1, 0, 0, 0] });
            shb.extend([0xff; 8]);
            let mut file = block(0x0a0d0d0a, &shb);
            let mut idb = if big { 231u16.to_be_bytes() } else { 231u16.to_le_bytes() }.to_vec();
            idb.extend([0, 0]);
            idb.extend(w(262144));
            file.extend(block(1, &idb));
            file.extend(block(5, &[0; 8])); // interface statistics: skipped
            for _ in 0..2 {
                let mut epb = w(0).to_vec();
                epb.extend(w(0));
                epb.extend(w(0));
                epb.extend(w(m.len() as u32));
                epb.extend(w(m.len() as u32));
                epb.extend(&m);
                file.extend(block(6, &epb));
            }
            let mut spb = w(m.len() as u32).to_vec();
            spb.extend(&m);
            file.extend(block(3, &spb));
            let all = decode_all(&file).unwrap();
            assert_eq!(all.len(), 3);
            assert!(all.iter().all(|(_, t)| t.ends_with("('temp', uint32 21, {'unit': <'C'>})")), "{all:?}");
            // Cut anywhere: the whole blocks before the cut read, and the cut named (a cut
            // between blocks is a shorter file, not damage).
            let ends: Vec<usize> = all.iter().map(|(o, _)| o + m.len()).collect();
            for n in 1..file.len() {
                let (good, damage) = decode_all_as(&file[..n], false);
                assert_eq!(good.len(), ends.iter().filter(|&&e| e + 4 <= n).count().min(good.len()), "cut at {n}");
                match damage {
                    Some(e) => assert!(e.offset <= n, "cut at {n}: {e:?}"),
                    None => assert!(!good.is_empty() && good.len() < 3, "cut at {n}"),
                }
            }
        }
    }
}
