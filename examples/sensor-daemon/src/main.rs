//! `sensor-daemon`: a firmware-style daemon on Ember, everything in one poller loop.
//!
//! - publishes the latest reading through a seqlock (`/<name>-reading`) and every event
//!   through a broadcast ring (`/<name>-events`), as Ember frames;
//! - takes commands on a Unix seqpacket socket (get, set interval, raise an event), and
//!   one-way commands (set interval, raise an event) on a POSIX message queue
//!   (`/<name>-commands`), for shell tools and C programs that send and forget;
//! - comes back after a crash (`kill -9`, the OOM killer): its objects are created with
//!   `replace_stale`, which takes over what a dead run left and refuses to start beside a
//!   live one;
//! - shuts down cleanly on `SIGTERM`/`SIGINT` (exit status 0) and reloads its config file
//!   on `SIGHUP`, the signals read from a signalfd in the same loop;
//! - emits the D-Bus signal `org.ember.Sensor.Event` on each event when a bus is there,
//!   and answers `org.ember.Sensor.GetReading`;
//! - under systemd (`sensor-daemon.service`, `sensor-daemon.socket`): takes its command
//!   socket from socket activation (the descriptor named `command`) when `LISTEN_FDS` is
//!   set, says `READY=1` once set up, `STATUS=` lines, `RELOADING=1` then `READY=1` around
//!   a reload, `STOPPING=1` on `SIGTERM`, and `WATCHDOG=1` from the loop at half the
//!   `WatchdogSec=` interval. Without systemd all of that is skipped.
//!
//! `examples/sensor-daemon/README.md` shows it running; the protocol is in `lib.rs`.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use ember_core::dbus::value::Values;
use ember_core::dbus::{Signature, Value, Writer};
use ember_core::frame::{Frame, FrameRepr};
use ember_core::message;
use ember_linux::dbus::object::{Call, Interface, Method, MethodError, Object, Service, SignalDesc};
use ember_linux::dbus::{Connection, Processed, RequestNameReply};
use ember_linux::mq::{self, MessageQueue};
use ember_linux::poll::{Interest, Poller, Ready, Timer};
use ember_linux::shm::{Backing, BroadcastWriter, CreateOptions, SeqLockWriter};
use ember_linux::signal::{Daemon, DaemonEvent};
use ember_linux::socket::PacketSocket;
use ember_linux::systemd::{self, State as Sd};
use ember_linux::uds::{UdsListener, UnixName};
use ember_linux::{Error, FrameReceiver, FrameSender};
use ember_sensor_daemon::*;
use rustix::fd::AsFd;

const USAGE: &str = "\
usage: sensor-daemon [options]

  --name <name>        object names: /<name>-reading, /<name>-events, /<name>-commands
                       (default: sensor)
  --socket <path>      the command socket (default: /tmp/<name>.sock); under socket
                       activation, the descriptor named `command` instead
  --config <file>      settings (interval_ms, threshold_mc, base_mc), re-read on SIGHUP
  --source <file>      read millicelsius from this file (e.g. /sys/class/thermal/thermal_zone0/temp)
                       instead of simulating
  --bus <address>      emit D-Bus signals on this bus (default: the session bus, if any)
  --no-bus             no D-Bus
";

const TOKEN_SIGNALS: u64 = 1;
const TOKEN_LISTENER: u64 = 2;
const TOKEN_TIMER: u64 = 3;
const TOKEN_BUS: u64 = 4;
const TOKEN_WATCHDOG: u64 = 5;
const TOKEN_QUEUE: u64 = 6;
const TOKEN_CLIENT: u64 = 100;
const MAX_CLIENTS: usize = 8;

