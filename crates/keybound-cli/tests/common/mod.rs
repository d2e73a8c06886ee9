//! Process helpers shared by the tests that start `keybound` (and nginx, redis-server) as real
//! processes on loopback.

#![allow(dead_code, unreachable_pub)] // each test file uses a different subset

use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

pub mod proofs;
pub mod server;

/// A child process, killed when the test ends, pass or fail.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Waits until something listens on `port` (at most 30 s).
pub fn wait_for(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
