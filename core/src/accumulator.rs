//! Stream reassembly: turning a byte stream (pipe, FIFO, stream socket) back into frames.
//!
//! [`FrameAccumulator<N>`] owns an `N`-byte buffer and nothing else. Feed it whatever a
//! `read` returned, in any split; each call to [`FrameAccumulator::feed`] reports one event
//! and hands back the input it has not consumed yet, so the caller loops until the input is
//! used up (postcard's `CobsAccumulator` model):
//!
//! ```
//! use ember_core::accumulator::{FeedResult, FrameAccumulator};
//! use ember_core::message;
//!
//! // Two frames in one read, split awkwardly across two reads.
//! let mut stream = [0u8; 128];
//! let a = message::encode(1, 1, &"first", &mut stream).unwrap().len();
//! let b = message::encode(1, 2, &"second", &mut stream[a..]).unwrap().len();
//! let reads = [&stream[..5], &stream[5..a + b]];
//!
//! let mut acc = FrameAccumulator::<256>::new();
//! let mut got = heapless::Vec::<u32, 4>::new();
//! for read in reads {
//!     let mut window = read;
//!     loop {
//!         match acc.feed(window) {
//!             FeedResult::Consumed => break,
//!             FeedResult::Frame { frame, remaining } => {
//!                 got.push(frame.seq()).unwrap();
//!                 window = remaining;
//!             }
//!             FeedResult::Error { error, remaining } => {
//!                 // Log it; the stream has already re-synchronised.
//!                 let _ = error;
//!                 window = remaining;
//!             }
//!         }
//!     }
//! }
//! assert_eq!(got, [1, 2]);
//! ```
//!
//! # Recovery rules
//!
//! - **Garbage** (bytes that do not start a valid header) is dropped until the magic and a
//!   matching header checksum are found, and counted in
//!   [`FrameAccumulator::dropped_bytes`]. It is not reported as an error: it is expected after
//!   a reader joins a stream midway or a writer died mid-frame.
//! - A header is trusted once its header checksum matches, so its length is trusted too:
//! - **Oversized** frames (total above `N` or the configured limit) are reported as
//!   [`Error::TooLarge`] and their bytes are skipped as they stream past, never buffered.
//! - **Checksum failures** are reported as [`Error::BadCrc`]; then only the first byte of the
//!   bad frame is dropped and the bytes after it are scanned again, since a frame whose
//!   writer died midway is followed by the next writer's frames, inside its declared length.
//!   A corrupt payload thus costs one error and some dropped bytes, and loses nothing else.
//! - **Unknown versions or critical flags** are reported ([`Error::UnsupportedVersion`],
//!   [`Error::UnknownFlags`]) and the frame is skipped: every version keeps the header layout,
//!   so its length is known.
//! - **Unchecked payloads** ([`Integrity::Unchecked`](crate::frame::Integrity)) are accepted,
//!   their header checked as any other; with
//!   [`FrameAccumulator::set_require_checked`] they are reported as
//!   [`Error::UncheckedPayload`] and skipped whole (the header, and so the length, is
//!   trusted). An unchecked frame cut short by a writer that died is not detected: it is
//!   delivered with the next writer's first bytes as the end of its payload (a typed
//!   decode of it then usually fails), and the stream is synchronised again after it.
//!
//! When the buffer is empty and the input holds a whole frame, the frame is yielded straight
//! from the input without a copy.

use crate::error::Error;
use crate::frame::{self, Frame, HEADER_LEN, Integrity, MAGIC};

/// One event of [`FrameAccumulator::feed`].
///
/// `Send` and `Sync`: plain data and a view of the accumulator's bytes.
#[derive(Debug)]
pub enum FeedResult<'a, 'b> {
    /// All input was consumed and no complete frame is waiting: read more.
    Consumed,
    /// A complete, checked frame; feed `remaining` next (it may be empty: still call
    /// `feed` until it returns [`FeedResult::Consumed`], more frames may be buffered).
    Frame {
        /// The frame, valid until the next call to `feed`.
        frame: Frame<&'a [u8]>,
        /// Input not consumed yet.
        remaining: &'b [u8],
    },
    /// A frame was rejected and skipped (or is being skipped); feed `remaining` next.
    Error {
        /// Why: [`Error::TooLarge`], [`Error::BadCrc`], [`Error::UnsupportedVersion`],
        /// [`Error::UnknownFlags`] or [`Error::UncheckedPayload`].
        error: Error,
        /// Input not consumed yet.
        remaining: &'b [u8],
    },
}

