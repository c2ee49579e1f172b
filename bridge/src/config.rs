//! The route table: a TOML file naming this board, Zenoh's settings and the routes.
//!
//! ```text
//! board = "a"                          # {board} in this bridge's keys
//!
//! [zenoh]                              # passed through to Zenoh (all optional)
//! mode = "peer"                        # peer | client | router
//! listen = ["tcp/127.0.0.1:7447"]      # listen/endpoints
//! connect = ["tcp/127.0.0.1:7448"]     # connect/endpoints
//! scouting = false                     # multicast scouting and gossip
//! config_file = "/etc/zenoh.json5"     # a full Zenoh config; the keys above override it
//!
//! [[route]]                            # one per channel
//! channel = "imu"                      # key: ember/{board}/{channel} (out), ember/{from}/{channel} (in)
//! direction = "out"                    # out: local -> Zenoh; in: Zenoh -> local
//! local = { kind = "spsc", name = "/imu" }  # spsc | broadcast | seqlock | mq | unix_dgram | unix_seqpacket
//! congestion = "block"                 # block | drop
//! reliability = "reliable"             # reliable | best_effort
//! priority = "data"                    # real_time .. background (Zenoh's seven)
//! express = false                      # Zenoh's express: no batching
//! rate_limit = 1000                    # frames per second (optional; over it: dropped, counted)
//! max_frame = 4096                     # largest frame (header included)
//!
//! [[rpc]]                              # request/response across boards (see `rpc`)
//! service = "calc"                     # key: ember/{board}/rpc/{service} (serve), ember/{from}/rpc/{service} (call)
//! role = "serve"                       # serve: a local rpc server answers Zenoh queries
//! path = "/run/calc.sock"              # serve: the server's seqpacket socket; call: where local clients connect
//! # from = "b"                         # call: the board that serves it
//! timeout_ms = 5000                    # how long one call may take across the bridge
//! ```
//!
//! [`RouteTable::parse`] checks everything it can without touching the system (names,
//! keys, limits) and answers a typed [`ConfigError`]; nothing in this module panics on any
//! input.
//!
//! # Example
//!
//! ```
//! use ember_bridge::config::{Direction, Local, RouteTable};
//!
//! let table = RouteTable::parse(r#"
//!     board = "a"
//!     [zenoh]
//!     listen = ["tcp/127.0.0.1:7447"]
//!     scouting = false
//!     [[route]]
//!     channel = "imu"
//!     direction = "out"
//!     local = { kind = "spsc", name = "/imu" }
//! "#).unwrap();
//! assert_eq!(table.routes[0].direction, Direction::Out);
//! assert_eq!(table.routes[0].key(&table.board), "ember/a/imu");
//! assert!(matches!(table.routes[0].local, Local::Spsc { .. }));
//! ```

use serde::Deserialize;

/// Default largest frame a route carries (header included): 64 KiB.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;
/// Largest `max_frame` a route may ask for: the frame format's own limit is 16 MiB, but a
/// bridge keeps one buffer of this size per route.
pub const MAX_MAX_FRAME: usize = 4 * 1024 * 1024;
/// Default capacity (bytes) of a ring an inbound route creates.
pub const DEFAULT_RING_CAPACITY: usize = 1 << 20;

/// The whole route table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// This board's name: the `{board}` of its keys (`ember/{board}/...`).
    pub board: String,
    /// Zenoh's settings, passed through.
    #[serde(default)]
    pub zenoh: ZenohSettings,
    /// The routes.
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    /// The request/response services carried across.
    #[serde(default, rename = "rpc")]
    pub rpcs: Vec<RpcRoute>,
    /// The POSIX shm name of the resume file (where each inbound route stopped, so a
    /// restarted bridge counts what its predecessor lost: [`crate::resume`]). Default
    /// `/ember-bridge.{board}.resume`; `""` keeps none (`lost` then counts within one run).
    #[serde(default)]
    pub resume: Option<String>,
}

/// Default time one call may take across the bridge: 10 s.
pub const DEFAULT_RPC_TIMEOUT_MS: u64 = 10_000;
/// Default largest rpc frame (header included): 4 KiB.
pub const DEFAULT_RPC_MAX_FRAME: usize = 4096;

