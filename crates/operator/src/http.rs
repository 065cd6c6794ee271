//! A minimal HTTP/1.1 server for `/metrics`, `/healthz` and `/readyz` (no framework needed for
//! three plain-text endpoints).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// What a request path answers: status code and body.
pub type Handler = Arc<dyn Fn(&str) -> (u16, String) + Send + Sync>;

/// Serve `handler` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, handler: Handler) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (mut sock, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept failed");
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read until the end of the request head (or the buffer is full).
            loop {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    sock.read(&mut buf[len..]),
                )
                .await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => {
                        len += n;
                        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || len == buf.len() {
                            break;
                        }
                    }
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let path = head
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("/")
                .split('?')
                .next()
                .unwrap_or("/")
                .to_string();
            let (code, body) = handler(&path);
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                _ => "Service Unavailable",
            };
            let ctype = if path == "/metrics" {
                "text/plain; version=0.0.4"
            } else {
                "text/plain"
            };
            let resp = format!(
                "HTTP/1.1 {code} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = sock.write_all(resp.as_bytes()).await {
                debug!(error = %e, "write failed");
            }
            let _ = sock.shutdown().await;
        });
    }
}