const DBUS_PATH: &str = "/org/ember/Sensor";
const DBUS_INTERFACE: &str = "org.ember.Sensor";
const DBUS_NAME: &str = "org.ember.Sensor";
const OBJECTS: [Object<'static>; 1] = [Object {
    path: DBUS_PATH,
    interfaces: &[Interface {
        name: DBUS_INTERFACE,
        methods: &[Method { name: "GetReading", args: "", results: "iu" }],
        properties: &[],
        signals: &[SignalDesc { name: "Event", args: "qis" }],
    }],
}];

type Bus = Connection<16384>;

struct Args {
    name: String,
    socket: String,
    config: Option<String>,
    source: Option<String>,
    bus: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { name: "sensor".into(), socket: String::new(), config: None, source: None, bus: None };
    let mut no_bus = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--name" => a.name = value()?,
            "--socket" => a.socket = value()?,
            "--config" => a.config = Some(value()?),
            "--source" => a.source = Some(value()?),
            "--bus" => a.bus = Some(value()?),
            "--no-bus" => no_bus = true,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if a.socket.is_empty() {
        a.socket = format!("/tmp/{}.sock", a.name);
    }
    if a.bus.is_none() && !no_bus {
        a.bus = std::env::var("DBUS_SESSION_BUS_ADDRESS").ok();
    }
    if no_bus {
        a.bus = None;
    }
    Ok(a)
}

/// Answers `GetReading` with the latest reading.
struct SensorService {
    reading: Reading,
}

impl Service for SensorService {
    fn call(
        &mut self,
        _: &Call<'_>,
        _: Values<'_>,
        _: &mut [Option<rustix::fd::OwnedFd>],
        reply: &mut Writer<'_>,
    ) -> Result<(), MethodError> {
        reply
            .i32(self.reading.millicelsius)
            .and_then(|()| reply.u32(self.reading.count))
            .map_err(|_| MethodError::failed("reply too large"))
    }
    fn get(&mut self, _: &str, _: &str, _: &str, _: &mut Writer<'_>) -> Result<(), MethodError> {
        Err(MethodError::failed("no properties"))
    }
    fn set(&mut self, _: &str, _: &str, _: &str, _: Value<'_>) -> Result<(), MethodError> {
        Err(MethodError::failed("no properties"))
    }
}

/// Everything the loop changes.
struct State {
    config: Config,
    reading: Reading,
    above: bool,
    events: u32,
    seqlock: SeqLockWriter,
    ring: BroadcastWriter,
    bus: Option<Box<Bus>>,
    scratch: [u8; 512],
}

fn log(msg: std::fmt::Arguments<'_>) {
    eprintln!("sensor-daemon: {msg}");
}

