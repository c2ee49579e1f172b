//! Messages: the fixed header, the header fields, and the body.
//!
//! ```text
//! offset 0  endianness ('l' or 'B')   1 type   2 flags   3 version (1)
//!        4  body length (u32)         8 serial (u32, not 0)
//!       12  header fields: a(yv)      then zero padding to 8, then the body
//! ```
//!
//! [`Builder`] writes a method call, method return, error or signal into a caller's buffer
//! and checks the result by parsing it back. [`Message::parse`] checks everything a peer
//! sent before returning a borrowed view: byte order, version, type, serial, lengths against
//! the limit in force, every header field's type and value, the fields each type requires,
//! and the body against its signature (including fd indices against `UNIX_FDS`).

use super::marshal::Writer;
use super::names::{self, ObjectPath};
use super::signature::Signature;
use super::value::{Reader, Values};
use super::{DbusError, Endian, MAX_ARRAY_LEN, MAX_MESSAGE_LEN, Result, align_up};

/// The fixed part of the header, before the header fields' array content.
pub const FIXED_HEADER_LEN: usize = 16;

/// The path reserved for a library's local messages (`org.freedesktop.DBus.Local`); a
/// message on the wire never carries it.
pub const LOCAL_PATH: &str = "/org/freedesktop/DBus/Local";
/// The interface reserved the same way.
pub const LOCAL_INTERFACE: &str = "org.freedesktop.DBus.Local";

/// `NO_REPLY_EXPECTED`: a method call whose caller wants no reply.
pub const FLAG_NO_REPLY_EXPECTED: u8 = 0x1;
/// `NO_AUTO_START`: do not start a service to deliver this message.
pub const FLAG_NO_AUTO_START: u8 = 0x2;
/// `ALLOW_INTERACTIVE_AUTHORIZATION`.
pub const FLAG_ALLOW_INTERACTIVE_AUTHORIZATION: u8 = 0x4;

/// Header field codes.
pub mod field {
    /// `PATH` (`o`).
    pub const PATH: u8 = 1;
    /// `INTERFACE` (`s`).
    pub const INTERFACE: u8 = 2;
    /// `MEMBER` (`s`).
    pub const MEMBER: u8 = 3;
    /// `ERROR_NAME` (`s`).
    pub const ERROR_NAME: u8 = 4;
    /// `REPLY_SERIAL` (`u`).
    pub const REPLY_SERIAL: u8 = 5;
    /// `DESTINATION` (`s`).
    pub const DESTINATION: u8 = 6;
    /// `SENDER` (`s`).
    pub const SENDER: u8 = 7;
    /// `SIGNATURE` (`g`).
    pub const SIGNATURE: u8 = 8;
    /// `UNIX_FDS` (`u`).
    pub const UNIX_FDS: u8 = 9;
}

/// The four message types.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MessageType {
    /// A method call (1).
    MethodCall = 1,
    /// A method's reply (2).
    MethodReturn = 2,
    /// An error reply (3).
    Error = 3,
    /// A signal (4).
    Signal = 4,
}

impl MessageType {
    fn from_u8(b: u8) -> Result<MessageType> {
        match b {
            1 => Ok(MessageType::MethodCall),
            2 => Ok(MessageType::MethodReturn),
            3 => Ok(MessageType::Error),
            4 => Ok(MessageType::Signal),
            _ => Err(DbusError::BadMessageType),
        }
    }
}

/// The total length of a message from its first 16 bytes (what a stream reader needs to
/// know how much to read), checked against `max` (at most 128 MiB).
pub fn message_len(first: &[u8], max: usize) -> Result<usize> {
    let max = max.min(MAX_MESSAGE_LEN);
    let fixed: &[u8; FIXED_HEADER_LEN] =
        first.get(..FIXED_HEADER_LEN).ok_or(DbusError::Truncated)?.try_into().map_err(|_| DbusError::Truncated)?;
    let endian = Endian::from_marker(fixed[0]).ok_or(DbusError::BadEndian)?;
    if fixed[3] != 1 {
        return Err(DbusError::BadVersion);
    }
    let word = |at: usize| -> usize {
        let b = [fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]];
        (if endian == Endian::Little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }) as usize
    };
    let (body, fields) = (word(4), word(12));
    if fields > MAX_ARRAY_LEN {
        return Err(DbusError::TooLarge { len: fields, max });
    }
    // In u64: on a 32-bit target the sum of two declared lengths could wrap.
    let len = align_up(FIXED_HEADER_LEN + fields, 8) as u64 + body as u64;
    if len > max as u64 {
        return Err(DbusError::TooLarge { len: usize::try_from(len).unwrap_or(usize::MAX), max });
    }
    Ok(len as usize)
}

