//! Bulk copies between shared memory and private memory in inline assembly, one per
//! architecture, so that large payloads move at memory speed.
//!
//! # Why assembly
//!
//! Shared memory can be written by the peer at any moment, so a plain Rust read of it is a
//! data race and undefined behaviour; [`super::copy`]'s portable path therefore moves one
//! relaxed atomic word at a time, which the compiler may not merge or vectorise (measured:
//! half of iceoryx2's speed at 256 KiB). An `asm!` block is opaque to the compiler's
//! memory model: the compiler only knows that it may read and write any memory reachable
//! from the pointers it is given, and the hardware defines what a racing access returns
//! (some mix of old and new bytes, never a fault on mapped memory). That is exactly the
//! contract the ring and seqlock protocols already assume of the atomic loop: the bytes
//! may be torn by a peer that breaks the protocol, and the protocol (the sequence re-check,
//! the record header, the frame check) decides what they are worth. So the copy may use
//! the CPU's fastest moves:
//!
//! | architecture | copy |
//! |---|---|
//! | x86-64 | `rep movsb` (fast strings: ERMSB/FSRM microcode, any alignment); 64 bytes a step through four SSE2 registers when the destination is 1 to 63 bytes after the source modulo 4 KiB, where `rep movsb` is up to 16 times slower |
//! | aarch64 | 64 bytes a step through four 128-bit NEON registers (`ldp`/`stp q`), then 16, then 8 |
//! | armv7 (Linux) | 16 bytes a step through four core registers (`ldr`/`str`, post-indexed), then 4 |
//! | riscv64 | 32 bytes a step through four registers (`ld`/`sd`), then 8; only when the private side is 8-byte aligned (a misaligned access may trap to a slow emulation) |
//!
//! Elsewhere (other targets, Miri, loom) [`copy`] is `None` and the atomic loop does the work;
//! it stays the reference the tests compare every path against.
//!
//! # Contract
//!
//! `len` is a multiple of the word size; `src` is readable and `dst` writable for `len`
//! bytes; the two do not overlap (one side is shared memory, the other the caller's own
//! buffer). Nothing here panics.

