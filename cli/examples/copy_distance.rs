//! How fast x86-64's `rep movsb` and a 64-byte SSE2 loop copy, by the distance of the
//! destination after the source modulo 4 KiB: the measurement behind the choice in
//! `ember_core`'s shared-memory bulk copy (docs/shm-layout.md §4).
//!
//! ```text
//! cargo run --release -p ember-ipc-cli --example copy_distance [iterations] [--fine]
//! ```
//!
//! Two page-aligned 4 MiB buffers; the source at byte 64 of one, the destination at
//! `64 + distance` of the other; for each length and distance the median of `iterations`
//! copies (default 200), as GB/s, for `rep movsb`, the SSE2 loop and the C library's
//! `memcpy` (`ptr::copy_nonoverlapping`). `--fine`: every distance from 0 to 79 and from
//! 4000 to 4095 at 64 KiB. Pin it (`taskset -c 1`) on a quiet machine. On other
//! architectures it says so and exits.

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::time::Instant;

    /// # Safety
    ///
    /// `src` readable and `dst` writable for `len` bytes, not overlapping.
    unsafe fn rep_movsb(src: *const u8, dst: *mut u8, len: usize) {
        // SAFETY: the caller's contract; `rep movsb` moves `rcx` bytes forwards (the ABI
        // keeps the direction flag clear) and touches no stack and no flags.
        unsafe {
            asm!("rep movsb", inout("rcx") len => _, inout("rsi") src => _, inout("rdi") dst => _,
                options(nostack, preserves_flags));
        }
    }

    /// # Safety
    ///
    /// As [`rep_movsb`], and `len` a multiple of 8.
    unsafe fn sse_loop(src: *const u8, dst: *mut u8, len: usize) {
        // SAFETY: the caller's contract; 64 bytes a step through four SSE2 registers, then
        // 8 through one general register, only the registers declared here.
        unsafe {
            asm!(
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
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                len = inout(reg) len => _,
                t = out(reg) _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                options(nostack),
            );
        }
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let fine = args.iter().any(|a| a == "--fine");
        let iters: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(200).max(1);
        const SIZE: usize = 4 << 20;
        let mut a = vec![0u8; SIZE + 4096];
        let mut b = vec![1u8; SIZE + 4096];
        // Page-aligned starts inside the two allocations.
        let pa = a.as_mut_ptr().align_offset(4096);
        let pb = b.as_mut_ptr().align_offset(4096);
        for (i, x) in a[pa..pa + SIZE].iter_mut().enumerate() {
            *x = i as u8;
        }
        let (lens, dists): (Vec<usize>, Vec<usize>) = if fine {
            (vec![65536], (0..80).chain(4000..4096).collect())
        } else {
            (
                vec![4096, 16384, 65536, 262144, 1 << 20],
                vec![0, 8, 16, 24, 32, 48, 64, 96, 128, 256, 1024, 2048, 4032, 4088],
            )
        };
        println!("{:>8} {:>6} {:>11} {:>11} {:>11}", "bytes", "dist", "movsb GB/s", "sse2 GB/s", "libc GB/s");
        for &len in &lens {
            for &dist in &dists {
                let src = a[pa + 64..].as_ptr();
                let dst = b[pb + 64 + dist..].as_mut_ptr();
                let mut gbs = [0f64; 3];
                for (k, slot) in gbs.iter_mut().enumerate() {
                    let mut ns = Vec::with_capacity(iters);
                    for _ in 0..iters {
                        let t = Instant::now();
                        // SAFETY: both ranges lie inside their own allocation (64 + 4095 +
                        // 1 MiB < 4 MiB + 4096 past a page start found inside it), and
                        // `len` is a multiple of 8.
                        unsafe {
                            match k {
                                0 => rep_movsb(src, dst, len),
                                1 => sse_loop(src, dst, len),
                                _ => std::ptr::copy_nonoverlapping(src, dst, len),
                            }
                        }
                        ns.push(t.elapsed().as_nanos().max(1) as f64);
                        std::hint::black_box(dst);
                    }
                    ns.sort_by(f64::total_cmp);
                    *slot = len as f64 / ns[iters / 2];
                }
                println!("{:>8} {:>6} {:>11.1} {:>11.1} {:>11.1}", len, dist, gbs[0], gbs[1], gbs[2]);
            }
        }
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    x86::main();
    #[cfg(not(target_arch = "x86_64"))]
    println!("copy_distance measures x86-64's copies; this is {}", std::env::consts::ARCH);
}
