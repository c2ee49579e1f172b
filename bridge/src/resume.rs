//! Where each inbound route stopped: the resume file, which lets a restarted bridge count
//! the frames its predecessor never wrote.
//!
//! A receiving bridge that dies mid-stream (a crash, `kill -9`, the OOM killer) takes with
//! it the frames Zenoh had handed it but it had not written yet, and the ones still in
//! flight to it until the sending bridge saw it gone. Its counters die with it, and a new
//! process cannot see those frames. What it can see is the sending bridge's numbering: each
//! sample carries the route's sequence number ([`Attachment`]). So after every frame an
//! inbound route has *handled* (written, dropped or refused: every outcome that a counter
//! records), it stores that frame's epoch and sequence number in a small shared-memory
//! file that outlives the process, `/dev/shm/ember-bridge.{board}.resume`. A restarted
//! bridge starts each inbound route's gap count from there, so its `lost` counter covers
//! the frames that died with its predecessor, and those published while no bridge was
//! running (a `drop` publisher publishes to nobody).
//!
//! The file stays after a clean exit too (it is the state a restart needs); delete it to
//! start counting afresh.
//!
//! ```text
//!  word 0        1
//!  +-------------+-------------+
//!  | magic       | slots       |            header, 16 bytes
//!  +-------------+-------------+-------------+-------------+
//!  | key hash    | epoch       | next        | 0           |   slot i: route i of the table
//!  +-------------+-------------+-------------+-------------+
//!   next = last handled sequence + 1; 0: no frame handled yet
//! ```
//!
//! Native-endian `u64` words (the file never leaves the machine), stored and loaded as
//! atomics. A slot whose key hash is not its route's key (the table changed) starts
//! empty; a file of another size or magic starts empty as a whole.
//!
//! **Exactness.** The store that records a frame comes after the frame's write, so a
//! bridge killed between the two (a few instructions) leaves that one frame unrecorded,
//! and its successor counts it `lost` although the reader got it: `lost` may be one over,
//! never under. An epoch change clears `next` before it stores the new epoch, so a kill in
//! between leaves an empty slot (nothing counted), never a gap measured against another
//! epoch's sequence.
//!
//! # Panics
//!
//! None.
//!
//! # Example
//!
//! ```
//! use ember_bridge::frames::Attachment;
//! use ember_bridge::resume::ResumeFile;
//!
//! let name = format!("/ember-doc-resume-{}", std::process::id());
//! let file = ResumeFile::open(&name, &["ember/a/imu"]).unwrap();
//! let slot = file.slot(0).unwrap();
//! assert_eq!(slot.last(), None);
//! slot.record(Attachment { epoch: 7, seq: 41 });
//! drop((slot, file));
//! // A restarted bridge finds where its predecessor stopped.
//! let file = ResumeFile::open(&name, &["ember/a/imu"]).unwrap();
//! assert_eq!(file.slot(0).unwrap().last(), Some(Attachment { epoch: 7, seq: 41 }));
//! // While it is open, nobody else opens it (one bridge per file).
//! assert!(ResumeFile::open(&name, &["ember/a/imu"]).is_err());
//! drop(file);
//! // Another table's route starts empty.
//! let file = ResumeFile::open(&name, &["ember/b/imu"]).unwrap();
//! assert_eq!(file.slot(0).unwrap().last(), None);
//! ResumeFile::remove(&name).unwrap();
//! ```
#![allow(unsafe_code)]

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::{Acquire, Release};
use std::sync::Arc;

use rustix::fd::OwnedFd;
use rustix::fs::Mode;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm::OFlags;

use crate::frames::Attachment;

/// "EMBRRSM1", the file's first word.
const MAGIC: u64 = u64::from_le_bytes(*b"EMBRRSM1");
const HEADER_WORDS: usize = 2;
const SLOT_WORDS: usize = 4;

/// The resume file of `board`: `/ember-bridge.{board}.resume` (a POSIX shm name).
pub fn resume_name(board: &str) -> String {
    format!("/ember-bridge.{board}.resume")
}

