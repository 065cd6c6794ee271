//! A counting HTTP relay in front of the apiserver, for `cargo xtask bench`.
//!
//! `kubectl proxy` terminates TLS and authenticates with the testenv's admin certificate; this
//! relay sits in front of it on plain HTTP and counts every request by verb (`GET`, `LIST`,
//! `WATCH`, `PATCH`, `APPLY`, ...) and resource (`externalsecrets`, `secrets`, `leases`, ...).
//! The operator under test gets a kubeconfig pointing at the relay, so only its own requests are
//! counted: the bench's kubectl calls and every other apiserver client go around it.
//!
//! Each request is forwarded on a fresh upstream connection with `Connection: close`, and the
//! response is streamed back as it arrives (watches stay open as long as the apiserver keeps them).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::kubectl::Kubectl;

/// Requests counted by `"<VERB> <resource>"`.
pub type Counts = BTreeMap<String, u64>;

/// A running `kubectl proxy` plus the counting relay in front of it.
pub struct ApiCounter {
    /// Kubeconfig that points a client at the relay.
    pub kubeconfig: PathBuf,
    counts: Arc<Mutex<Counts>>,
    kubectl_proxy: Child,
}

impl Drop for ApiCounter {
    fn drop(&mut self) {
        let _ = self.kubectl_proxy.kill();
        let _ = self.kubectl_proxy.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ApiCounter {
    /// Start `kubectl proxy` and the relay; write the relay's kubeconfig to `dir`.
    pub fn start(k: &Kubectl, dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let mut child = Command::new(&k.bin)
            .args([
                "proxy",
                "--address=127.0.0.1",
                &format!("--port={port}"),
                "--keepalive=0",
            ])
            .envs(k.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting kubectl proxy")?;
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                bail!("kubectl proxy did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let relay = listener.local_addr()?;
        let counts = Arc::new(Mutex::new(Counts::new()));
        let c = counts.clone();
        let upstream = format!("127.0.0.1:{port}");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (c, up) = (c.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = relay_one(stream, &up, &c);
                });
            }
        });
        std::fs::create_dir_all(dir)?;
        let kubeconfig = dir.join("bench-counting-kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: counted\n  cluster:\n    server: http://{relay}\n\
                 users:\n- name: anonymous\n  user: {{}}\n\
                 contexts:\n- name: counted\n  context:\n    cluster: counted\n    user: anonymous\n    namespace: default\n\
                 current-context: counted\n"
            ),
        )?;
        Ok(Self {
            kubeconfig,
            counts,
            kubectl_proxy: child,
        })
    }

    /// Requests seen so far.
    pub fn counts(&self) -> Counts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// `(verb, resource)` of an apiserver request, the way `apiserver_request_total` names them.
pub fn classify(method: &str, target: &str) -> (String, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest: &[&str] = match parts.first() {
        Some(&"api") if parts.len() >= 2 => &parts[2..],
        Some(&"apis") if parts.len() >= 3 => &parts[3..],
        _ => return (method.to_string(), format!("nonresource {path}")),
    };
    let rest = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        &rest[2..]
    } else {
        rest
    };
    let (resource, named, sub) = match rest {
        [] => return (method.to_string(), "discovery".to_string()),
        [r] => (r.to_string(), false, None),
        [r, _name] => (r.to_string(), true, None),
        [r, _name, s, ..] => (r.to_string(), true, Some(*s)),
    };
    let verb = match method {
        "GET" if watch => "WATCH",
        "GET" if !named => "LIST",
        m => m,
    };
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource,
    };
    (verb.to_string(), resource)
}

fn relay_one(client: TcpStream, upstream: &str, counts: &Mutex<Counts>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
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
    let mut content_type = String::new();
    for l in &head {
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if let Some(v) = lower.strip_prefix("content-type:") {
            content_type = v.trim().to_string();
        }
    }
    let mut request_line = head.first().map(|l| l.split_whitespace());
    let method = request_line
        .as_mut()
        .and_then(|p| p.next())
        .unwrap_or("?")
        .to_string();
    let target = request_line
        .as_mut()
        .and_then(|p| p.next())
        .unwrap_or("/")
        .to_string();
    let (mut verb, resource) = classify(&method, &target);
    if verb == "PATCH" && content_type.contains("apply-patch") {
        verb = "APPLY".to_string();
    }
    if let Ok(mut c) = counts.lock() {
        *c.entry(format!("{verb} {resource}")).or_insert(0) += 1;
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
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
    let mut client = client;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            break;
        }
        client.write_all(&buf[..n])?;
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// `now - before`, keeping only what changed.
pub fn diff(now: &Counts, before: &Counts) -> Counts {
    now.iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// `{"GET externalsecrets": 3, ...}` as `GET externalsecrets 3, ...` (or `none`).
pub fn show(c: &Counts) -> String {
    if c.is_empty() {
        return "none".to_string();
    }
    c.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn classifies_like_the_apiserver() {
        let c = |m, t| {
            let (v, r) = classify(m, t);
            format!("{v} {r}")
        };
        assert_eq!(
            c(
                "GET",
                "/apis/external-secrets.io/v1/namespaces/ns/externalsecrets?watch=true&timeoutSeconds=290"
            ),
            "WATCH externalsecrets"
        );
        assert_eq!(
            c(
                "GET",
                "/apis/external-secrets.io/v1/namespaces/ns/externalsecrets"
            ),
            "LIST externalsecrets"
        );
        assert_eq!(
            c(
                "GET",
                "/apis/external-secrets.io/v1/namespaces/ns/externalsecrets/a"
            ),
            "GET externalsecrets"
        );
        assert_eq!(
            c(
                "PATCH",
                "/apis/external-secrets.io/v1/namespaces/ns/externalsecrets/a/status?fieldManager=x"
            ),
            "PATCH externalsecrets/status"
        );
        assert_eq!(c("GET", "/api/v1/namespaces/ns/secrets/s"), "GET secrets");
        assert_eq!(c("POST", "/api/v1/namespaces/ns/events"), "POST events");
        assert_eq!(
            c(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/default/leases/l"
            ),
            "PUT leases"
        );
        assert_eq!(c("GET", "/api/v1/namespaces"), "LIST namespaces");
        assert_eq!(c("GET", "/api/v1/namespaces/ns"), "GET namespaces");
        assert_eq!(c("GET", "/apis"), "GET nonresource /apis");
        assert_eq!(c("GET", "/version"), "GET nonresource /version");
    }
}
