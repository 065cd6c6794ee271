//! The user's guide as written, with the operator in pods: the Helm chart installed on the
//! testenv node (`cargo xtask testenv --instance node up --node`), the operator image from
//! `cargo xtask image` loaded into the node's containerd, moto on the node's bridge address.
//!
//! Runs only when `ESO_NODE_TESTENV` is set (to the node instance's run folder, or `1` for
//! `target/testenv-node`); `cargo xtask node-e2e` sets everything up, runs it and tears down.
//! One test, in steps, because every step builds on the release the previous one left.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{moto, testenv};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use testenv::TestEnv;

const NS: &str = "external-secrets";
const RELEASE: &str = "external-secrets";
const DEPLOY: &str = "external-secrets-eso-rs";
const DB: &str = r#"{"username":"dbuser","password":"dbpassword","host":"dbhost","port":"5432"}"#;
const ROTATED: &str =
    r#"{"username":"dbuser","password":"rotated-in-aws","host":"dbhost","port":"5432"}"#;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Node {
    env: TestEnv,
    vars: BTreeMap<String, String>,
    started: Instant,
}

impl Node {
    fn find() -> Option<Self> {
        let v = std::env::var("ESO_NODE_TESTENV").ok()?;
        let dir = if v == "1" {
            root().join("target/testenv-node")
        } else {
            PathBuf::from(v)
        };
        let env = testenv::from_dir(&dir).unwrap_or_else(|| {
            panic!(
                "ESO_NODE_TESTENV is set but {} has no env.json: run `cargo xtask testenv --instance node up --node`",
                dir.display()
            )
        });
        let vars: BTreeMap<String, String> =
            serde_json::from_slice(&std::fs::read(dir.join("env.json")).unwrap()).unwrap();
        assert!(
            vars.contains_key("ESO_TESTENV_NODE"),
            "{} was started without --node",
            dir.display()
        );
        Some(Self {
            env,
            vars,
            started: Instant::now(),
        })
    }