/// The mapped resume file: one slot per route of the table.
#[derive(Debug)]
pub struct ResumeFile {
    map: Arc<MapInner>,
}

/// One route's slot in a [`ResumeFile`].
#[derive(Debug, Clone)]
pub struct Slot {
    map: Arc<MapInner>,
    index: usize,
}

/// A `MAP_SHARED` mapping of the whole file, unmapped on drop.
#[derive(Debug)]
struct MapInner {
    ptr: core::ptr::NonNull<AtomicU64>,
    words: usize,
    _fd: OwnedFd,
}

// SAFETY: the mapping is shared memory accessed only through atomics, from any thread.
unsafe impl Send for MapInner {}
// SAFETY: as above: every access through `&MapInner` is an atomic load or store.
unsafe impl Sync for MapInner {}

impl MapInner {
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` is a live, page-aligned, read-write mapping of `words` 8-byte words,
        // owned by `self` and unmapped only in `drop`. Every bit pattern is a valid
        // `AtomicU64`, and every access goes through atomics, so another process writing
        // the same file at the same time is not a data race in Rust's model.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.words) }
    }
}

impl Drop for MapInner {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `mmap` with this address and length, and no
        // reference into it outlives `self` (`words` borrows `self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.words * 8) };
    }
}

/// FNV-1a of a route's key expression: which route a slot belongs to.
fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl ResumeFile {
    /// Opens (or creates, mode 0600) the resume file `name` for a table whose routes have
    /// the key expressions `keys`, in table order. Slots whose key changed, and the whole
    /// file if its size or magic is not this table's, start empty. The file is locked
    /// (`flock`) while the returned value lives: another process's open of it fails with
    /// `EBUSY`.
    pub fn open(name: &str, keys: &[&str]) -> Result<ResumeFile, rustix::io::Errno> {
        let words = HEADER_WORDS + SLOT_WORDS * keys.len();
        let len = words * 8;
        let fd = rustix::shm::open(name, OFlags::CREATE | OFlags::RDWR, Mode::from_bits_truncate(0o600))?;
        // One bridge per file: a second one (the same board started twice) would resize
        // the file under the first one's mapping, whose next store would be a SIGBUS. The
        // lock goes with the descriptor, which the mapping keeps open, and with the process.
        rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| if e == rustix::io::Errno::WOULDBLOCK { rustix::io::Errno::BUSY } else { e })?;
        let old_len = rustix::fs::fstat(&fd)?.st_size;
        if old_len != len as i64 {
            rustix::fs::ftruncate(&fd, 0)?;
            rustix::fs::ftruncate(&fd, len as u64)?;
        }
        // SAFETY: a fresh mapping at an address the kernel chooses (null hint), so it
        // overlaps no Rust object; it is only ever accessed through `MapInner::words`.
        let ptr = unsafe {
            rustix::mm::mmap(core::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &fd, 0)?
        };
        let ptr = core::ptr::NonNull::new(ptr.cast::<AtomicU64>()).ok_or(rustix::io::Errno::NOMEM)?;
        let map = Arc::new(MapInner { ptr, words, _fd: fd });
        let w = map.words();
        if w[0].load(Acquire) != MAGIC || w[1].load(Acquire) != keys.len() as u64 {
            w.iter().for_each(|x| x.store(0, Release));
            w[1].store(keys.len() as u64, Release);
            w[0].store(MAGIC, Release);
        }
        for (i, key) in keys.iter().enumerate() {
            let s = &w[HEADER_WORDS + SLOT_WORDS * i..][..SLOT_WORDS];
            let h = key_hash(key);
            if s[0].load(Acquire) != h {
                s[2].store(0, Release);
                s[1].store(0, Release);
                s[0].store(h, Release);
            }
        }
        Ok(ResumeFile { map })
    }

    /// Route `index`'s slot, or `None` past the table.
    pub fn slot(&self, index: usize) -> Option<Slot> {
        let slots = (self.map.words - HEADER_WORDS) / SLOT_WORDS;
        (index < slots).then(|| Slot { map: self.map.clone(), index })
    }

    /// Removes the file `name` (a bridge that should forget where its routes stopped).
    pub fn remove(name: &str) -> Result<(), rustix::io::Errno> {
        rustix::shm::unlink(name)
    }
}