/// The length of a message's header (the fixed part, the header fields and the padding
/// after them: where the body starts) from its first 16 bytes.
pub fn header_len(first: &[u8]) -> Result<usize> {
    message_len(first, MAX_MESSAGE_LEN)?;
    let fixed = first.get(..FIXED_HEADER_LEN).ok_or(DbusError::Truncated)?;
    let b = [fixed[12], fixed[13], fixed[14], fixed[15]];
    let fields = if fixed[0] == b'l' { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) } as usize;
    Ok(align_up(FIXED_HEADER_LEN + fields, 8))
}

/// Writes a message into a caller's buffer.
///
/// `Send` and `Sync`: plain data and borrowed strings.
#[derive(Debug, Clone, Copy)]
pub struct Builder<'a> {
    ty: MessageType,
    flags: u8,
    path: Option<&'a str>,
    interface: Option<&'a str>,
    member: Option<&'a str>,
    error_name: Option<&'a str>,
    reply_serial: Option<u32>,
    destination: Option<&'a str>,
    sender: Option<&'a str>,
    unix_fds: u32,
    endian: Endian,
}

impl<'a> Builder<'a> {
    fn new(ty: MessageType) -> Builder<'a> {
        Builder {
            ty,
            flags: 0,
            path: None,
            interface: None,
            member: None,
            error_name: None,
            reply_serial: None,
            destination: None,
            sender: None,
            unix_fds: 0,
            endian: Endian::NATIVE,
        }
    }

    /// A method call of `member` on the object at `path`.
    pub fn method_call(path: &'a str, member: &'a str) -> Builder<'a> {
        Builder { path: Some(path), member: Some(member), ..Builder::new(MessageType::MethodCall) }
    }

    /// The reply to the call whose serial was `reply_serial`.
    pub fn method_return(reply_serial: u32) -> Builder<'a> {
        Builder { reply_serial: Some(reply_serial), ..Builder::new(MessageType::MethodReturn) }
    }

    /// An error reply named `name` to the call whose serial was `reply_serial`; by
    /// convention the body is one string, the message.
    pub fn error(reply_serial: u32, name: &'a str) -> Builder<'a> {
        Builder { reply_serial: Some(reply_serial), error_name: Some(name), ..Builder::new(MessageType::Error) }
    }

    /// A signal `member` of `interface`, from the object at `path`.
    pub fn signal(path: &'a str, interface: &'a str, member: &'a str) -> Builder<'a> {
        Builder {
            path: Some(path),
            interface: Some(interface),
            member: Some(member),
            ..Builder::new(MessageType::Signal)
        }
    }

    /// Sets the interface (of a method call).
    pub fn interface(mut self, interface: &'a str) -> Builder<'a> {
        self.interface = Some(interface);
        self
    }

    /// Sets the destination bus name.
    pub fn destination(mut self, destination: &'a str) -> Builder<'a> {
        self.destination = Some(destination);
        self
    }

    /// Sets the sender (the bus sets it on messages it routes).
    pub fn sender(mut self, sender: &'a str) -> Builder<'a> {
        self.sender = Some(sender);
        self
    }

    /// Sets the flags (`FLAG_*`).
    pub fn flags(mut self, flags: u8) -> Builder<'a> {
        self.flags = flags;
        self
    }

    /// Declares `n` file descriptors sent with the message (`UNIX_FDS`).
    pub fn unix_fds(mut self, n: u32) -> Builder<'a> {
        self.unix_fds = n;
        self
    }

    /// Writes in `endian` order instead of this machine's.
    pub fn endian(mut self, endian: Endian) -> Builder<'a> {
        self.endian = endian;
        self
    }

    /// Writes the message into `buf` with `serial` and a body of signature `sig` written by
    /// `body`, then parses it back to check it (names, required fields, the body against
    /// `sig`). Returns the message's bytes.
    pub fn build<'b>(
        &self,
        buf: &'b mut [u8],
        serial: u32,
        sig: Signature<'_>,
        body: impl FnOnce(&mut Writer<'b>) -> Result<()>,
    ) -> Result<&'b [u8]> {
        if serial == 0 {
            return Err(DbusError::ZeroSerial);
        }
        let e = self.endian;
        let mut w = Writer::with_endian(buf, e);
        w.u8(e.marker())?;
        w.u8(self.ty as u8)?;
        w.u8(self.flags)?;
        w.u8(1)?;
        w.u32(0)?; // body length, filled in below
        w.u32(serial)?;
        let fields = |w: &mut Writer<'b>| -> Result<()> {
            let str_field = |w: &mut Writer<'b>, code: u8, v: &str| {
                w.structure(|w| {
                    w.u8(code)?;
                    w.variant(Signature::new_unchecked("s"), |w| w.str(v))
                })
            };
            let u32_field = |w: &mut Writer<'b>, code: u8, v: u32| {
                w.structure(|w| {
                    w.u8(code)?;
                    w.variant(Signature::new_unchecked("u"), |w| w.u32(v))
                })
            };
            if let Some(p) = self.path {
                let p = ObjectPath::new(p)?;
                w.structure(|w| {
                    w.u8(field::PATH)?;
                    w.variant(Signature::new_unchecked("o"), |w| w.object_path(p))
                })?;
            }
            if let Some(v) = self.interface {
                str_field(w, field::INTERFACE, names::InterfaceName::new(v)?.as_str())?;
            }
            if let Some(v) = self.member {
                str_field(w, field::MEMBER, names::MemberName::new(v)?.as_str())?;
            }
            if let Some(v) = self.error_name {
                str_field(w, field::ERROR_NAME, names::ErrorName::new(v)?.as_str())?;
            }
            if let Some(v) = self.reply_serial {
                u32_field(w, field::REPLY_SERIAL, v)?;
            }
            if let Some(v) = self.destination {
                str_field(w, field::DESTINATION, names::BusName::new(v)?.as_str())?;
            }
            if let Some(v) = self.sender {
                str_field(w, field::SENDER, names::BusName::new(v)?.as_str())?;
            }
            if !sig.is_empty() {
                w.structure(|w| {
                    w.u8(field::SIGNATURE)?;
                    w.variant(Signature::new_unchecked("g"), |w| w.signature(sig))
                })?;
            }
            if self.unix_fds > 0 {
                u32_field(w, field::UNIX_FDS, self.unix_fds)?;
            }
            Ok(())
        };
        w.array(b'(', fields)?;
        w.pad(8)?;
        let body_start = w.position();
        body(&mut w)?;
        let (buf, end) = w.into_parts();
        let body_len = end - body_start;
        let len_bytes =
            if e == Endian::Little { (body_len as u32).to_le_bytes() } else { (body_len as u32).to_be_bytes() };
        buf[4..8].copy_from_slice(&len_bytes);
        let buf: &'b [u8] = buf;
        let out = &buf[..end];
        // The header was written from checked names and values; what is left to check is
        // what `parse` would refuse of it, and the body against `sig`.
        if end > MAX_MESSAGE_LEN {
            return Err(DbusError::TooLarge { len: end, max: MAX_MESSAGE_LEN });
        }
        if self.path == Some(LOCAL_PATH) {
            return Err(DbusError::BadField(field::PATH));
        }
        if self.interface == Some(LOCAL_INTERFACE) {
            return Err(DbusError::BadField(field::INTERFACE));
        }
        if self.reply_serial == Some(0) {
            return Err(DbusError::BadField(field::REPLY_SERIAL));
        }
        let mut values = Reader::range(out, body_start, end, e, self.unix_fds).values(sig);
        let body_mismatch = |e| match e {
            DbusError::Truncated | DbusError::NonZeroPadding => DbusError::BodyMismatch,
            e => e,
        };
        for v in values.by_ref() {
            v.map_err(body_mismatch)?;
        }
        if !values.is_at_end() {
            return Err(DbusError::BodyMismatch);
        }
        Ok(out)
    }
}