/// What a scan of a byte slice found at its start (after `garbage` bytes of garbage).
enum Scan {
    /// Nothing usable yet: drop `garbage` bytes and keep the rest for more input. `need` is
    /// how many more bytes complete the header or frame that starts after the garbage (0
    /// when no frame has started: any amount helps).
    NeedMore { garbage: usize, need: usize },
    /// A complete, valid frame at `garbage..garbage + len`.
    Frame { garbage: usize, len: usize },
    /// A frame with a trusted header that must be rejected: skip `len` bytes from
    /// `garbage` (maybe beyond the slice; `u64` so a 4 GiB length cannot saturate on
    /// 32-bit targets).
    Reject { garbage: usize, len: u64, error: Error },
}

/// Reassembles frames from a byte stream in a fixed `N`-byte buffer.
///
/// Frames larger than `N` (or the configured limit) cannot be received and are skipped.
/// The accumulator never allocates and never panics on any input.
///
/// `Send` and `Sync`: an inline buffer and counters.
#[derive(Clone)]
pub struct FrameAccumulator<const N: usize> {
    buf: [u8; N],
    /// Bytes held in `buf`.
    len: usize,
    /// Bytes at the front of `buf` to discard at the next `feed` (a frame already yielded).
    consumed: usize,
    /// Bytes of a rejected frame still to skip from the input.
    skip: u64,
    /// Largest frame accepted, `<= N`.
    limit: usize,
    /// Reject frames whose payload the checksum does not cover.
    require_checked: bool,
    dropped: u64,
    frames: u64,
    rejected: u64,
    /// What the last `feed` yielded, for [`FrameAccumulator::unget_frame`]: `None`: no
    /// frame; `Some(0)`: a frame in its input; `Some(len)`: a frame of `len` bytes in `buf`.
    last_frame: Option<usize>,
}

impl<const N: usize> core::fmt::Debug for FrameAccumulator<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameAccumulator")
            .field("capacity", &N)
            .field("len", &self.len)
            .field("consumed", &self.consumed)
            .field("skip", &self.skip)
            .field("limit", &self.limit)
            .field("require_checked", &self.require_checked)
            .field("dropped", &self.dropped)
            .field("frames", &self.frames)
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

impl<const N: usize> Default for FrameAccumulator<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameAccumulator<N> {
    /// An empty accumulator accepting frames of up to `N` bytes (header included).
    pub const fn new() -> Self {
        Self::with_limit(N)
    }

    /// An empty accumulator accepting frames of up to `min(limit, N)` bytes.
    ///
    /// `N` must be at least [`HEADER_LEN`]; a smaller `N` fails to compile.
    pub const fn with_limit(limit: usize) -> Self {
        const { assert!(N >= HEADER_LEN, "FrameAccumulator needs room for at least one header") };
        FrameAccumulator {
            buf: [0; N],
            len: 0,
            consumed: 0,
            skip: 0,
            limit: if limit < N { limit } else { N },
            require_checked: false,
            dropped: 0,
            frames: 0,
            rejected: 0,
            last_frame: None,
        }
    }

    /// The largest frame (header plus payload) this accumulator accepts.
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// Whether frames whose payload is not covered by the checksum are refused
    /// ([`Error::UncheckedPayload`], the frame skipped) rather than accepted (the default).
    pub fn set_require_checked(&mut self, on: bool) {
        self.require_checked = on;
    }

    /// Whether [`set_require_checked`](Self::set_require_checked) is on.
    pub const fn requires_checked(&self) -> bool {
        self.require_checked
    }

    /// Garbage bytes dropped while looking for a frame header, since creation.
    pub const fn dropped_bytes(&self) -> u64 {
        self.dropped
    }

