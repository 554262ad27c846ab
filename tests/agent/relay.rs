//! A throttling TCP relay for the shipping tests: it sits between the
//! agent and the S3 server on loopback, forwards both ways, slows the
//! client→server direction to a given rate, and counts what it forwarded,
//! so a test can tell (and wait for the moment) that a request's body is
//! in flight: bytes the client sent since the server last said anything on
//! that connection. HTTP/1.1 requests on one connection are sequential
//! (the S3 client does not pipeline), so those bytes are the current
//! request's, headers included.
//!
//! Plain std::net and a thread per direction: no async runtime, no mock of
//! the server, which stays the real s3s-fs process.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters of one relayed connection.
#[derive(Default)]
struct Connection {
    /// Client→server bytes since the server last sent a byte.
    in_flight: AtomicU64,
    /// `in_flight` when the client went (and the relay stopped sending
    /// its bytes to the server), if it has.
    at_close: Mutex<Option<u64>>,
    /// Both sockets, to cut them when the relay stops.
    sockets: Mutex<Vec<TcpStream>>,
}

#[derive(Default)]
struct Shared {
    connections: Mutex<Vec<Arc<Connection>>>,
    /// Client→server bytes, all connections.
    uploaded: AtomicU64,
    stop: AtomicBool,
}

/// A relay on 127.0.0.1:`port` to 127.0.0.1:`target`; stopped when dropped.
pub struct Relay {
    pub port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    /// Start relaying to `target`, client→server at most `bytes_per_sec`.
    pub fn start(target: u16, bytes_per_sec: u64) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let shared = Arc::new(Shared::default());
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                        // The server is down: so is the relay, for this client.
                        continue;
                    };
                    relay(&shared, client, server, bytes_per_sec);
                }
            })
        };
        Relay {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// The most bytes any connection has sent since its server last
    /// answered: the request in flight (or cut) that got furthest.
    pub fn in_flight(&self) -> u64 {
        let connections = self.shared.connections.lock().expect("connections");
        connections
            .iter()
            .map(|c| c.in_flight.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0)
    }

    /// For every connection the client closed (or lost: a killed client)
    /// in the middle of a request, the bytes of that request forwarded.
    pub fn cut_requests(&self) -> Vec<u64> {
        let connections = self.shared.connections.lock().expect("connections");
        connections
            .iter()
            .filter_map(|c| *c.at_close.lock().expect("at_close"))
            .filter(|&bytes| bytes > 0)
            .collect()
    }

    /// Client→server bytes forwarded, all connections.
    pub fn uploaded(&self) -> u64 {
        self.shared.uploaded.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for connection in self.shared.connections.lock().expect("connections").iter() {
            for socket in connection.sockets.lock().expect("sockets").iter() {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Forward `client` ⇄ `server` on two threads.
fn relay(shared: &Arc<Shared>, client: TcpStream, server: TcpStream, bytes_per_sec: u64) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let connection = Arc::new(Connection::default());
    let clones = (client.try_clone(), server.try_clone());
    let (Ok(client_reader), Ok(server_reader)) = clones else {
        return;
    };
    if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
        connection.sockets.lock().expect("sockets").extend([a, b]);
    }
    shared
        .connections
        .lock()
        .expect("connections")
        .push(Arc::clone(&connection));
    // Client → server: read at once (so the relay sees the client go the
    // moment it goes, not after draining what the kernel buffered),
    // forwarded at the rate; once the client is gone nothing more of its
    // request reaches the server, and the server's side is cut: a request
    // the client did not see through never completes.
    let (chunks, queued) = std::sync::mpsc::channel::<Vec<u8>>();
    let gone = Arc::new(AtomicBool::new(false));
    {
        let gone = Arc::clone(&gone);
        let mut from = client_reader;
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 << 10];
            loop {
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if chunks.send(buffer[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
            gone.store(true, Ordering::SeqCst);
        });
    }
    {
        let shared = Arc::clone(shared);
        let connection = Arc::clone(&connection);
        let mut to = server;
        std::thread::spawn(move || {
            // Small writes, so the rate holds within a fraction of a second.
            let slice = (bytes_per_sec / 16).clamp(1024, 256 << 10) as usize;
            let mut start = Instant::now();
            let mut sent = 0u64;
            'forward: loop {
                let chunk = match queued.try_recv() {
                    Ok(chunk) => chunk,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => break 'forward,
                    // Idle: the rate counts from the next request on (no
                    // burst for the time the connection waited).
                    Err(std::sync::mpsc::TryRecvError::Empty) => match queued.recv() {
                        Ok(chunk) => {
                            start = Instant::now();
                            sent = 0;
                            chunk
                        }
                        Err(_) => break 'forward,
                    },
                };
                for piece in chunk.chunks(slice) {
                    if gone.load(Ordering::SeqCst) {
                        break 'forward;
                    }
                    if to.write_all(piece).is_err() {
                        break 'forward;
                    }
                    connection
                        .in_flight
                        .fetch_add(piece.len() as u64, Ordering::SeqCst);
                    shared
                        .uploaded
                        .fetch_add(piece.len() as u64, Ordering::SeqCst);
                    sent += piece.len() as u64;
                    let due = Duration::from_secs_f64(sent as f64 / bytes_per_sec as f64);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            let bytes = connection.in_flight.load(Ordering::SeqCst);
            *connection.at_close.lock().expect("at_close") = Some(bytes);
            let _ = to.shutdown(Shutdown::Both);
        });
    }
    // Server → client, at full speed; any byte ends the request in flight.
    {
        let mut to = client;
        let mut from = server_reader;
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 << 10];
            loop {
                let n = match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                connection.in_flight.store(0, Ordering::SeqCst);
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}
