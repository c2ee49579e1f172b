//! CRC-32C (Castagnoli), the checksum of every Ember frame.
//!
//! Parameters (the "CRC-32/ISCSI" entry of the CRC catalogue): polynomial `0x1EDC6F41`
//! (reflected `0x82F63B78`), initial value `0xFFFFFFFF`, input and output reflected, final
//! XOR `0xFFFFFFFF`. The check value, the CRC of the ASCII bytes `123456789`, is
//! `0xE3069283`.
//!
//! ## Implementations
//!
//! Four implementations compute the same function ([`Implementation`]); every call goes to
//! the one [`selected`] names, with no allocation, no lock and no syscall (one relaxed
//! atomic load):
//!
//! - **x86-64 with SSE4.2 and PCLMULQDQ** ([`Implementation::X86Sse42`]): the `crc32`
//!   instruction on three interleaved streams, recombined with a carry-less multiply.
//!   Detected with `cpuid` (an instruction, not a syscall), or at compile time when the
//!   target features are enabled.
//! - **AArch64 with the CRC extension** ([`Implementation::Aarch64Crc`]): `crc32cx`, eight
//!   bytes per instruction. The CRC extension is optional in Armv8.0, so it is detected at
//!   run time (the kernel's `HWCAP_CRC32`), or assumed when the crate is compiled with the
//!   `crc` target feature (`-C target-cpu=cortex-a72`, for example).
//! - **RISC-V 64 with Zbc** ([`Implementation::Riscv64Zbc`]): the carry-less multiply
//!   instructions (`clmul`, `clmulr`) reduce one 64-bit word per step with a Barrett
//!   reduction (the method of Linux's `lib/crc32-riscv.c`). Detected at run time (the
//!   kernel's `riscv_hwprobe`), or assumed when compiled with the `zbc` target feature.
//!   The SiFive U74 of the VisionFive 2 has no Zbc; it runs the portable loop.
//! - **Everywhere else** ([`Implementation::Portable`], Armv7 among them: it has no CRC
//!   instructions): a table-driven "slice-by-16" loop over 16 KiB of tables built at
//!   compile time, measured 17–20 % faster than slice-by-8 (docs/benchmarks.md, "CRC-32C").
//!
//! ## Where the run-time detection lives
//!
//! This crate makes no syscalls, and asking the kernel what an Arm or RISC-V CPU has takes
//! one (`getauxval` reads the auxiliary vector; `riscv_hwprobe` is a syscall). So the
//! detection is `std`'s (`std::arch::is_aarch64_feature_detected!("crc")`,
//! `is_riscv_feature_detected!("zbc")`), compiled in only with this crate's `std` feature,
//! and run once, at the first CRC; the answer is cached in an atomic. `ember-ipc-linux`
//! turns the feature on with its own (default) `std` feature, so a default build of any
//! program on Ember's transports (the C library and `emberctl` included) uses the
//! instructions on a Cortex-A53, A72 or A76 without a `-C target-cpu`.
//!
//! Without the `std` feature (bare metal, or a `no_std` Linux program), the portable loop
//! runs until the program says otherwise with the `unsafe` [`select`] (its caller vouches
//! for the instructions, as with `#[target_feature]`). On Linux,
//! `ember_linux::cpu::select_crc32c()` does that from the kernel's answer (`AT_HWCAP`,
//! `riscv_hwprobe`) without `std`, one call at start-up. Under Miri the
//! x86-64 path runs when its target features are compiled in (Miri executes those
//! intrinsics but not `cpuid`); the Arm and RISC-V paths are left out (intrinsics and inline
//! assembly Miri does not run), and the portable loop is checked in every run.
//!
//! ```
//! use ember_core::crc32c::{self, crc32c, crc32c_append};
//! assert_eq!(crc32c(b"123456789"), 0xE306_9283);
//! // Incremental use: the CRC of a concatenation, from the CRC of its first part.
//! assert_eq!(crc32c_append(crc32c(b"1234"), b"56789"), 0xE306_9283);
//! // What this machine runs, as `emberctl bench` prints it in its header.
//! println!("crc32c: {}", crc32c::implementation());
//! ```
//!
//! ## Panics
//!
//! None: every function takes any length and any alignment (words are read with
//! `from_le_bytes` on copies, never through casted pointers).

use core::sync::atomic::{AtomicU8, Ordering};