    /// Frames yielded since creation.
    pub const fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames rejected (reported as [`FeedResult::Error`]) since creation.
    pub const fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Bytes buffered: a partial frame waiting for the rest.
    pub const fn buffered(&self) -> usize {
        self.len - self.consumed
    }

    /// Forgets any partial frame and pending skip (e.g. after reconnecting). Counters stay.
    pub fn reset(&mut self) {
        self.len = 0;
        self.consumed = 0;
        self.skip = 0;
    }

    /// Takes back the frame the last [`feed`](Self::feed) returned, for a caller that could
    /// not take it (its buffer was too small), so that nothing is lost.
    ///
    /// `true`: the accumulator held the frame, and the next `feed` returns it again
    /// whatever input it is given (pass the same `remaining`). `false`: the frame was part
    /// of that call's input; feed the input again from the frame's first byte. Call it right
    /// after the `feed` that returned the frame, at most once.
    /// Without a frame from the last `feed` there is nothing to give back: `false`, and
    /// nothing changes.
    pub fn unget_frame(&mut self) -> bool {
        let Some(held) = self.last_frame.take() else {
            return false;
        };
        self.frames = self.frames.saturating_sub(1);
        if held > 0 && held <= self.consumed {
            self.consumed -= held;
            true
        } else {
            false
        }
    }

    /// Feeds bytes; see the [module docs](self) for the loop and the recovery rules.
    pub fn feed<'a, 'b: 'a>(&'a mut self, input: &'b [u8]) -> FeedResult<'a, 'b> {
        self.last_frame = None;
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.len, 0);
            self.len -= self.consumed;
            self.consumed = 0;
        }
        let mut input = input;
        if self.skip > 0 {
            let n = clamp(self.skip, input.len());
            self.skip -= n as u64;
            input = &input[n..];
            if self.skip > 0 {
                return FeedResult::Consumed;
            }
        }

        // Fast path: nothing buffered, look for a frame in the input itself.
        if self.len == 0 {
            return match scan(input, self.limit, self.require_checked) {
                Scan::NeedMore { garbage, .. } => {
                    self.dropped += garbage as u64;
                    let rest = &input[garbage..];
                    // A NeedMore tail is shorter than one accepted frame, so it fits.
                    self.buf[..rest.len()].copy_from_slice(rest);
                    self.len = rest.len();
                    FeedResult::Consumed
                }
                Scan::Frame { garbage, len } => {
                    self.dropped += garbage as u64;
                    self.frames += 1;
                    self.last_frame = Some(0);
                    let (frame, remaining) = input[garbage..].split_at(len);
                    FeedResult::Frame { frame: Frame::new_unchecked(frame), remaining }
                }
                Scan::Reject { garbage, len, error } => {
                    self.dropped += garbage as u64;
                    self.rejected += 1;
                    let taken = clamp(len, input.len() - garbage);
                    self.skip = len - taken as u64;
                    FeedResult::Error { error, remaining: &input[garbage + taken..] }
                }
            };
        }

        // Buffered path: scan the buffer, then append only what the partial frame still
        // needs, so that once it is complete the buffer empties and the rest of the input
        // takes the fast path again.
        loop {
            match scan(&self.buf[..self.len], self.limit, self.require_checked) {
                Scan::NeedMore { garbage, need } => {
                    self.dropped += garbage as u64;
                    self.buf.copy_within(garbage..self.len, 0);
                    self.len -= garbage;
                    if input.is_empty() {
                        return FeedResult::Consumed;
                    }
                    let room = N - self.len;
                    let want = if need == 0 { room } else { need.min(room) };
                    let take = want.min(input.len());
                    self.buf[self.len..self.len + take].copy_from_slice(&input[..take]);
                    self.len += take;
                    input = &input[take..];
                }
                Scan::Frame { garbage, len } => {
                    self.dropped += garbage as u64;
                    self.frames += 1;
                    self.consumed = garbage + len;
                    self.last_frame = Some(len);
                    let frame = Frame::new_unchecked(&self.buf[garbage..garbage + len]);
                    return FeedResult::Frame { frame, remaining: input };
                }
                Scan::Reject { garbage, len, error } => {
                    self.dropped += garbage as u64;
                    self.rejected += 1;
                    let held = self.len - garbage;
                    if len <= held as u64 {
                        self.consumed = garbage + len as usize;
                    } else {
                        self.len = 0;
                        self.skip = len - held as u64;
                        let n = clamp(self.skip, input.len());
                        self.skip -= n as u64;
                        input = &input[n..];
                    }
                    return FeedResult::Error { error, remaining: input };
                }
            }
        }
    }
}