/// Which side of a request/response service this bridge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcRole {
    /// A local Ember rpc server (listening on a seqpacket socket) answers the queries on
    /// `ember/{board}/rpc/{service}`: the bridge connects to it and declares a queryable.
    Serve,
    /// Local Ember rpc clients connect to the bridge's seqpacket socket; each request is a
    /// query on `ember/{from}/rpc/{service}`, each reply goes back to its client.
    Call,
}

/// One request/response service carried across the bridge (`[[rpc]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcRoute {
    /// The service: the last chunk of its key.
    pub service: String,
    /// Which side this bridge is.
    pub role: RpcRole,
    /// `serve`: the path of the local server's listening seqpacket socket; `call`: the
    /// path the bridge listens on for local clients (replaced if a stale file is there).
    pub path: String,
    /// `call`: the board that serves (`ember/{from}/rpc/{service}`).
    pub from: Option<String>,
    /// A key expression instead of the default.
    pub key: Option<String>,
    /// How long one call may take across the bridge, in milliseconds: the query's timeout
    /// (`call`), how long a request waits for the local server (`serve`).
    pub timeout_ms: Option<u64>,
    /// Largest frame, header included.
    pub max_frame: Option<usize>,
}

impl RpcRoute {
    /// The service's key expression on this `board`.
    pub fn key(&self, board: &str) -> String {
        if let Some(k) = &self.key {
            return k.clone();
        }
        match self.role {
            RpcRole::Serve => format!("ember/{board}/rpc/{}", self.service),
            RpcRole::Call => format!("ember/{}/rpc/{}", self.from.as_deref().unwrap_or("*"), self.service),
        }
    }

    /// How long one call may take across the bridge.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(DEFAULT_RPC_TIMEOUT_MS))
    }

    /// The largest frame the service carries.
    pub fn max_frame(&self) -> usize {
        self.max_frame.unwrap_or(DEFAULT_RPC_MAX_FRAME)
    }
}

/// Zenoh's own configuration: the few keys the bridge passes through, on top of an
/// optional full Zenoh config file. With none of them, Zenoh's default applies: a peer
/// that finds others on the LAN by multicast scouting.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZenohSettings {
    /// `peer`, `client` or `router`.
    pub mode: Option<Mode>,
    /// Endpoints to listen on (`tcp/127.0.0.1:7447`, `udp/...`, `unixsock-stream/...`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Endpoints to connect to.
    #[serde(default)]
    pub connect: Vec<String>,
    /// Multicast scouting and gossip: `false` for tests and fixed topologies.
    pub scouting: Option<bool>,
    /// A full Zenoh configuration file (JSON5) to start from.
    pub config_file: Option<String>,
}

/// Zenoh's session mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Talks to peers directly.
    Peer,
    /// Talks through a router.
    Client,
    /// Routes for others.
    Router,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Peer => "peer",
            Mode::Client => "client",
            Mode::Router => "router",
        }
    }
}

/// Which way a route carries frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a local endpoint to Zenoh (published on `ember/{board}/{channel}`).
    Out,
    /// From Zenoh (a subscription on `ember/{from}/{channel}`) into a local endpoint.
    In,
}

/// Zenoh's congestion control for a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Congestion {
    /// Wait for room, end to end: lossless, a slow reader slows the writer.
    #[default]
    Block,
    /// Drop what does not fit now; every dropped frame is counted.
    Drop,
}

/// Zenoh's reliability for a route's publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reliability {
    /// Retransmitted by the transport.
    #[default]
    Reliable,
    /// Not retransmitted.
    BestEffort,
}

/// Zenoh's priorities, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Priority {
    RealTime,
    InteractiveHigh,
    InteractiveLow,
    DataHigh,
    #[default]
    Data,
    DataLow,
    Background,
}