/// Copies `len` bytes from `src` to `dst` with the architecture's bulk copy, or answers
/// `None` (nothing copied) where there is none, or where this one cannot take these
/// pointers (alignment).
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `len` bytes, the two ranges must
/// not overlap, and `len` must be a multiple of [`super::WORD`]. Either range may be
/// written concurrently by another process or thread (that is the point): the bytes
/// copied are then unspecified, but the copy is still defined.
#[inline]
#[allow(unused_variables)]
pub(crate) unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) -> Option<()> {
    #[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
    {
        if short_page_distance(src, dst) {
            // SAFETY: the caller's contract; the loop reads `len` bytes from `src` and
            // writes them to `dst` (`len` a multiple of 8), 64 a step through four SSE2
            // registers (part of every x86-64 target; `movdqu` takes any alignment), then
            // 8 through one general register, using only the registers declared here.
            unsafe {
                core::arch::asm!(
                    "2:",
                    "cmp {len}, 64",
                    "jb 3f",
                    "movdqu xmm0, [{src}]",
                    "movdqu xmm1, [{src} + 16]",
                    "movdqu xmm2, [{src} + 32]",
                    "movdqu xmm3, [{src} + 48]",
                    "movdqu [{dst}], xmm0",
                    "movdqu [{dst} + 16], xmm1",
                    "movdqu [{dst} + 32], xmm2",
                    "movdqu [{dst} + 48], xmm3",
                    "add {src}, 64",
                    "add {dst}, 64",
                    "sub {len}, 64",
                    "jmp 2b",
                    "3:",
                    "test {len}, {len}",
                    "jz 4f",
                    "mov {t}, [{src}]",
                    "mov [{dst}], {t}",
                    "add {src}, 8",
                    "add {dst}, 8",
                    "sub {len}, 8",
                    "jmp 3b",
                    "4:",
                    len = inout(reg) len => _,
                    src = inout(reg) src => _,
                    dst = inout(reg) dst => _,
                    t = out(reg) _,
                    out("xmm0") _,
                    out("xmm1") _,
                    out("xmm2") _,
                    out("xmm3") _,
                    options(nostack),
                );
            }
            return Some(());
        }
        // SAFETY: the caller's contract; `rep movsb` moves exactly `rcx` bytes forwards
        // (the ABI guarantees the direction flag is clear), touches no stack and no flags.
        unsafe {
            core::arch::asm!(
                "rep movsb",
                inout("rcx") len => _,
                inout("rsi") src => _,
                inout("rdi") dst => _,
                options(nostack, preserves_flags),
            );
        }
        Some(())
    }
    #[cfg(all(target_arch = "aarch64", not(miri), not(loom)))]
    {
        // SAFETY: the caller's contract; the loop reads `len` bytes from `src` and writes
        // them to `dst` (`len` a multiple of 8), using only the registers declared here.
        // NEON is part of every aarch64 Linux target; unaligned `q` and `x` accesses are
        // allowed on normal memory.
        unsafe {
            core::arch::asm!(
                "2:",
                "cmp {len}, #64",
                "b.lo 3f",
                "ldp q0, q1, [{src}], #32",
                "ldp q2, q3, [{src}], #32",
                "stp q0, q1, [{dst}], #32",
                "stp q2, q3, [{dst}], #32",
                "sub {len}, {len}, #64",
                "b 2b",
                "3:",
                "cmp {len}, #16",
                "b.lo 4f",
                "ldr q0, [{src}], #16",
                "str q0, [{dst}], #16",
                "sub {len}, {len}, #16",
                "b 3b",
                "4:",
                "cbz {len}, 5f",
                "ldr {t}, [{src}], #8",
                "str {t}, [{dst}], #8",
                "sub {len}, {len}, #8",
                "b 4b",
                "5:",
                len = inout(reg) len => _,
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                t = out(reg) _,
                out("v0") _,
                out("v1") _,
                out("v2") _,
                out("v3") _,
                options(nostack),
            );
        }
        Some(())
    }
    #[cfg(all(target_arch = "arm", target_os = "linux", not(miri), not(loom)))]
    {
        // SAFETY: the caller's contract; the loop reads `len` bytes from `src` and writes
        // them to `dst` (`len` a multiple of 4), using only the registers declared here.
        // Linux runs ARMv7 user space with unaligned `ldr`/`str` allowed.
        unsafe {
            core::arch::asm!(
                "2:",
                "cmp {len}, #16",
                "blo 3f",
                "ldr {a}, [{src}], #4",
                "ldr {b}, [{src}], #4",
                "ldr {c}, [{src}], #4",
                "ldr {d}, [{src}], #4",
                "str {a}, [{dst}], #4",
                "str {b}, [{dst}], #4",
                "str {c}, [{dst}], #4",
                "str {d}, [{dst}], #4",
                "sub {len}, {len}, #16",
                "b 2b",
                "3:",
                "cmp {len}, #0",
                "beq 4f",
                "ldr {a}, [{src}], #4",
                "str {a}, [{dst}], #4",
                "sub {len}, {len}, #4",
                "b 3b",
                "4:",
                len = inout(reg) len => _,
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                a = out(reg) _,
                b = out(reg) _,
                c = out(reg) _,
                d = out(reg) _,
                options(nostack),
            );
        }
        Some(())
    }
    #[cfg(all(target_arch = "riscv64", not(miri), not(loom)))]
    {
        if (src as usize | dst as usize) % 8 != 0 {
            return None;
        }
        // SAFETY: the caller's contract; both pointers are 8-byte aligned (checked above)
        // and `len` a multiple of 8; the loop reads `len` bytes from `src` and writes them
        // to `dst`, using only the registers declared here.
        unsafe {
            core::arch::asm!(
                "2:",
                "li {t}, 32",
                "bltu {len}, {t}, 3f",
                "ld {a}, 0({src})",
                "ld {b}, 8({src})",
                "ld {c}, 16({src})",
                "ld {d}, 24({src})",
                "sd {a}, 0({dst})",
                "sd {b}, 8({dst})",
                "sd {c}, 16({dst})",
                "sd {d}, 24({dst})",
                "addi {src}, {src}, 32",
                "addi {dst}, {dst}, 32",
                "addi {len}, {len}, -32",
                "j 2b",
                "3:",
                "beqz {len}, 4f",
                "ld {a}, 0({src})",
                "sd {a}, 0({dst})",
                "addi {src}, {src}, 8",
                "addi {dst}, {dst}, 8",
                "addi {len}, {len}, -8",
                "j 3b",
                "4:",
                len = inout(reg) len => _,
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                t = out(reg) _,
                a = out(reg) _,
                b = out(reg) _,
                c = out(reg) _,
                d = out(reg) _,
                options(nostack),
            );
        }
        Some(())
    }
    #[cfg(not(any(
        all(target_arch = "x86_64", not(miri), not(loom)),
        all(target_arch = "aarch64", not(miri), not(loom)),
        all(target_arch = "arm", target_os = "linux", not(miri), not(loom)),
        all(target_arch = "riscv64", not(miri), not(loom)),
    )))]
    {
        None
    }
}

