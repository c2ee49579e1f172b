//! SASL authentication pieces (D-Bus specification, "Authentication protocol"): hex, the
//! `DBUS_COOKIE_SHA1` mechanism's SHA-1 and keyring, the server's GUID.
//!
//! ```text
//! client                                   server
//! \0AUTH\r\n                         ->
//!                                    <-    REJECTED EXTERNAL DBUS_COOKIE_SHA1 ANONYMOUS\r\n
//! AUTH DBUS_COOKIE_SHA1 <hex uid>\r\n ->
//!                                    <-    DATA <hex "context cookie-id server-challenge">\r\n
//! DATA <hex "client-challenge sha1-hex">\r\n ->      sha1 of "server:client:cookie"
//!                                    <-    OK <guid>\r\n
//! BEGIN\r\n                          ->    (then D-Bus messages)
//! ```
//!
//! The cookie is read from `~/.dbus-keyrings/<context>` of the user's home directory in
//! `/etc/passwd` (as libdbus finds it), lines `<id> <creation time> <cookie hex>`. Nothing
//! here allocates: lines are read through a small stack buffer. No panics on any input.

use crate::error::{Error, Result};

/// Lowercase hex of `bytes` into `out`; returns the written part (`None` if `out` is short).
pub(crate) fn hex_encode<'o>(bytes: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let out = out.get_mut(..bytes.len() * 2)?;
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    Some(out)
}

