//! The logging shim (embassy's style): `trace!`, `debug!`, `info!`, `warn!` and `error!`
//! forward to the `log` crate with the `log` feature, to `defmt` with the `defmt` feature,
//! and compile to nothing (their arguments only borrowed) with neither. Format strings use
//! plain `{}` placeholders so both back ends accept them.
//!
//! Never enable `defmt` in a `cdylib` (defmt#1094): `ember-ipc-c` does not.
#![allow(unused_macros)]

macro_rules! ember_log {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {
        {
            #[cfg(feature = "log")]
            ::log::$level!($s $(, $x)*);
            #[cfg(feature = "defmt")]
            ::defmt::$level!($s $(, $x)*);
            #[cfg(not(any(feature = "log", feature = "defmt")))]
            let _ = ($( & $x ),*);
        }
    };
}

macro_rules! trace {
    ($($t:tt)*) => { ember_log!(trace, $($t)*) };
}

macro_rules! debug {
    ($($t:tt)*) => { ember_log!(debug, $($t)*) };
}

macro_rules! info {
    ($($t:tt)*) => { ember_log!(info, $($t)*) };
}

macro_rules! warn {
    ($($t:tt)*) => { ember_log!(warn, $($t)*) };
}

macro_rules! error {
    ($($t:tt)*) => { ember_log!(error, $($t)*) };
}
