//! Byte copies in and out of the data area: the whole words of a copy of at least
//! [`FAST_MIN`] bytes by the architecture's bulk copy ([`super::fastcopy`], inline
//! assembly the compiler's race model cannot see into), everything else (short copies,
//! the last partial word, and targets without one) a relaxed atomic word at a time.
//!
//! Offsets are byte offsets that must be multiples of [`WORD`]; every bound is checked and
//! a bad one is [`ShmError::Corrupt`], never a panic (offsets may come from a hostile peer).
//! A store pads the last word with zeros, whichever path copied the rest.

use super::primitive::Ordering::{Acquire, Relaxed, Release};
use super::{ShmError, WORD, Word, fastcopy};

/// The shortest copy handed to the bulk copy: below it the word loop, which the compiler
/// inlines and unrolls, is as fast.
pub(crate) const FAST_MIN: usize = 256;

/// The number of leading bytes of a `len`-byte copy that the bulk copy takes (whole words),
/// or 0 for the word loop.
#[inline]
fn bulk_len(len: usize) -> usize {
    if fastcopy::AVAILABLE && len >= FAST_MIN { len - len % WORD } else { 0 }
}

/// The words covering `len` bytes from byte offset `off`.
#[inline]
fn span(words: &[Word], off: usize, len: usize) -> Result<&[Word], ShmError> {
    if !off.is_multiple_of(WORD) {
        return Err(ShmError::Corrupt);
    }
    let first = off / WORD;
    let count = len.div_ceil(WORD);
    let end = first.checked_add(count).ok_or(ShmError::Corrupt)?;
    words.get(first..end).ok_or(ShmError::Corrupt)
}

/// Copies `out.len()` bytes starting at byte `off` (a multiple of [`WORD`]) out of `words`.
#[inline]
pub(crate) fn load(words: &[Word], off: usize, out: &mut [u8]) -> Result<(), ShmError> {
    let mut src = span(words, off, out.len())?;
    let mut out = out;
    let bulk = bulk_len(out.len());
    // SAFETY: `src` holds at least `bulk / WORD` words (`span` checked it covers
    // `out.len()` bytes), `out` at least `bulk` bytes; `out` is this caller's exclusive
    // buffer, so the two do not overlap; `bulk` is a multiple of `WORD`. Writing to the
    // atomics' memory from the peer meanwhile is what `fastcopy::copy` allows.
    if bulk > 0 && unsafe { fastcopy::copy(src.as_ptr().cast::<u8>(), out.as_mut_ptr(), bulk) }.is_some() {
        src = &src[bulk / WORD..];
        out = &mut out[bulk..];
    }
    load_words(src, out);
    Ok(())
}

/// The word loop of [`load`]: `out.len()` bytes from `src`, which covers them.
#[inline]
fn load_words(src: &[Word], out: &mut [u8]) {
    let mut chunks = out.chunks_exact_mut(WORD);
    let mut src = src.iter();
    for (chunk, w) in (&mut chunks).zip(&mut src) {
        chunk.copy_from_slice(&w.load(Relaxed).to_ne_bytes());
    }
    let tail = chunks.into_remainder();
    if let Some(w) = src.next() {
        let n = tail.len();
        tail.copy_from_slice(&w.load(Relaxed).to_ne_bytes()[..n]);
    }
}

/// Copies `out.len()` bytes starting at any byte offset `off` out of `words`.
pub(crate) fn load_unaligned(words: &[Word], off: usize, out: &mut [u8]) -> Result<(), ShmError> {
    let skew = off % WORD;
    if skew == 0 {
        return load(words, off, out);
    }
    // The partial first word, then aligned words.
    let base = off - skew;
    let mut first = [0u8; WORD];
    load(words, base, &mut first)?;
    let n = (WORD - skew).min(out.len());
    out[..n].copy_from_slice(&first[skew..skew + n]);
    let rest = &mut out[n..];
    if rest.is_empty() { Ok(()) } else { load(words, base + WORD, rest) }
}

