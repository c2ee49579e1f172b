//! The library's version, at compile time (`EMBER_VERSION_*` in `ember.h`) and at run time
//! (`ember_version`), so a program can check that the header it was built with and the
//! `libember.so` it loaded are the same release.
//!
//! ```c
//! #include "ember.h"
//! unsigned maj, min, pat;
//! if (sscanf(ember_version(), "%u.%u.%u", &maj, &min, &pat) != 3 || maj != EMBER_VERSION_MAJOR)
//!     abort(); /* built against another major version */
//! ```

use core::ffi::c_char;

/// The major version of the release this header belongs to (the `x` of `x.y.z`): a change
/// that breaks the ABI raises it (while it is 0, the minor version does).
pub const EMBER_VERSION_MAJOR: u32 = 0;
/// The minor version of the release this header belongs to (the `y` of `x.y.z`).
pub const EMBER_VERSION_MINOR: u32 = 1;
/// The patch version of the release this header belongs to (the `z` of `x.y.z`).
pub const EMBER_VERSION_PATCH: u32 = 0;

/// The library's version, `"MAJOR.MINOR.PATCH"`: static, NUL-terminated, never freed.
/// Compare with `EMBER_VERSION_MAJOR`/`_MINOR`/`_PATCH` to see that the library loaded is
/// the one the header describes.
///
/// Returns no result code (it cannot fail).
///
/// # Safety
///
/// Always safe to call.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn ember_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_constants_are_the_package_version() {
        let parts = [EMBER_VERSION_MAJOR, EMBER_VERSION_MINOR, EMBER_VERSION_PATCH].map(|v| v.to_string());
        assert_eq!(
            parts,
            [env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"), env!("CARGO_PKG_VERSION_PATCH")],
            "bump EMBER_VERSION_* in bindings-c/src/version.rs with the package version"
        );
        // SAFETY: a static NUL-terminated string.
        let s = unsafe { core::ffi::CStr::from_ptr(ember_version()) };
        assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
