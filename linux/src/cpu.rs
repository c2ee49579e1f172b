//! What the CPU has, read from the kernel without `std`, for `ember-ipc-core`'s CRC-32C.
//!
//! `ember-ipc-core` makes no syscalls. With this crate's `std` feature (the default) it
//! detects the Arm CRC extension and RISC-V Zbc itself, through `std`, at its first CRC.
//! Without `std`, a program calls [`select_crc32c`] once at start-up: it asks the kernel the
//! way `std` would (the auxiliary vector's `AT_HWCAP` on AArch64, the `riscv_hwprobe`
//! syscall on RISC-V, both without libc) and hands the answer to
//! [`ember_core::crc32c::select`].
//!
//! | Architecture | Kernel's answer | Instructions |
//! |---|---|---|
//! | AArch64 | `AT_HWCAP & HWCAP_CRC32` | `crc32cx` ([`Implementation::Aarch64Crc`]) |
//! | RISC-V 64 | `riscv_hwprobe(IMA_EXT_0) & EXT_ZBC` (Linux 6.8+) | `clmul`, `clmulr` ([`Implementation::Riscv64Zbc`]) |
//! | x86-64 | (`cpuid`, in the core crate: not the kernel's business) | SSE4.2, PCLMULQDQ |
//! | Armv7, others | none: no CRC instructions | the portable loop |
//!
//! ```
//! use ember_linux::cpu;
//! let chosen = cpu::select_crc32c();
//! assert_eq!(chosen, ember_linux::core::crc32c::selected());
//! println!("crc32c: {chosen}");
//! ```
//!
//! Nothing here panics or allocates; a kernel that cannot answer (`riscv_hwprobe` before
//! Linux 6.4 returns `ENOSYS`) means "not there".
// The one `unsafe`: vouching to the core crate for the instructions the kernel reported.
#![allow(unsafe_code)]

use ember_core::crc32c::{self, Implementation};

/// The accelerated CRC-32C implementation the kernel says this CPU can run, if any (x86-64:
/// the core crate's own `cpuid` answer).
pub fn crc32c_instructions() -> Option<Implementation> {
    #[cfg(target_arch = "aarch64")]
    {
        /// `HWCAP_CRC32` of the arm64 uapi `asm/hwcap.h`.
        const HWCAP_CRC32: usize = 1 << 7;
        let (hwcap, _) = rustix::param::linux_hwcap();
        (hwcap & HWCAP_CRC32 != 0).then_some(Implementation::Aarch64Crc)
    }
    #[cfg(target_arch = "riscv64")]
    {
        match crate::sys::riscv_hwprobe(crate::sys::RISCV_HWPROBE_KEY_IMA_EXT_0) {
            Ok(Some(bits)) if bits & crate::sys::RISCV_HWPROBE_EXT_ZBC != 0 => Some(Implementation::Riscv64Zbc),
            _ => None,
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        Implementation::X86Sse42.detected().then_some(Implementation::X86Sse42)
    }
    #[cfg(not(any(target_arch = "aarch64", target_arch = "riscv64", target_arch = "x86_64")))]
    {
        None
    }
}

/// Makes every CRC-32C of the process use the instructions the kernel reports
/// ([`crc32c_instructions`]), and returns what the core crate now uses
/// ([`crc32c::selected`]). Idempotent and cheap after the first call; with the `std`
/// feature it changes nothing `std`'s detection had not found already.
pub fn select_crc32c() -> Implementation {
    if let Some(imp) = crc32c_instructions() {
        // SAFETY: the kernel reports that every CPU of the system has `imp`'s instructions
        // (AT_HWCAP and riscv_hwprobe describe all CPUs), or `cpuid` did on x86-64.
        // `select` refuses, harmlessly, what this build has not compiled in.
        let _ = unsafe { crc32c::select(imp) };
    }
    crc32c::selected()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's answer read here agrees with `std`'s detection, and the selection
    /// follows it; the CRCs stay right. `EMBER_CRC_CPU_HAS` (set by `cargo xtask crc`)
    /// says what the emulated CPU has.
    #[test]
    fn kernel_answer_matches_std_and_selection_follows() {
        let ours = crc32c_instructions();
        // A build with the instructions enabled at compile time (`-C target-cpu=cortex-a72`,
        // as the boards' tier 1 builds) has `std` answer yes without asking the kernel.
        #[cfg(all(target_arch = "aarch64", not(target_feature = "crc")))]
        assert_eq!(ours.is_some(), std::arch::is_aarch64_feature_detected!("crc"));
        #[cfg(all(target_arch = "riscv64", not(target_feature = "zbc")))]
        assert_eq!(ours.is_some(), std::arch::is_riscv_feature_detected!("zbc"));
        #[cfg(not(any(target_arch = "aarch64", target_arch = "riscv64", target_arch = "x86_64")))]
        assert_eq!(ours, None);
        if std::env::var("EMBER_CRC_CPU_HAS").as_deref() == Ok("0") {
            assert_eq!(ours, None, "the CPU has no CRC instructions");
        }
        let chosen = select_crc32c();
        std::eprintln!("kernel reports: {ours:?}; selected: {chosen}");
        if let Some(imp) = ours {
            assert_eq!(chosen, imp);
        }
        assert_eq!(crc32c::crc32c(b"123456789"), crc32c::CHECK);
        assert_eq!(select_crc32c(), chosen, "idempotent");
    }

    #[cfg(target_arch = "riscv64")]
    #[test]
    fn hwprobe_answers_or_is_missing() {
        match crate::sys::riscv_hwprobe(crate::sys::RISCV_HWPROBE_KEY_IMA_EXT_0) {
            Ok(v) => std::eprintln!("riscv_hwprobe IMA_EXT_0: {v:#x?}"),
            Err(e) => assert_eq!(e, rustix::io::Errno::NOSYS, "only a kernel without it may fail"),
        }
        // An unknown key comes back as key -1.
        match crate::sys::riscv_hwprobe(1 << 40) {
            Ok(v) => assert_eq!(v, None),
            Err(e) => assert_eq!(e, rustix::io::Errno::NOSYS),
        }
    }
}
