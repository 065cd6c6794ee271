//! A tiny std-only client for moto's AWS Secrets Manager and Parameter Store JSON APIs (tests
//! create, update and delete remote secrets and parameters with it). moto does not check
//! signatures, so requests are unsigned; the region is taken from the Authorization header's
//! credential scope, which we set to us-east-1.
#![allow(clippy::while_let_loop, clippy::never_loop)]

use std::io::{Read, Write};
use std::net::TcpStream;

/// Call one Secrets Manager operation (e.g. "CreateSecret") on `base_url` (http://127.0.0.1:port).
pub fn call(base_url: &str, operation: &str, body: &str) -> Result<String, String> {
    call_service(
        base_url,
        "secretsmanager",
        "secretsmanager",
        operation,
        body,
    )
}

/// Call one Systems Manager (Parameter Store) operation (e.g. "PutParameter").
pub fn ssm_call(base_url: &str, operation: &str, body: &str) -> Result<String, String> {
    call_service(base_url, "AmazonSSM", "ssm", operation, body)
}

/// Put a parameter (`type_`: String, StringList or SecureString), overwriting, with tags on
/// creation (AWS refuses tags together with Overwrite, so tags are added separately).
pub fn put_parameter(
    base_url: &str,
    name: &str,
    type_: &str,
    value: &str,
    tags: &[(&str, &str)],
) -> Result<String, String> {
    let out = ssm_call(
        base_url,
        "PutParameter",
        &format!(
            "{{\"Name\":{},\"Type\":{},\"Value\":{},\"Overwrite\":true}}",
            json_str(name),
            json_str(type_),
            json_str(value)
        ),
    )?;
    if !tags.is_empty() {
        let tags: Vec<String> = tags
            .iter()
            .map(|(k, v)| format!("{{\"Key\":{},\"Value\":{}}}", json_str(k), json_str(v)))
            .collect();
        ssm_call(
            base_url,
            "AddTagsToResource",
            &format!(
                "{{\"ResourceType\":\"Parameter\",\"ResourceId\":{},\"Tags\":[{}]}}",
                json_str(name),
                tags.join(",")
            ),
        )?;
    }
    Ok(out)
}

/// Delete a parameter.
pub fn delete_parameter(base_url: &str, name: &str) -> Result<String, String> {
    ssm_call(
        base_url,
        "DeleteParameter",
        &format!("{{\"Name\":{}}}", json_str(name)),
    )
}

fn call_service(
    base_url: &str,
    target: &str,
    signing: &str,
    operation: &str,
    body: &str,
) -> Result<String, String> {
    let hostport = base_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream =
        TcpStream::connect(&hostport).map_err(|e| format!("connect {hostport}: {e}"))?;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: {target}.{operation}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{signing}/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // Chunked bodies: keep only the JSON part.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(format!("{operation} -> HTTP {status}: {body}"))
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = s.split_once("\r\n") else {
            break;
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Create a string secret.
pub fn create_secret(base_url: &str, name: &str, value: &str) -> Result<String, String> {
    call(
        base_url,
        "CreateSecret",
        &format!(
            "{{\"Name\":{},\"SecretString\":{}}}",
            json_str(name),
            json_str(value)
        ),
    )
}

/// Create a secret with tags.
pub fn create_secret_with_tags(
    base_url: &str,
    name: &str,
    value: &str,
    tags: &[(&str, &str)],
) -> Result<String, String> {
    let tags: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{{\"Key\":{},\"Value\":{}}}", json_str(k), json_str(v)))
        .collect();
    call(
        base_url,
        "CreateSecret",
        &format!(
            "{{\"Name\":{},\"SecretString\":{},\"Tags\":[{}]}}",
            json_str(name),
            json_str(value),
            tags.join(",")
        ),
    )
}

/// Put a new value (new AWSCURRENT version).
pub fn put_value(base_url: &str, name: &str, value: &str) -> Result<String, String> {
    call(
        base_url,
        "PutSecretValue",
        &format!(
            "{{\"SecretId\":{},\"SecretString\":{}}}",
            json_str(name),
            json_str(value)
        ),
    )
}

/// Delete without recovery.
pub fn force_delete(base_url: &str, name: &str) -> Result<String, String> {
    call(
        base_url,
        "DeleteSecret",
        &format!(
            "{{\"SecretId\":{},\"ForceDeleteWithoutRecovery\":true}}",
            json_str(name)
        ),
    )
}