/// The local end of a route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Local {
    /// An SPSC ring: outbound, the bridge is its reader (the writer created it); inbound, the
    /// bridge creates it and writes.
    Spsc {
        /// Shm name (`/name`).
        name: String,
        /// The type fingerprint in the segment header.
        #[serde(default)]
        fingerprint: u64,
        /// Ring capacity in bytes when the bridge creates it (a power of two).
        capacity: Option<usize>,
    },
    /// A broadcast ring: outbound, the bridge is a read-only subscriber; inbound, the bridge
    /// creates it and is its writer.
    Broadcast {
        /// Shm name (`/name`).
        name: String,
        /// The type fingerprint in the segment header.
        #[serde(default)]
        fingerprint: u64,
        /// Ring capacity in bytes when the bridge creates it (a power of two).
        capacity: Option<usize>,
    },
    /// A POSIX message queue: outbound, the bridge receives from an existing queue; inbound,
    /// it sends to it, creating it first when `create` is set.
    Mq {
        /// Queue name (`/name`).
        name: String,
        /// Inbound: create the queue (and remove it on exit).
        #[serde(default)]
        create: bool,
        /// Depth of a queue the bridge creates.
        max_msgs: Option<usize>,
    },
    /// A Unix datagram socket: outbound, the bridge binds `path` and publishes every datagram
    /// it receives; inbound, it sends each frame to `path`.
    UnixDgram {
        /// Socket file path.
        path: String,
    },
    /// A Unix seqpacket socket: outbound, the bridge listens on `path` and publishes every
    /// frame a connected writer sends (one writer at a time; the next waits in the listen
    /// backlog until it leaves); inbound, the bridge connects to a process listening on
    /// `path` (again, while it is not there) and sends it each frame.
    UnixSeqpacket {
        /// Socket file path.
        path: String,
    },
    /// A seqlock (a latest value): outbound, the bridge samples it `rate_hz` times a second
    /// and publishes the value when it changed since the last one published; inbound, the
    /// bridge creates it and writes each frame that arrives as the new value.
    Seqlock {
        /// Shm name (`/name`).
        name: String,
        /// The type fingerprint in the segment header.
        #[serde(default)]
        fingerprint: u64,
        /// Outbound: samples per second (1 to 10,000; required).
        rate_hz: Option<u32>,
        /// Inbound: the largest value in bytes (a multiple of 8; default: `max_frame`
        /// rounded up).
        capacity: Option<usize>,
    },
}

impl Local {
    /// A short name for the kind, as in the table.
    pub fn kind(&self) -> &'static str {
        match self {
            Local::Spsc { .. } => "spsc",
            Local::Broadcast { .. } => "broadcast",
            Local::Mq { .. } => "mq",
            Local::UnixDgram { .. } => "unix_dgram",
            Local::UnixSeqpacket { .. } => "unix_seqpacket",
            Local::Seqlock { .. } => "seqlock",
        }
    }
}

/// One route of the table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The channel: the last chunk of the route's key.
    pub channel: String,
    /// Which way frames go.
    pub direction: Direction,
    /// Inbound: the board the frames come from (`ember/{from}/{channel}`); `*` for any.
    pub from: Option<String>,
    /// A key expression instead of the default `ember/{board}/{channel}` (out) or
    /// `ember/{from}/{channel}` (in).
    pub key: Option<String>,
    /// The local endpoint.
    pub local: Local,
    /// Congestion control (outbound publisher; inbound: what a full local endpoint does).
    #[serde(default)]
    pub congestion: Congestion,
    /// Reliability of the outbound publisher.
    #[serde(default)]
    pub reliability: Reliability,
    /// Priority of the outbound publisher.
    #[serde(default)]
    pub priority: Priority,
    /// Express (no batching) for the outbound publisher.
    #[serde(default)]
    pub express: bool,
    /// Frames per second at most; over it frames are dropped and counted.
    pub rate_limit: Option<u32>,
    /// Largest frame, header included.
    pub max_frame: Option<usize>,
}

impl Route {
    /// The route's key expression on this `board`.
    pub fn key(&self, board: &str) -> String {
        if let Some(k) = &self.key {
            return k.clone();
        }
        match self.direction {
            Direction::Out => format!("ember/{board}/{}", self.channel),
            Direction::In => format!("ember/{}/{}", self.from.as_deref().unwrap_or("*"), self.channel),
        }
    }

    /// The largest frame the route carries.
    pub fn max_frame(&self) -> usize {
        self.max_frame.unwrap_or(DEFAULT_MAX_FRAME)
    }
}

