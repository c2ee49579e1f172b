//! The connection's queue: whole messages kept, in arrival order, in the caller's buffer
//! (see [`super::buffers`]) until a receive or a pending call takes them.
//!
//! ```text
//! head                                                   tail
//! | len u32 | state u32 | reply_serial u32 | seq u32 | message bytes, padded to 8 | ...
//! ```
//!
//! `state` is 0 while the message waits, 1 once taken (taken entries in the middle stay
//! until the ones before them are taken too; `head` then moves past them all).
//! `reply_serial` is 0 unless the message is a reply or an error reply. New entries go at
//! `tail`; when the buffer's end is reached the live part is moved to its start. A message
//! that does not fit is dropped and counted. Nothing here panics on any contents: indices
//! are checked against the slice.

/// Bytes of an entry's header.
const ENTRY_HEADER: usize = 16;

/// Where the queue is in its buffer, and what it has seen.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    head: usize,
    tail: usize,
    /// Sequence number of the next message pushed.
    next_seq: u32,
    /// Messages dropped because they did not fit, in all.
    pub(crate) dropped: u64,
    /// The sequence number the first message dropped since the last report would have had.
    pub(crate) lost_at: Option<u32>,
}

/// An entry found in the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// Offset of its header.
    at: usize,
    /// Offset of the message's first byte, and its length.
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) reply_serial: u32,
    pub(crate) seq: u32,
}

fn word(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at + 4) {
        Some(b) => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

fn put(buf: &mut [u8], at: usize, v: u32) {
    if let Some(b) = buf.get_mut(at..at + 4) {
        b.copy_from_slice(&v.to_ne_bytes());
    }
}

const fn padded(len: usize) -> usize {
    (len + 7) & !7
}

impl Queue {
    /// Whether nothing waits in it.
    pub(crate) fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Appends `message` (a reply to `reply_serial`, or 0); returns its sequence number, or
    /// `None` if it did not fit (then it is counted as dropped).
    pub(crate) fn push(&mut self, buf: &mut [u8], message: &[u8], reply_serial: u32) -> Option<u32> {
        let need = ENTRY_HEADER + padded(message.len());
        if buf.len().saturating_sub(self.tail) < need && self.head > 0 {
            buf.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
        if buf.len().saturating_sub(self.tail) < need {
            self.drop_one();
            return None;
        }
        let (at, seq) = (self.tail, self.next_seq);
        put(buf, at, message.len() as u32);
        put(buf, at + 4, 0);
        put(buf, at + 8, reply_serial);
        put(buf, at + 12, seq);
        buf[at + ENTRY_HEADER..at + ENTRY_HEADER + message.len()].copy_from_slice(message);
        self.tail += need;
        self.next_seq = seq.wrapping_add(1);
        Some(seq)
    }

    /// Counts a message that could not be queued.
    pub(crate) fn drop_one(&mut self) {
        self.dropped += 1;
        if self.lost_at.is_none() {
            self.lost_at = Some(self.next_seq);
        }
        // The lost message takes a sequence number: those queued after it come after the
        // loss.
        self.next_seq = self.next_seq.wrapping_add(1);
    }

    /// The first live entry for which `want` holds.
    pub(crate) fn find(&self, buf: &[u8], want: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let mut at = self.head;
        while at + ENTRY_HEADER <= self.tail {
            let len = word(buf, at) as usize;
            let e =
                Entry { at, start: at + ENTRY_HEADER, len, reply_serial: word(buf, at + 8), seq: word(buf, at + 12) };
            if word(buf, at + 4) == 0 && e.start + len <= self.tail && want(&e) {
                return Some(e);
            }
            at += ENTRY_HEADER + padded(len);
        }
        None
    }

    /// Marks `e` taken (its bytes stay where they are until the next push), and moves
    /// `head` past the taken entries at the front.
    pub(crate) fn take(&mut self, buf: &mut [u8], e: &Entry) {
        put(buf, e.at + 4, 1);
        while self.head + ENTRY_HEADER <= self.tail && word(buf, self.head + 4) == 1 {
            self.head += ENTRY_HEADER + padded(word(buf, self.head) as usize);
        }
        if self.head >= self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }
}

/// Whether sequence number `a` comes before `b` (wrapping).
pub(crate) fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_with_out_of_order_takes_and_overflow() {
        let mut buf = [0u8; 80];
        let mut q = Queue::default();
        assert_eq!(q.push(&mut buf, b"one", 0), Some(0));
        assert_eq!(q.push(&mut buf, b"two", 7), Some(1));
        assert_eq!(q.push(&mut buf, b"three", 0), Some(2));
        // 3 × 24 bytes: a fourth does not fit.
        assert_eq!(q.push(&mut buf, b"four", 0), None);
        assert_eq!((q.dropped, q.lost_at), (1, Some(3)));
        // The reply to 7 is taken out of order; the first is still first.
        let r = q.find(&buf, |e| e.reply_serial == 7).unwrap();
        assert_eq!(&buf[r.start..r.start + r.len], b"two");
        q.take(&mut buf, &r);
        let e = q.find(&buf, |_| true).unwrap();
        assert_eq!(&buf[e.start..e.start + e.len], b"one");
        q.take(&mut buf, &e);
        // Room again at the end after a move to the front.
        assert_eq!(q.push(&mut buf, b"five", 0), Some(4));
        let e = q.find(&buf, |_| true).unwrap();
        assert_eq!((&buf[e.start..e.start + e.len], e.seq), (&b"three"[..], 2));
        q.take(&mut buf, &e);
        let e = q.find(&buf, |_| true).unwrap();
        assert_eq!((&buf[e.start..e.start + e.len], e.seq), (&b"five"[..], 4));
        q.take(&mut buf, &e);
        assert!(q.is_empty());
        assert!(before(2, 3) && !before(3, 3) && before(u32::MAX, 0));
        // An empty buffer queues nothing.
        let mut none = Queue::default();
        assert_eq!(none.push(&mut [], b"x", 0), None);
    }
}