/// `min(a, b)` for a 64-bit count and a slice length.
fn clamp(a: u64, b: usize) -> usize {
    usize::try_from(a).map_or(b, |a| a.min(b))
}

/// The full length a trusted header declares, computed without saturation.
fn declared_len(header: &[u8]) -> u64 {
    HEADER_LEN as u64 + u64::from(Frame::new_unchecked(header).payload_len())
}

/// Finds the first frame event in `bytes`; `checked`: refuse unchecked payloads.
fn scan(bytes: &[u8], limit: usize, checked: bool) -> Scan {
    let mut at = 0;
    loop {
        // Find the next magic.
        let rest = &bytes[at..];
        let Some(pos) = rest.windows(2).position(|w| w == MAGIC) else {
            // Keep a trailing first magic byte: it may be the start of a header.
            let keep = usize::from(rest.last() == Some(&MAGIC[0]));
            return Scan::NeedMore { garbage: bytes.len() - keep, need: 0 };
        };
        at += pos;
        let candidate = &bytes[at..];
        if candidate.len() < HEADER_LEN {
            return Scan::NeedMore { garbage: at, need: HEADER_LEN - candidate.len() };
        }
        match frame::check_header_bytes(candidate) {
            Err(Error::BadMagic | Error::BadHeaderCrc) => {
                // Not a header after all: step over this magic and look again.
                at += 1;
                continue;
            }
            Err(error) => {
                // Unknown version or critical flags, or above the format limit: the header
                // checksum matched, so the declared length is trusted and the frame skipped.
                return Scan::Reject { garbage: at, len: declared_len(candidate), error };
            }
            Ok(total) => {
                if total > limit {
                    let error = Error::TooLarge {
                        len: u32::try_from(total).unwrap_or(u32::MAX),
                        limit: u32::try_from(limit).unwrap_or(u32::MAX),
                    };
                    return Scan::Reject { garbage: at, len: total as u64, error };
                }
                if checked && Frame::new_unchecked(candidate).integrity() == Integrity::Unchecked {
                    // A well-formed frame the receiver does not take: skip it whole.
                    return Scan::Reject { garbage: at, len: total as u64, error: Error::UncheckedPayload };
                }
                if candidate.len() < total {
                    return Scan::NeedMore { garbage: at, need: total - candidate.len() };
                }
                let frame = Frame::new_unchecked(&candidate[..total]);
                return match frame.check_crc() {
                    Ok(()) => Scan::Frame { garbage: at, len: total },
                    // Either the payload is corrupt or the header belongs to a frame whose
                    // writer died midway and the bytes after it are the next frames. Skip
                    // only the magic's first byte and rescan, so nothing that follows is lost.
                    Err(error) => Scan::Reject { garbage: at, len: 1, error },
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message;

    fn frame_bytes(seq: u32, payload_len: usize, out: &mut [u8]) -> usize {
        let payload = [seq as u8; 200];
        let repr = frame::FrameRepr { flags: frame::Flags::empty(), kind: 3, seq, payload_len };
        repr.emit_with_payload(&payload[..payload_len], out).unwrap().len()
    }

    /// Feeds `input` in one call sequence and collects (seq | error) events.
    fn drain<const N: usize>(
        acc: &mut FrameAccumulator<N>,
        input: &[u8],
        out: &mut heapless::Vec<Result<u32, Error>, 32>,
    ) {
        let mut window = input;
        loop {
            match acc.feed(window) {
                FeedResult::Consumed => break,
                FeedResult::Frame { frame, remaining } => {
                    assert!(Frame::new_checked(frame.as_bytes()).is_ok());
                    out.push(Ok(frame.seq())).unwrap();
                    window = remaining;
                }
                FeedResult::Error { error, remaining } => {
                    out.push(Err(error)).unwrap();
                    window = remaining;
                }
            }
        }
    }

    #[test]
    fn a_frame_given_back_is_returned_again() {
        let mut stream = [0u8; 256];
        let mut n = frame_bytes(1, 40, &mut stream);
        n += frame_bytes(2, 3, &mut stream[n..]);
        // Fast path: the frame is in the input; it is fed again from its first byte.
        let mut acc = FrameAccumulator::<128>::new();
        let (seq, rest) = match acc.feed(&stream[..n]) {
            FeedResult::Frame { frame, remaining } => (frame.seq(), remaining.len()),
            _ => panic!("a frame"),
        };
        assert_eq!((seq, rest), (1, n - 64));
        assert!(!acc.unget_frame());
        assert_eq!(acc.frames(), 0);
        // Buffered path: split inside the first frame, so the accumulator holds it.
        let mut acc = FrameAccumulator::<128>::new();
        assert!(matches!(acc.feed(&stream[..10]), FeedResult::Consumed));
        let rest = match acc.feed(&stream[10..n]) {
            FeedResult::Frame { frame, remaining } => {
                assert_eq!(frame.seq(), 1);
                remaining.len()
            }
            _ => panic!("a frame"),
        };
        assert!(acc.unget_frame());
        let tail = &stream[n - rest..n];
        let mut got = heapless::Vec::new();
        drain(&mut acc, tail, &mut got);
        assert_eq!(got, [Ok(1), Ok(2)], "given back, then returned again, then the next");
        assert_eq!(acc.frames(), 2);
        assert!(!acc.unget_frame(), "the last feed yielded nothing");
        assert_eq!(acc.frames(), 2);
    }

    #[test]
    fn byte_at_a_time() {
        let mut stream = [0u8; 256];
        let mut n = frame_bytes(1, 10, &mut stream);
        n += frame_bytes(2, 0, &mut stream[n..]);
        let mut acc = FrameAccumulator::<64>::new();
        let mut got = heapless::Vec::new();
        for b in &stream[..n] {
            drain(&mut acc, core::slice::from_ref(b), &mut got);
        }
        assert_eq!(got, [Ok(1), Ok(2)]);
        assert_eq!(acc.dropped_bytes(), 0);
        assert_eq!(acc.buffered(), 0);
    }

    #[test]
    fn garbage_is_skipped_and_counted() {
        let mut stream = [0u8; 256];
        stream[..7].copy_from_slice(b"EEMjunk");
        let mut n = 7 + frame_bytes(5, 20, &mut stream[7..]);
        stream[n..n + 3].copy_from_slice(b"EMx");
        n += 3;
        n += frame_bytes(6, 1, &mut stream[n..]);
        for split in 0..n {
            let mut acc = FrameAccumulator::<64>::new();
            let mut got = heapless::Vec::new();
            drain(&mut acc, &stream[..split], &mut got);
            drain(&mut acc, &stream[split..n], &mut got);
            assert_eq!(got, [Ok(5), Ok(6)], "split at {split}");
            assert_eq!(acc.dropped_bytes(), 10, "split at {split}");
        }
    }

    #[test]
    fn truncated_frame_then_new_writer_resynchronises() {
        // A writer died after half a frame; the next writer's frames follow.
        let mut stream = [0u8; 256];
        let full = frame_bytes(1, 30, &mut stream);
        let half = full / 2;
        let mut n = half;
        n += frame_bytes(2, 4, &mut stream[n..]);
        n += frame_bytes(3, 4, &mut stream[n..]);
        let mut acc = FrameAccumulator::<128>::new();
        let mut got = heapless::Vec::new();
        drain(&mut acc, &stream[..n], &mut got);
        // The dead frame's header claims 54 bytes, which takes in the start of frame 2, so its
        // CRC fails; the rescan after it still finds frames 2 and 3.
        assert_eq!(got, [Err(Error::BadCrc), Ok(2), Ok(3)]);
        assert_eq!(acc.dropped_bytes(), half as u64 - 1);
    }

    #[test]
    fn error_too_large_skipped_without_buffering() {
        let mut stream = [0u8; 512];
        let mut n = frame_bytes(1, 150, &mut stream); // 174 bytes > 64
        n += frame_bytes(2, 8, &mut stream[n..]);
        for chunk in [1usize, 7, 30, 64, 500] {
            let mut acc = FrameAccumulator::<64>::new();
            let mut got = heapless::Vec::new();
            for piece in stream[..n].chunks(chunk) {
                drain(&mut acc, piece, &mut got);
                assert!(acc.buffered() <= 64);
            }
            assert_eq!(got, [Err(Error::TooLarge { len: 174, limit: 64 }), Ok(2)], "chunk {chunk}");
            assert_eq!(acc.dropped_bytes(), 0);
        }
    }

    #[test]
    fn configured_limit_below_capacity() {
        let mut stream = [0u8; 256];
        let mut n = frame_bytes(1, 40, &mut stream);
        n += frame_bytes(2, 4, &mut stream[n..]);
        let mut acc = FrameAccumulator::<128>::with_limit(48);
        assert_eq!(acc.limit(), 48);
        let mut got = heapless::Vec::new();
        drain(&mut acc, &stream[..n], &mut got);
        assert_eq!(got, [Err(Error::TooLarge { len: 64, limit: 48 }), Ok(2)]);
        assert_eq!(acc.rejected(), 1);
        assert_eq!(acc.frames(), 1);
    }

    #[test]
    fn error_bad_crc_then_next_frame() {
        let mut stream = [0u8; 256];
        let a = frame_bytes(1, 10, &mut stream);
        stream[HEADER_LEN + 3] ^= 0xFF;
        let n = a + frame_bytes(2, 10, &mut stream[a..]);
        for split in [0, 5, 30, a, n] {
            let mut acc = FrameAccumulator::<64>::new();
            let mut got = heapless::Vec::new();
            drain(&mut acc, &stream[..split], &mut got);
            drain(&mut acc, &stream[split..n], &mut got);
            assert_eq!(got, [Err(Error::BadCrc), Ok(2)], "split {split}");
        }
    }

    #[test]
    fn error_unsupported_version_and_unknown_flags_skip_frame() {
        let mut stream = [0u8; 256];
        let a = frame_bytes(1, 10, &mut stream);
        stream[2] = 9;
        Frame::new_unchecked(&mut stream[..a]).fill_checksums();
        let b = frame_bytes(2, 10, &mut stream[a..]);
        stream[a + 3] = 0x08;
        Frame::new_unchecked(&mut stream[a..a + b]).fill_checksums();
        let n = a + b + frame_bytes(3, 1, &mut stream[a + b..]);
        let mut acc = FrameAccumulator::<64>::new();
        let mut got = heapless::Vec::new();
        drain(&mut acc, &stream[..n], &mut got);
        assert_eq!(got, [Err(Error::UnsupportedVersion(9)), Err(Error::UnknownFlags(0x08)), Ok(3)]);
    }

    fn unchecked_frame_bytes(seq: u32, payload_len: usize, out: &mut [u8]) -> usize {
        let payload = [seq as u8; 200];
        let repr = frame::FrameRepr { flags: Integrity::Unchecked.flags(), kind: 3, seq, payload_len };
        repr.emit_with_payload(&payload[..payload_len], out).unwrap().len()
    }

    #[test]
    fn checked_and_unchecked_frames_mixed_in_any_split() {
        let mut stream = [0u8; 256];
        stream[..3].copy_from_slice(b"EMx");
        let mut n = 3 + unchecked_frame_bytes(1, 20, &mut stream[3..]);
        n += frame_bytes(2, 7, &mut stream[n..]);
        n += unchecked_frame_bytes(3, 0, &mut stream[n..]);
        for split in 0..n {
            let mut acc = FrameAccumulator::<64>::new();
            let mut got = heapless::Vec::new();
            drain(&mut acc, &stream[..split], &mut got);
            drain(&mut acc, &stream[split..n], &mut got);
            assert_eq!(got, [Ok(1), Ok(2), Ok(3)], "split at {split}");
            assert_eq!(acc.dropped_bytes(), 3);
        }
    }

    #[test]
    fn error_unchecked_payload_when_required_skips_the_frame() {
        let mut stream = [0u8; 512];
        let mut n = unchecked_frame_bytes(1, 150, &mut stream); // longer than the buffer, too
        n += frame_bytes(2, 7, &mut stream[n..]);
        n += unchecked_frame_bytes(3, 5, &mut stream[n..]);
        n += frame_bytes(4, 0, &mut stream[n..]);
        for chunk in [1usize, 7, 30, 64, 500] {
            let mut acc = FrameAccumulator::<256>::new();
            acc.set_require_checked(true);
            assert!(acc.requires_checked());
            let mut got = heapless::Vec::new();
            for piece in stream[..n].chunks(chunk) {
                drain(&mut acc, piece, &mut got);
            }
            let e = Err(Error::UncheckedPayload);
            assert_eq!(got, [e, Ok(2), e, Ok(4)], "chunk {chunk}");
            assert_eq!((acc.dropped_bytes(), acc.rejected()), (0, 2));
        }
    }

    #[test]
    fn unchecked_frame_cut_short_swallows_the_next_writers_bytes_then_resynchronises() {
        // What `Integrity::Unchecked` gives up on a stream (documented in the module docs):
        // no payload check, so a dead writer's half frame takes the next bytes as payload.
        let mut stream = [0u8; 256];
        let full = unchecked_frame_bytes(1, 30, &mut stream);
        let half = full / 2;
        let mut n = half;
        n += frame_bytes(2, 4, &mut stream[n..]);
        n += frame_bytes(3, 40, &mut stream[n..]);
        let mut acc = FrameAccumulator::<128>::new();
        let mut got = heapless::Vec::new();
        drain(&mut acc, &stream[..n], &mut got);
        // Frame 1 declares 54 bytes: it is delivered with all but the last byte of frame 2
        // as the end of its payload. Frame 2 is lost, its last byte dropped as garbage, and
        // frame 3 is received.
        assert_eq!(got, [Ok(1), Ok(3)]);
        assert_eq!(acc.dropped_bytes(), (half + 28 - full) as u64);
    }

    #[test]
    fn typed_decode_of_yielded_frame() {
        let mut stream = [0u8; 64];
        let n = message::encode(9, 4, &("ok", 17u16), &mut stream).unwrap().len();
        let mut acc = FrameAccumulator::<64>::new();
        match acc.feed(&stream[..n]) {
            FeedResult::Frame { frame, remaining } => {
                assert!(remaining.is_empty());
                let v: (&str, u16) = message::decode_frame(&frame).unwrap();
                assert_eq!(v, ("ok", 17));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn after_a_split_frame_the_rest_of_the_read_is_not_copied() {
        let mut stream = [0u8; 256];
        let mut n = frame_bytes(1, 10, &mut stream);
        let second = n;
        n += frame_bytes(2, 10, &mut stream[n..]);
        n += frame_bytes(3, 10, &mut stream[n..]);
        let mut acc = FrameAccumulator::<256>::new();
        assert!(matches!(acc.feed(&stream[..5]), FeedResult::Consumed));
        let read = &stream[5..n];
        let FeedResult::Frame { frame, remaining } = acc.feed(read) else { panic!("frame 1") };
        assert_eq!(frame.seq(), 1);
        // Only the rest of frame 1 was taken into the buffer.
        assert_eq!(remaining.len(), n - second);
        let FeedResult::Frame { frame, remaining } = acc.feed(remaining) else { panic!("frame 2") };
        assert_eq!(frame.seq(), 2);
        assert!(read.as_ptr_range().contains(&frame.as_bytes().as_ptr()), "frame 2 was copied");
        let FeedResult::Frame { frame, .. } = acc.feed(remaining) else { panic!("frame 3") };
        assert_eq!(frame.seq(), 3);
    }

    #[test]
    fn reset_forgets_partial_frame() {
        let mut stream = [0u8; 64];
        let n = frame_bytes(1, 10, &mut stream);
        let mut acc = FrameAccumulator::<64>::new();
        assert!(matches!(acc.feed(&stream[..n - 1]), FeedResult::Consumed));
        assert_eq!(acc.buffered(), n - 1);
        acc.reset();
        assert_eq!(acc.buffered(), 0);
        let mut got = heapless::Vec::new();
        drain(&mut acc, &stream[..n], &mut got);
        assert_eq!(got, [Ok(1)]);
    }
}
