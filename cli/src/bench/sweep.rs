//! `emberctl bench --sweep <name|all>`: how cost grows, each point measured against its
//! baseline in the same run, between the same two pinned processes as the fixed rows.
//!
//! | sweep | x | rows per point |
//! |---|---|---|
//! | `size` | payload bytes, 8 B to 1 MiB | `shm/spsc-hop` and `shm/spsc-stream` against two `memcpy`s (`memcpy-x2`, `+floor`), and `ideal-hop` (the same copies between two threads on the two CPUs, no IPC) against the same; `pipe/ember` against `pipe/raw`; `uds-seqpacket/ember` and `mq/ember` against their raw loops, up to the largest message each takes by default (4 KiB of payload for the socket rows, 8 KiB for a queue) |
//! | `readers` | broadcast readers, 1 to 16 | `broadcast/writer`: the writer's cost per 64-byte record while that many reader processes take them (asleep on the futex between records), with `lost_per_record`: the records a lapped reader missed over those it was sent |
//! | `inflight` | rpc requests in flight, 1 to 32 | `rpc/in-flight`: time per ADD call over a seqpacket pair with that many started before the oldest is waited for |
//!
//! Each point is its own set of rows (`sweep` and `x` in `--json` and `--csv`);
//! `cargo xtask bench --sweep` draws them.

use super::{Options, Progress, Row, Stats};

/// The sweeps `--sweep` names.
pub const SWEEPS: [&str; 3] = ["size", "readers", "inflight"];

/// The largest payload of a Unix seqpacket row (its frame buffer).
const SOCKET_MAX: usize = 4096;
/// The largest payload of a message-queue row (an 8 KiB queue message, less the header).
const MQ_MAX: usize = 8192 - 24;

const NOTE_READERS: &str = "the broadcast writer's cost per 64-byte record (batches of 256) while N reader processes take them, asleep on the ring's futex between records; lost_per_record: records lapped readers missed over records sent to them";
const NOTE_INFLIGHT: &str = "time per ADD call over a Unix seqpacket pair (rpc::Client, up to N requests started before the oldest is waited for), batches of 256";

/// Runs the sweeps `opts.sweep` names; a sweep that cannot run here goes to `skipped`.
pub fn run(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>, skipped: &mut Vec<String>) {
    let which = opts.sweep.as_deref().unwrap_or("all");
    let (a, b) = match cpus {
        [a, b, ..] => (*a, *b),
        _ => {
            skipped.push("the sweeps need two CPUs (see --cpus)".into());
            return;
        }
    };
    for name in SWEEPS {
        if which != "all" && which != name {
            continue;
        }
        let r = match name {
            "size" => size(opts, (a, b), progress, rows),
            "readers" => readers(opts, (a, b), progress, rows),
            _ => inflight(opts, b, progress, rows),
        };
        if let Err(e) = r {
            skipped.push(format!("sweep {name}: {e}"));
        }
    }
}

/// Tags the rows pushed since `from` as points of `sweep` at `x`.
fn tag(rows: &mut [Row], from: usize, sweep: &'static str, x: usize) {
    for r in &mut rows[from..] {
        r.sweep = Some((sweep, x));
    }
}

fn size(opts: &Options, cpus: (usize, usize), progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    let sizes: &[usize] =
        if opts.full { &[8, 64, 512, 4096, 32 * 1024, 256 * 1024, 1 << 20] } else { &[64, 4096, 64 * 1024, 1 << 20] };
    let pair = [cpus.0, cpus.1];
    for &s in sizes {
        let from = rows.len();
        let at = |only: &str| Options { size: Some(s), only: Some(only.into()), sweep: None, ..opts.clone() };
        super::shm::run(&at("shm/spsc-hop"), &pair, progress, rows)?;
        super::pipe::run(&at("pipe/"), &pair, progress, rows)?;
        if s <= SOCKET_MAX {
            super::sockets::run(&at("uds-seqpacket/"), &pair, progress, rows)?;
        }
        if s <= MQ_MAX {
            super::queues::run(&at("mq/"), &pair, progress, rows)?;
        }
        tag(rows, from, "size", s);
    }
    Ok(())
}

fn readers(opts: &Options, cpus: (usize, usize), progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    let records = opts.pick(1 << 18, 1 << 16, 16 * super::harness::BATCH);
    for n in [1, 2, 4, 8, 16] {
        progress.step(&format!("broadcast writer, {n} readers"));
        let from = rows.len();
        let mut f = super::fanout::broadcast_readers(cpus, n, records)?;
        let sent = (n * records) as u64;
        if f.received + f.lost != sent {
            return Err(format!(
                "{n} readers received {} and lost {} of {sent} records: the loss counters do not add up",
                f.received, f.lost
            ));
        }
        let stats = Stats::from_samples(&mut f.samples);
        super::harness::row(rows, "broadcast/writer", 64, stats, None, NOTE_READERS);
        if let Some(r) = rows.last_mut() {
            r.extra = Some(("lost_per_record", f.lost as f64 / sent as f64));
        }
        tag(rows, from, "readers", n);
    }
    Ok(())
}

fn inflight(opts: &Options, cpu: usize, progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    let calls = opts.pick(1 << 16, 1 << 14, 16 * super::harness::BATCH);
    let mut k = 1;
    while k <= super::sync::MAX_IN_FLIGHT {
        progress.step(&format!("rpc, {k} in flight"));
        let from = rows.len();
        let mut samples = super::sync::rpc_in_flight(cpu, calls, k)?;
        let stats = Stats::from_samples(&mut samples);
        super::harness::row(rows, "rpc/in-flight", 8, stats, None, NOTE_INFLIGHT);
        tag(rows, from, "inflight", k);
        k *= 2;
    }
    Ok(())
}
