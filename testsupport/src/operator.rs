//! The operator binary as a child process, and store manifests shared by the operator's
//! integration tests.
//!
//! The binary is `ESO_OPERATOR_BIN` when set, else the `eso-operator` Cargo built next to the
//! running test (`target/<profile>/eso-operator`, which is where `CARGO_BIN_EXE_eso-operator`
//! points for the operator's integration tests; Cargo builds it before running them).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::cluster::root;
use super::testenv;

/// A running operator, killed on drop. Its log goes to `target/testenv/logs/e2e-<ns>.log`.
pub struct Operator {
    /// The operator process.
    pub child: Child,
    /// Its log file (stderr).
    pub log: std::path::PathBuf,
    /// `127.0.0.1:<port>` serving `/healthz` and `/readyz`.
    pub health_addr: String,
    /// `host:port` of its metrics server.
    pub metrics_addr: String,
}

/// The operator binary to run (see the module docs).
pub fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("ESO_OPERATOR_BIN") {
        return PathBuf::from(bin);
    }
    // A test executable is `target/<profile>/deps/<test>-<hash>`; Cargo puts the package's
    // binaries in `target/<profile>/`.
    let exe = std::env::current_exe().expect("path of the running test");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(format!("eso-operator{}", std::env::consts::EXE_SUFFIX)))
        .expect("test executable in target/<profile>/deps");
    assert!(
        bin.is_file(),
        "{} not found: run the test through `cargo test -p eso-operator`, or set ESO_OPERATOR_BIN",
        bin.display()
    );
    bin
}

impl Operator {
    /// Start the operator scoped to `ns` (`--namespace`), logging to
    /// `target/testenv/logs/e2e-<ns>.log`, with AWS endpoints pointing at `aws_endpoint` (default:
    /// the testenv's moto) and `extra` flags.
    pub fn start(
        env: &testenv::TestEnv,
        ns: &str,
        aws_endpoint: Option<&str>,
        extra: &[&str],
    ) -> Self {
        Self::start_named(env, ns, ns, aws_endpoint, extra)
    }

    /// Like `start`, logging to `target/testenv/logs/e2e-<log_name>.log` (a second replica).
    pub fn start_named(
        env: &testenv::TestEnv,
        ns: &str,
        log_name: &str,
        aws_endpoint: Option<&str>,
        extra: &[&str],
    ) -> Self {
        Self::start_with_env(env, ns, log_name, aws_endpoint, extra, &[])
    }

    /// Like `start_named`, with extra environment variables for the child.
    pub fn start_with_env(
        env: &testenv::TestEnv,
        ns: &str,
        log_name: &str,
        aws_endpoint: Option<&str>,
        extra: &[&str],
        vars: &[(&str, &str)],
    ) -> Self {
        let logs = root().join("target/testenv/logs");
        let _ = std::fs::create_dir_all(&logs);
        let log = logs.join(format!("e2e-{log_name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let port = |_: u8| -> String {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            let p = l.local_addr().expect("addr").port();
            format!("127.0.0.1:{p}")
        };
        let health_addr = port(1);
        let metrics_addr = port(0);
        // `ESO_OPERATOR_BIN` runs another build of the operator under the same test (e.g. the
        // previous commit's, to show that a lifecycle test fails without its fix).
        let mut cmd = Command::new(binary());
        cmd.args([
            "--namespace",
            ns,
            "--metrics-addr",
            &metrics_addr,
            "--health-addr",
            &health_addr,
            "--loglevel",
            "debug",
        ])
        .args(extra)
        .env("KUBECONFIG", &env.kubeconfig)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::from(file));
        if let Some(url) = aws_endpoint
            .map(String::from)
            .or_else(|| env.moto_url.clone())
        {
            cmd.env("AWS_SECRETSMANAGER_ENDPOINT", &url)
                .env("AWS_STS_ENDPOINT", &url)
                .env("AWS_ENDPOINT_URL", &url);
        }
        cmd.envs(vars.iter().copied());
        let child = cmd.spawn().expect("start eso-operator");
        Operator {
            child,
            log,
            health_addr,
            metrics_addr,
        }
    }

    /// The log so far ("" when unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The testenv's moto URL (panics when the testenv has none).
pub fn moto_url(env: &testenv::TestEnv) -> String {
    env.moto_url
        .clone()
        .expect("testenv exports ESO_TESTENV_MOTO_URL")
}

/// A `fake` SecretStore `name` in `ns` serving `data` (key, value).
pub fn fake_store(ns: &str, name: &str, data: &[(&str, &str)]) -> String {
    let entries: Vec<String> = data
        .iter()
        .map(|(k, v)| {
            format!(
                "      - key: {k}\n        value: '{}'",
                v.replace('\'', "''")
            )
        })
        .collect();
    format!(
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  provider:\n    fake:\n      data:\n{}\n",
        entries.join("\n")
    )
}

/// The static-credentials Secret `aws-creds` and the Secrets Manager SecretStore `aws` in `ns`.
pub fn aws_store_and_creds(ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-creds, namespace: {ns}}}\nstringData: {{access-key: testing, secret-key: testing}}\n---\n\
         apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: aws, namespace: {ns}}}\nspec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}\n          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key}}\n"
    )
}

/// `GET path` from `addr` over plain HTTP/1.1: the whole response (status line, headers, body).
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    Some(resp)
}
