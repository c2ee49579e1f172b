//! The small harness of the multi-process test binaries (`harness = false`): run with
//! `--peer <role> ...` the binary plays a peer process; otherwise it runs its tests, each
//! caught so one failure does not hide the others, filtered by any non-flag arguments.

use std::time::Instant;

/// A test: its name and body.
pub type Test = (&'static str, fn());

/// Dispatches to `peer` for `--peer` invocations, else runs `tests` and exits non-zero if
/// any failed.
pub fn main(tests: &[Test], peer: fn(&[String])) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--peer") {
        peer(&args[1..]);
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let (mut ran, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let started = Instant::now();
        let result = std::panic::catch_unwind(test);
        let took = started.elapsed();
        match result {
            Ok(()) => println!("test {name} ... ok ({took:.1?})"),
            Err(_) => {
                println!("test {name} ... FAILED ({took:.1?})");
                failed += 1;
            }
        }
    }
    println!("\ntest result: {}. {} passed; {failed} failed", if failed == 0 { "ok" } else { "FAILED" }, ran - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