impl Slot {
    fn words(&self) -> &[AtomicU64] {
        &self.map.words()[HEADER_WORDS + SLOT_WORDS * self.index..][..SLOT_WORDS]
    }

    /// The last frame this route handled, as the file says (a predecessor's, at start).
    pub fn last(&self) -> Option<Attachment> {
        let w = self.words();
        let next = w[2].load(Acquire);
        (next != 0).then(|| Attachment { epoch: w[1].load(Acquire), seq: next - 1 })
    }

    /// Records `a` as the last frame handled: one store, two more on a new epoch.
    pub fn record(&self, a: Attachment) {
        let w = self.words();
        if w[1].load(Acquire) != a.epoch {
            w[2].store(0, Release);
            w[1].store(a.epoch, Release);
        }
        w[2].store(a.seq.wrapping_add(1), Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(tag: &str) -> String {
        format!("/ember-resume-test-{}-{tag}", std::process::id())
    }

    #[test]
    fn slots_survive_reopening_and_follow_their_keys() {
        let n = name("keys");
        let f = ResumeFile::open(&n, &["k/a", "k/b"]).unwrap();
        f.slot(0).unwrap().record(Attachment { epoch: 1, seq: 10 });
        f.slot(1).unwrap().record(Attachment { epoch: 2, seq: 0 });
        assert!(f.slot(2).is_none());
        drop(f);
        // Same table: both kept. Seq 0 is a record too (next = 1).
        let f = ResumeFile::open(&n, &["k/a", "k/b"]).unwrap();
        assert_eq!(f.slot(0).unwrap().last(), Some(Attachment { epoch: 1, seq: 10 }));
        assert_eq!(f.slot(1).unwrap().last(), Some(Attachment { epoch: 2, seq: 0 }));
        // A new epoch replaces the old one's sequence.
        f.slot(0).unwrap().record(Attachment { epoch: 3, seq: 5 });
        assert_eq!(f.slot(0).unwrap().last(), Some(Attachment { epoch: 3, seq: 5 }));
        drop(f);
        // The second route changed: only its slot starts empty.
        let f = ResumeFile::open(&n, &["k/a", "k/c"]).unwrap();
        assert_eq!(f.slot(0).unwrap().last(), Some(Attachment { epoch: 3, seq: 5 }));
        assert_eq!(f.slot(1).unwrap().last(), None);
        drop(f);
        // Another number of routes: the whole file starts empty.
        let f = ResumeFile::open(&n, &["k/a"]).unwrap();
        assert_eq!(f.slot(0).unwrap().last(), None);
        ResumeFile::remove(&n).unwrap();
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_the_file() {
        let n = name("busy");
        let first = ResumeFile::open(&n, &["k/a"]).unwrap();
        first.slot(0).unwrap().record(Attachment { epoch: 1, seq: 2 });
        // Another table for the same file: refused, and the first one's slot is intact.
        assert_eq!(ResumeFile::open(&n, &["k/a", "k/b"]).unwrap_err(), rustix::io::Errno::BUSY);
        assert_eq!(first.slot(0).unwrap().last(), Some(Attachment { epoch: 1, seq: 2 }));
        drop(first);
        assert_eq!(
            ResumeFile::open(&n, &["k/a"]).unwrap().slot(0).unwrap().last(),
            Some(Attachment { epoch: 1, seq: 2 })
        );
        ResumeFile::remove(&n).unwrap();
    }

    #[test]
    fn a_file_of_garbage_starts_empty() {
        let n = name("garbage");
        let fd = rustix::shm::open(n.as_str(), OFlags::CREATE | OFlags::RDWR, Mode::from_bits_truncate(0o600)).unwrap();
        rustix::io::write(&fd, &[0xa5; HEADER_WORDS * 8 + SLOT_WORDS * 8]).unwrap();
        let f = ResumeFile::open(&n, &["k/a"]).unwrap();
        assert_eq!(f.slot(0).unwrap().last(), None);
        ResumeFile::remove(&n).unwrap();
    }
}