/// Tells systemd (when it started us: `NOTIFY_SOCKET`), logging a failure: the daemon goes
/// on either way.
fn tell_systemd(states: &[Sd<'_>]) {
    if let Err(e) = systemd::notify(states) {
        log(format_args!("systemd notification: {e}"));
    }
}

/// The command socket: the activated descriptor named `command` when systemd passed
/// descriptors, else bound at `path`. The name says which, for the ready line.
fn command_socket(path: &str) -> Result<(UdsListener, String), String> {
    let mut fds = systemd::listen_fds::<4>().map_err(|e| format!("socket activation: {e}"))?;
    if fds.is_empty() {
        let l = UdsListener::bind_seqpacket(UnixName::Path(path)).map_err(|e| format!("{path}: {e}"))?;
        return Ok((l, path.to_string()));
    }
    let l = fds.uds_seqpacket_listener("command").map_err(|e| format!("socket activation, `command`: {e}"))?;
    // Others (a unit that passes more) are closed: this daemon has no use for them.
    for f in &fds {
        log(format_args!("socket activation: ignoring `{}` ({})", f.name(), f.kind()));
    }
    Ok((l, "the activated socket `command`".to_string()))
}

impl State {
    /// Takes a reading, publishes it, and raises an event when it crosses the threshold.
    fn sample(&mut self, source: Option<&str>) {
        let count = self.reading.count.wrapping_add(1);
        let millicelsius = match source {
            None => simulated(self.config.base_mc, count),
            Some(path) => match std::fs::read_to_string(path).map(|s| s.trim().parse::<i32>()) {
                Ok(Ok(v)) => v,
                // A sensor that cannot be read: say so, keep the last value.
                Ok(Err(_)) => return log(format_args!("{path}: not a number of millicelsius")),
                Err(e) => return log(format_args!("{path}: {e}")),
            },
        };
        self.reading = Reading { millicelsius, count };
        match message::encode(KIND_READING, count, &self.reading, &mut self.scratch) {
            Ok(frame) => {
                if let Err(e) = self.seqlock.write(frame) {
                    log(format_args!("publishing the reading: {e}"));
                }
            }
            Err(e) => log(format_args!("encoding the reading: {e}")),
        }
        let above = millicelsius > self.config.threshold_mc;
        if above != self.above {
            self.above = above;
            let (code, text) = if above { (EVENT_ABOVE, "above threshold") } else { (EVENT_BELOW, "below threshold") };
            self.event(code, millicelsius, text);
        }
    }

    /// Publishes an event on the ring and, when there is a bus, as a D-Bus signal.
    fn event(&mut self, code: u16, value: i32, text: &str) {
        self.events = self.events.wrapping_add(1);
        let ev = Event { code, value, text };
        match message::encode(KIND_EVENT, self.events, &ev, &mut self.scratch) {
            Ok(frame) => {
                if let Err(e) = self.ring.send(frame) {
                    log(format_args!("publishing an event: {e}"));
                }
            }
            Err(e) => log(format_args!("encoding an event: {e}")),
        }
        if let Some(bus) = &mut self.bus
            && let Ok(sig) = Signature::new("qis")
        {
            let r = bus.emit_signal(DBUS_PATH, DBUS_INTERFACE, "Event", sig, |w| {
                w.u16(code)?;
                w.i32(value)?;
                w.str(text)
            });
            if let Err(e) = r {
                log(format_args!("D-Bus: {e}; events go to shared memory only"));
                self.bus = None;
            }
        }
    }

    /// Answers one command frame (in `buf`) on `sock`.
    fn command(&mut self, sock: &mut PacketSocket, buf: &[u8], timer: &Timer) -> Result<(), Error> {
        let mut out = [0u8; 256];
        let reply = self.apply(buf, timer, &mut out)?;
        sock.send_frame(reply)
    }

    /// Carries out one command frame (in `buf`), returning the reply frame (in `out`).
    fn apply<'o>(&mut self, buf: &[u8], timer: &Timer, out: &'o mut [u8]) -> Result<&'o [u8], Error> {
        let frame = Frame::new_checked(buf)?;
        let repr = FrameRepr::parse(&frame)?;
        let payload = frame.payload();
        let reply = match repr.kind {
            CMD_GET => message::encode(KIND_READING, repr.seq, &self.reading, out)?,
            CMD_SET_INTERVAL => match message::decode_payload::<u32>(payload) {
                Ok(ms) if (1..=3_600_000).contains(&ms) => {
                    self.config.interval_ms = ms;
                    let d = Duration::from_millis(u64::from(ms));
                    timer.set(d, d)?;
                    message::encode(KIND_ACK, repr.seq, &ms, out)?
                }
                _ => message::encode(KIND_ERROR, repr.seq, "interval: a u32 of 1 to 3600000 ms", out)?,
            },
            CMD_RAISE => match message::decode_payload::<&str>(payload) {
                Ok(text) => {
                    let mut copy = [0u8; 128];
                    let n = text.len().min(copy.len());
                    copy[..n].copy_from_slice(&text.as_bytes()[..n]);
                    let text = core::str::from_utf8(&copy[..n]).unwrap_or("event");
                    self.event(EVENT_RAISED, self.reading.millicelsius, text);
                    message::encode(KIND_ACK, repr.seq, &self.config.interval_ms, out)?
                }
                Err(_) => message::encode(KIND_ERROR, repr.seq, "raise: the payload is a string", out)?,
            },
            _ => message::encode(KIND_ERROR, repr.seq, "unknown command", out)?,
        };
        Ok(reply)
    }

    /// Re-reads the config file (`SIGHUP`): defaults, then the file; a bad file changes
    /// nothing.
    fn reload(&mut self, path: Option<&str>, timer: &Timer) {
        let Some(path) = path else {
            return log(format_args!("SIGHUP: no --config file to reload"));
        };
        let applied =
            std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| Config::default().apply(&t));
        match applied {
            Ok(c) => {
                self.config = c;
                let d = Duration::from_millis(u64::from(c.interval_ms));
                if let Err(e) = timer.set(d, d) {
                    log(format_args!("timer: {e}"));
                }
                log(format_args!("reloaded {path}: {c:?}"));
                let status = format!("reloaded: sampling every {} ms", c.interval_ms);
                tell_systemd(&[Sd::Status(&status)]);
                self.event(EVENT_RELOADED, c.interval_ms as i32, "configuration reloaded");
            }
            Err(e) => log(format_args!("{path}: {e}; keeping the running configuration")),
        }
    }
}

