//! CRC-32C (Castagnoli), the checksum of every Ember frame.
//!
//! Parameters (the "CRC-32/ISCSI" entry of the CRC catalogue): polynomial `0x1EDC6F41`
//! (reflected `0x82F63B78`), initial value `0xFFFFFFFF`, input and output reflected, final
//! XOR `0xFFFFFFFF`. The check value, the CRC of the ASCII bytes `123456789`, is
//! `0xE3069283`.
//!
//! Three implementations compute the same function, chosen per call with no allocation and
//! no syscall:
//!
//! - **x86-64 with SSE4.2 and PCLMULQDQ**: the `crc32` instruction on three interleaved
//!   streams, recombined with a carry-less multiply. Detected at run time with `cpuid`
//!   (cached in an atomic), or at compile time when the target features are enabled.
//! - **AArch64 with the CRC extension**: the `crc32cx` instruction, when the crate is built
//!   with the `crc` target feature (`-C target-feature=+crc`, or a `-C target-cpu` such as
//!   `cortex-a53` or `cortex-a72` that has it). `no_std` code cannot ask the kernel for
//!   `HWCAP_CRC32`, so there is no run-time detection on AArch64.
//! - **Everywhere else**: a table-driven "slice-by-8" loop (8 KiB of tables built at
//!   compile time).
//!
//! ```
//! use ember_core::crc32c::{crc32c, crc32c_append};
//! assert_eq!(crc32c(b"123456789"), 0xE306_9283);
//! // Incremental use: the CRC of a concatenation, from the CRC of its first part.
//! assert_eq!(crc32c_append(crc32c(b"1234"), b"56789"), 0xE306_9283);
//! ```

/// The reflected CRC-32C polynomial.
pub const POLY_REFLECTED: u32 = 0x82F6_3B78;

/// The CRC-32C of the ASCII bytes `123456789` (the catalogue's check value).
pub const CHECK: u32 = 0xE306_9283;

/// CRC-32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// Continues a CRC-32C: given `crc = crc32c(a)`, returns `crc32c(a ++ data)`.
///
/// `crc32c_append(0, data)` is `crc32c(data)`.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    !update_raw(!crc, data)
}

/// The two CRCs of a frame header's first 20 bytes, in one call: `(crc32c(h[..16]),
/// crc32c(h))`. A frame's checksums both start with its first 16 bytes
/// (docs/wire-format.md, section 4).
#[inline]
pub(crate) fn header_sums(h: &[u8; 20]) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: `available()` returned true: the CPU has the features `header_sums` uses.
        return unsafe { x86::header_sums(h) };
    }
    let prefix = crc32c(&h[..16]);
    (prefix, crc32c_append(prefix, &h[16..]))
}

/// A frame's two checksums from its first 16 header bytes and its payload, in one call:
/// `crc = crc32c(h16 ++ payload)` and `hcrc = crc32c(h16 ++ crc as 4 little-endian
/// bytes)`.
#[inline]
pub(crate) fn frame_sums(h16: &[u8; 16], payload: &[u8]) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: as in `header_sums`.
        return unsafe { x86::frame_sums(h16, payload) };
    }
    let prefix = crc32c(h16);
    let crc = crc32c_append(prefix, payload);
    (crc, crc32c_append(prefix, &crc.to_le_bytes()))
}

/// Which implementation [`crc32c`] uses on this machine, for benchmarks and diagnostics.
pub fn implementation() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        return "x86-64 sse4.2 crc32 (3-way) + pclmulqdq";
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "crc"))]
    {
        return "aarch64 crc32cx";
    }
    #[allow(unreachable_code)]
    "portable slice-by-8"
}

/// Updates the raw CRC register (no initial or final inversion).
#[inline]
fn update_raw(state: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: `available()` returned true, so the CPU has SSE4.2 and PCLMULQDQ, the
        // target features `update` is compiled with.
        return unsafe { x86::update(state, data) };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "crc"))]
    {
        return aarch64::update(state, data);
    }
    #[allow(unreachable_code)]
    update_portable(state, data)
}

/// The slice-by-8 tables: `TABLES[0]` is the classic byte table; `TABLES[k][b]` is the CRC
/// of byte `b` followed by `k` zero bytes.
static TABLES: [[u32; 256]; 8] = make_tables();

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY_REFLECTED } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut n = 1;
    while n < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[n - 1][i];
            t[n][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        n += 1;
    }
    t
}