/// Copies `src` into `words` from byte `off`; the last word is padded with zeros.
#[inline]
pub(crate) fn store(words: &[Word], off: usize, src: &[u8]) -> Result<(), ShmError> {
    let mut dst = span(words, off, src.len())?;
    let mut src = src;
    let bulk = bulk_len(src.len());
    // SAFETY: `dst` holds at least `bulk / WORD` words (`span` checked it covers
    // `src.len()` bytes) and `src` at least `bulk` bytes; `src` is the caller's private
    // buffer, so the two do not overlap; `bulk` is a multiple of `WORD`. The words are
    // atomics (an `UnsafeCell` inside), so writing them through a pointer derived from a
    // shared reference is allowed, and a peer touching them meanwhile is what
    // `fastcopy::copy` allows.
    if bulk > 0 && unsafe { fastcopy::copy(src.as_ptr(), dst.as_ptr().cast::<u8>().cast_mut(), bulk) }.is_some() {
        dst = &dst[bulk / WORD..];
        src = &src[bulk..];
    }
    store_words(dst, src);
    Ok(())
}

/// The word loop of [`store`]: `src` into `dst`, which covers it.
#[inline]
fn store_words(dst: &[Word], src: &[u8]) {
    let mut chunks = src.chunks_exact(WORD);
    let mut dst = dst.iter();
    for (chunk, w) in (&mut chunks).zip(&mut dst) {
        let mut b = [0u8; WORD];
        b.copy_from_slice(chunk);
        w.store(usize::from_ne_bytes(b), Relaxed);
    }
    let tail = chunks.remainder();
    if let Some(w) = dst.next() {
        let mut b = [0u8; WORD];
        b[..tail.len()].copy_from_slice(tail);
        w.store(usize::from_ne_bytes(b), Relaxed);
    }
}

/// Reads the two native-endian `u32`s of an 8-byte record header at `off`.
#[inline]
pub(crate) fn load_pair(words: &[Word], off: usize) -> Result<(u32, u32), ShmError> {
    let mut b = [0u8; 8];
    load(words, off, &mut b)?;
    Ok((u32::from_ne_bytes([b[0], b[1], b[2], b[3]]), u32::from_ne_bytes([b[4], b[5], b[6], b[7]])))
}

/// [`load_pair`] with acquire loads: what the peer wrote before its release store of the
/// header ([`store_pair_release`]) is visible after it.
#[inline]
pub(crate) fn load_pair_acquire(words: &[Word], off: usize) -> Result<(u32, u32), ShmError> {
    let src = span(words, off, 8)?;
    let mut b = [0u8; 8];
    for (chunk, w) in b.chunks_exact_mut(WORD).zip(src) {
        chunk.copy_from_slice(&w.load(Acquire).to_ne_bytes());
    }
    Ok((u32::from_ne_bytes([b[0], b[1], b[2], b[3]]), u32::from_ne_bytes([b[4], b[5], b[6], b[7]])))
}

/// [`store_pair`] whose last word store is a release: every write before it is visible to
/// a peer that loads the header with [`load_pair_acquire`] and sees it. (With 4-byte words
/// the header is two words and `a`, stored first, is not ordered by this; callers store in
/// `b` what the peer synchronises on.)
#[inline]
pub(crate) fn store_pair_release(words: &[Word], off: usize, a: u32, b: u32) -> Result<(), ShmError> {
    let dst = span(words, off, 8)?;
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&a.to_ne_bytes());
    bytes[4..].copy_from_slice(&b.to_ne_bytes());
    let last = dst.len() - 1;
    for (i, (chunk, w)) in bytes.chunks_exact(WORD).zip(dst).enumerate() {
        let mut v = [0u8; WORD];
        v.copy_from_slice(chunk);
        w.store(usize::from_ne_bytes(v), if i == last { Release } else { Relaxed });
    }
    Ok(())
}