/// The reflected CRC-32C polynomial.
pub const POLY_REFLECTED: u32 = 0x82F6_3B78;

/// The CRC-32C of the ASCII bytes `123456789` (the catalogue's check value).
pub const CHECK: u32 = 0xE306_9283;

/// An implementation of CRC-32C; all compute the same function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Implementation {
    /// The table-driven slice-by-16 loop, on every CPU.
    Portable,
    /// x86-64 SSE4.2 `crc32` on three streams, recombined with PCLMULQDQ.
    X86Sse42,
    /// The Armv8 CRC extension's `crc32cx`.
    Aarch64Crc,
    /// RISC-V Zbc carry-less multiplication with a Barrett reduction.
    Riscv64Zbc,
}

impl Implementation {
    /// Every implementation, for tests and benchmarks.
    pub const ALL: [Implementation; 4] =
        [Implementation::Portable, Implementation::X86Sse42, Implementation::Aarch64Crc, Implementation::Riscv64Zbc];

    /// The name `emberctl bench` prints in its header.
    pub const fn name(self) -> &'static str {
        match self {
            Implementation::Portable => "portable slice-by-16",
            Implementation::X86Sse42 => "x86-64 sse4.2 crc32 (3-way) + pclmulqdq",
            Implementation::Aarch64Crc => "aarch64 crc32cx",
            Implementation::Riscv64Zbc => "riscv64 zbc clmul (barrett)",
        }
    }

    /// Whether this implementation is compiled into this build: `Portable` always, the
    /// others on their own architecture (the Arm and RISC-V ones not under Miri).
    pub const fn compiled(self) -> bool {
        match self {
            Implementation::Portable => true,
            Implementation::X86Sse42 => cfg!(target_arch = "x86_64"),
            Implementation::Aarch64Crc => cfg!(all(target_arch = "aarch64", not(miri))),
            Implementation::Riscv64Zbc => cfg!(all(target_arch = "riscv64", not(miri))),
        }
    }

    /// Whether this CPU can run this implementation, as far as this build can tell: the
    /// compile-time target features, `cpuid` on x86-64, and with the `std` feature `std`'s
    /// run-time detection. Without `std`, `false` for the Arm and RISC-V instructions unless
    /// they are compiled in.
    pub fn detected(self) -> bool {
        match self {
            Implementation::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Implementation::X86Sse42 => x86::detect(),
            #[cfg(all(target_arch = "aarch64", not(miri)))]
            Implementation::Aarch64Crc => aarch64::detect(),
            #[cfg(all(target_arch = "riscv64", not(miri)))]
            Implementation::Riscv64Zbc => riscv64::detect(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The implementation this build uses without asking the CPU, if any: an accelerated
    /// one whose target features the crate is compiled with.
    const fn compiled_in() -> Option<Implementation> {
        // Miri runs the x86 intrinsics (`cargo xtask test` runs it with them compiled in),
        // not the Arm ones or the RISC-V assembly.
        if cfg!(all(target_arch = "x86_64", target_feature = "sse4.2", target_feature = "pclmulqdq")) {
            return Some(Implementation::X86Sse42);
        }
        if cfg!(all(target_arch = "aarch64", target_feature = "crc", not(miri))) {
            return Some(Implementation::Aarch64Crc);
        }
        if cfg!(all(target_arch = "riscv64", target_feature = "zbc", not(miri))) {
            return Some(Implementation::Riscv64Zbc);
        }
        None
    }

    const fn to_u8(self) -> u8 {
        match self {
            Implementation::Portable => 1,
            Implementation::X86Sse42 => 2,
            Implementation::Aarch64Crc => 3,
            Implementation::Riscv64Zbc => 4,
        }
    }
}

impl core::fmt::Display for Implementation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The selected implementation: 0 until the first CRC (or [`select`]), then
/// [`Implementation::to_u8`] of the choice.
static SELECTED: AtomicU8 = AtomicU8::new(0);

/// The implementation every CRC of this process uses: chosen at the first call (see the
/// module documentation) and cached.
#[inline]
pub fn selected() -> Implementation {
    if let Some(i) = Implementation::compiled_in() {
        return i;
    }
    match SELECTED.load(Ordering::Relaxed) {
        1 => Implementation::Portable,
        2 => Implementation::X86Sse42,
        3 => Implementation::Aarch64Crc,
        4 => Implementation::Riscv64Zbc,
        _ => choose(),
    }
}

/// The first call's choice: the fastest implementation this CPU is detected to have.
#[cold]
fn choose() -> Implementation {
    let best = [Implementation::X86Sse42, Implementation::Aarch64Crc, Implementation::Riscv64Zbc]
        .into_iter()
        .find(|i| i.compiled() && i.detected())
        .unwrap_or(Implementation::Portable);
    // A `select` racing with this keeps its own answer.
    let _ = SELECTED.compare_exchange(0, best.to_u8(), Ordering::Relaxed, Ordering::Relaxed);
    selected_stored()
}

fn selected_stored() -> Implementation {
    match SELECTED.load(Ordering::Relaxed) {
        2 => Implementation::X86Sse42,
        3 => Implementation::Aarch64Crc,
        4 => Implementation::Riscv64Zbc,
        _ => Implementation::Portable,
    }
}

/// Makes every later CRC of this process use `imp`, for programs that know their CPU
/// better than this build can tell (a `no_std` program that read `AT_HWCAP` itself, say).
///
/// Returns `false`, and changes nothing, when `imp` is not [`compiled`](Implementation::compiled)
/// into this build, or when the crate is compiled with an accelerated implementation's
/// target features (that one is always used). [`Implementation::Portable`] is always
/// accepted otherwise.
///
/// # Safety
///
/// The CPU every thread of the process runs on must have the instructions `imp` uses
/// (as for calling a `#[target_feature]` function): SSE4.2 and PCLMULQDQ, the Armv8 CRC
/// extension, or RISC-V Zbc.
///
/// ```
/// use ember_core::crc32c::{self, Implementation};
/// // SAFETY: the portable loop runs on every CPU.
/// if unsafe { crc32c::select(Implementation::Portable) } {
///     assert_eq!(crc32c::selected(), Implementation::Portable);
/// }
/// assert_eq!(crc32c::crc32c(b"123456789"), crc32c::CHECK);
/// ```
pub unsafe fn select(imp: Implementation) -> bool {
    if !imp.compiled() || Implementation::compiled_in().is_some() {
        return false;
    }
    SELECTED.store(imp.to_u8(), Ordering::Relaxed);
    true
}

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
    if selected() == Implementation::X86Sse42 {
        // SAFETY: `X86Sse42` is selected only on a CPU with SSE4.2 and PCLMULQDQ (detected,
        // compiled in, or vouched for by `select`'s caller).
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
    if selected() == Implementation::X86Sse42 {
        // SAFETY: as in `header_sums`.
        return unsafe { x86::frame_sums(h16, payload) };
    }
    let prefix = crc32c(h16);
    let crc = crc32c_append(prefix, payload);
    (crc, crc32c_append(prefix, &crc.to_le_bytes()))
}

/// [`frame_sums`] of a frame whose payload is not covered: `crc = crc32c(h16)` and
/// `hcrc = crc32c(h16 ++ crc as 4 little-endian bytes)`, three `crc32` steps on x86-64.
#[inline]
pub(crate) fn unchecked_sums(h16: &[u8; 16]) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    if selected() == Implementation::X86Sse42 {
        // SAFETY: as in `header_sums`.
        return unsafe { x86::unchecked_sums(h16) };
    }
    let crc = crc32c(h16);
    (crc, crc32c_append(crc, &crc.to_le_bytes()))
}

/// The name of the implementation [`crc32c`] uses on this machine ([`selected`]), for
/// benchmarks and diagnostics.
pub fn implementation() -> &'static str {
    selected().name()
}