/// CRC-32C of `data` with the portable table-driven loop, whatever the CPU has: the
/// baseline the benchmarks compare the accelerated paths against.
pub fn crc32c_portable(data: &[u8]) -> u32 {
    !update_portable(!0, data)
}

fn update_portable(mut crc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = TABLES[7][(lo & 0xFF) as usize]
            ^ TABLES[6][((lo >> 8) & 0xFF) as usize]
            ^ TABLES[5][((lo >> 16) & 0xFF) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][(hi & 0xFF) as usize]
            ^ TABLES[2][((hi >> 8) & 0xFF) as usize]
            ^ TABLES[1][((hi >> 16) & 0xFF) as usize]
            ^ TABLES[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ TABLES[0][((crc ^ b as u32) & 0xFF) as usize];
    }
    crc
}

/// `x^n mod P` in the reflected representation (bit 31 is the coefficient of `x^0`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const fn xpow_mod(n: u32) -> u32 {
    let mut v: u32 = 0x8000_0000;
    let mut i = 0;
    while i < n {
        v = if v & 1 != 0 { (v >> 1) ^ POLY_REFLECTED } else { v >> 1 };
        i += 1;
    }
    v
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! SSE4.2 `crc32` on three interleaved streams, recombined with PCLMULQDQ.
    //!
    //! The raw CRC register is linear: the state after `A ++ B` is `shift(s_A, |B|) ^ s_B`,
    //! where `s_B` is the state after `B` started from zero and `shift(s, n)` appends `n`
    //! zero bytes. With `K = x^(8n - 33) mod P`, `shift(s, n) = crc32_u64(0, clmul(s, K))`:
    //! the carry-less product of two reflected 32-bit values is their product times `x`,
    //! and `crc32_u64(0, v)` multiplies by `x^32` and reduces.

    use core::arch::x86_64::{__m128i, _mm_clmulepi64_si128, _mm_cvtsi32_si128, _mm_cvtsi128_si64};
    use core::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// Streams are interleaved in blocks of `64 * k` bytes, `k` in `1..=MAX_K`.
    const UNIT: usize = 64;
    const MAX_K: usize = 32;

    /// `SHIFT[k - 1] = (K for 64k bytes, K for 128k bytes)`.
    static SHIFT: [(u32, u32); MAX_K] = make_shift();

    const fn make_shift() -> [(u32, u32); MAX_K] {
        let mut out = [(0u32, 0u32); MAX_K];
        let mut k = 1;
        while k <= MAX_K {
            let one = (8 * UNIT * k) as u32;
            out[k - 1] = (super::xpow_mod(one - 33), super::xpow_mod(2 * one - 33));
            k += 1;
        }
        out
    }

    const UNKNOWN: u8 = 0;
    const NO: u8 = 1;
    const YES: u8 = 2;
    static DETECTED: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// Whether this CPU has SSE4.2 and PCLMULQDQ.
    #[inline]
    pub(super) fn available() -> bool {
        if cfg!(all(target_feature = "sse4.2", target_feature = "pclmulqdq")) {
            return true;
        }
        if cfg!(miri) {
            // `cpuid` is inline assembly, which Miri cannot run.
            return false;
        }
        match DETECTED.load(Ordering::Relaxed) {
            YES => true,
            NO => false,
            _ => {
                let yes = detect();
                DETECTED.store(if yes { YES } else { NO }, Ordering::Relaxed);
                yes
            }
        }
    }

    #[cold]
    fn detect() -> bool {
        // CPUID leaf 1 exists on every x86-64 CPU: ECX bit 20 is SSE4.2, bit 1 PCLMULQDQ.
        // `__cpuid` is a safe fn in recent Rust and an `unsafe fn` in Rust 1.88 (our MSRV).
        #[allow(unused_unsafe)]
        // SAFETY: the CPUID instruction exists on every x86-64 CPU; leaf 1 always exists.
        let ecx = unsafe { core::arch::x86_64::__cpuid(1) }.ecx;
        ecx & (1 << 20) != 0 && ecx & (1 << 1) != 0
    }

    #[inline]
    #[target_feature(enable = "sse4.2,pclmulqdq")]
    fn shift(state: u32, k: u32) -> u32 {
        let a: __m128i = _mm_cvtsi32_si128(state as i32);
        let b: __m128i = _mm_cvtsi32_si128(k as i32);
        let prod = _mm_cvtsi128_si64(_mm_clmulepi64_si128::<0>(a, b)) as u64;
        _mm_crc32_u64(0, prod) as u32
    }

    #[inline]
    fn word(bytes: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    }

    /// Updates the raw CRC register with the hardware instructions.
    ///
    /// Short inputs (every frame header, most payloads) stay in this small leaf function;
    /// the three-stream loop lives in [`update_long`], whose register pressure would
    /// otherwise make every call save and restore five registers.
    ///
    /// # Safety
    ///
    /// The CPU must support SSE4.2 and PCLMULQDQ.
    #[target_feature(enable = "sse4.2,pclmulqdq")]
    pub(super) unsafe fn update(state: u32, data: &[u8]) -> u32 {
        if data.len() >= 3 * UNIT {
            // SAFETY: the caller vouches for the CPU features, the same as ours.
            return unsafe { update_long(state, data) };
        }
        short(state, data)
    }

    /// The raw register after a frame header's first 16 bytes, where both checksums start
    /// (`bytes` holds at least 16).
    #[inline]
    #[target_feature(enable = "sse4.2,pclmulqdq")]
    fn prefix(bytes: &[u8]) -> u32 {
        _mm_crc32_u64(_mm_crc32_u64(!0u32 as u64, word(bytes, 0)), word(bytes, 8)) as u32
    }

    /// [`super::header_sums`]: three `crc32` steps, one call.
    ///
    /// # Safety
    ///
    /// The CPU must support SSE4.2 and PCLMULQDQ.
    #[target_feature(enable = "sse4.2,pclmulqdq")]
    pub(super) unsafe fn header_sums(h: &[u8; 20]) -> (u32, u32) {
        let s = prefix(h);
        let last = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
        (!s, !_mm_crc32_u32(s, last))
    }

    /// [`super::frame_sums`]: the 16 bytes once, then the payload, then the `crc` field.
    ///
    /// # Safety
    ///
    /// The CPU must support SSE4.2 and PCLMULQDQ.
    #[target_feature(enable = "sse4.2,pclmulqdq")]
    pub(super) unsafe fn frame_sums(h16: &[u8; 16], payload: &[u8]) -> (u32, u32) {
        let s = prefix(h16);
        // SAFETY: the caller vouches for the CPU features, the same as ours.
        let crc = !unsafe { update(s, payload) };
        (crc, !_mm_crc32_u32(s, crc))
    }

    /// The three-stream loop over inputs of at least `3 * UNIT` bytes, then [`short`].
    ///
    /// # Safety
    ///
    /// The CPU must support SSE4.2 and PCLMULQDQ.
    #[inline(never)]
    #[target_feature(enable = "sse4.2,pclmulqdq")]
    unsafe fn update_long(state: u32, mut data: &[u8]) -> u32 {
        let mut s = state as u64;
        while data.len() >= 3 * UNIT {
            let k = (data.len() / (3 * UNIT)).min(MAX_K);
            let block = UNIT * k;
            let (a, rest) = data.split_at(block);
            let (b, rest) = rest.split_at(block);
            let (c, rest) = rest.split_at(block);
            let (mut sa, mut sb, mut sc) = (s, 0u64, 0u64);
            let mut i = 0;
            while i < block {
                sa = _mm_crc32_u64(sa, word(a, i));
                sb = _mm_crc32_u64(sb, word(b, i));
                sc = _mm_crc32_u64(sc, word(c, i));
                i += 8;
            }
            let (k1, k2) = SHIFT[k - 1];
            s = (shift(sa as u32, k2) ^ shift(sb as u32, k1)) as u64 ^ sc;
            data = rest;
        }
        short(s as u32, data)
    }

    /// One stream of 8-byte steps, then the last 0–7 bytes.
    #[inline]
    #[target_feature(enable = "sse4.2,pclmulqdq")]
    fn short(mut state: u32, data: &[u8]) -> u32 {
        let mut s = state as u64;
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            s = _mm_crc32_u64(s, word(w, 0));
        }
        state = s as u32;
        // The last 0–7 bytes in at most three steps (4, 2, 1), not one per byte: a frame
        // header (16 or 20 bytes) and a small payload end here on every frame.
        let mut tail = words.remainder();
        if tail.len() >= 4 {
            state = _mm_crc32_u32(state, u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
            tail = &tail[4..];
        }
        if tail.len() >= 2 {
            state = _mm_crc32_u16(state, u16::from_le_bytes([tail[0], tail[1]]));
            tail = &tail[2..];
        }
        if let Some(&b) = tail.first() {
            state = _mm_crc32_u8(state, b);
        }
        state
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "crc"))]
mod aarch64 {
    //! The ARMv8 CRC extension (`crc32cx` and friends).
    use core::arch::aarch64::{__crc32cb, __crc32cd};

