//! Cluster helpers for integration tests: install the CRDs once, make namespaces, wait for things.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::testenv::{self, TestEnv};

/// The workspace root.
pub fn root() -> PathBuf {
    // This crate lives in `<root>/testsupport`.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// stdout + stderr of a command, for messages.
pub fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The test environment with the CRDs and admission policies installed and enforced (once per
/// test binary). `None` when there is no testenv (and it is not required).
pub fn env() -> Option<&'static TestEnv> {
    static ENV: OnceLock<Option<TestEnv>> = OnceLock::new();
    ENV.get_or_init(|| {
        let env = testenv::require()?;
        let crds = root().join("deploy/crds");
        let o = env.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds.to_str()?]);
        assert!(o.status.success(), "applying CRDs failed: {}", out(&o));
        for crd in [
            "externalsecrets.external-secrets.io",
            "secretstores.external-secrets.io",
            "clustersecretstores.external-secrets.io",
            "clusterexternalsecrets.external-secrets.io",
            "pushsecrets.external-secrets.io",
            "clusterpushsecrets.external-secrets.io",
        ] {
            let o = env.kubectl(&["wait", "--for=condition=Established", &format!("crd/{crd}"), "--timeout=60s"]);
            assert!(o.status.success(), "CRD {crd} not established: {}", out(&o));
        }
        let probe = "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: vap-probe, namespace: default}\n\
                     spec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n      auth:\n        jwt:\n          serviceAccountRef: {name: x, namespace: kube-system}\n";
        let mut enforced = false;
        for _ in 0..60 {
            let o = env.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], probe);
            if !o.status.success() && out(&o).contains("own namespace") {
                enforced = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(enforced, "the SecretStore namespace admission policy never became active");
        Some(env)
    })
    .as_ref()
}

/// A fresh namespace.
pub fn namespace(env: &TestEnv, prefix: &str) -> String {
    let ns = testenv::unique_name(prefix);
    let o = env.kubectl(&["create", "namespace", &ns]);
    assert!(o.status.success(), "{}", out(&o));
    ns
}

/// Apply YAML from a string.
pub fn apply(env: &TestEnv, yaml: &str) {
    let o = env.kubectl_stdin(&["apply", "-f", "-"], yaml);
    assert!(o.status.success(), "apply failed: {}\n{yaml}", out(&o));
}

/// Run kubectl and return trimmed stdout ("" on failure).
pub fn get(env: &TestEnv, args: &[&str]) -> String {
    let o = env.kubectl(args);
    if o.status.success() {
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    } else {
        String::new()
    }
}

/// Poll `f` until it returns Some or `timeout` passes.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A decoded data key of a Secret, or None when missing.
pub fn secret_value(env: &TestEnv, ns: &str, name: &str, key: &str) -> Option<String> {
    let o = env.kubectl(&[
        "get",
        "secret",
        name,
        "-n",
        ns,
        "-o",
        &format!("jsonpath={{.data.{}}}", key.replace('.', "\\.")),
    ]);
    if !o.status.success() {
        return None;
    }
    let b64 = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if b64.is_empty() {
        return None;
    }
    decode_b64(&b64).map(|b| String::from_utf8_lossy(&b).to_string())
}

/// Standard base64 decode (tests only).
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        if c == b'=' {
            break;
        }
        let v = T.iter().position(|&x| x == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The Ready condition of an ExternalSecret as "status/reason/message".
pub fn es_ready(env: &TestEnv, ns: &str, name: &str) -> String {
    get(
        env,
        &[
            "get",
            "externalsecrets.external-secrets.io",
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"Ready\")].reason}/{.status.conditions[?(@.type==\"Ready\")].message}",
        ],
    )
}

/// Standard base64 with padding.
pub fn encode_b64(v: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in v.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Run the testenv's helm with its kubeconfig.
pub fn helm(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let bin = env.helm.clone().expect("testenv exports ESO_TESTENV_HELM");
    std::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .output()
        .expect("run helm")
}

/// A kubeconfig that authenticates as a ServiceAccount (TokenRequest), same server and CA.
pub fn service_account_kubeconfig(env: &TestEnv, ns: &str, sa: &str) -> std::path::PathBuf {
    let o = env.kubectl(&["create", "token", sa, "-n", ns, "--duration=1h"]);
    assert!(o.status.success(), "{}", out(&o));
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let server = get(
        env,
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
    );
    let ca_data = get(
        env,
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ],
    );
    let ca_file = get(
        env,
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority}",
        ],
    );
    let ca = if ca_data.is_empty() {
        format!("certificate-authority: '{ca_file}'")
    } else {
        format!("certificate-authority-data: '{ca_data}'")
    };
    let path = env.dir.join(format!("kubeconfig-{ns}-{sa}"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: t, cluster: {{server: '{server}', {ca}}}}}]\n\
             users: [{{name: sa, user: {{token: '{token}'}}}}]\ncontexts: [{{name: sa, context: {{cluster: t, user: sa}}}}]\ncurrent-context: sa\n"
        ),
    )
    .expect("write kubeconfig");
    path
}
