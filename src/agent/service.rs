//! Talking to the service manager: readiness, watchdog pings, stopping.
//!
//! systemd's `Type=notify` protocol is one datagram per state change to the
//! unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name
//! written with a leading `@`); `$WATCHDOG_USEC` asks for `WATCHDOG=1` at
//! least that often. Without those variables every call is a no-op, so the
//! agent behaves the same by hand and under systemd.
//!
//! The decision a reader must know: a watchdog ping vouches for the whole
//! agent, not just the thread that sends it. The sampling loop sends it,
//! and only while the writer thread has also shown life within the
//! watchdog interval (it beats at least every 250 ms, even when idle), so
//! a stuck sampler *or* a stuck writer gets the agent restarted.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tracing::{debug, warn};

use super::clock::monotonic_ns;

/// Where to send notifications, from `$NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// A socket file.
    Path(std::path::PathBuf),
    /// A Linux abstract socket (`@name` in the variable).
    Abstract(Vec<u8>),
}

impl NotifyTarget {
    /// Parse `$NOTIFY_SOCKET`'s value.
    pub fn parse(value: &str) -> Result<NotifyTarget> {
        if let Some(name) = value.strip_prefix('@') {
            if name.is_empty() {
                bail!("NOTIFY_SOCKET={value:?} names no abstract socket");
            }
            return Ok(NotifyTarget::Abstract(name.as_bytes().to_vec()));
        }
        if !value.starts_with('/') {
            bail!("NOTIFY_SOCKET={value:?} is neither an absolute path nor an @abstract name");
        }
        Ok(NotifyTarget::Path(value.into()))
    }

    fn address(&self) -> Result<SocketAddr> {
        match self {
            NotifyTarget::Path(path) => SocketAddr::from_pathname(path)
                .with_context(|| format!("NOTIFY_SOCKET {} is not a usable path", path.display())),
            NotifyTarget::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name).context("NOTIFY_SOCKET abstract name too long")
            }
        }
    }
}

/// The watchdog interval asked for by `$WATCHDOG_USEC`, if it is meant for
/// this process (`$WATCHDOG_PID` unset or equal to our pid).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&usec| usec > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

struct Shared {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog_ns: Option<u64>,
    ready_sent: AtomicBool,
    /// CLOCK_MONOTONIC of the writer's last sign of life.
    writer_beat_ns: AtomicU64,
    /// CLOCK_MONOTONIC of the last WATCHDOG=1.
    last_ping_ns: AtomicU64,
    /// A notification was dropped because the manager's queue was full
    /// (said once: the manager is not reading).
    dropped_full: AtomicBool,
}

/// The agent's link to its service manager; cheap to clone, shared by the
/// sampler and writer threads.
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

impl Service {
    /// Read `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`. A bad
    /// variable is logged and ignored: the agent must still run.
    pub fn from_env() -> Service {
        let var = |name: &str| std::env::var(name).ok();
        let socket = var("NOTIFY_SOCKET").and_then(|value| match connect(&value) {
            Ok(socket) => Some(socket),
            Err(err) => {
                warn!("not notifying the service manager: {err:#}");
                None
            }
        });
        let watchdog = socket.as_ref().and_then(|_| {
            watchdog_interval(
                var("WATCHDOG_USEC").as_deref(),
                var("WATCHDOG_PID").as_deref(),
                std::process::id(),
            )
        });
        if let Some(interval) = watchdog {
            debug!(?interval, "service manager watchdog enabled");
        }
        Service::new(socket, watchdog)
    }

    /// A service that notifies nobody (tests, benches).
    pub fn none() -> Service {
        Service::new(None, None)
    }

    fn new(socket: Option<(UnixDatagram, SocketAddr)>, watchdog: Option<Duration>) -> Service {
        let now = monotonic_ns();
        Service {
            shared: Arc::new(Shared {
                socket,
                watchdog_ns: watchdog.map(|w| w.as_nanos() as u64),
                ready_sent: AtomicBool::new(false),
                writer_beat_ns: AtomicU64::new(now),
                last_ping_ns: AtomicU64::new(now),
                dropped_full: AtomicBool::new(false),
            }),
        }
    }

    /// Warn when the watchdog interval is too short for pings sent once per
    /// sampling period to arrive in time (two periods per half interval).
    pub fn check_period(&self, period: Duration) {
        if let Some(watchdog_ns) = self.shared.watchdog_ns {
            if watchdog_ns < 4 * period.as_nanos() as u64 {
                warn!(
                    watchdog = ?Duration::from_nanos(watchdog_ns),
                    ?period,
                    "WatchdogSec is shorter than 4 sampling periods: the service manager may restart a healthy agent"
                );
            }
        }
    }

    /// The writer has written the first tick: tell the manager we are
    /// ready (once), with a status line for `systemctl status`.
    pub fn tick_written(&self, status: &str) {
        if !self.shared.ready_sent.swap(true, Ordering::SeqCst) {
            self.send(&format!("READY=1\nSTATUS={status}\n"));
        }
    }

    /// The writer thread is alive (called from its loop).
    pub fn writer_alive(&self) {
        self.shared
            .writer_beat_ns
            .store(monotonic_ns(), Ordering::Relaxed);
    }