/// Decodes hex `text` into `out`; returns the decoded part (`None` if malformed or short).
pub(crate) fn hex_decode<'o>(text: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let out = out.get_mut(..text.len() / 2)?;
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The decimal digits of `v` into `out`; returns them.
pub(crate) fn decimal(v: u32, out: &mut [u8; 10]) -> &[u8] {
    let mut d = out.len();
    let mut v = v;
    loop {
        d -= 1;
        out[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &out[d..]
}

/// SHA-1 (FIPS 180-4), as `DBUS_COOKIE_SHA1` needs it: a small streaming implementation.
#[derive(Debug, Clone)]
pub(crate) struct Sha1 {
    h: [u32; 5],
    block: [u8; 64],
    filled: usize,
    len: u64,
}

impl Sha1 {
    pub(crate) fn new() -> Sha1 {
        Sha1 { h: [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0], block: [0; 64], filled: 0, len: 0 }
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        while !data.is_empty() {
            let n = (64 - self.filled).min(data.len());
            self.block[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == 64 {
                let block = self.block;
                self.compress(&block);
                self.filled = 0;
            }
        }
    }

    pub(crate) fn finish(mut self) -> [u8; 20] {
        let bits = self.len.wrapping_mul(8);
        self.update(&[0x80]);
        while self.filled != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        let mut out = [0u8; 20];
        for (o, h) in out.chunks_exact_mut(4).zip(self.h) {
            o.copy_from_slice(&h.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 80];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = self.h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (h, v) in self.h.iter_mut().zip([a, b, c, d, e]) {
            *h = h.wrapping_add(v);
        }
    }
}

/// Fills `out` with random bytes from the kernel (`/dev/urandom`).
pub(crate) fn random(out: &mut [u8]) -> Result<()> {
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC;
    let fd = rustix::fs::open("/dev/urandom", flags, rustix::fs::Mode::empty())?;
    let mut got = 0;
    while got < out.len() {
        match rustix::io::read(&fd, &mut out[got..]) {
            Ok(0) => return Err(Error::PeerGone),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Calls `f` with each line (without its `\n`) of the file at `path` until it returns
/// `Some`; lines longer than 512 bytes are skipped.
fn find_line<T>(path: &[u8], mut f: impl FnMut(&[u8]) -> Option<T>) -> Result<Option<T>> {
    let path = core::str::from_utf8(path).map_err(|_| Error::InvalidName)?;
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, rustix::fs::Mode::empty())?;
    let mut buf = [0u8; 512];
    let (mut len, mut skipping) = (0, false);
    loop {
        let n = match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        len += n;
        let mut start = 0;
        while let Some(i) = buf[start..len].iter().position(|&c| c == b'\n') {
            if !skipping && let Some(t) = f(&buf[start..start + i]) {
                return Ok(Some(t));
            }
            skipping = false;
            start += i + 1;
        }
        buf.copy_within(start..len, 0);
        len -= start;
        if n == 0 {
            return Ok(if len > 0 && !skipping { f(&buf[..len]) } else { None });
        }
        if len == buf.len() {
            // A line longer than the buffer: not one we look for.
            (len, skipping) = (0, true);
        }
    }
}

/// The home directory of `uid` from `/etc/passwd`, into `out`.
fn home_dir(uid: u32, out: &mut [u8; 256]) -> Result<usize> {
    let mut digits = [0u8; 10];
    let uid = decimal(uid, &mut digits);
    let found = find_line(b"/etc/passwd", |line| {
        let mut f = line.split(|&c| c == b':');
        let (_, _, id, _, _, home) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        (id == uid && home.len() <= out.len()).then(|| {
            out[..home.len()].copy_from_slice(home);
            home.len()
        })
    })?;
    found.ok_or(Error::AuthRejected)
}

/// The `DBUS_COOKIE_SHA1` response to the server's challenge `data` (`context id
/// server-challenge`, already hex-decoded), written hex-encoded into `out` (at least 160
/// bytes): `hex("client-challenge sha1-hex")`.
pub(crate) fn cookie_sha1_response<'o>(uid: u32, data: &[u8], out: &'o mut [u8]) -> Result<&'o [u8]> {
    let mut parts = data.split(|&c| c == b' ');
    let (Some(context), Some(id), Some(server), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Error::AuthRejected);
    };
    // A context is a file name in the keyring directory: no path separators, no dot first.
    let bad_context = context.is_empty()
        || context.len() > 64
        || context[0] == b'.'
        || !context.iter().all(|&c| c.is_ascii_graphic() && c != b'/' && c != b'\\');
    if bad_context || id.is_empty() || server.is_empty() {
        return Err(Error::AuthRejected);
    }
    let mut home = [0u8; 256];
    let home_len = home_dir(uid, &mut home)?;
    let mut path = [0u8; 256 + 16 + 64];
    let mut n = 0;
    for part in [&home[..home_len], b"/.dbus-keyrings/", context] {
        path[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    let mut cookie = [0u8; 128];
    let cookie_len = find_line(&path[..n], |line| {
        let mut f = line.split(|&c| c == b' ');
        let (line_id, _, c) = (f.next()?, f.next()?, f.next()?);
        (line_id == id && c.len() <= cookie.len()).then(|| {
            cookie[..c.len()].copy_from_slice(c);
            c.len()
        })
    })?
    .ok_or(Error::AuthRejected)?;
    let mut challenge = [0u8; 16];
    random(&mut challenge)?;
    let mut client = [0u8; 32];
    let client = hex_encode(&challenge, &mut client).ok_or(Error::AuthRejected)?;
    let mut sha = Sha1::new();
    for part in [server, b":", client, b":", &cookie[..cookie_len]] {
        sha.update(part);
    }
    let mut digest = [0u8; 40];
    let digest = hex_encode(&sha.finish(), &mut digest).ok_or(Error::AuthRejected)?;
    let mut plain = [0u8; 32 + 1 + 40];
    plain[..32].copy_from_slice(client);
    plain[32] = b' ';
    plain[33..].copy_from_slice(digest);
    hex_encode(&plain, out).map(|o| -> &[u8] { o }).ok_or(Error::AuthRejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha1_hex(data: &[u8]) -> std::string::String {
        let mut s = Sha1::new();
        s.update(data);
        s.finish().iter().map(|b| std::format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_known_answers() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        let million = std::vec![b'a'; 1_000_000];
        assert_eq!(sha1_hex(&million), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
        // Fed in pieces of every size, the same digest.
        for step in [1, 3, 55, 56, 63, 64, 65] {
            let mut s = Sha1::new();
            let data = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
            data.chunks(step).for_each(|c| s.update(c));
            assert_eq!(s.finish(), {
                let mut t = Sha1::new();
                t.update(data);
                t.finish()
            });
        }
    }

    #[test]
    fn hex_both_ways() {
        let mut out = [0u8; 8];
        assert_eq!(hex_encode(b"\x00\xffA", &mut out), Some(&b"00ff41"[..]));
        let mut back = [0u8; 4];
        assert_eq!(hex_decode(b"00ff41", &mut back), Some(&b"\x00\xffA"[..]));
        assert_eq!(hex_decode(b"0", &mut back), None);
        assert_eq!(hex_decode(b"zz", &mut back), None);
        assert_eq!(hex_decode(b"0011223344", &mut back), None);
        assert_eq!(decimal(0, &mut [0; 10]), b"0");
        assert_eq!(decimal(u32::MAX, &mut [0; 10]), b"4294967295");
    }

    #[test]
    fn bad_challenges_are_refused() {
        let mut out = [0u8; 160];
        for bad in [&b""[..], b"ctx 1", b"ctx 1 abc extra", b"../x 1 abc", b".hidden 1 abc", b"a/b 1 abc"] {
            assert_eq!(cookie_sha1_response(0, bad, &mut out), Err(Error::AuthRejected), "{bad:?}");
        }
    }
}
