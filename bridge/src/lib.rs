//! # ember-ipc-bridge
//!
//! Carries Ember channels between boards over Zenoh. A bridge process reads a route table
//! ([`config`]) and, per route, moves frames between one local Ember endpoint and one Zenoh
//! key expression:
//!
//! ```text
//!  board A                                                   board B
//!  writer -> ring --[out route]--> ember/a/imu ==Zenoh==> [in route] --> ring -> reader
//!                   (ember-bridge)                        (ember-bridge)
//! ```
//!
//! - **Key scheme**: `ember/{board}/{channel}` for what a board publishes;
//!   `ember/{board}/@status` answers queries with the bridge's counters as JSON
//!   ([`counters::Status`]).
//! - **Frames cross verbatim** ([`frames`]): one Ember frame per Zenoh sample, payload
//!   checksum on (an unchecked local frame is sealed before it leaves), so a program that
//!   knows only Zenoh and `ember-ipc-core` can decode them (`examples/plain_zenoh.rs`).
//!   Inbound frames are checked before they enter a local endpoint; bad ones are counted
//!   and never written.
//! - **QoS per route**: reliability, congestion control (`block`: lossless end to end;
//!   `drop`: lossy, every loss counted), priority, express, an optional rate limit.
//! - **Counters** ([`counters`]): `in`, `out`, `dropped`, `bad`, `lost` per route.
//! - **Request/response** ([`rpc`]): an Ember rpc server on one board answers Ember rpc
//!   clients on another through a Zenoh queryable on `ember/{board}/rpc/{service}`, with
//!   the rpc module's kinds, sequence numbers, error responses and timeouts.
//!
//! The `ember-bridge` binary adds clean shutdown on `SIGTERM`/`SIGINT` (a signalfd) and
//! systemd readiness (`READY=1`). `docs/bridge.md` is the user's guide.
//!
//! # Example
//!
//! ```no_run
//! use ember_bridge::{Bridge, config::RouteTable};
//!
//! let table = RouteTable::load("/etc/ember/bridge.toml").unwrap();
//! let bridge = Bridge::start(&table).unwrap();
//! println!("{}", serde_json::to_string(&bridge.status()).unwrap());
//! bridge.stop();
//! ```
// One module maps a file (`resume`), with its own `allow` and a SAFETY line per block.
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod config;
pub mod counters;
pub mod frames;
pub mod resume;
pub mod route;
pub mod rpc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use zenoh::Wait;

use config::{Direction, RouteTable};
use counters::{Counters, RouteStatus, Status};
use route::{RunningRoute, StartError};

/// Why the bridge could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The route table's Zenoh settings were refused.
    Config(config::ConfigError),
    /// Zenoh could not open its session (an endpoint it cannot listen on, ...).
    Session(String),
    /// A route could not start.
    Route(StartError),
    /// The status queryable could not be declared.
    Status(String),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Session(e) => write!(f, "zenoh session: {e}"),
            Error::Route(e) => write!(f, "{e}"),
            Error::Status(e) => write!(f, "status queryable: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// The local status seqlock of `board`: `/ember-bridge.{board}`, a seqlock segment holding
/// the same JSON document as the status key, rewritten every [`LOCAL_STATUS_PERIOD`], with
/// the fingerprint [`STATUS_JSON_FINGERPRINT`](ember_core::shm::inspect::STATUS_JSON_FINGERPRINT):
/// `emberctl ls` shows it without Zenoh.
pub fn local_status_name(board: &str) -> String {
    format!("/ember-bridge.{board}")
}

/// How often the local status seqlock is rewritten.
pub const LOCAL_STATUS_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

/// Largest status document the local seqlock holds (a few hundred routes); a larger one is
/// replaced by `{"board":..,"error":..}`.
const LOCAL_STATUS_CAPACITY: usize = 64 * 1024;

/// Rewrites the local status seqlock until `stop`; the segment is removed when it ends.
fn local_status(board: String, src: Arc<StatusSource>, stop: Arc<AtomicBool>) -> Option<std::thread::JoinHandle<()>> {
    use ember_linux::shm::{Backing, CreateOptions, SeqLockWriter};
    let name = local_status_name(&board);
    let opts = CreateOptions::new().replace_stale(true);
    let fp = ember_core::shm::inspect::STATUS_JSON_FINGERPRINT;
    let mut w = match SeqLockWriter::create_with(Backing::Named(&name), LOCAL_STATUS_CAPACITY, fp, opts) {
        Ok(w) => w,
        Err(e) => {
            // The Zenoh status key still answers; say why `emberctl ls` will not show it.
            eprintln!("ember-bridge: no local status seqlock {name}: {e}");
            return None;
        }
    };
    std::thread::Builder::new()
        .name("status".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let json = serde_json::to_string(&src.status()).unwrap_or_default();
                if w.write(json.as_bytes()).is_err() {
                    let too_big = format!(
                        r#"{{"board":{:?},"error":"status larger than {LOCAL_STATUS_CAPACITY} bytes"}}"#,
                        board
                    );
                    let _ = w.write(too_big.as_bytes());
                }
                std::thread::sleep(LOCAL_STATUS_PERIOD);
            }
        })
        .ok()
}

/// The status key of `board`: `ember/{board}/@status`.
pub fn status_key(board: &str) -> String {
    format!("ember/{board}/@status")
}

/// Static facts of one route, for the status document.
#[derive(Debug, Clone)]
struct RouteInfo {
    channel: String,
    direction: &'static str,
    key: String,
    local: &'static str,
}