/// Continues a CRC-32C with the implementation `imp`, whatever is [`selected`]: for tests
/// and benchmarks that compare the implementations. `None` when `imp` is not
/// [`compiled`](Implementation::compiled) into this build.
///
/// # Safety
///
/// As for [`select`]: the CPU must have the instructions `imp` uses.
pub unsafe fn crc32c_append_with(imp: Implementation, crc: u32, data: &[u8]) -> Option<u32> {
    // SAFETY: the caller vouches for the CPU.
    unsafe { update_with(imp, !crc, data) }.map(|s| !s)
}

/// Updates the raw CRC register (no initial or final inversion).
#[inline]
fn update_raw(state: u32, data: &[u8]) -> u32 {
    // SAFETY: `selected()` names an implementation only on a CPU that has its instructions
    // (detected, compiled in, or vouched for by `select`'s caller), and only one compiled
    // into this build, so `update_with` returns `Some`.
    unsafe { update_with(selected(), state, data) }.unwrap_or_else(|| update_portable(state, data))
}

/// The raw register update of `imp`; `None` when it is not compiled in.
///
/// # Safety
///
/// The CPU must have the instructions `imp` uses.
#[inline]
unsafe fn update_with(imp: Implementation, state: u32, data: &[u8]) -> Option<u32> {
    match imp {
        Implementation::Portable => Some(update_portable(state, data)),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller vouches for SSE4.2 and PCLMULQDQ.
        Implementation::X86Sse42 => Some(unsafe { x86::update(state, data) }),
        #[cfg(all(target_arch = "aarch64", not(miri)))]
        // SAFETY: the caller vouches for the CRC extension.
        Implementation::Aarch64Crc => Some(unsafe { aarch64::update(state, data) }),
        #[cfg(all(target_arch = "riscv64", not(miri)))]
        // SAFETY: the caller vouches for Zbc.
        Implementation::Riscv64Zbc => Some(unsafe { riscv64::update(state, data) }),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The slice-by-16 tables: `TABLES[0]` is the classic byte table; `TABLES[k][b]` is the CRC
/// of byte `b` followed by `k` zero bytes (16 KiB, built at compile time).
static TABLES: [[u32; 256]; 16] = make_tables();

const fn make_tables() -> [[u32; 256]; 16] {
    let mut t = [[0u32; 256]; 16];
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
    while n < 16 {
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

/// The table lookups of four little-endian bytes `w`, the first at table `at + 3`.
#[inline(always)]
fn lookup4(w: u32, at: usize) -> u32 {
    TABLES[at + 3][(w & 0xFF) as usize]
        ^ TABLES[at + 2][((w >> 8) & 0xFF) as usize]
        ^ TABLES[at + 1][((w >> 16) & 0xFF) as usize]
        ^ TABLES[at][(w >> 24) as usize]
}

#[inline(always)]
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Slice-by-16: sixteen independent lookups per 16 bytes, then one slice-by-8 step, then
/// bytes. Measured on x86-64 against slice-by-8 (8 KiB) and byte-at-a-time: 17–20 %
/// faster than slice-by-8 at 64 B and 4 KiB (docs/benchmarks.md, "CRC-32C"); it is what
/// Armv7 boards run.
fn update_portable(mut crc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        crc = lookup4(le32(c, 0) ^ crc, 12) ^ lookup4(le32(c, 4), 8) ^ lookup4(le32(c, 8), 4) ^ lookup4(le32(c, 12), 0);
    }
    let mut rest = chunks.remainder();
    if rest.len() >= 8 {
        crc = lookup4(le32(rest, 0) ^ crc, 4) ^ lookup4(le32(rest, 4), 0);
        rest = &rest[8..];
    }
    for &b in rest {
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

    /// Whether this CPU has SSE4.2 and PCLMULQDQ.
    pub(super) fn detect() -> bool {
        if cfg!(all(target_feature = "sse4.2", target_feature = "pclmulqdq")) {
            return true;
        }
        if cfg!(miri) {
            // `cpuid` is an instruction Miri cannot run.
            return false;
        }
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

    /// [`super::unchecked_sums`]: three `crc32` steps, one call.
    ///
    /// # Safety
    ///
    /// The CPU must support SSE4.2 and PCLMULQDQ.
    #[target_feature(enable = "sse4.2,pclmulqdq")]
    pub(super) unsafe fn unchecked_sums(h16: &[u8; 16]) -> (u32, u32) {
        let s = prefix(h16);
        (!s, !_mm_crc32_u32(s, !s))
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

#[cfg(all(target_arch = "aarch64", not(miri)))]
mod aarch64 {
    //! The Armv8 CRC extension (`crc32cx` and friends).
    use core::arch::aarch64::{__crc32cb, __crc32cd, __crc32ch, __crc32cw};

    /// Whether this CPU has the CRC extension: compiled in, or (with the `std` feature)
    /// the kernel's `HWCAP_CRC32`.
    pub(super) fn detect() -> bool {
        #[cfg(feature = "std")]
        {
            std::arch::is_aarch64_feature_detected!("crc")
        }
        #[cfg(not(feature = "std"))]
        {
            cfg!(target_feature = "crc")
        }
    }

    /// Updates the raw CRC register, eight bytes per instruction, then the last 0–7 in at
    /// most three (4, 2, 1).
    ///
    /// # Safety
    ///
    /// The CPU must have the CRC extension.
    #[target_feature(enable = "crc")]
    pub(super) unsafe fn update(mut state: u32, data: &[u8]) -> u32 {
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            state = __crc32cd(state, u64::from_le_bytes(b));
        }
        let mut tail = words.remainder();
        if tail.len() >= 4 {
            state = __crc32cw(state, u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
            tail = &tail[4..];
        }
        if tail.len() >= 2 {
            state = __crc32ch(state, u16::from_le_bytes([tail[0], tail[1]]));
            tail = &tail[2..];
        }
        if let Some(&b) = tail.first() {
            state = __crc32cb(state, b);
        }
        state
    }
}

/// The Barrett reduction the RISC-V Zbc path computes with `clmul`/`clmulr`, written once
/// over any carry-less multiplier so the host tests check the arithmetic (with a software
/// multiplier) and the board tests the instructions.
///
/// For a 64-bit reflected word `s` (the CRC register XORed into the next eight bytes), the
/// register after those bytes is `s·x^32 mod P`. With `T = x^96` and `QT = T / P` (its
/// `x^64` bit implicit), `s·x^32 mod P` is the low 32 bits of `(⌊s·QT / x^64⌋ + s)·P`; in
/// the reflected (bit-reversed) representation the high half of the first product is the
/// low half of `clmul` shifted left by one, and the low 32 bits of the second are the high
/// half of `clmulr` with `P` shifted up by 32.
#[cfg_attr(not(any(test, all(target_arch = "riscv64", not(miri)))), allow(dead_code))]
mod barrett {
    /// `⌊x^96 / P⌋` without its `x^64` bit, bit-reversed (`0xA434F61C6F5389F8`).
    pub(super) const QT: u64 = quotient();
    /// The reflected polynomial in the high half, as `clmulr` wants it.
    pub(super) const P_HI: u64 = (super::POLY_REFLECTED as u64) << 32;

    const fn quotient() -> u64 {
        // Long division of x^96 by the 33-bit normal polynomial, in u128.
        let p: u128 = 0x1_1EDC_6F41;
        let mut r: u128 = 1 << 96;
        let mut q: u128 = 0;
        let mut bit = 96 - 32;
        loop {
            if r & (1 << (bit + 32)) != 0 {
                q |= 1 << bit;
                r ^= p << bit;
            }
            if bit == 0 {
                break;
            }
            bit -= 1;
        }
        (q as u64).reverse_bits()
    }

    /// One word: the raw register after the eight bytes whose little-endian value XORed
    /// with the register is `s`. `clmul` is the low and `clmulr` the reversed half of the
    /// 128-bit carry-less product, as the RISC-V instructions define them.
    #[inline(always)]
    pub(super) fn step(s: u64, clmul: impl Fn(u64, u64) -> u64, clmulr: impl Fn(u64, u64) -> u64) -> u32 {
        let t = (clmul(s, QT) << 1) ^ s;
        (clmulr(t, P_HI) >> 32) as u32
    }
}

#[cfg(all(target_arch = "riscv64", not(miri)))]
mod riscv64 {
    //! RISC-V Zbc: `clmul` and `clmulr` in inline assembly (their intrinsics are not
    //! stable Rust), one 64-bit word per Barrett step ([`super::barrett`]). The
    //! assembler directive `.option arch, +zbc` lets the default `riscv64gc` build carry
    //! the two instructions; they run only where detection (or `select`) found Zbc.
    use core::arch::asm;

    /// Whether this CPU has Zbc: compiled in, or (with the `std` feature) the kernel's
    /// `riscv_hwprobe` answer (Linux 6.8 and later report Zbc).
    pub(super) fn detect() -> bool {
        #[cfg(feature = "std")]
        {
            std::arch::is_riscv_feature_detected!("zbc")
        }
        #[cfg(not(feature = "std"))]
        {
            cfg!(target_feature = "zbc")
        }
    }

    /// The low half of the carry-less product.
    ///
    /// # Safety
    ///
    /// The CPU must have Zbc.
    #[inline(always)]
    unsafe fn clmul(a: u64, b: u64) -> u64 {
        let r: u64;
        // SAFETY: the caller vouches for Zbc; the instruction reads and writes only the
        // named registers (no memory, no stack, no flags).
        unsafe {
            asm!(
                ".option push",
                ".option arch, +zbc",
                "clmul {r}, {a}, {b}",
                ".option pop",
                r = lateout(reg) r,
                a = in(reg) a,
                b = in(reg) b,
                options(pure, nomem, nostack),
            );
        }
        r
    }

    /// Bits 126..=63 of the carry-less product (the "reversed" half).
    ///
    /// # Safety
    ///
    /// The CPU must have Zbc.
    #[inline(always)]
    unsafe fn clmulr(a: u64, b: u64) -> u64 {
        let r: u64;
        // SAFETY: as in `clmul`.
        unsafe {
            asm!(
                ".option push",
                ".option arch, +zbc",
                "clmulr {r}, {a}, {b}",
                ".option pop",
                r = lateout(reg) r,
                a = in(reg) a,
                b = in(reg) b,
                options(pure, nomem, nostack),
            );
        }
        r
    }

    /// One Barrett step ([`super::barrett::step`], the arithmetic the host tests check)
    /// on the instructions: `clmul`, `slli`, `xor`, `clmulr`, `srli`.
    ///
    /// # Safety
    ///
    /// The CPU must have Zbc.
    #[inline(always)]
    unsafe fn step(s: u64) -> u32 {
        super::barrett::step(
            s,
            // SAFETY: the caller vouches for Zbc.
            |a, b| unsafe { clmul(a, b) },
            // SAFETY: the caller vouches for Zbc.
            |a, b| unsafe { clmulr(a, b) },
        )
    }

    /// Updates the raw CRC register: Barrett steps over 8-byte words, the table loop over
    /// the last 0–7 bytes.
    ///
    /// # Safety
    ///
    /// The CPU must have Zbc.
    pub(super) unsafe fn update(mut state: u32, data: &[u8]) -> u32 {
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            // SAFETY: the caller vouches for Zbc.
            state = unsafe { step(u64::from_le_bytes(b) ^ state as u64) };
        }
        super::update_portable(state, words.remainder())
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
            assert_eq!(unchecked_sums(h16), frame_sums(h16, &[]), "unchecked at {start}");
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
        assert_eq!(implementation(), selected().name());
    }

    /// What the runner says about the CPU the test runs on: `EMBER_CRC_CPU_HAS=1` when it
    /// has this architecture's CRC instructions, `0` when it has not (`cargo xtask test
    /// --board` runs the crc tests under qemu-user with a CPU of each kind); `None` when
    /// unsaid (then only detection decides).
    fn runner_says_cpu_has() -> Option<bool> {
        match std::env::var("EMBER_CRC_CPU_HAS").as_deref() {
            Ok("1") => Some(true),
            Ok("0") => Some(false),
            _ => None,
        }
    }

    /// `std`'s detection, in the test whatever the crate's features.
    fn std_detects(imp: Implementation) -> bool {
        match imp {
            Implementation::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Implementation::X86Sse42 => {
                // Miri cannot run `cpuid`: there only the compile-time features count.
                imp.detected()
                    || (!cfg!(miri)
                        && std::is_x86_feature_detected!("sse4.2")
                        && std::is_x86_feature_detected!("pclmulqdq"))
            }
            #[cfg(all(target_arch = "aarch64", not(miri)))]
            Implementation::Aarch64Crc => std::arch::is_aarch64_feature_detected!("crc"),
            #[cfg(all(target_arch = "riscv64", not(miri)))]
            Implementation::Riscv64Zbc => std::arch::is_riscv_feature_detected!("zbc"),
            _ => false,
        }
    }

    /// The accelerated implementation compiled for this architecture, if any.
    fn native() -> Option<Implementation> {
        Implementation::ALL.into_iter().find(|i| *i != Implementation::Portable && i.compiled())
    }

    /// Every implementation this CPU can run, called directly (not through the dispatch),
    /// against the bitwise reference: every length 0..=300, longer ones, four alignments.
    #[test]
    fn every_implementation_matches_reference() {
        let data: [u8; 4200] = core::array::from_fn(|i| (i as u32).wrapping_mul(2_654_435_761) as u8 ^ (i >> 9) as u8);
        let mut lens: std::vec::Vec<usize> = (0..=300).collect();
        lens.extend([383, 384, 385, 576, 1000, 1024, 1040, 2047, 4096]);
        if cfg!(miri) {
            lens = std::vec![0, 1, 7, 8, 9, 17, 191, 192, 200, 385];
        }
        let says = runner_says_cpu_has();
        let mut checked = std::vec::Vec::new();
        for imp in Implementation::ALL {
            let runs = imp == Implementation::Portable
                || (imp.compiled() && (std_detects(imp) || imp.detected() || says == Some(true)));
            if !runs {
                continue;
            }
            for &len in &lens {
                for off in [0usize, 1, 3, 6] {
                    let slice = &data[off..off + len];
                    let want = reference(slice);
                    // SAFETY: `imp` is the portable loop, or detected on this CPU, or the
                    // runner says the CPU has its instructions.
                    let got = unsafe { crc32c_append_with(imp, 0, slice) };
                    assert_eq!(got, Some(want), "{imp} len {len} off {off}");
                    // Continuing from a non-zero CRC too.
                    let (a, b) = slice.split_at(len / 3);
                    // SAFETY: as above.
                    let got = unsafe { crc32c_append_with(imp, reference(a), b) };
                    assert_eq!(got, Some(want), "{imp} append, len {len} off {off}");
                }
            }
            checked.push(imp.name());
        }
        std::eprintln!("checked against the reference: {checked:?}");
        if says == Some(true) {
            let n = native().expect("EMBER_CRC_CPU_HAS=1 on an architecture without a CRC path");
            assert!(checked.contains(&n.name()), "{n} was not checked");
        }
    }

    /// The dispatch picks what detection finds: never an instruction the CPU lacks, and on
    /// Arm always the CRC extension when the CPU has it.
    #[test]
    fn dispatch_follows_detection() {
        let sel = selected();
        std::eprintln!(
            "selected: {sel}; std feature: {}; runner says the CPU has the instructions: {:?}",
            cfg!(feature = "std"),
            runner_says_cpu_has()
        );
        assert!(sel.compiled());
        if let Some(i) = Implementation::compiled_in() {
            assert_eq!(sel, i, "compiled in, always used");
            return;
        }
        if sel != Implementation::Portable {
            assert!(std_detects(sel), "{sel} selected but the CPU does not report it");
        }
        if runner_says_cpu_has() == Some(false) {
            assert_eq!(sel, Implementation::Portable, "the CPU has no CRC instructions");
        }
        if cfg!(feature = "std") {
            // With `std`, the dispatch is exactly `std`'s detection.
            let want = native().filter(|i| std_detects(*i)).unwrap_or(Implementation::Portable);
            assert_eq!(sel, want);
            if runner_says_cpu_has() == Some(true) && !std_detects(native().unwrap()) {
                // RISC-V only: the kernel reports Zbc through `riscv_hwprobe`, which
                // qemu-user before 8.2 (and Linux before 6.8) lacks, so a CPU with Zbc can
                // look like one without. Arm's HWCAP_CRC32 is always there.
                if !cfg!(target_arch = "riscv64") {
                    panic!("{} not detected", native().unwrap());
                }
                std::eprintln!("riscv_hwprobe does not report Zbc here: the dispatch stays portable");
            }
        } else if Implementation::compiled_in().is_none() && !cfg!(target_arch = "x86_64") {
            // Without `std` nothing in this crate asks the kernel.
            assert_eq!(sel, Implementation::Portable);
        }
    }

    /// The Barrett arithmetic of the RISC-V path, with a software carry-less multiplier, on
    /// every host (and Miri): each 8-byte step equals eight table steps.
    #[test]
    fn barrett_step_matches_the_table() {
        fn clmul_full(a: u64, b: u64) -> u128 {
            let mut r = 0u128;
            for i in 0..64 {
                if b >> i & 1 != 0 {
                    r ^= (a as u128) << i;
                }
            }
            r
        }
        let clmul = |a, b| clmul_full(a, b) as u64;
        let clmulr = |a, b| (clmul_full(a, b) >> 63) as u64;
        assert_eq!(barrett::QT, 0xA434_F61C_6F53_89F8);
        let n = if cfg!(miri) { 20 } else { 2000 };
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let state = (x >> 17) as u32;
            let word = x.rotate_left(29);
            let want = update_portable(state, &word.to_le_bytes());
            assert_eq!(barrett::step(word ^ state as u64, clmul, clmulr), want, "{x:#x}");
        }
    }
}