impl Builder<'_> {
    /// [`Builder::build`] with the typed body `body` ([`typed`](super::typed)): its
    /// signature is the body type's (checked against the specification's nesting limits:
    /// [`DbusError::BadSignature`] for a Rust type nested deeper than D-Bus allows).
    pub fn build_typed<'b, T: super::typed::EncodeBody + ?Sized>(
        &self,
        buf: &'b mut [u8],
        serial: u32,
        body: &T,
    ) -> Result<&'b [u8]> {
        let sig = const { &T::SIGNATURE }.checked()?;
        self.build(buf, serial, sig, |w| body.encode_body(w))
    }
}

/// A parsed, fully checked message, borrowed from the bytes it was parsed from.
///
/// `Send` and `Sync`: a view of borrowed bytes.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    data: &'a [u8],
    endian: Endian,
    ty: MessageType,
    flags: u8,
    serial: u32,
    body_start: usize,
    path: Option<ObjectPath<'a>>,
    interface: Option<&'a str>,
    member: Option<&'a str>,
    error_name: Option<&'a str>,
    reply_serial: Option<u32>,
    destination: Option<&'a str>,
    sender: Option<&'a str>,
    signature: Signature<'a>,
    unix_fds: u32,
    /// Whether the body was checked in full (by `parse`), so reading it need not repeat
    /// the checks.
    checked: bool,
}

