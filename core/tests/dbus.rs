//! D-Bus marshalling: byte-literal fixtures for the tricky padding cases, both byte orders,
//! round trips of complex bodies, and every validation error triggered.

use ember_core::dbus::header::{self, FLAG_NO_REPLY_EXPECTED, field};
use ember_core::dbus::value::Array;
use ember_core::dbus::{Builder, DbusError, Endian, Message, MessageType, ObjectPath, Signature, Value, Writer};

fn sig(s: &str) -> Signature<'_> {
    Signature::new(s).unwrap()
}

/// A method call to /a, member M, with `body` of signature `s`; returns (message, body
/// bytes).
fn call<'b>(buf: &'b mut [u8], s: &str, body: impl FnOnce(&mut Writer<'b>) -> Result<(), DbusError>) -> &'b [u8] {
    Builder::method_call("/a", "M").build(buf, 7, sig(s), body).unwrap()
}

fn body_of(msg: &[u8]) -> &[u8] {
    Message::parse(msg, 1 << 20).unwrap().body_bytes()
}

#[test]
fn fixture_byte_then_uint64_pads_to_eight() {
    let mut buf = [0u8; 256];
    let m = call(&mut buf, "yt", |w| {
        w.u8(0xAB)?;
        w.u64(0x0102_0304_0506_0708)
    });
    let body = body_of(m);
    let mut want = vec![0xAB, 0, 0, 0, 0, 0, 0, 0];
    want.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(body, &want[..]);
}

#[test]
fn fixture_empty_dict_still_pads_to_entry_alignment() {
    let mut buf = [0u8; 256];
    let m = call(&mut buf, "a{sv}", |w| w.array(b'{', |_| Ok(())));
    // Length 0, then padding to 8 for the (absent) first dict entry.
    assert_eq!(body_of(m), &[0, 0, 0, 0, 0, 0, 0, 0]);
    let mut buf = [0u8; 256];
    let m = call(&mut buf, "ua{sv}", |w| {
        w.u32(5)?;
        w.array(b'{', |_| Ok(()))
    });
    // u32 5, array length 0 at offset 4, no padding needed (offset 8 is aligned).
    assert_eq!(body_of(m), &[5, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn fixture_struct_in_array() {
    let mut buf = [0u8; 256];
    let m = call(&mut buf, "a(yi)", |w| {
        w.array(b'(', |w| {
            w.structure(|w| {
                w.u8(1)?;
                w.i32(-2)
            })?;
            w.structure(|w| {
                w.u8(3)?;
                w.i32(4)
            })
        })
    });
    #[rustfmt::skip]
    let want: [u8; 24] = [
        16, 0, 0, 0, 0, 0, 0, 0,          // length 16, pad to 8
        1, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF, // (1, -2)
        3, 0, 0, 0, 4, 0, 0, 0,            // (3, 4)
    ];
    assert_eq!(body_of(m), &want);
}

#[test]
fn fixture_variant_signature() {
    let mut buf = [0u8; 256];
    let m = call(&mut buf, "v", |w| w.variant(sig("ai"), |w| w.array(b'i', |w| w.i32(9))));
    // g "ai": len 2, 'a', 'i', NUL; pad to 4; array length 4; element 9.
    assert_eq!(body_of(m), &[2, b'a', b'i', 0, 4, 0, 0, 0, 9, 0, 0, 0]);
}

#[test]
fn fixture_whole_hello_message() {
    // The Hello every client sends first, as libdbus writes it (little-endian, serial 1).
    let mut buf = [0u8; 256];
    let m = Builder::method_call("/org/freedesktop/DBus", "Hello")
        .interface("org.freedesktop.DBus")
        .destination("org.freedesktop.DBus")
        .endian(Endian::Little)
        .build(&mut buf, 1, Signature::EMPTY, |_| Ok(()))
        .unwrap();
    #[rustfmt::skip]
    let want: &[u8] = b"l\x01\x00\x01\x00\x00\x00\x00\x01\x00\x00\x00\x6d\x00\x00\x00\
\x01\x01o\x00\x15\x00\x00\x00/org/freedesktop/DBus\x00\x00\x00\
\x02\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00\x00\x00\x00\
\x03\x01s\x00\x05\x00\x00\x00Hello\x00\x00\x00\
\x06\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00";
    assert_eq!(&m[..want.len()], want);
    assert_eq!(m.len(), 128, "header padded to 8, empty body");
    let p = Message::parse(m, 1 << 20).unwrap();
    assert_eq!(p.message_type(), MessageType::MethodCall);
    assert_eq!(p.path().unwrap().as_str(), "/org/freedesktop/DBus");
    assert_eq!(
        (p.interface(), p.member(), p.destination()),
        (Some("org.freedesktop.DBus"), Some("Hello"), Some("org.freedesktop.DBus"))
    );
    assert_eq!(header::message_len(m, 1 << 20), Ok(128));
}

/// A body with every type, nested: `ybnqiuxtdsogvhaya{sv}(iias)`.
fn write_everything<'b>(w: &mut Writer<'b>) -> Result<(), DbusError> {
    w.u8(0xFF)?;
    w.bool(true)?;
    w.i16(-3)?;
    w.u16(4)?;
    w.i32(-5)?;
    w.u32(6)?;
    w.i64(-7)?;
    w.u64(8)?;
    w.f64(9.5)?;
    w.str("héllo")?;
    w.object_path(ObjectPath::new("/x/y").unwrap())?;
    w.signature(sig("a{sv}"))?;
    w.variant(sig("(sv)"), |w| {
        w.structure(|w| {
            w.str("inner")?;
            w.variant(sig("u"), |w| w.u32(42))
        })
    })?;
    w.fd_index(1)?;
    w.array(b'y', |w| {
        for b in [1, 2, 3] {
            w.u8(b)?;
        }
        Ok(())
    })?;
    w.array(b'{', |w| {
        w.structure(|w| {
            w.str("a")?;
            w.variant(sig("i"), |w| w.i32(1))
        })?;
        w.structure(|w| {
            w.str("b")?;
            w.variant(sig("as"), |w| w.array(b's', |w| w.str("x")))
        })
    })?;
    w.structure(|w| {
        w.i32(10)?;
        w.i32(11)?;
        w.array(b's', |w| {
            w.str("p")?;
            w.str("q")
        })
    })
}

const EVERYTHING: &str = "ybnqiuxtdsogvhaya{sv}(iias)";

fn check_everything(m: &Message<'_>) {
    let mut b = m.body();
    assert_eq!(b.next_as::<u8>(), Ok(0xFF));
    assert_eq!(b.next_as::<bool>(), Ok(true));
    assert_eq!(b.next_as::<i16>(), Ok(-3));
    assert_eq!(b.next_as::<u16>(), Ok(4));
    assert_eq!(b.next_as::<i32>(), Ok(-5));
    assert_eq!(b.next_as::<u32>(), Ok(6));
    assert_eq!(b.next_as::<i64>(), Ok(-7));
    assert_eq!(b.next_as::<u64>(), Ok(8));
    assert_eq!(b.next_as::<f64>(), Ok(9.5));
    assert_eq!(b.next_as::<&str>(), Ok("héllo"));
    assert_eq!(b.next_as::<ObjectPath>().unwrap().as_str(), "/x/y");
    assert_eq!(b.next_as::<Signature>().unwrap().as_str(), "a{sv}");
    let v: ember_core::dbus::value::Variant = b.next_as().unwrap();
    assert_eq!(v.signature().as_str(), "(sv)");
    let Value::Struct(mut f) = v.value().unwrap() else { panic!() };
    assert_eq!(f.next_as::<&str>(), Ok("inner"));
    let inner: ember_core::dbus::value::Variant = f.next_as().unwrap();
    assert_eq!(inner.value().unwrap().try_into(), Ok(42u32));
    assert!(matches!(b.next().unwrap().unwrap(), Value::Fd(1)));
    let bytes: Array = b.next_as().unwrap();
    assert_eq!(bytes.as_bytes(), Some(&[1u8, 2, 3][..]));
    let dict: Array = b.next_as().unwrap();
    let mut keys = Vec::new();
    for e in dict {
        let Value::DictEntry(mut kv) = e.unwrap() else { panic!() };
        keys.push(kv.next_as::<&str>().unwrap());
        let _: ember_core::dbus::value::Variant = kv.next_as().unwrap();
    }
    assert_eq!(keys, ["a", "b"]);
    let Value::Struct(mut s) = b.next().unwrap().unwrap() else { panic!() };
    assert_eq!((s.next_as::<i32>(), s.next_as::<i32>()), (Ok(10), Ok(11)));
    let strs: Vec<&str> = s.next_as::<Array>().unwrap().map(|v| v.unwrap().try_into().unwrap()).collect();
    assert_eq!(strs, ["p", "q"]);
    assert!(b.next().is_none() && b.is_at_end());
}

#[test]
fn every_type_round_trips_in_both_byte_orders() {
    for endian in [Endian::Little, Endian::Big] {
        let mut buf = [0u8; 1024];
        let m = Builder::signal("/x", "org.example.I", "S")
            .unix_fds(2)
            .endian(endian)
            .build(&mut buf, 99, sig(EVERYTHING), write_everything)
            .unwrap();
        assert_eq!(m[0], endian.marker());
        let p = Message::parse(m, 1 << 20).unwrap();
        assert_eq!((p.serial(), p.unix_fds(), p.endian()), (99, 2, endian));
        check_everything(&p);
    }
    // The two orders differ only in byte order, not in layout.
    let mut a = [0u8; 1024];
    let mut b = [0u8; 1024];
    let la = Builder::signal("/x", "org.example.I", "S")
        .unix_fds(2)
        .endian(Endian::Little)
        .build(&mut a, 99, sig(EVERYTHING), write_everything)
        .unwrap()
        .len();
    let lb = Builder::signal("/x", "org.example.I", "S")
        .unix_fds(2)
        .endian(Endian::Big)
        .build(&mut b, 99, sig(EVERYTHING), write_everything)
        .unwrap()
        .len();
    assert_eq!(la, lb);
}

#[test]
fn builder_refuses_what_it_would_not_parse() {
    let mut buf = [0u8; 256];
    let b = Builder::method_call("/a", "M");
    // Body does not match the signature.
    assert_eq!(b.build(&mut buf, 1, sig("u"), |w| w.u8(1)), Err(DbusError::BodyMismatch));
    assert_eq!(
        b.build(&mut buf, 1, sig("u"), |w| {
            w.u32(1)?;
            w.u32(2)
        }),
        Err(DbusError::BodyMismatch)
    );
    // Bad names and serial 0.
    assert_eq!(
        Builder::method_call("a", "M").build(&mut buf, 1, Signature::EMPTY, |_| Ok(())),
        Err(DbusError::BadObjectPath)
    );
    assert_eq!(
        Builder::method_call("/a", "1M").build(&mut buf, 1, Signature::EMPTY, |_| Ok(())),
        Err(DbusError::BadMemberName)
    );
    assert_eq!(b.interface("x").build(&mut buf, 1, Signature::EMPTY, |_| Ok(())), Err(DbusError::BadInterfaceName));
    assert_eq!(b.destination("no").build(&mut buf, 1, Signature::EMPTY, |_| Ok(())), Err(DbusError::BadBusName));
    assert_eq!(Builder::error(1, "x").build(&mut buf, 1, Signature::EMPTY, |_| Ok(())), Err(DbusError::BadErrorName));
    assert_eq!(b.build(&mut buf, 0, Signature::EMPTY, |_| Ok(())), Err(DbusError::ZeroSerial));
    // Too small a buffer; a NUL inside a string; a variant of two types.
    let mut tiny = [0u8; 20];
    assert_eq!(b.build(&mut tiny, 1, Signature::EMPTY, |_| Ok(())), Err(DbusError::BufferTooSmall));
    assert_eq!(b.build(&mut buf, 1, sig("s"), |w| w.str("a\0b")), Err(DbusError::BadNul));
    assert_eq!(b.build(&mut buf, 1, sig("v"), |w| w.variant(sig("ii"), |w| w.i32(1))), Err(DbusError::BadSignature));
    // An fd index beyond UNIX_FDS.
    assert_eq!(b.unix_fds(1).build(&mut buf, 1, sig("h"), |w| w.fd_index(1)), Err(DbusError::BadFdIndex));
}

/// A valid message to corrupt: method call, body `bsu` (true, "hi", 5), little-endian.
fn sample(buf: &mut [u8]) -> (usize, usize) {
    let m = Builder::method_call("/a", "M")
        .endian(Endian::Little)
        .build(buf, 3, sig("bsu"), |w| {
            w.bool(true)?;
            w.str("hi")?;
            w.u32(5)
        })
        .unwrap();
    let len = m.len();
    let body = Message::parse(m, 1 << 20).unwrap().body_bytes().len();
    (len, len - body)
}

fn corrupt(at: usize, byte: u8) -> Result<(), DbusError> {
    let mut buf = [0u8; 256];
    let (len, _) = sample(&mut buf);
    buf[at] = byte;
    Message::parse(&buf[..len], 1 << 20).map(|_| ())
}

#[test]
fn every_validation_error() {
    let mut buf = [0u8; 256];
    let (len, body) = sample(&mut buf);
    assert!(Message::parse(&buf[..len], 1 << 20).is_ok());
    assert_eq!(corrupt(0, b'x'), Err(DbusError::BadEndian));
    assert_eq!(corrupt(1, 9), Err(DbusError::BadMessageType));
    assert_eq!(corrupt(3, 2), Err(DbusError::BadVersion));
    let mut z = buf;
    z[8..12].copy_from_slice(&[0; 4]);
    assert_eq!(Message::parse(&z[..len], 1 << 20).err(), Some(DbusError::ZeroSerial));
    // Body: boolean 2, a bad UTF-8 byte, a missing NUL, non-zero padding after "hi\0".
    assert_eq!(corrupt(body, 2), Err(DbusError::BadBoolean));
    assert_eq!(corrupt(body + 8, 0xFF), Err(DbusError::BadUtf8));
    assert_eq!(corrupt(body + 10, b'!'), Err(DbusError::BadNul));
    assert_eq!(corrupt(body + 8, 0), Err(DbusError::BadNul));
    assert_eq!(corrupt(body + 11, 1), Err(DbusError::NonZeroPadding));
    // Truncated, trailing bytes, too large.
    assert_eq!(Message::parse(&buf[..len - 1], 1 << 20).err(), Some(DbusError::Truncated));
    assert_eq!(Message::parse(&buf[..len], 16).err(), Some(DbusError::TooLarge { len, max: 16 }));
    let mut longer = buf;
    longer[4] += 4; // body length 4 more than the signature's values
    assert_eq!(Message::parse(&longer[..len + 4], 1 << 20).err(), Some(DbusError::BodyMismatch));
    assert_eq!(header::message_len(&buf[..10], 1 << 20), Err(DbusError::Truncated));
}

#[test]
fn header_field_errors() {
    // A method call without MEMBER, a signal without INTERFACE, an error without its name.
    let mut buf = [0u8; 256];
    let m = Builder::method_return(1).build(&mut buf, 2, Signature::EMPTY, |_| Ok(())).unwrap().to_vec();
    let mut call = m.clone();
    call[1] = MessageType::MethodCall as u8;
    assert_eq!(Message::parse(&call, 1 << 20).err(), Some(DbusError::MissingField(field::PATH)));
    let mut err = m.clone();
    err[1] = MessageType::Error as u8;
    assert_eq!(Message::parse(&err, 1 << 20).err(), Some(DbusError::MissingField(field::ERROR_NAME)));
    let mut buf = [0u8; 256];
    let s = Builder::method_call("/a", "M").build(&mut buf, 2, Signature::EMPTY, |_| Ok(())).unwrap().to_vec();
    let mut sig4 = s.clone();
    sig4[1] = MessageType::Signal as u8;
    assert_eq!(Message::parse(&sig4, 1 << 20).err(), Some(DbusError::MissingField(field::INTERFACE)));
    // A field of the wrong type: REPLY_SERIAL as a string.
    let mut w = [0u8; 256];
    let bad = hand_built(&mut w, &[(field::REPLY_SERIAL, "s")]);
    assert_eq!(Message::parse(bad, 1 << 20).err(), Some(DbusError::BadField(field::REPLY_SERIAL)));
    // The same field twice.
    let mut w = [0u8; 256];
    let twice = hand_built(&mut w, &[(field::DESTINATION, "s"), (field::DESTINATION, "s")]);
    assert_eq!(Message::parse(twice, 1 << 20).err(), Some(DbusError::BadField(field::DESTINATION)));
    // An unknown field is ignored.
    let mut w = [0u8; 256];
    let unknown = hand_built(&mut w, &[(200, "s")]);
    assert!(Message::parse(unknown, 1 << 20).is_ok());
}

/// A method return (REPLY_SERIAL 1) written by hand with extra header fields: `(code, "s"
/// or "u")`, string fields holding "a.b".
fn hand_built<'b>(buf: &'b mut [u8], extra: &[(u8, &str)]) -> &'b [u8] {
    let mut w = Writer::with_endian(buf, Endian::Little);
    for b in [b'l', 2, 0, 1] {
        w.u8(b).unwrap();
    }
    w.u32(0).unwrap();
    w.u32(5).unwrap();
    w.array(b'(', |w| {
        w.structure(|w| {
            w.u8(field::REPLY_SERIAL)?;
            w.variant(sig("u"), |w| w.u32(1))
        })?;
        for &(code, t) in extra {
            w.structure(|w| {
                w.u8(code)?;
                if t == "s" { w.variant(sig("s"), |w| w.str("a.b")) } else { w.variant(sig("u"), |w| w.u32(1)) }
            })?;
        }
        Ok(())
    })
    .unwrap();
    w.pad(8).unwrap();
    let n = w.position();
    &buf[..n]
}

#[test]
fn nesting_limits_on_the_wire() {
    // Variants inside variants: 64 levels at most.
    for (depth, ok) in [(63usize, true), (64, false), (200, false)] {
        let mut buf = vec![0u8; 4096];
        let mut w = Writer::with_endian(&mut buf, Endian::Little);
        for _ in 0..depth {
            w.signature(sig("v")).unwrap();
        }
        w.signature(sig("y")).unwrap();
        w.u8(1).unwrap();
        let n = w.position();
        let mut r = ember_core::dbus::Reader::new(&buf[..n], Endian::Little);
        let got = r.value(sig("v"));
        assert_eq!(got.is_ok(), ok, "depth {depth}: {got:?}");
        if !ok {
            assert_eq!(got.err(), Some(DbusError::TooDeep));
        }
    }
    // An array whose length overruns its data, and one not a multiple of its element size.
    let mut data = [0u8; 16];
    data[..4].copy_from_slice(&100u32.to_le_bytes());
    assert_eq!(ember_core::dbus::Reader::new(&data, Endian::Little).value(sig("ai")).err(), Some(DbusError::Truncated));
    data[..4].copy_from_slice(&6u32.to_le_bytes());
    assert_eq!(
        ember_core::dbus::Reader::new(&data, Endian::Little).value(sig("ai")).err(),
        Some(DbusError::BadArrayLength)
    );
    data[..4].copy_from_slice(&(65u32 << 20).to_le_bytes());
    assert_eq!(
        ember_core::dbus::Reader::new(&data, Endian::Little).value(sig("ay")).err(),
        Some(DbusError::BadArrayLength)
    );
    // A string inside an array that runs past the array's end.
    let mut s = [0u8; 24];
    s[..4].copy_from_slice(&8u32.to_le_bytes());
    s[4..8].copy_from_slice(&5u32.to_le_bytes());
    s[8..14].copy_from_slice(b"hello\0");
    assert_eq!(
        ember_core::dbus::Reader::new(&s, Endian::Little).value(sig("as")).err(),
        Some(DbusError::BadArrayLength)
    );
}

#[test]
fn flags_and_error_messages() {
    let mut buf = [0u8; 256];
    let m = Builder::error(41, "org.freedesktop.DBus.Error.Failed")
        .destination(":1.7")
        .flags(FLAG_NO_REPLY_EXPECTED)
        .build(&mut buf, 42, sig("s"), |w| w.str("it broke"))
        .unwrap();
    let p = Message::parse(m, 1 << 20).unwrap();
    assert_eq!(p.message_type(), MessageType::Error);
    assert_eq!((p.reply_serial(), p.error_name(), p.flags()), (Some(41), Some("org.freedesktop.DBus.Error.Failed"), 1));
    assert_eq!(p.body().next_as::<&str>(), Ok("it broke"));
    assert_eq!(p.body().next_as::<u32>(), Err(DbusError::WrongType));
}

#[test]
fn declared_lengths_that_would_wrap_are_refused() {
    // Fields of 5 bytes, a body length of 0xFFFFFFFD: on a 32-bit target the total would
    // wrap to a small number. It is refused as too large everywhere.
    let mut m = [0u8; 24];
    m[..4].copy_from_slice(&[b'l', 1, 0, 1]);
    m[4..8].copy_from_slice(&0xFFFF_FFFDu32.to_le_bytes());
    m[8..12].copy_from_slice(&1u32.to_le_bytes());
    m[12..16].copy_from_slice(&5u32.to_le_bytes());
    assert!(matches!(header::message_len(&m, usize::MAX), Err(DbusError::TooLarge { .. })));
    assert!(matches!(Message::parse(&m[..21], usize::MAX), Err(DbusError::TooLarge { .. })));
}

#[test]
fn reserved_and_invalid_header_fields() {
    // Field code 0, REPLY_SERIAL 0, and the Local path and interface are never valid.
    let mut w = [0u8; 256];
    let zero_code = hand_built(&mut w, &[(0, "u")]);
    assert_eq!(Message::parse(zero_code, 1 << 20).err(), Some(DbusError::BadField(0)));
    let mut buf = [0u8; 256];
    let m = Builder::method_return(1).build(&mut buf, 2, Signature::EMPTY, |_| Ok(())).unwrap().to_vec();
    let mut zero_reply = m.clone();
    // REPLY_SERIAL's value is the last 4 bytes of its field: (5, 'u' variant, value) at 16..24.
    zero_reply[20..24].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(Message::parse(&zero_reply, 1 << 20).err(), Some(DbusError::BadField(field::REPLY_SERIAL)));
    let mut buf = [0u8; 256];
    assert_eq!(
        Builder::signal(header::LOCAL_PATH, "org.example.I", "S")
            .build(&mut buf, 1, Signature::EMPTY, |_| Ok(()))
            .err(),
        Some(DbusError::BadField(field::PATH))
    );
    assert_eq!(
        Builder::signal("/a", header::LOCAL_INTERFACE, "S").build(&mut buf, 1, Signature::EMPTY, |_| Ok(())).err(),
        Some(DbusError::BadField(field::INTERFACE))
    );
}

#[test]
fn array_and_struct_limits_apply_per_variant() {
    // 20 arrays, a variant, 20 more arrays inside: 40 arrays in all, valid (the 32 limit is
    // per signature, the 64 total across variants).
    let outer = "a".repeat(20) + "v";
    let inner = "a".repeat(20) + "y";
    let mut buf = vec![0u8; 4096];
    let mut w = Writer::with_endian(&mut buf, Endian::Little);
    fn nest<'b>(
        w: &mut Writer<'b>,
        depth: usize,
        last: &mut dyn FnMut(&mut Writer<'b>) -> Result<(), DbusError>,
    ) -> Result<(), DbusError> {
        if depth == 0 {
            return last(w);
        }
        w.array(b'a', |w| nest(w, depth - 1, last))
    }
    let inner_sig = Signature::new(&inner).unwrap();
    nest(&mut w, 19, &mut |w| {
        w.array(b'v', |w| w.variant(inner_sig, |w| nest(w, 19, &mut |w| w.array(b'y', |w| w.u8(7)))))
    })
    .unwrap();
    let n = w.position();
    let mut r = ember_core::dbus::Reader::new(&buf[..n], Endian::Little);
    assert!(r.value(Signature::new(&outer).unwrap()).is_ok());
    assert!(r.is_at_end());
}

#[test]
fn parse_header_checks_all_but_the_body_end() {
    let mut buf = [0u8; 256];
    let (len, _) = sample(&mut buf);
    let mut longer = buf;
    longer[4] += 4; // a body 4 bytes longer than its signature's values
    assert_eq!(Message::parse(&longer[..len + 4], 1 << 20).err(), Some(DbusError::BodyMismatch));
    let m = Message::parse_header(&longer[..len + 4], 1 << 20).unwrap();
    // The values still read, each checked.
    let mut body = m.body();
    assert_eq!((body.next_as::<bool>(), body.next_as::<&str>(), body.next_as::<u32>()), (Ok(true), Ok("hi"), Ok(5)));
    // And a bad header is refused as by parse.
    let mut bad = buf;
    bad[3] = 2;
    assert_eq!(Message::parse_header(&bad[..len], 1 << 20).err(), Some(DbusError::BadVersion));
}

#[test]
fn parse_again_reads_checked_bytes_without_checking_again() {
    // Every type, both byte orders: a `parse`d message, a `parse_again` view (values read
    // without the checks repeated, containers skipped by length) and a `parse_header` view
    // (every check repeated) read the same values.
    for endian in [Endian::Little, Endian::Big] {
        let mut buf = [0u8; 1024];
        let m = Builder::signal("/x", "org.example.I", "S")
            .unix_fds(2)
            .endian(endian)
            .build(&mut buf, 99, sig(EVERYTHING), write_everything)
            .unwrap();
        check_everything(&Message::parse(m, 1 << 20).unwrap());
        check_everything(&Message::parse_again(m, 1 << 20).unwrap());
        check_everything(&Message::parse_header(m, 1 << 20).unwrap());
    }
    // On bytes `parse` refuses (non-zero padding after "hi\0"), `parse_again` reads what is
    // there: the check it skips is the one `parse` made.
    let mut buf = [0u8; 256];
    let (len, body) = sample(&mut buf);
    buf[body + 11] = 1;
    assert_eq!(Message::parse(&buf[..len], 1 << 20).err(), Some(DbusError::NonZeroPadding));
    let m = Message::parse_again(&buf[..len], 1 << 20).unwrap();
    let mut b = m.body();
    assert_eq!((b.next_as::<bool>(), b.next_as::<&str>(), b.next_as::<u32>()), (Ok(true), Ok("hi"), Ok(5)));
    // A check that reading itself needs still happens: a boolean 2 is an error, not `true`.
    buf[body] = 2;
    let m = Message::parse_again(&buf[..len], 1 << 20).unwrap();
    assert_eq!(m.body().next_as::<bool>(), Err(DbusError::BadBoolean));
    // And the header is checked as by parse.
    buf[3] = 2;
    assert_eq!(Message::parse_again(&buf[..len], 1 << 20).err(), Some(DbusError::BadVersion));

    // An array element that cannot be read ends the array: iterating it terminates.
    let mut buf = [0u8; 256];
    let m = Builder::method_call("/a", "M")
        .endian(Endian::Little)
        .build(&mut buf, 3, sig("as"), |w| {
            w.array(b's', |w| {
                w.str("a")?;
                w.str("b")
            })
        })
        .unwrap();
    let len = m.len();
    let body = len - Message::parse(m, 1 << 20).unwrap().body_bytes().len();
    // The array: length at body, "a" at body+4 (len, 'a', NUL), pad, "b"'s length at body+12.
    buf[body + 12] = 0x7f;
    assert_eq!(Message::parse(&buf[..len], 1 << 20).err(), Some(DbusError::BadArrayLength));
    let m = Message::parse_again(&buf[..len], 1 << 20).unwrap();
    let a: Array = m.body().next_as().unwrap();
    let items: Vec<Result<&str, DbusError>> = a.map(|v| v.and_then(<&str>::try_from)).collect();
    assert_eq!(items, [Ok("a"), Err(DbusError::Truncated)]);
}