/// Whether the destination lies 1 to 63 bytes after the source modulo 4 KiB, where
/// `rep movsb` collapses: on this project's AMD EPYC host (FSRM), 3.5 GB/s instead of 56
/// for 64 KiB at 1 to 15 bytes, and 40 instead of 45 (a vector loop) at 16 to 63, while
/// elsewhere it is as fast as the vector loop or faster (68 against 45 GB/s at 4 KiB).
/// glibc's `memcpy` pays the same (it uses `rep movsb` there too). The loads run ahead of
/// the stores, and a load whose address matches a pending store's in the low 12 bits
/// waits for it (4 KiB aliasing). Measured with `cli/examples/copy_distance.rs`; the
/// figures are in docs/shm-layout.md §4.
#[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
#[inline]
fn short_page_distance(src: *const u8, dst: *mut u8) -> bool {
    let d = (dst as usize).wrapping_sub(src as usize) & 4095;
    (1..64).contains(&d)
}

/// Whether this build has an assembly copy (the tests report which path they checked).
pub(crate) const AVAILABLE: bool = cfg!(any(
    all(target_arch = "x86_64", not(miri), not(loom)),
    all(target_arch = "aarch64", not(miri), not(loom)),
    all(target_arch = "arm", target_os = "linux", not(miri), not(loom)),
    all(target_arch = "riscv64", not(miri), not(loom)),
));

#[cfg(test)]
mod tests {
    use super::*;

    /// Every destination distance from the source modulo 4 KiB near the page boundary
    /// (where x86-64 leaves `rep movsb` for the vector loop) and a few far from it, at
    /// lengths around the loops' steps: the bytes arrive exactly, none outside.
    #[test]
    fn every_page_distance_copies_exactly() {
        if !AVAILABLE {
            return;
        }
        let src: std::vec::Vec<u8> = (0..3 * 4096).map(|i| (i * 13 + 5) as u8).collect();
        let mut dst = std::vec![0u8; 3 * 4096 + 128];
        let distances = (0..80).chain([128, 1000, 2048]).chain(4016..4096);
        for d in distances {
            for len in [8, 56, 64, 72, 128, 136, 1000, 4096, 4096 + 8] {
                // `dst + at` is `d` bytes after `src + 8` modulo 4 KiB, 8-byte aligned on
                // both sides where `d` is (riscv64 needs it; the others do not care).
                let base = (dst.as_ptr() as usize).wrapping_sub(src.as_ptr() as usize + 8) & 4095;
                let at = (d + 4096 - base) % 4096;
                dst.fill(0xEE);
                // SAFETY: `src[8..8 + len]` and `dst[at..at + len]` are in bounds (len at
                // most 4104, at below 4096), distinct allocations; len a multiple of 8.
                let r = unsafe { copy(src.as_ptr().add(8), dst.as_mut_ptr().add(at), len) };
                if r.is_none() {
                    continue; // riscv64 with a misaligned side: the word loop's case
                }
                assert_eq!(&dst[at..at + len], &src[8..8 + len], "distance {d} len {len}");
                assert!(dst[..at].iter().chain(&dst[at + len..]).all(|&b| b == 0xEE), "distance {d} len {len}");
            }
        }
    }
}