impl<'a> Message<'a> {
    /// Parses and checks the one message in `data` (exactly one: its length must match),
    /// refusing messages longer than `max` bytes (at most 128 MiB).
    pub fn parse(data: &'a [u8], max: usize) -> Result<Message<'a>> {
        let mut m = Message::parse_header(data, max)?;
        // The body, against its signature, to the last byte.
        let mut body = m.body();
        for v in body.by_ref() {
            v.map_err(|e| if e == DbusError::Truncated { DbusError::BodyMismatch } else { e })?;
        }
        if !body.is_at_end() {
            return Err(DbusError::BodyMismatch);
        }
        m.checked = true;
        Ok(m)
    }

    /// Another view of bytes [`parse`] accepted before (a connection parses a message once
    /// when it arrives and takes views of it later): the header is read again, and the
    /// body's values are read without repeating the checks `parse` made (array contents
    /// walked ahead, zero padding, NULs inside strings). Given bytes `parse` would refuse,
    /// it is still safe: it never panics, and values come back as they are, with errors
    /// where they cannot be read.
    ///
    /// [`parse`]: Message::parse
    pub fn parse_again(data: &'a [u8], max: usize) -> Result<Message<'a>> {
        let mut m = Message::parse_header(data, max)?;
        m.checked = true;
        Ok(m)
    }

    /// Parses and checks everything but the body: for another look at bytes [`parse`]
    /// already accepted, without walking the body again. Safe on any bytes: reading the
    /// body still checks every value as it goes, only the check that the body ends exactly
    /// where its signature does is left to `parse`.
    ///
    /// [`parse`]: Message::parse
    pub fn parse_header(data: &'a [u8], max: usize) -> Result<Message<'a>> {
        let len = message_len(data, max)?;
        if len != data.len() {
            return Err(if len > data.len() { DbusError::Truncated } else { DbusError::BodyMismatch });
        }
        Message::parse_fields(data)
    }

    /// Parses and checks the header of a message whose body is not there: `data` starts
    /// with the message and holds at least [`header_len`] bytes of it (what a reader that
    /// refuses a message too large for its buffer still has, to learn the message's type,
    /// serial, `REPLY_SERIAL` and sender). Returns the view of the header alone (its body
    /// reads as empty: [`Message::body_bytes`] is empty, reading values fails) and the
    /// whole message's length, up to 128 MiB.
    ///
    /// ```
    /// use ember_core::dbus::{Builder, Message, Signature, header};
    /// let mut buf = [0u8; 256];
    /// let m = Builder::method_return(7).destination(":1.4").build(&mut buf, 9, Signature::new("s")?, |w| w.str("a long body"))?;
    /// let len = m.len();
    /// let head = header::header_len(&buf)?;
    /// let (h, total) = Message::parse_head(&buf[..head])?;
    /// assert_eq!((h.reply_serial(), h.serial(), total), (Some(7), 9, len));
    /// # Ok::<(), ember_core::dbus::DbusError>(())
    /// ```
    pub fn parse_head(data: &'a [u8]) -> Result<(Message<'a>, usize)> {
        let len = message_len(data, MAX_MESSAGE_LEN)?;
        let head = header_len(data)?;
        let data = data.get(..head).ok_or(DbusError::Truncated)?;
        let mut m = Message::parse_fields(data)?;
        // No body: nothing to read, whatever the signature says.
        m.signature = Signature::EMPTY;
        Ok((m, len))
    }

    /// The fixed header and the header fields of `data` (the body, if any, follows them).
    fn parse_fields(data: &'a [u8]) -> Result<Message<'a>> {
        let endian = Endian::from_marker(data[0]).ok_or(DbusError::BadEndian)?;
        let ty = MessageType::from_u8(data[1])?;
        let mut fixed = Reader::range(data, 8, 12, endian, 0);
        let serial = fixed.u32()?;
        if serial == 0 {
            return Err(DbusError::ZeroSerial);
        }
        let mut m = Message {
            data,
            endian,
            ty,
            flags: data[2],
            serial,
            body_start: 0,
            path: None,
            interface: None,
            member: None,
            error_name: None,
            reply_serial: None,
            destination: None,
            sender: None,
            signature: Signature::EMPTY,
            unix_fds: 0,
            checked: false,
        };
        // The header fields: a(yv) at offset 12, read in one pass, each checked once.
        let mut fields = Reader::range(data, 12, data.len(), endian, 0);
        let len = fields.u32()? as usize;
        fields.align(8)?;
        let end = fields.position().checked_add(len).filter(|&e| e <= data.len()).ok_or(DbusError::Truncated)?;
        fields.set_end(end);
        let mut seen = 0u32;
        while !fields.is_at_end() {
            let entry = (|| {
                fields.align(8)?;
                let code = fields.u8()?;
                if code == 0 {
                    // INVALID: never valid on the wire.
                    return Err(DbusError::BadField(0));
                }
                if (1..=9).contains(&code) {
                    if seen & (1 << code) != 0 {
                        return Err(DbusError::BadField(code));
                    }
                    seen |= 1 << code;
                }
                m.header_field(code, &mut fields)
            })();
            entry.map_err(|e| if e == DbusError::Truncated { DbusError::BadArrayLength } else { e })?;
        }
        let body_start = align_up(fields.position(), 8);
        Reader::range(data, fields.position(), body_start, endian, 0).align(8)?;
        m.body_start = body_start;
        let required: &[u8] = match ty {
            MessageType::MethodCall => &[field::PATH, field::MEMBER],
            MessageType::MethodReturn => &[field::REPLY_SERIAL],
            MessageType::Error => &[field::ERROR_NAME, field::REPLY_SERIAL],
            MessageType::Signal => &[field::PATH, field::INTERFACE, field::MEMBER],
        };
        if let Some(&missing) = required.iter().find(|&&c| seen & (1 << c) == 0) {
            return Err(DbusError::MissingField(missing));
        }
        Ok(m)
    }

    /// Reads the variant of header field `code` from `r`: a known field must have its type
    /// (else [`DbusError::BadField`]); an unknown one is read, checked and ignored, as the
    /// specification requires.
    fn header_field(&mut self, code: u8, r: &mut Reader<'a>) -> Result<()> {
        let bad = DbusError::BadField(code);
        let at = r.position();
        let sig = r.signature()?;
        let expect = match code {
            field::PATH => "o",
            field::INTERFACE | field::MEMBER | field::ERROR_NAME | field::DESTINATION | field::SENDER => "s",
            field::REPLY_SERIAL | field::UNIX_FDS => "u",
            field::SIGNATURE => "g",
            _ => {
                // Unknown: the whole variant, read as one.
                r.rewind(at);
                return r.value(Signature::new_unchecked("v")).map(drop);
            }
        };
        if sig.as_str() != expect {
            return Err(bad);
        }
        match code {
            field::PATH => {
                let p = r.object_path()?;
                // Reserved for a library's local use; never on the wire.
                if p.as_str() == LOCAL_PATH {
                    return Err(bad);
                }
                self.path = Some(p);
            }
            field::INTERFACE => {
                let i = names::InterfaceName::new(r.str()?)?.as_str();
                if i == LOCAL_INTERFACE {
                    return Err(bad);
                }
                self.interface = Some(i);
            }
            field::MEMBER => self.member = Some(names::MemberName::new(r.str()?)?.as_str()),
            field::ERROR_NAME => self.error_name = Some(names::ErrorName::new(r.str()?)?.as_str()),
            field::REPLY_SERIAL => match r.u32()? {
                0 => return Err(bad),
                n => self.reply_serial = Some(n),
            },
            field::DESTINATION => self.destination = Some(names::BusName::new(r.str()?)?.as_str()),
            field::SENDER => self.sender = Some(names::BusName::new(r.str()?)?.as_str()),
            field::SIGNATURE => self.signature = r.signature()?,
            _ => self.unix_fds = r.u32()?,
        }
        Ok(())
    }

    /// The message's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }
    /// Its byte order.
    pub fn endian(&self) -> Endian {
        self.endian
    }
    /// Its type.
    pub fn message_type(&self) -> MessageType {
        self.ty
    }
    /// Its flags (`FLAG_*`).
    pub fn flags(&self) -> u8 {
        self.flags
    }
    /// Its serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }
    /// `PATH`.
    pub fn path(&self) -> Option<ObjectPath<'a>> {
        self.path
    }
    /// `INTERFACE`.
    pub fn interface(&self) -> Option<&'a str> {
        self.interface
    }
    /// `MEMBER`.
    pub fn member(&self) -> Option<&'a str> {
        self.member
    }
    /// `ERROR_NAME`.
    pub fn error_name(&self) -> Option<&'a str> {
        self.error_name
    }
    /// `REPLY_SERIAL`.
    pub fn reply_serial(&self) -> Option<u32> {
        self.reply_serial
    }
    /// `DESTINATION`.
    pub fn destination(&self) -> Option<&'a str> {
        self.destination
    }
    /// `SENDER`.
    pub fn sender(&self) -> Option<&'a str> {
        self.sender
    }
    /// `SIGNATURE` (empty when the body is empty).
    pub fn signature(&self) -> Signature<'a> {
        self.signature
    }
    /// `UNIX_FDS`: how many fds came with the message.
    pub fn unix_fds(&self) -> u32 {
        self.unix_fds
    }
    /// The body's values, in order.
    pub fn body(&self) -> Values<'a> {
        Reader::range(self.data, self.body_start, self.data.len(), self.endian, self.unix_fds)
            .trusted(self.checked)
            .values(self.signature)
    }
    /// The body read as the typed body `T` ([`typed`](super::typed)), e.g. `(u32, &str)`,
    /// borrowing from the message: [`DbusError::SignatureMismatch`] if the message's
    /// signature is not `T`'s.
    pub fn body_as<T: super::typed::DecodeBody<'a>>(&self) -> Result<T> {
        let mut r = Reader::range(self.data, self.body_start, self.data.len(), self.endian, self.unix_fds)
            .trusted(self.checked);
        super::typed::read_body(self.signature.as_str(), &mut r)
    }

    /// The body's bytes.
    pub fn body_bytes(&self) -> &'a [u8] {
        &self.data[self.body_start..]
    }
}