    pub(super) fn update(mut state: u32, data: &[u8]) -> u32 {
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            // SAFETY: this module exists only when the crate is compiled with the `crc`
            // target feature (the cfg above), so every CPU this code runs on has the
            // instruction; the intrinsic has no other precondition. (Rust still asks for
            // `unsafe` outside a `#[target_feature]` function.)
            state = unsafe { __crc32cd(state, u64::from_le_bytes(b)) };
        }
        for &b in words.remainder() {
            // SAFETY: as above.
            state = unsafe { __crc32cb(state, b) };
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bitwise definition, the reference for every other implementation.
    fn reference(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ POLY_REFLECTED } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn catalogue_check_value() {
        assert_eq!(crc32c(b"123456789"), CHECK);
        assert_eq!(reference(b"123456789"), CHECK);
        assert_eq!(!update_portable(!0, b"123456789"), CHECK);
    }

    #[test]
    fn rfc3720_vectors() {
        // iSCSI (RFC 3720, appendix B.4) test vectors.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        let dec: [u8; 32] = core::array::from_fn(|i| 31 - i as u8);
        assert_eq!(crc32c(&dec), 0x113F_DB5C);
        assert_eq!(crc32c(&[]), 0);
    }

    #[test]
    fn every_length_and_offset_matches_reference() {
        let data: [u8; 2200] = core::array::from_fn(|i| (i as u32).wrapping_mul(2_654_435_761) as u8 ^ (i >> 7) as u8);
        let lens: &[usize] = if cfg!(miri) {
            &[0, 1, 7, 8, 9, 191, 192, 200, 385, 1040]
        } else {
            &[
                0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 191, 192, 193, 383, 384, 385, 576, 1000, 1024, 1040, 2047,
                2100,
            ]
        };
        for &len in lens {
            for off in [0usize, 1, 3, 5] {
                let slice = &data[off..off + len];
                let want = reference(slice);
                assert_eq!(crc32c(slice), want, "len {len} off {off}");
                assert_eq!(!update_portable(!0, slice), want, "portable len {len} off {off}");
            }
        }
    }

    #[test]
    fn frame_helpers_match_the_plain_function() {
        let data: [u8; 700] = core::array::from_fn(|i| (i * 131 + 17) as u8 ^ (i >> 3) as u8);
        for start in [0usize, 1, 5, 40] {
            let h: &[u8; 20] = data[start..start + 20].try_into().unwrap();
            assert_eq!(header_sums(h), (crc32c(&h[..16]), crc32c(h)), "header at {start}");
            let h16: &[u8; 16] = data[start..start + 16].try_into().unwrap();
            for len in [0usize, 1, 3, 4, 7, 8, 9, 64, 191, 192, 193, 600] {
                let payload = &data[start + 16..start + 16 + len];
                let crc = crc32c_append(crc32c(h16), payload);
                let hcrc = crc32c_append(crc32c(h16), &crc.to_le_bytes());
                assert_eq!(frame_sums(h16, payload), (crc, hcrc), "start {start} len {len}");
                assert_eq!(crc, reference(&data[start..start + 16 + len]));
            }
        }
    }

    #[test]
    fn append_is_concatenation() {
        let data: [u8; 777] = core::array::from_fn(|i| (i * 31 + 7) as u8);
        let whole = crc32c(&data);
        for split in [0usize, 1, 8, 100, 576, 776, 777] {
            let (a, b) = data.split_at(split);
            assert_eq!(crc32c_append(crc32c(a), b), whole, "split {split}");
        }
    }

    #[test]
    fn implementation_is_named() {
        assert!(!implementation().is_empty());
    }
}