/// What is wrong with a route table.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Io(std::io::Error),
    /// Not TOML, or not the table's shape (unknown key, wrong type).
    Toml(toml::de::Error),
    /// A name (board, channel, `from`) that cannot be one chunk of a key: empty, or with
    /// `/`, `*`, `$`, `?`, `#`, `@` or whitespace.
    BadName {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A `resume` that is not a POSIX shm name (`/` and 1 to 254 more bytes, no other `/`).
    BadShmName(String),
    /// A `key` that Zenoh does not accept as a key expression.
    BadKey {
        /// The key.
        key: String,
        /// Zenoh's reason.
        reason: String,
    },
    /// Two routes in the same direction on the same key.
    DuplicateKey(String),
    /// An inbound route with neither `from` nor `key`.
    MissingFrom {
        /// The route's channel.
        channel: String,
    },
    /// A number out of its range (`max_frame`, `rate_limit`, `capacity`, `rate_hz`,
    /// `timeout_ms`).
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// Zenoh refused a setting.
    Zenoh {
        /// The key path in Zenoh's configuration.
        key: &'static str,
        /// Zenoh's reason.
        reason: String,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Io(e) => write!(f, "cannot read the route table: {e}"),
            ConfigError::Toml(e) => write!(f, "route table: {e}"),
            ConfigError::BadName { field, value } => write!(f, "{field} {value:?} cannot be a key chunk"),
            ConfigError::BadShmName(n) => write!(f, "resume {n:?} is not a shm name (\"/name\", no other '/')"),
            ConfigError::BadKey { key, reason } => write!(f, "key {key:?}: {reason}"),
            ConfigError::DuplicateKey(k) => write!(f, "two routes in the same direction on key {k:?}"),
            ConfigError::MissingFrom { channel } => write!(f, "inbound route {channel:?} needs `from` or `key`"),
            ConfigError::OutOfRange { field, value } => write!(f, "{field} = {value} is out of range"),
            ConfigError::Zenoh { key, reason } => write!(f, "zenoh setting {key}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Whether `s` can be one chunk of a key without meaning anything special to Zenoh.
fn valid_chunk(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| "/*$?#@".contains(c) || c.is_whitespace() || c.is_control())
}

/// Whether `n` is a POSIX shm name: `/`, then 1 to 254 bytes with no `/` or NUL, not `.`
/// or `..`.
fn valid_shm_name(n: &str) -> bool {
    let rest = n.strip_prefix('/').unwrap_or("");
    !rest.is_empty() && rest.len() < 255 && !rest.contains(['/', '\0']) && rest != "." && rest != ".."
}

impl RouteTable {
    /// Reads and parses the table in `path`.
    pub fn load(path: &str) -> Result<RouteTable, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(ConfigError::Io)?;
        RouteTable::parse(&text)
    }

    /// Parses and checks a table.
    pub fn parse(text: &str) -> Result<RouteTable, ConfigError> {
        let table: RouteTable = toml::from_str(text).map_err(ConfigError::Toml)?;
        table.check()?;
        Ok(table)
    }

    /// The resume file's shm name, or `None` when the table keeps none.
    pub fn resume_name(&self) -> Option<String> {
        match &self.resume {
            None => Some(crate::resume::resume_name(&self.board)),
            Some(n) if n.is_empty() => None,
            Some(n) => Some(n.clone()),
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !valid_chunk(&self.board) {
            return Err(ConfigError::BadName { field: "board", value: self.board.clone() });
        }
        if let Some(n) = &self.resume
            && !n.is_empty()
            && !valid_shm_name(n)
        {
            return Err(ConfigError::BadShmName(n.clone()));
        }
        let mut seen = std::collections::HashSet::new();
        for r in &self.routes {
            if !valid_chunk(&r.channel) {
                return Err(ConfigError::BadName { field: "channel", value: r.channel.clone() });
            }
            if let Some(from) = &r.from
                && from != "*"
                && !valid_chunk(from)
            {
                return Err(ConfigError::BadName { field: "from", value: from.clone() });
            }
            if r.direction == Direction::In && r.from.is_none() && r.key.is_none() {
                return Err(ConfigError::MissingFrom { channel: r.channel.clone() });
            }
            let key = r.key(&self.board);
            if let Err(e) = zenoh::key_expr::KeyExpr::try_from(key.as_str()) {
                return Err(ConfigError::BadKey { key, reason: e.to_string() });
            }
            if !seen.insert((r.direction == Direction::Out, key.clone())) {
                return Err(ConfigError::DuplicateKey(key));
            }
            let max = r.max_frame();
            if !(ember_core::HEADER_LEN..=MAX_MAX_FRAME).contains(&max) {
                return Err(ConfigError::OutOfRange { field: "max_frame", value: max as u64 });
            }
            if r.rate_limit == Some(0) {
                return Err(ConfigError::OutOfRange { field: "rate_limit", value: 0 });
            }
            if let Local::Seqlock { rate_hz, capacity, .. } = &r.local {
                match (r.direction, rate_hz) {
                    (Direction::Out, None) => return Err(ConfigError::OutOfRange { field: "rate_hz", value: 0 }),
                    (_, Some(hz)) if !(1..=10_000).contains(hz) => {
                        return Err(ConfigError::OutOfRange { field: "rate_hz", value: u64::from(*hz) });
                    }
                    _ => {}
                }
                if let Some(c) = capacity
                    && (*c == 0 || c % 8 != 0 || *c > MAX_MAX_FRAME)
                {
                    return Err(ConfigError::OutOfRange { field: "capacity", value: *c as u64 });
                }
            }
            if let Local::Spsc { capacity: Some(c), .. } | Local::Broadcast { capacity: Some(c), .. } = &r.local
                && (!c.is_power_of_two() || *c < 4096 || *c > 1 << 30)
            {
                return Err(ConfigError::OutOfRange { field: "capacity", value: *c as u64 });
            }
        }
        let mut services = std::collections::HashSet::new();
        for r in &self.rpcs {
            if !valid_chunk(&r.service) {
                return Err(ConfigError::BadName { field: "service", value: r.service.clone() });
            }
            if let Some(from) = &r.from
                && !valid_chunk(from)
            {
                return Err(ConfigError::BadName { field: "from", value: from.clone() });
            }
            if r.role == RpcRole::Call && r.from.is_none() && r.key.is_none() {
                return Err(ConfigError::MissingFrom { channel: r.service.clone() });
            }
            let key = r.key(&self.board);
            if let Err(e) = zenoh::key_expr::KeyExpr::try_from(key.as_str()) {
                return Err(ConfigError::BadKey { key, reason: e.to_string() });
            }
            if !services.insert((r.role == RpcRole::Serve, key.clone())) {
                return Err(ConfigError::DuplicateKey(key));
            }
            let max = r.max_frame();
            if !(ember_core::HEADER_LEN..=MAX_MAX_FRAME).contains(&max) {
                return Err(ConfigError::OutOfRange { field: "max_frame", value: max as u64 });
            }
            if let Some(t) = r.timeout_ms
                && !(1..=3_600_000).contains(&t)
            {
                return Err(ConfigError::OutOfRange { field: "timeout_ms", value: t });
            }
            if r.path.is_empty() || r.path.len() > 107 {
                return Err(ConfigError::BadName { field: "path", value: r.path.clone() });
            }
        }
        Ok(())
    }

    /// Zenoh's configuration: the file named by `config_file` (or Zenoh's default), with
    /// the table's `mode`, `listen`, `connect` and `scouting` set on top.
    pub fn zenoh_config(&self) -> Result<zenoh::Config, ConfigError> {
        let z = &self.zenoh;
        let mut config = match &z.config_file {
            Some(path) => zenoh::Config::from_file(path)
                .map_err(|e| ConfigError::Zenoh { key: "config_file", reason: e.to_string() })?,
            None => zenoh::Config::default(),
        };
        let set = |config: &mut zenoh::Config, key: &'static str, value: String| {
            config.insert_json5(key, &value).map_err(|e| ConfigError::Zenoh { key, reason: e.to_string() })
        };
        if let Some(mode) = z.mode {
            set(&mut config, "mode", format!("\"{}\"", mode.as_str()))?;
        }
        if !z.listen.is_empty() {
            set(&mut config, "listen/endpoints", json_strings(&z.listen))?;
        }
        if !z.connect.is_empty() {
            set(&mut config, "connect/endpoints", json_strings(&z.connect))?;
        }
        if let Some(on) = z.scouting {
            set(&mut config, "scouting/multicast/enabled", on.to_string())?;
            set(&mut config, "scouting/gossip/enabled", on.to_string())?;
        }
        Ok(config)
    }
}

/// `["a","b"]`, each string JSON-escaped.
fn json_strings(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        board = "a"
        [zenoh]
        mode = "peer"
        listen = ["tcp/127.0.0.1:17447"]
        connect = ["tcp/127.0.0.1:17448"]
        scouting = false
        [[route]]
        channel = "imu"
        direction = "out"
        local = { kind = "broadcast", name = "/imu", fingerprint = 7 }
        congestion = "drop"
        priority = "real_time"
        express = true
        rate_limit = 100
        [[route]]
        channel = "cmd"
        direction = "in"
        from = "b"
        local = { kind = "spsc", name = "/cmd", capacity = 65536 }
        max_frame = 4096
    "#;

    #[test]
    fn parses_a_full_table() {
        let t = RouteTable::parse(GOOD).unwrap();
        assert_eq!(t.board, "a");
        assert_eq!(t.zenoh.mode, Some(Mode::Peer));
        assert_eq!(t.routes.len(), 2);
        let out = &t.routes[0];
        assert_eq!(out.key("a"), "ember/a/imu");
        assert_eq!(out.congestion, Congestion::Drop);
        assert_eq!(out.priority, Priority::RealTime);
        assert!(out.express);
        assert_eq!(out.rate_limit, Some(100));
        assert_eq!(out.local, Local::Broadcast { name: "/imu".into(), fingerprint: 7, capacity: None });
        let inb = &t.routes[1];
        assert_eq!(inb.key("a"), "ember/b/cmd");
        assert_eq!(inb.max_frame(), 4096);
        assert_eq!(inb.reliability, Reliability::Reliable);
        t.zenoh_config().unwrap();
    }

    #[test]
    fn rpc_services_parse() {
        let t = RouteTable::parse(
            "board = \"a\"\n[[rpc]]\nservice = \"calc\"\nrole = \"serve\"\npath = \"/run/calc.sock\"\n\
             [[rpc]]\nservice = \"calc\"\nrole = \"call\"\nfrom = \"b\"\npath = \"/run/b-calc.sock\"\ntimeout_ms = 250\nmax_frame = 512",
        )
        .unwrap();
        let (serve, call) = (&t.rpcs[0], &t.rpcs[1]);
        assert_eq!((serve.role, serve.key("a")), (RpcRole::Serve, "ember/a/rpc/calc".to_string()));
        assert_eq!((serve.timeout(), serve.max_frame()), (std::time::Duration::from_secs(10), 4096));
        assert_eq!((call.role, call.key("a")), (RpcRole::Call, "ember/b/rpc/calc".to_string()));
        assert_eq!((call.timeout(), call.max_frame()), (std::time::Duration::from_millis(250), 512));
    }

    #[test]
    fn the_resume_file_is_named_by_board_unless_the_table_says() {
        let name = |t: &str| RouteTable::parse(t).unwrap().resume_name();
        assert_eq!(name("board = \"gw\""), Some("/ember-bridge.gw.resume".into()));
        assert_eq!(name("board = \"gw\"\nresume = \"/mine\""), Some("/mine".into()));
        assert_eq!(name("board = \"gw\"\nresume = \"\""), None);
    }

    #[test]
    fn zenoh_settings_pass_through() {
        let t = RouteTable::parse(GOOD).unwrap();
        let c = t.zenoh_config().unwrap();
        let listen = c.get_json("listen/endpoints").unwrap();
        assert!(listen.contains("tcp/127.0.0.1:17447"), "{listen}");
        assert_eq!(c.get_json("scouting/multicast/enabled").unwrap(), "false");
        assert_eq!(c.get_json("mode").unwrap(), "\"peer\"");
    }

    #[test]
    fn bad_tables_are_typed_errors() {
        type Expect = fn(&ConfigError) -> bool;
        let cases: &[(&str, Expect)] = &[
            ("board = ", |e| matches!(e, ConfigError::Toml(_))),
            ("board = \"a\"\nsurprise = 1", |e| matches!(e, ConfigError::Toml(_))),
            ("board = \"a/b\"", |e| matches!(e, ConfigError::BadName { field: "board", .. })),
            ("board = \"\"", |e| matches!(e, ConfigError::BadName { field: "board", .. })),
            (
                "board = \"a\"\n[[route]]\nchannel = \"x*\"\ndirection = \"out\"\nlocal = { kind = \"mq\", name = \"/q\" }",
                |e| matches!(e, ConfigError::BadName { field: "channel", .. }),
            ),
            (
                "board = \"a\"\n[[route]]\nchannel = \"x\"\ndirection = \"in\"\nlocal = { kind = \"mq\", name = \"/q\" }",
                |e| matches!(e, ConfigError::MissingFrom { .. }),
            ),
            (
                "board = \"a\"\n[[route]]\nchannel = \"x\"\ndirection = \"out\"\nkey = \"a//b\"\nlocal = { kind = \"mq\", name = \"/q\" }",
                |e| matches!(e, ConfigError::BadKey { .. }),
            ),
            (
                "board = \"a\"\n[[route]]\nchannel = \"x\"\ndirection = \"out\"\nmax_frame = 3\nlocal = { kind = \"mq\", name = \"/q\" }",
                |e| matches!(e, ConfigError::OutOfRange { field: "max_frame", .. }),
            ),
            (
                "board = \"a\"\n[[route]]\nchannel = \"x\"\ndirection = \"out\"\nlocal = { kind = \"spsc\", name = \"/q\", capacity = 5000 }",
                |e| matches!(e, ConfigError::OutOfRange { field: "capacity", .. }),
            ),
            (
                "board = \"a\"\n[[route]]\nchannel = \"x\"\ndirection = \"out\"\nlocal = { kind = \"tcp\", name = \"/q\" }",
                |e| matches!(e, ConfigError::Toml(_)),
            ),
            (
                "board = \"a\"\n[[route]]\nchannel = \"x\"\ndirection = \"out\"\nlocal = { kind = \"mq\", name = \"/q\" }\n[[route]]\nchannel = \"x\"\ndirection = \"out\"\nlocal = { kind = \"mq\", name = \"/r\" }",
                |e| matches!(e, ConfigError::DuplicateKey(_)),
            ),
            ("board = \"a\"\n[zenoh]\nmode = \"tower\"", |e| matches!(e, ConfigError::Toml(_))),
            ("board = \"a\"\nresume = \"state\"", |e| matches!(e, ConfigError::BadShmName(_))),
            ("board = \"a\"\nresume = \"/run/state\"", |e| matches!(e, ConfigError::BadShmName(_))),
            ("board = \"a\"\nresume = \"/..\"", |e| matches!(e, ConfigError::BadShmName(_))),
            ("board = \"a\"\n[[rpc]]\nservice = \"c/d\"\nrole = \"serve\"\npath = \"/s\"", |e| {
                matches!(e, ConfigError::BadName { field: "service", .. })
            }),
            ("board = \"a\"\n[[rpc]]\nservice = \"c\"\nrole = \"call\"\npath = \"/s\"", |e| {
                matches!(e, ConfigError::MissingFrom { .. })
            }),
            ("board = \"a\"\n[[rpc]]\nservice = \"c\"\nrole = \"serve\"\npath = \"/s\"\ntimeout_ms = 0", |e| {
                matches!(e, ConfigError::OutOfRange { field: "timeout_ms", .. })
            }),
            ("board = \"a\"\n[[rpc]]\nservice = \"c\"\nrole = \"serve\"\npath = \"\"", |e| {
                matches!(e, ConfigError::BadName { field: "path", .. })
            }),
            ("board = \"a\"\n[[rpc]]\nservice = \"c\"\nrole = \"relay\"\npath = \"/s\"", |e| {
                matches!(e, ConfigError::Toml(_))
            }),
            (
                "board = \"a\"\n[[rpc]]\nservice = \"c\"\nrole = \"serve\"\npath = \"/s\"\n[[rpc]]\nservice = \"c\"\nrole = \"serve\"\npath = \"/t\"",
                |e| matches!(e, ConfigError::DuplicateKey(_)),
            ),
        ];
        for (text, ok) in cases {
            let e = RouteTable::parse(text).unwrap_err();
            assert!(ok(&e), "{text:?}: {e:?}");
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn a_bad_endpoint_is_refused_by_zenoh() {
        let t = RouteTable::parse("board = \"a\"\n[zenoh]\nlisten = [\"nonsense\"]").unwrap();
        assert!(matches!(t.zenoh_config(), Err(ConfigError::Zenoh { .. })));
    }
}