    /// The sampling loop is alive: send WATCHDOG=1 if half the interval
    /// has passed and the writer beat within the whole interval.
    pub fn sampler_alive(&self) {
        let Some(watchdog_ns) = self.shared.watchdog_ns else {
            return;
        };
        let now = monotonic_ns();
        let last = self.shared.last_ping_ns.load(Ordering::Relaxed);
        if now.saturating_sub(last) < watchdog_ns / 2 {
            return;
        }
        let beat = self.shared.writer_beat_ns.load(Ordering::Relaxed);
        if now.saturating_sub(beat) > watchdog_ns {
            // No ping: the manager restarts us if the writer stays stuck.
            return;
        }
        self.shared.last_ping_ns.store(now, Ordering::Relaxed);
        self.send("WATCHDOG=1\n");
    }

    /// The agent is shutting down.
    pub fn stopping(&self) {
        self.send("STOPPING=1\n");
    }

    fn send(&self, message: &str) {
        if let Some((socket, address)) = &self.shared.socket {
            match socket.send_to_addr(message.as_bytes(), address) {
                Ok(_) => {}
                // The socket is non-blocking: a manager that does not read
                // its queue must never stall the sampling loop.
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    if !self.shared.dropped_full.swap(true, Ordering::Relaxed) {
                        warn!(
                            "the service manager's notification queue is full; dropping \
                             notifications it does not read ({})",
                            message.trim_end()
                        );
                    }
                }
                Err(err) => warn!(
                    "cannot notify the service manager ({}): {err}",
                    message.trim_end()
                ),
            }
        }
    }
}

/// An unbound datagram socket and the manager's address.
fn connect(value: &str) -> Result<(UnixDatagram, SocketAddr)> {
    let address = NotifyTarget::parse(value)?.address()?;
    let socket = UnixDatagram::unbound().context("cannot create a notification socket")?;
    socket
        .set_nonblocking(true)
        .context("cannot make the notification socket non-blocking")?;
    Ok((socket, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_values() {
        assert_eq!(
            NotifyTarget::parse("/run/systemd/notify").unwrap(),
            NotifyTarget::Path("/run/systemd/notify".into())
        );
        assert_eq!(
            NotifyTarget::parse("@sd-notify").unwrap(),
            NotifyTarget::Abstract(b"sd-notify".to_vec())
        );
        assert!(NotifyTarget::parse("relative/path").is_err());
        assert!(NotifyTarget::parse("@").is_err());
    }

    #[test]
    fn watchdog_variables() {
        let d = |us| Some(Duration::from_micros(us));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), d(30_000_000));
        assert_eq!(watchdog_interval(Some("500"), Some("7"), 7), d(500));
        assert_eq!(watchdog_interval(Some("500"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    fn listening(dir: &std::path::Path) -> (UnixDatagram, Service) {
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let socket = connect(path.to_str().unwrap()).unwrap();
        (
            listener,
            Service::new(Some(socket), Some(Duration::from_millis(40))),
        )
    }

    fn receive(listener: &UnixDatagram) -> Option<String> {
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn ready_is_sent_once() {
        let dir = tempfile::tempdir().unwrap();
        let (listener, service) = listening(dir.path());
        service.tick_written("sampling");
        service.tick_written("sampling");
        assert_eq!(
            receive(&listener).as_deref(),
            Some("READY=1\nSTATUS=sampling\n")
        );
        assert_eq!(receive(&listener), None);
    }

    #[test]
    fn watchdog_pings_only_while_the_writer_beats() {
        let dir = tempfile::tempdir().unwrap();
        let (listener, service) = listening(dir.path());
        service.sampler_alive();
        assert_eq!(receive(&listener), None, "no ping before half the interval");
        std::thread::sleep(Duration::from_millis(25));
        service.writer_alive();
        service.sampler_alive();
        assert_eq!(receive(&listener).as_deref(), Some("WATCHDOG=1\n"));
        // The writer goes quiet for longer than the interval: no more pings.
        std::thread::sleep(Duration::from_millis(60));
        service.sampler_alive();
        assert_eq!(receive(&listener), None);
        service.writer_alive();
        service.sampler_alive();
        assert_eq!(receive(&listener).as_deref(), Some("WATCHDOG=1\n"));
    }

    /// A manager that never reads its queue must not stall the agent: the
    /// sends that do not fit are dropped (the sampling loop sends one per
    /// tick; a blocking send hung a stopping agent forever).
    #[test]
    fn a_full_queue_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (listener, service) = listening(dir.path());
        let started = std::time::Instant::now();
        for _ in 0..10_000 {
            service.stopping();
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(service.shared.dropped_full.load(Ordering::Relaxed));
        assert_eq!(receive(&listener).as_deref(), Some("STOPPING=1\n"));
    }

    #[test]
    fn abstract_sockets_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("taskscope-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        listener
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let service = Service::new(Some(connect(&format!("@{name}")).unwrap()), None);
        service.stopping();
        assert_eq!(receive(&listener).as_deref(), Some("STOPPING=1\n"));
    }

    #[test]
    fn without_a_manager_nothing_happens() {
        let service = Service::none();
        service.tick_written("x");
        service.sampler_alive();
        service.stopping();
    }
}
