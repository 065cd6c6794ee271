//! A counting (and fault-injecting) HTTP/1.1 proxy in front of moto, std only, for benchmarks and
//! the demo. Each client request is forwarded on a fresh upstream connection; the response is
//! relayed with `Connection: close`. Requests are counted by `X-Amz-Target` (or `Action=` for
//! STS query calls). Used by `cargo xtask bench`, the demo and end-to-end tests.
#![allow(clippy::while_let_loop, clippy::never_loop)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the proxy should do with the next requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward normally.
    None,
    /// Answer 400 ThrottlingException.
    Throttle,
    /// Answer 503.
    Unavailable,
    /// Close the connection without answering.
    Drop,
    /// Answer 400 AccessDeniedException (credentials valid, permission missing), as AWS does.
    AccessDenied,
}

/// A running proxy.
pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    fault: Arc<Mutex<Fault>>,
    remaining: Arc<AtomicU32>,
}

impl Proxy {
    /// Start a proxy forwarding to `upstream` (`http://127.0.0.1:<port>`).
    pub fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let fault = Arc::new(Mutex::new(Fault::None));
        let remaining = Arc::new(AtomicU32::new(0));
        let (c, f, r) = (counts.clone(), fault.clone(), remaining.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (c, f, r, up) = (c.clone(), f.clone(), r.clone(), upstream.clone());
                thread::spawn(move || {
                    let _ = handle(stream, &up, &c, &f, &r);
                });
            }
        });
        Ok(Self {
            url,
            counts,
            fault,
            remaining,
        })
    }

    /// Requests seen so far, by operation.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Total requests seen.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    /// Inject `fault` for the next `n` requests (`u32::MAX`: until cleared).
    pub fn inject(&self, fault: Fault, n: u32) {
        if let Ok(mut f) = self.fault.lock() {
            *f = fault;
        }
        self.remaining.store(n, Ordering::SeqCst);
    }
}

fn handle(
    mut client: TcpStream,
    upstream: &str,
    counts: &Mutex<BTreeMap<String, u64>>,
    fault: &Mutex<Fault>,
    remaining: &AtomicU32,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    loop {
        // Request head.
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let end = line == "\r\n";
            head.push(line);
            if end {
                break;
            }
        }
        let mut length = 0usize;
        let mut op = String::from("unknown");
        for l in &head {
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("x-amz-target:") {
                op = l[13..].trim().rsplit('.').next().unwrap_or("").to_string();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        if op == "unknown" {
            let b = String::from_utf8_lossy(&body);
            if let Some(a) = b.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
                op = a.to_string();
            }
        }
        if let Ok(mut c) = counts.lock() {
            *c.entry(op).or_insert(0) += 1;
        }
        let active = {
            let f = fault.lock().map(|f| *f).unwrap_or(Fault::None);
            if f != Fault::None && remaining.load(Ordering::SeqCst) > 0 {
                let _ = remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    if n == u32::MAX {
                        Some(n)
                    } else {
                        Some(n.saturating_sub(1))
                    }
                });
                f
            } else {
                Fault::None
            }
        };
        match active {
            Fault::Drop => return Ok(()),
            Fault::Throttle => {
                let b = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
                write!(
                    client,
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                )?;
                return Ok(());
            }
            Fault::Unavailable => {
                let b = r#"{"__type":"ServiceUnavailable","message":"injected"}"#;
                write!(
                    client,
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                )?;
                return Ok(());
            }
            Fault::AccessDenied => {
                let b = r#"{"__type":"AccessDeniedException","Message":"User: arn:aws:iam::123456789012:user/test is not authorized to perform: secretsmanager:GetSecretValue because no identity-based policy allows the secretsmanager:GetSecretValue action"}"#;
                write!(
                    client,
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                )?;
                return Ok(());
            }
            Fault::None => {}
        }
        // Forward on a fresh connection, asking the upstream to close it.
        let mut up = TcpStream::connect(upstream)?;
        for l in &head {
            let lower = l.to_ascii_lowercase();
            if lower.starts_with("connection:") || l == "\r\n" {
                continue;
            }
            up.write_all(l.as_bytes())?;
        }
        up.write_all(b"Connection: close\r\n\r\n")?;
        up.write_all(&body)?;
        let mut resp = Vec::new();
        up.read_to_end(&mut resp)?;
        client.write_all(&resp)?;
        return Ok(());
    }
}