fn connect_bus(address: &str) -> Option<Box<Bus>> {
    let mut bus = match Bus::connect(address) {
        Ok(b) => Box::new(b),
        Err(e) => {
            log(format_args!("D-Bus at {address}: {e}; events go to shared memory only"));
            return None;
        }
    };
    match bus.request_name(DBUS_NAME, 0, Duration::from_secs(5)) {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => {}
        Ok(other) => {
            log(format_args!("D-Bus: {DBUS_NAME} is taken ({other:?}); signals still go out as {}", bus.unique_name()))
        }
        Err(e) => log(format_args!("D-Bus: RequestName: {:?}", e.local())),
    }
    Some(bus)
}

/// What a create error means to the operator: another instance holds the name, or
/// something else is wrong with it.
fn create_error(name: &str, e: Error) -> String {
    match e {
        Error::InUse { pid, .. } => format!("{name}: {e} (another sensor-daemon, pid {pid}? see --name)"),
        Error::Os(rustix::io::Errno::EXIST) => {
            format!("{name}: exists and is not an Ember object of a dead writer; remove it if it is stale")
        }
        e => format!("{name}: {e}"),
    }
}

fn run(args: &Args) -> Result<(), String> {
    // First, before anything else: block the signals for the signalfd.
    let mut signals = Daemon::new().map_err(|e| format!("signals: {e}"))?;
    let mut config = Config::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        config = config.apply(&text).map_err(|e| format!("{path}: {e}"))?;
    }
    let reading_name = format!("/{}-reading", args.name);
    let events_name = format!("/{}-events", args.name);
    let commands_name = format!("/{}-commands", args.name);
    // After a crash (SIGKILL, the OOM killer) the objects of the dead run are still there:
    // `replace_stale` takes them over, atomically, and refuses (InUse) if their writer
    // lives. Readers of the old segments see their writer gone and open the new ones.
    let stale = CreateOptions::new().replace_stale(true);
    let seqlock = SeqLockWriter::create_with(Backing::Named(&reading_name), READING_CAPACITY, READING_FP, stale)
        .map_err(|e| create_error(&reading_name, e))?;
    let ring = BroadcastWriter::create_with(Backing::Named(&events_name), EVENTS_CAPACITY, EVENTS_FP, stale)
        .map_err(|e| create_error(&events_name, e))?;
    let mut queue =
        MessageQueue::create_with(&commands_name, COMMANDS_DEPTH, COMMANDS_MSG_SIZE, mq::Access::Receive, stale)
            .map_err(|e| create_error(&commands_name, e))?;
    ember_linux::Endpoint::set_nonblocking(&queue, true).map_err(|e| format!("{commands_name}: {e}"))?;
    let (listener, socket_name) = command_socket(&args.socket)?;
    let interval = Duration::from_millis(u64::from(config.interval_ms));
    let timer = Timer::periodic(interval).map_err(|e| format!("timer: {e}"))?;
    // The watchdog is pinged from this loop, so a stuck loop stops the pings: at half the
    // interval, as systemd asks.
    let watchdog = match systemd::watchdog_interval() {
        Some(w) => Some(Timer::periodic(w / 2).map_err(|e| format!("watchdog timer: {e}"))?),
        None => None,
    };
    let bus = args.bus.as_deref().and_then(connect_bus);
    let mut poller: Poller<16> = Poller::new().map_err(|e| format!("epoll: {e}"))?;
    let add = |fd: rustix::fd::BorrowedFd<'_>, token| {
        poller.add(fd, token, Interest::READ).map_err(|e| format!("epoll: {e}"))
    };
    add(signals.as_fd(), TOKEN_SIGNALS)?;
    add(listener.as_fd(), TOKEN_LISTENER)?;
    add(timer.as_fd(), TOKEN_TIMER)?;
    add(queue.as_fd(), TOKEN_QUEUE)?;
    if let Some(w) = &watchdog {
        add(w.as_fd(), TOKEN_WATCHDOG)?;
    }
    if let Some(b) = &bus {
        add(b.as_fd(), TOKEN_BUS)?;
    }
    let mut state = State {
        config,
        reading: Reading { millicelsius: 0, count: 0 },
        above: false,
        events: 0,
        seqlock,
        ring,
        bus,
        scratch: [0; 512],
    };
    // The first reading now, so that a client never finds the seqlock empty.
    state.sample(args.source.as_deref());
    let mut clients: [Option<PacketSocket>; MAX_CLIENTS] = Default::default();
    let mut buf = [0u8; 4096];
    {
        let bus_text = match &state.bus {
            Some(b) => format!("D-Bus as {}", b.unique_name()),
            None => "no D-Bus".to_string(),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "sensor-daemon: ready: {reading_name}, {events_name}, {commands_name}, {socket_name}, {bus_text}"
        );
        let _ = out.flush();
        let status = format!("sampling every {} ms; {bus_text}", state.config.interval_ms);
        tell_systemd(&[Sd::Ready, Sd::Status(&status)]);
    }
    loop {
        let ready: heapless::Vec<Ready, 16> = match poller.wait(None) {
            Ok(evs) => evs.collect(),
            Err(Error::Os(rustix::io::Errno::INTR)) => continue,
            Err(e) => return Err(format!("epoll: {e}")),
        };
        for r in ready {
            match r.token {
                TOKEN_SIGNALS => loop {
                    match signals.poll_event() {
                        Ok(Some(DaemonEvent::Shutdown { signal, pid })) => {
                            let name = if signal == ember_linux::signal::SIGTERM { "SIGTERM" } else { "SIGINT" };
                            log(format_args!("{name} from pid {pid}: shutting down"));
                            tell_systemd(&[Sd::Stopping, Sd::Status("shutting down")]);
                            return Ok(());
                        }
                        Ok(Some(DaemonEvent::Reload)) => {
                            tell_systemd(&[Sd::Reloading]);
                            state.reload(args.config.as_deref(), &timer);
                            tell_systemd(&[Sd::Ready]);
                        }
                        Ok(None) => break,
                        Err(e) => return Err(format!("signalfd: {e}")),
                    }
                },
                TOKEN_TIMER => {
                    // Expirations missed while busy are not made up: one reading per wake.
                    match timer.expirations() {
                        Ok(_) => state.sample(args.source.as_deref()),
                        Err(Error::WouldBlock) => {}
                        Err(e) => return Err(format!("timer: {e}")),
                    }
                }
                TOKEN_QUEUE => loop {
                    // One-way commands: the reply has nowhere to go; a refusal is logged.
                    let mut out = [0u8; 256];
                    match queue.recv_frame(&mut buf) {
                        Ok(n) => match state.apply(&buf[..n], &timer, &mut out) {
                            Ok(reply) if Frame::new_checked(reply).is_ok_and(|f| f.kind() == KIND_ERROR) => {
                                log(format_args!("{commands_name}: a command was refused"))
                            }
                            Ok(_) => {}
                            Err(e) => log(format_args!("{commands_name}: {e}")),
                        },
                        Err(Error::WouldBlock) => break,
                        Err(Error::Codec(e)) => log(format_args!("{commands_name}: a damaged frame was dropped: {e}")),
                        Err(e) => return Err(format!("{commands_name}: {e}")),
                    }
                },
                TOKEN_WATCHDOG => {
                    if let Some(w) = &watchdog
                        && w.expirations().is_ok()
                    {
                        tell_systemd(&[Sd::Watchdog]);
                    }
                }
                TOKEN_LISTENER => match listener.accept_seqpacket() {
                    Ok((mut sock, creds)) => match clients.iter().position(Option::is_none) {
                        Some(i) => {
                            // Commands are small: a larger one is refused (TooLarge), not
                            // read into a larger buffer.
                            sock.set_max_frame(buf.len());
                            // Replies never block the loop: a client that does not read
                            // them is dropped when its queue is full.
                            if let Err(e) = ember_linux::Endpoint::set_nonblocking(&sock, true) {
                                log(format_args!("client: {e}"));
                                continue;
                            }
                            if let Err(e) = poller.add(&sock, TOKEN_CLIENT + i as u64, Interest::READ) {
                                log(format_args!("epoll: {e}"));
                            } else {
                                clients[i] = Some(sock);
                            }
                        }
                        None => log(format_args!("client pid {} refused: {MAX_CLIENTS} already connected", creds.pid)),
                    },
                    Err(e) => log(format_args!("accept: {e}")),
                },
                TOKEN_BUS => {
                    let mut gone = false;
                    if let Some(bus) = &mut state.bus {
                        let mut service = SensorService { reading: state.reading };
                        // Drain everything buffered: epoll will not say so again.
                        loop {
                            match bus.process(&OBJECTS, &mut service, Duration::ZERO) {
                                Ok(Processed::Answered | Processed::Message(_)) => {}
                                Err(Error::TimedOut | Error::WouldBlock) => break,
                                Err(Error::Dbus(e)) => log(format_args!("D-Bus: a bad message was skipped: {e}")),
                                Err(e) => {
                                    log(format_args!("D-Bus: {e}; events go to shared memory only"));
                                    gone = true;
                                    break;
                                }
                            }
                        }
                    }
                    if gone && let Some(b) = state.bus.take() {
                        let _ = poller.remove(b.as_fd());
                    }
                }
                token => {
                    let i = (token - TOKEN_CLIENT) as usize;
                    let Some(Some(sock)) = clients.get_mut(i) else { continue };
                    let keep = match sock.recv_frame(&mut buf) {
                        Ok(n) => match state.command(sock, &buf[..n], &timer) {
                            Ok(()) => true,
                            Err(Error::WouldBlock) => {
                                log(format_args!("client {i}: does not read its replies: dropped"));
                                false
                            }
                            Err(e) => {
                                log(format_args!("client {i}: {e}"));
                                false
                            }
                        },
                        Err(Error::Codec(e)) => {
                            log(format_args!("client {i}: a damaged frame was dropped: {e}"));
                            true
                        }
                        Err(Error::PeerGone) => false,
                        // Readiness without a whole message: wait for the rest.
                        Err(Error::WouldBlock) => true,
                        Err(e) => {
                            log(format_args!("client {i}: {e}"));
                            false
                        }
                    };
                    if !keep && let Some(s) = clients[i].take() {
                        let _ = poller.remove(&s);
                    }
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sensor-daemon: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log(format_args!("{e}"));
            ExitCode::FAILURE
        }
    }
}