/// The shared part of the status: route facts and live counters.
#[derive(Debug)]
struct StatusSource {
    board: String,
    routes: Vec<(RouteInfo, Arc<Counters>)>,
}

impl StatusSource {
    fn status(&self) -> Status {
        Status {
            board: self.board.clone(),
            pid: std::process::id(),
            routes: self
                .routes
                .iter()
                .map(|(i, c)| RouteStatus {
                    channel: i.channel.clone(),
                    direction: i.direction.into(),
                    key: i.key.clone(),
                    local: i.local.into(),
                    matched: (i.direction == "out").then(|| c.matched()),
                    counters: c.snapshot(),
                })
                .collect(),
        }
    }
}

/// A running bridge: a Zenoh session, its routes and the status queryable.
pub struct Bridge {
    session: zenoh::Session,
    routes: Vec<RunningRoute>,
    rpcs: Vec<rpc::RunningRpc>,
    status: Arc<StatusSource>,
    queryable: Option<zenoh::query::Queryable<()>>,
    local_status: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl core::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bridge")
            .field("zid", &self.session.zid())
            .field("board", &self.status.board)
            .field("routes", &self.routes.len())
            .field("rpcs", &self.rpcs.len())
            .finish_non_exhaustive()
    }
}

/// A random epoch for this process's attachments (the standard library's hasher keys come
/// from the OS's random source), mixed with the time.
fn new_epoch() -> u64 {
    use std::hash::BuildHasher;
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::collections::hash_map::RandomState::new().hash_one((t, std::process::id()))
}

/// The resume file of a table with inbound routes ([`resume`]); without it (it could not
/// be opened: said on standard error) `lost` counts within one run only.
fn open_resume(table: &RouteTable) -> Option<resume::ResumeFile> {
    if !table.routes.iter().any(|r| r.direction == Direction::In) {
        return None;
    }
    let keys: Vec<String> = table.routes.iter().map(|r| r.key(&table.board)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let name = table.resume_name()?;
    match resume::ResumeFile::open(&name, &keys) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("ember-bridge: no resume file {name} ({e}): frames lost across a restart are not counted");
            None
        }
    }
}

impl Bridge {
    /// Opens the Zenoh session, starts every route and declares the status queryable.
    ///
    /// Call it before starting threads that must not see the signals a daemon blocks: Zenoh
    /// starts its runtime threads here, and they inherit the caller's signal mask.
    pub fn start(table: &RouteTable) -> Result<Bridge, Error> {
        let config = table.zenoh_config().map_err(Error::Config)?;
        let session = zenoh::open(config).wait().map_err(|e| Error::Session(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = new_epoch();
        let resume = open_resume(table);
        let mut routes = Vec::new();
        let mut infos = Vec::new();
        for (i, r) in table.routes.iter().enumerate() {
            let slot = resume.as_ref().and_then(|f| f.slot(i));
            let running = match route::start(&session, &table.board, r, epoch, slot, stop.clone()) {
                Ok(x) => x,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    routes.into_iter().for_each(RunningRoute::join);
                    let _ = session.close().wait();
                    return Err(Error::Route(e));
                }
            };
            infos.push((
                RouteInfo {
                    channel: r.channel.clone(),
                    direction: match r.direction {
                        Direction::Out => "out",
                        Direction::In => "in",
                    },
                    key: r.key(&table.board),
                    local: r.local.kind(),
                },
                running.counters.clone(),
            ));
            routes.push(running);
        }
        let mut rpcs = Vec::new();
        for r in &table.rpcs {
            let running = match rpc::start(&session, &table.board, r, stop.clone()) {
                Ok(x) => x,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    routes.into_iter().for_each(RunningRoute::join);
                    rpcs.into_iter().for_each(rpc::RunningRpc::join);
                    let _ = session.close().wait();
                    return Err(Error::Route(e));
                }
            };
            infos.push((
                RouteInfo {
                    channel: r.service.clone(),
                    direction: match r.role {
                        config::RpcRole::Serve => "serve",
                        config::RpcRole::Call => "call",
                    },
                    key: r.key(&table.board),
                    local: "seqpacket",
                },
                running.counters.clone(),
            ));
            rpcs.push(running);
        }
        let status = Arc::new(StatusSource { board: table.board.clone(), routes: infos });
        let src = status.clone();
        let queryable = session
            .declare_queryable(status_key(&table.board))
            .callback(move |query| {
                let json = serde_json::to_string(&src.status()).unwrap_or_default();
                // A reply that cannot be sent (the querier left) needs no handling.
                let _ = query.reply(query.key_expr().clone(), json).wait();
            })
            .wait();
        let local_status = local_status(table.board.clone(), status.clone(), stop.clone());
        let mut bridge = Bridge { session, routes, rpcs, status, queryable: None, local_status, stop };
        match queryable {
            Ok(q) => bridge.queryable = Some(q),
            Err(e) => {
                bridge.stop();
                return Err(Error::Status(e.to_string()));
            }
        }
        Ok(bridge)
    }

    /// The counters of every route now.
    pub fn status(&self) -> Status {
        self.status.status()
    }

    /// Stops every route (each within [`route::SLICE`] or a blocked write's slice),
    /// undeclares everything and closes the session; inbound rings and queues the bridge
    /// created are closed and removed.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(q) = self.queryable.take() {
            let _ = q.undeclare().wait();
        }
        for r in self.routes.drain(..) {
            r.join();
        }
        for r in self.rpcs.drain(..) {
            r.join();
        }
        if let Some(t) = self.local_status.take() {
            let _ = t.join();
        }
        let _ = self.session.close().wait();
    }
}
