//! `keybound_tls::serve` on a real socket: a client that trickles its headers is cut off at the
//! header deadline, a well-behaved one is served with its address, an oversized header
//! section gets 431, and connections past the cap wait instead of being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use keybound_tls::{ServeLimits, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

async fn start(limits: ServeLimits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    );
    tokio::spawn(serve(listener, app, limits, std::future::pending()));
    addr
}

async fn get_root(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_at_the_deadline() {
    let limits = ServeLimits::default().with_header_read_timeout(Duration::from_secs(1));
    let addr = start(limits).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(b"X-Slow: a\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            // The server answered (408) or closed (0 bytes): either way it ended the request.
            assert!(n == 0 || buf.starts_with(b"HTTP/1.1 408"), "{n}");
            closed = true;
            break;
        }
    }
    assert!(closed, "the slow client was still connected after 8 s");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A normal client is served, with its address.
    let mut normal = TcpStream::connect(addr).await.unwrap();
    let response = get_root(&mut normal).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("127.0.0.1"), "{response}");
}

#[tokio::test]
async fn a_header_section_over_the_limit_gets_431_and_one_under_it_is_served() {
    let addr = start(ServeLimits::default().with_max_header_bytes(16 * 1024)).await;
    let request = |filler: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(filler)
        )
    };
    let mut big = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = big.write_all(request(40 * 1024).as_bytes()).await;
    let mut response = Vec::new();
    let _ = big.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    let mut fits = TcpStream::connect(addr).await.unwrap();
    fits.write_all(request(12 * 1024).as_bytes()).await.unwrap();
    let mut response = String::new();
    fits.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let addr = start(ServeLimits::default().with_max_connections(1)).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The first connection stays open (keep-alive): the second is not served meanwhile.
    let mut second = TcpStream::connect(addr).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(500), get_root(&mut second)).await;
    assert!(waiting.is_err(), "served past the cap");
    drop(first);
    let served = tokio::time::timeout(Duration::from_secs(5), get_root(&mut second))
        .await
        .expect("served once the first connection closed");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}