    fn step(&self, what: &str) {
        eprintln!("[{:>6.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let o = self.env.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            out(&o)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    fn try_kubectl(&self, args: &[&str]) -> Option<String> {
        let o = self.env.kubectl(args);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).to_string())
    }

    fn apply(&self, yaml: &str) {
        let o = self.env.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(o.status.success(), "kubectl apply: {}", out(&o));
    }

    fn helm(&self, args: &[&str]) -> String {
        let helm = self
            .env
            .helm
            .clone()
            .expect("testenv exports ESO_TESTENV_HELM");
        let o = Command::new(helm)
            .args(args)
            .env("KUBECONFIG", &self.env.kubeconfig)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "helm {}: {}", args.join(" "), out(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    fn moto(&self) -> String {
        self.vars["ESO_TESTENV_MOTO_URL"].clone()
    }

    /// `ExternalSecret`-managed Secret data (decoded), if present.
    fn secret(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let json = self.try_kubectl(&["get", "secret", name, "-n", ns, "-o", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&json).ok()?;
        let data = v.get("data")?.as_object()?;
        Some(
            data.iter()
                .map(|(k, v)| {
                    let d = decode_b64(v.as_str().unwrap_or_default());
                    (k.clone(), String::from_utf8_lossy(&d).to_string())
                })
                .collect(),
        )
    }

    fn operator_pods(&self) -> Vec<serde_json::Value> {
        let json = self.kubectl(&[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/name=eso-rs",
            "-o",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Names of the operator pods that are Running and Ready (and not being deleted).
    fn ready_operator_pods(&self) -> Vec<String> {
        self.operator_pods()
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| p["status"]["phase"] == "Running")
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
            .collect()
    }

    /// Wait for a rollout of the chart's Deployment to finish.
    fn rollout(&self) {
        self.kubectl(&[
            "rollout",
            "status",
            &format!("deployment/{DEPLOY}"),
            "-n",
            NS,
            "--timeout=180s",
        ]);
    }

    fn lease_holder(&self) -> Option<String> {
        let json = self.try_kubectl(&["get", "lease", "-n", NS, "-o", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&json).ok()?;
        v["items"].as_array()?.iter().find_map(|l| {
            l["spec"]["holderIdentity"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(String::from)
        })
    }
}

fn decode_b64(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut buf, mut bits, mut out) = (0u32, 0, Vec::new());
    for c in s.trim().bytes() {
        let Some(v) = T.iter().position(|&x| x == c) else {
            break;
        };
        buf = (buf << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// GET `path` from `ip:port` (plain HTTP/1.1), through whatever routes the host has (here:
/// kube-proxy's rules for a ClusterIP).
fn http_get(ip: &str, port: u16, path: &str) -> Result<String, String> {
    let addr = format!("{ip}:{port}");
    let sock = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

/// The main process of a pod's container, seen from the host: its `/proc/<pid>` status lines.
fn container_status(node: &Node, pod: &str) -> (String, String) {
    // The container's cgroup is named after its container ID (cgroupfs driver).
    let json = node.kubectl(&["get", "pod", pod, "-n", NS, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let id = v["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    let mut pid = None;
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup/pids")];
    while let Some(d) = stack.pop() {
        if d.file_name().is_some_and(|n| n.to_string_lossy() == id) {
            pid = std::fs::read_to_string(d.join("cgroup.procs"))
                .ok()
                .and_then(|s| s.lines().next().map(String::from));
            break;
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    let pid = pid.unwrap_or_else(|| panic!("no cgroup for container {id}"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    (status, mounts)
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(str::trim)
        .unwrap_or_default()
}

#[test]
fn users_guide_with_the_operator_in_pods() {
    let Some(node) = Node::find() else {
        eprintln!("skipped: set ESO_NODE_TESTENV (see `cargo xtask node-e2e`)");
        return;
    };
    let moto_url = node.moto();

    // §1 — literally: helm install, then kubectl get pods.
    node.step("§1 helm install external-secrets deploy/charts/eso-rs --namespace external-secrets --create-namespace");
    node.helm(&[
        "install",
        RELEASE,
        "deploy/charts/eso-rs",
        "--namespace",
        NS,
        "--create-namespace",
    ]);
    node.rollout();
    let pods = node.kubectl(&["get", "pods", "-n", NS]);
    eprintln!("{pods}");
    let ready = node.ready_operator_pods();
    assert_eq!(
        ready.len(),
        1,
        "one operator pod Running and Ready:\n{pods}"
    );
    let first_pod = ready[0].clone();

    // Probes answered by the process: kubelet marked it Ready via /readyz; no restarts from
    // /healthz failures.
    let json = node.kubectl(&["get", "pod", &first_pod, "-n", NS, "-o", "json"]);
    let pod: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(
        pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"],
        "/healthz"
    );

    // The pod runs as 65532, on a read-only root filesystem, with no capabilities — as the
    // kernel sees its process, not only as the spec says.
    node.step("securityContext, checked in /proc of the container's process");
    let (status, mounts) = container_status(&node, &first_pod);
    let uid = status_field(&status, "Uid:");
    assert!(uid.split_whitespace().all(|u| u == "65532"), "Uid: {uid}");
    let gid = status_field(&status, "Gid:");
    assert!(gid.split_whitespace().all(|g| g == "65532"), "Gid: {gid}");
    for cap in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(status_field(&status, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(status_field(&status, "NoNewPrivs:"), "1");
    assert_eq!(
        status_field(&status, "Seccomp:"),
        "2",
        "RuntimeDefault seccomp filter"
    );
    let root_mount = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap_or_default();
    assert!(
        root_mount
            .split_whitespace()
            .nth(5)
            .is_some_and(|o| o.split(',').any(|f| f == "ro")),
        "root filesystem is read-only: {root_mount}"
    );

    // §3 — the AWS secret (moto on the node's bridge address, reachable from pods).
    node.step("§3 aws secretsmanager create-secret --name my-db-secret");
    match moto::create_secret(&moto_url, "my-db-secret", DB) {
        Ok(_) => {}
        Err(e) if e.contains("ResourceExists") => {
            moto::put_value(&moto_url, "my-db-secret", DB).unwrap();
        }
        Err(e) => panic!("moto: {e}"),
    }

    // The operator must talk to moto instead of AWS: one changed value, rolled by helm upgrade.
    node.step("helm upgrade: point the SDK at moto (extraEnv), the Deployment rolls");
    let before_upgrade: Vec<String> = node.ready_operator_pods();
    node.helm(&[
        "upgrade",
        RELEASE,
        "deploy/charts/eso-rs",
        "--namespace",
        NS,
        "--reuse-values",
        "--set",
        &format!("extraEnv[0].name=AWS_ENDPOINT_URL,extraEnv[0].value={moto_url}"),
    ]);
    node.rollout();
    let after_upgrade = node.ready_operator_pods();
    assert!(
        after_upgrade.iter().all(|p| !before_upgrade.contains(p)),
        "the upgrade replaced the pod: {before_upgrade:?} -> {after_upgrade:?}"
    );

    // §4–6 — the guide's manifests (region and keys adapted to moto, as the demo does).
    node.step(
        "§4-6 kubectl apply aws-secret.yaml, cluster-secret-store.yaml, external-secret.yaml",
    );
    for f in [
        "aws-secret.yaml",
        "cluster-secret-store.yaml",
        "external-secret.yaml",
    ] {
        let text = std::fs::read_to_string(root().join("examples/seed").join(f))
            .unwrap()
            .replace("region: your-region", "region: us-east-1");
        node.apply(&text);
    }

    // §7 — the Secret, decoded.
    node.step("§7 kubectl get secret my-db-secret (decoded)");
    let data = eventually(Duration::from_secs(120), "my-db-secret synced", || {
        node.secret("default", "my-db-secret")
            .filter(|d| d.get("password").is_some_and(|p| p == "dbpassword"))
    });
    assert_eq!(data["username"], "dbuser");
    assert_eq!(data["host"], "dbhost");
    assert_eq!(data["port"], "5432");

    // §8 — the application Deployment reads it through secretKeyRef.
    node.step("§8 kubectl apply -f my-app-deployment.yaml; its log shows the env");
    let app = std::fs::read_to_string(root().join("examples/seed/my-app-deployment.yaml")).unwrap();
    node.apply(&app);
    node.kubectl(&[
        "rollout",
        "status",
        "deployment/my-app",
        "-n",
        "default",
        "--timeout=120s",
    ]);
    let logs = eventually(Duration::from_secs(60), "my-app printed its env", || {
        node.try_kubectl(&["logs", "deployment/my-app", "-n", "default"])
            .filter(|l| l.contains("DB_USERNAME="))
    });
    for line in [
        "DB_USERNAME=dbuser",
        "DB_PASSWORD=dbpassword",
        "DB_HOST=dbhost",
        "DB_PORT=5432",
    ] {
        assert!(logs.lines().any(|l| l == line), "{line} in:\n{logs}");
    }

    // In-cluster config reached the apiserver through the `kubernetes` Service (kube-proxy):
    // the Secret above proves it; /metrics through the chart's Service (ClusterIP, kube-proxy).
    node.step("/metrics through the chart's Service ClusterIP");
    let svc = node.kubectl(&[
        "get",
        "service",
        &format!("{DEPLOY}-metrics"),
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let metrics = eventually(Duration::from_secs(60), "metrics via the Service", || {
        http_get(svc.trim(), 8080, "/metrics")
            .ok()
            .filter(|b| b.starts_with("HTTP/1.1 200") && b.contains("externalsecret"))
    });
    assert!(
        !metrics.contains("dbpassword"),
        "no secret value in /metrics"
    );
    // The chart's Grafana dashboard queries what this scrape really has (the two not present
    // after the guide's flow: no namespaced SecretStore, no failed reconcile).
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/charts/eso-rs/files/grafana-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| {
                    w.starts_with("externalsecret_")
                        || w.starts_with("eso_")
                        || w.contains("secretstore_")
                })
            {
                if [
                    "secretstore_status_condition",
                    "externalsecret_sync_calls_error",
                ]
                .contains(&name)
                {
                    continue;
                }
                assert!(
                    metrics.lines().any(|l| l.starts_with(name)),
                    "dashboard metric {name} not in the pod's /metrics"
                );
            }
        }
    }

    // Two replicas with leader election; deleting the leader hands over within the lease.
    node.step("helm upgrade --set replicaCount=2,leaderElect=true");
    let secret_rv = |node: &Node| {
        node.kubectl(&[
            "get",
            "secret",
            "my-db-secret",
            "-n",
            "default",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let rv_before = secret_rv(&node);
    node.helm(&[
        "upgrade",
        RELEASE,
        "deploy/charts/eso-rs",
        "--namespace",
        NS,
        "--reuse-values",
        "--set",
        "replicaCount=2,leaderElect=true",
    ]);
    node.rollout();
    let holder = eventually(Duration::from_secs(60), "a leader", || node.lease_holder());
    let ready = eventually(Duration::from_secs(120), "two Ready replicas", || {
        let r = node.ready_operator_pods();
        (r.len() == 2).then_some(r)
    });
    let leader_pod = ready
        .iter()
        .find(|p| holder.starts_with(p.as_str()))
        .unwrap_or_else(|| panic!("leader {holder:?} is one of {ready:?}"))
        .clone();
    node.step(&format!("delete the leader pod {leader_pod}"));
    let deleted = Instant::now();
    node.kubectl(&["delete", "pod", &leader_pod, "-n", NS, "--wait=false"]);
    let new_holder = eventually(Duration::from_secs(60), "the standby takes over", || {
        node.lease_holder()
            .filter(|h| !h.starts_with(leader_pod.as_str()))
    });
    let took = deleted.elapsed();
    eprintln!(
        "leadership moved to {new_holder} {:.1}s after the delete",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(30),
        "takeover within the lease ({took:?})"
    );
    // The new leader keeps syncing: an AWS edit arrives.
    moto::put_value(&moto_url, "my-db-secret", ROTATED).unwrap();
    node.kubectl(&[
        "annotate",
        "externalsecret",
        "my-db-secret",
        "-n",
        "default",
        "force-sync=1",
        "--overwrite",
    ]);
    eventually(
        Duration::from_secs(120),
        "the new leader syncs the edit",
        || {
            node.secret("default", "my-db-secret")
                .filter(|d| d.get("password").is_some_and(|p| p == "rotated-in-aws"))
        },
    );

    // A flag change rolls the Deployment with no managed Secret rewritten or lost.
    node.step("helm upgrade --set concurrent=5: rolls, the Secret untouched");
    let rv_synced = secret_rv(&node);
    assert_ne!(rv_before, rv_synced, "the edit was written");
    node.helm(&[
        "upgrade",
        RELEASE,
        "deploy/charts/eso-rs",
        "--namespace",
        NS,
        "--reuse-values",
        "--set",
        "concurrent=5",
    ]);
    node.rollout();
    eventually(Duration::from_secs(60), "a leader after the roll", || {
        node.lease_holder()
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(secret_rv(&node), rv_synced, "the roll rewrote the Secret");

    // helm uninstall keeps Secrets and CRDs.
    node.step("helm uninstall: Secrets and CRDs stay");
    node.helm(&["uninstall", RELEASE, "--namespace", NS]);
    eventually(Duration::from_secs(60), "operator pods gone", || {
        node.operator_pods().is_empty().then_some(())
    });
    assert!(node.secret("default", "my-db-secret").is_some());
    node.kubectl(&["get", "crd", "externalsecrets.external-secrets.io"]);
    node.kubectl(&["delete", "deployment", "my-app", "-n", "default"]);
    node.step("done");
}