/// Writes an 8-byte record header of two native-endian `u32`s at `off`.
#[inline]
pub(crate) fn store_pair(words: &[Word], off: usize, a: u32, b: u32) -> Result<(), ShmError> {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&a.to_ne_bytes());
    bytes[4..].copy_from_slice(&b.to_ne_bytes());
    store(words, off, &bytes)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn words(n: usize) -> std::vec::Vec<Word> {
        (0..n).map(|_| Word::new(0)).collect()
    }

    #[test]
    fn round_trip_every_length() {
        let w = words(8);
        let src: [u8; 40] = core::array::from_fn(|i| i as u8 + 1);
        for len in 0..=40 {
            for off in [0, WORD] {
                if off + len > 8 * WORD {
                    continue;
                }
                store(&w, off, &src[..len]).unwrap();
                let mut out = [0u8; 40];
                load(&w, off, &mut out[..len]).unwrap();
                assert_eq!(out[..len], src[..len], "len {len} off {off}");
            }
        }
    }

    #[test]
    fn out_of_range_and_misaligned_are_corrupt() {
        let w = words(4);
        let mut out = [0u8; 8];
        assert_eq!(load(&w, 4 * WORD, &mut out), Err(ShmError::Corrupt));
        assert_eq!(load(&w, 3, &mut out), Err(ShmError::Corrupt));
        assert_eq!(load(&w, usize::MAX - 7, &mut out), Err(ShmError::Corrupt));
        assert_eq!(store(&w, 3 * WORD, &[0u8; 2 * WORD]), Err(ShmError::Corrupt));
    }

    #[test]
    fn unaligned_loads() {
        // 64 bytes, whatever the word size (4 bytes on 32-bit boards).
        let w = words(64 / WORD);
        let src: [u8; 64] = core::array::from_fn(|i| i as u8);
        store(&w, 0, &src).unwrap();
        for off in 0..20 {
            for len in 0..20 {
                let mut out = [0u8; 20];
                load_unaligned(&w, off, &mut out[..len]).unwrap();
                assert_eq!(out[..len], src[off..off + len], "off {off} len {len}");
            }
        }
        let mut out = [0u8; 4];
        assert_eq!(load_unaligned(&w, 64 - 2, &mut out), Err(ShmError::Corrupt));
    }

    /// Every length around the bulk threshold and the word size, at several offsets, with
    /// private buffers at every alignment: the bulk path (where the target has one) gives
    /// the bytes the word loop gives, and a store pads its last word with zeros.
    #[test]
    fn bulk_copies_match_the_word_loop() {
        let n = 4096 / WORD;
        let src: std::vec::Vec<u8> = (0..4096 + 16).map(|i| (i * 7 + 3) as u8).collect();
        let mut lens: std::vec::Vec<usize> =
            (0..64).chain(FAST_MIN - 16..FAST_MIN + 48).chain([1000, 1001, 2048, 4000, 4096 - 64]).collect();
        let mut skews: std::vec::Vec<usize> = (0..WORD).collect();
        if cfg!(miri) {
            // Miri runs the word loop on both sides (no inline assembly there): a sample
            // for the padding and the bounds, in seconds.
            lens = std::vec![0, 9, FAST_MIN - 1, FAST_MIN + 9];
            skews = std::vec![3];
        }
        for len in lens {
            for off in [0, WORD, 5 * WORD] {
                if off + len.div_ceil(WORD) * WORD > 4096 {
                    continue;
                }
                for &skew in &skews {
                    let fast = words(n);
                    let slow = words(n);
                    for w in fast.iter().chain(&slow) {
                        w.store(usize::MAX, Relaxed);
                    }
                    store(&fast, off, &src[skew..skew + len]).unwrap();
                    store_words(&slow[off / WORD..off / WORD + len.div_ceil(WORD)], &src[skew..skew + len]);
                    let differs = fast.iter().zip(&slow).position(|(f, s)| f.load(Relaxed) != s.load(Relaxed));
                    assert_eq!(differs, None, "store len {len} off {off} skew {skew} (bulk: {})", fastcopy::AVAILABLE);
                    let mut out = std::vec![0xEEu8; len + 2 * WORD];
                    load(&fast, off, &mut out[skew..skew + len]).unwrap();
                    assert_eq!(&out[skew..skew + len], &src[skew..skew + len], "load len {len} off {off} skew {skew}");
                    assert!(out[..skew].iter().chain(&out[skew + len..]).all(|&b| b == 0xEE), "no byte outside");
                }
            }
        }
    }

    #[test]
    fn pairs() {
        let w = words(4);
        store_pair(&w, 8, 0xDEAD_BEEF, 7).unwrap();
        assert_eq!(load_pair(&w, 8).unwrap(), (0xDEAD_BEEF, 7));
    }
}
