//! A server that misbehaves exactly as a test scripts it, on a loopback port: it reads
//! each request (head and body, so that hanging up later is a clean close, not a reset)
//! and then hands the connection to the script. For the failures a sim that speaks the
//! protocol cannot stage: silence, garbage bytes, a line without end, a slow drip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Connections a scripted server takes before it stops accepting (every test's load is
/// bounded well below this).
const MAX_CONNECTIONS: usize = 256;

/// Starts a server running `script` on each request's connection; returns its base URL.
/// The worker's preflight (a connect and a hang-up) reaches no script.
pub fn scripted_server(script: fn(&mut TcpStream)) -> String {
    serve(move |_, conn| script(conn))
}

/// The same, the script seeing the request's head too (its request line and headers).
pub fn scripted_server_seeing(script: fn(&str, &mut TcpStream)) -> String {
    serve(script)
}

fn serve(script: impl Fn(&str, &mut TcpStream) + Copy + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for conn in listener.incoming().take(MAX_CONNECTIONS) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                if let Some(head) = read_request(&mut conn) {
                    script(&head, &mut conn);
                }
            });
        }
    });
    url
}

/// Reads one request, head and body; its head, or `None` when the client hung up first.
fn read_request(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 4096];
    let body_at = loop {
        if let Some(k) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break k + 4;
        }
        match conn.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
    };
    let text = String::from_utf8_lossy(&head[..body_at]).to_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while head.len() < body_at + length {
        match conn.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head[..body_at]).into_owned())
}

/// The head of a chunked 200 of `content_type` (the connection is closed after it, and
/// says so, so that no client reuses it).
pub fn chunked_head(conn: &mut TcpStream, content_type: &str) -> bool {
    conn.write_all(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .is_ok()
}

/// One chunk of a chunked body.
pub fn chunk(conn: &mut TcpStream, bytes: &[u8]) -> bool {
    let framed = [format!("{:x}\r\n", bytes.len()).as_bytes(), bytes, b"\r\n"].concat();
    conn.write_all(&framed).is_ok()
}

/// The end of a chunked body.
pub fn last_chunk(conn: &mut TcpStream) -> bool {
    conn.write_all(b"0\r\n\r\n").is_ok()
}

/// Hangs up cleanly once the client is done with the connection (bounded: the client
/// closes it, or a minute passes).
pub fn hang_up(conn: &mut TcpStream) {
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let mut byte = [0u8; 1024];
    while matches!(conn.read(&mut byte), Ok(n) if n > 0) {}
}

/// Holds the connection open, answering nothing, until the client gives up (or a
/// minute passes).
pub fn say_nothing(conn: &mut TcpStream) {
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let mut byte = [0u8; 1024];
    while matches!(conn.read(&mut byte), Ok(n) if n > 0) {}
}
