//! The local control plane: etcd, kube-apiserver and kube-controller-manager built from pinned Go
//! modules (`xtask/go/*`), plus a moto server, all on loopback. Like controller-runtime's envtest,
//! but with garbage collection and the namespace/service-account controllers running.
//!
//! - Binaries are built once into `~/.cache/eso-rs/testenv/bin-<key>`, where `<key>` hashes the Go
//!   toolchain version and the `go.mod`/`go.sum` of every module: a pin change builds afresh, a
//!   fresh clone reuses what is there.
//! - moto lives in a virtualenv at `~/.cache/eso-rs/testenv/moto-<version>-<python>`.
//! - Run state (certificates, etcd data, logs, kubeconfig, pids, `env.json`, `env.sh`) lives in
//!   `target/testenv`. Processes run in their own process groups, so `testenv up` returns and
//!   leaves them running; `testenv down` stops them.
//! - `--instance NAME` (any command) selects a private environment in `target/testenv-NAME` with
//!   its own ports, certificates and data, so a test can restart its control plane without
//!   disturbing the shared one. Each component's command line and pid are kept in
//!   `<state>/components/<name>.json`; `testenv restart [--kill] <etcd|apiserver|controller-manager|moto>`
//!   stops one component (SIGTERM, or SIGKILL with `--kill`) and starts it again with the same
//!   arguments and data directory, then waits until the environment answers again.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The moto release the tests run against.
pub const MOTO_VERSION: &str = "5.1.22";

/// `cargo xtask testenv [--instance NAME] <up|down|env|status|build|restart>`.
pub fn run(args: &[String]) -> Result<()> {
    let mut instance = Instance::default();
    let mut kill = false;
    let mut node = false;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--instance" {
            let name = it.next().context("--instance needs a name")?;
            instance = Instance::named(name)?;
        } else if let Some(name) = a.strip_prefix("--instance=") {
            instance = Instance::named(name)?;
        } else if a == "--kill" {
            kill = true;
        } else if a == "--node" {
            node = true;
        } else {
            rest.push(a.as_str());
        }
    }
    match rest.first().copied() {
        Some("up") | None => {
            let start = Instant::now();
            instance.up_with(node)?;
            println!(
                "testenv{} is up ({:.1}s). Use it from a shell with:",
                instance.label(),
                start.elapsed().as_secs_f64()
            );
            println!("  eval \"$(cargo xtask testenv env{})\"", instance.flag());
            Ok(())
        }
        Some("down") => instance.down(),
        Some("env") => {
            for (k, v) in instance.env_vars()? {
                println!("export {k}={}", shell_quote(&v));
            }
            Ok(())
        }
        Some("status") => {
            match instance.healthy() {
                Ok(true) => println!(
                    "testenv{}: up ({})",
                    instance.label(),
                    instance.dir.display()
                ),
                _ => println!("testenv{}: down", instance.label()),
            }
            Ok(())
        }
        Some("build") => {
            println!("{}", build_binaries()?.display());
            if node {
                println!("{}", build_node_binaries()?.display());
            }
            Ok(())
        }
        Some("restart") => {
            let component = rest.get(1).copied().context(
                "usage: testenv [--instance NAME] restart [--kill] <etcd|apiserver|controller-manager|moto>",
            )?;
            let r = instance.restart(component, kill)?;
            println!(
                "testenv{}: restarted {} (stopped in {:.1}s, healthy {:.1}s after the start)",
                instance.label(),
                r.component,
                r.stopped.as_secs_f64(),
                r.healthy.as_secs_f64()
            );
            Ok(())
        }
        Some(other) => {
            bail!("unknown testenv command {other:?} (up, down, env, status, build, restart)")
        }
    }
}

/// Which environment a command acts on: the shared default one (`target/testenv`) or a private,
/// named one (`target/testenv-<name>`).
#[derive(Debug, Clone)]
pub struct Instance {
    name: Option<String>,
    dir: PathBuf,
}

impl Default for Instance {
    fn default() -> Self {
        Self {
            name: None,
            dir: state_dir(),
        }
    }
}

/// Timings of `testenv restart`.
#[derive(Debug)]
pub struct Restarted {
    /// The component's canonical name.
    pub component: &'static str,
    /// How long the old process took to exit.
    pub stopped: Duration,
    /// From the new process's start until the environment answered again.
    pub healthy: Duration,
}

fn component_name(s: &str) -> Result<&'static str> {
    Ok(match s {
        "etcd" => "etcd",
        "apiserver" | "kube-apiserver" => "kube-apiserver",
        "controller-manager" | "kube-controller-manager" => "kube-controller-manager",
        "moto" => "moto",
        other => bail!("unknown component {other:?} (etcd, apiserver, controller-manager, moto)"),
    })
}

impl Instance {
    /// A private instance in `target/testenv-<name>` (`name`: lowercase letters, digits, `-`).
    pub fn named(name: &str) -> Result<Self> {
        if name.is_empty()
            || name.len() > 40
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            bail!("invalid instance name {name:?} (lowercase letters, digits and '-', at most 40)");
        }
        Ok(Self {
            name: Some(name.to_string()),
            dir: crate::project_root()
                .join("target")
                .join(format!("testenv-{name}")),
        })
    }

    /// The run folder (`target/testenv[-NAME]`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn label(&self) -> String {
        self.name
            .as_ref()
            .map(|n| format!(" (instance {n})"))
            .unwrap_or_default()
    }

    fn flag(&self) -> String {
        self.name
            .as_ref()
            .map(|n| format!(" --instance {n}"))
            .unwrap_or_default()
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `target/testenv`.
pub fn state_dir() -> PathBuf {
    crate::project_root().join("target").join("testenv")
}

pub(crate) fn cache_root() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("eso-rs").join("testenv"))
}

fn go_dir() -> PathBuf {
    crate::project_root().join("xtask").join("go")
}

/// FNV-1a, enough to key a cache folder.
fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn output(cmd: &mut Command) -> Result<String> {
    let o = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !o.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

const MODULES: [&str; 3] = ["k8s", "etcd", "helm"];
const BINARIES: [&str; 5] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "etcd",
    "helm",
];

fn binaries_key() -> Result<String> {
    let go = output(Command::new("go").arg("version"))
        .context("Go is required to build the control plane")?;
    let mut h = fnv(go.as_bytes(), 0xcbf2_9ce4_8422_2325);
    for m in MODULES {
        for f in ["go.mod", "go.sum", "main.go", "tools.go"] {
            if let Ok(b) = fs::read(go_dir().join(m).join(f)) {
                h = fnv(f.as_bytes(), h);
                h = fnv(&b, h);
            }
        }
    }
    Ok(format!("{h:016x}"))
}

/// Build (once) and return the folder holding the control-plane binaries.
pub fn build_binaries() -> Result<PathBuf> {
    let dir = cache_root()?.join(format!("bin-{}", binaries_key()?));
    if BINARIES.iter().all(|b| dir.join(b).is_file()) {
        return Ok(dir);
    }
    let tmp = cache_root()?.join(format!("building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let builds: [(&str, &[&str]); 3] = [
        (
            "k8s",
            &[
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
                "k8s.io/kubernetes/cmd/kubectl",
            ],
        ),
        ("etcd", &["."]),
        ("helm", &["helm.sh/helm/v3/cmd/helm"]),
    ];
    for (module, pkgs) in builds {
        let start = Instant::now();
        println!(
            "testenv: building {} from xtask/go/{module} (first run only; minutes)",
            pkgs.join(" ")
        );
        let mut cmd = Command::new("go");
        cmd.current_dir(go_dir().join(module))
            .env("CGO_ENABLED", "0")
            .args(["build", "-trimpath", "-ldflags=-s -w", "-o"]);
        if module == "etcd" {
            cmd.arg(tmp.join("etcd"));
        } else {
            cmd.arg(format!("{}/", tmp.display()));
        }
        cmd.args(pkgs);
        let status = cmd
            .status()
            .with_context(|| format!("running go build in xtask/go/{module}"))?;
        if !status.success() {
            bail!("go build in xtask/go/{module} failed ({status})");
        }
        println!(
            "testenv: built {module} in {:.0}s",
            start.elapsed().as_secs_f64()
        );
    }
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir).with_context(|| format!("moving binaries to {}", dir.display()))?;
    Ok(dir)
}

/// The node's binaries (`testenv up --node`), from `xtask/go/node`.
pub const NODE_BINARIES: [&str; 3] = ["kube-scheduler", "kubelet", "kube-proxy"];

/// Build (once) and return the folder holding kube-scheduler, kubelet and kube-proxy, keyed by
/// the Go version and `xtask/go/node`'s go.mod/go.sum (the control plane's key is unchanged).
pub fn build_node_binaries() -> Result<PathBuf> {
    let go =
        output(Command::new("go").arg("version")).context("Go is required to build the node")?;
    let mut h = fnv(go.as_bytes(), 0xcbf2_9ce4_8422_2325);
    for f in ["go.mod", "go.sum", "tools.go"] {
        let b = fs::read(go_dir().join("node").join(f))?;
        h = fnv(f.as_bytes(), h);
        h = fnv(&b, h);
    }
    let dir = cache_root()?.join(format!("node-bin-{h:016x}"));
    if NODE_BINARIES.iter().all(|b| dir.join(b).is_file()) {
        return Ok(dir);
    }
    let tmp = cache_root()?.join(format!("building-node-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let start = Instant::now();
    println!(
        "testenv: building {} from xtask/go/node (first run only; minutes)",
        NODE_BINARIES.join(" ")
    );
    let status = Command::new("go")
        .current_dir(go_dir().join("node"))
        .env("CGO_ENABLED", "0")
        .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
        .arg(format!("{}/", tmp.display()))
        .args(
            NODE_BINARIES
                .iter()
                .map(|b| format!("k8s.io/kubernetes/cmd/{b}")),
        )
        .status()
        .context("running go build in xtask/go/node")?;
    if !status.success() {
        bail!("go build in xtask/go/node failed ({status})");
    }
    println!(
        "testenv: built the node binaries in {:.0}s",
        start.elapsed().as_secs_f64()
    );
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir).with_context(|| format!("moving binaries to {}", dir.display()))?;
    Ok(dir)
}

/// The path of a tool (`kubectl`, `helm`, `kube-apiserver`, ...), building it if needed.
pub fn tool_path(name: &str) -> Result<PathBuf> {
    let p = build_binaries()?.join(name);
    if !p.is_file() {
        bail!(
            "{name} is not one of the testenv tools ({})",
            BINARIES.join(", ")
        );
    }
    Ok(p)
}

fn python() -> String {
    std::env::var("ESO_TESTENV_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The moto virtualenv (created once per moto and Python version).
fn moto_venv() -> Result<PathBuf> {
    let py = python();
    let version =
        output(Command::new(&py).args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]))
            .with_context(|| format!("{py} is required for moto"))?;
    let dir = cache_root()?.join(format!("moto-{MOTO_VERSION}-py{version}"));
    let bin = dir.join("bin").join("python");
    if dir.join(".complete").is_file() && bin.is_file() {
        return Ok(dir);
    }
    println!(
        "testenv: installing moto {MOTO_VERSION} into {} (first run only)",
        dir.display()
    );
    // Built in a folder of our own and renamed into place: two environments starting at once
    // (the shared one and a private instance) must not delete each other's half-made venv.
    let tmp = cache_root()?.join(format!("moto-building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let status = Command::new(&py).args(["-m", "venv"]).arg(&tmp).status()?;
    if !status.success() {
        bail!("creating the moto virtualenv failed ({status})");
    }
    let status = Command::new(tmp.join("bin").join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("moto[server]=={MOTO_VERSION}"))
        .status()?;
    if !status.success() {
        let _ = fs::remove_dir_all(&tmp);
        bail!("pip install moto[server]=={MOTO_VERSION} failed ({status})");
    }
    fs::write(tmp.join(".complete"), MOTO_VERSION)?;
    if dir.join(".complete").is_file() && bin.is_file() {
        // Another process finished first: keep its venv.
        let _ = fs::remove_dir_all(&tmp);
        return Ok(dir);
    }
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir).with_context(|| format!("moving the venv to {}", dir.display()))?;
    Ok(dir)
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("openssl is required")?;
    if !o.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

/// A CA, the apiserver's serving certificate, the service-account key pair and an admin client
/// certificate (group `system:masters`).
fn make_certs(dir: &Path, extra_ips: &[&str]) -> Result<()> {
    fs::create_dir_all(dir)?;
    let extra: String = extra_ips.iter().map(|ip| format!(",IP:{ip}")).collect();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-subj",
            "/CN=eso-testenv-ca",
        ],
    )?;
    fs::write(
        dir.join("serving.ext"),
        format!(
            "subjectAltName=IP:127.0.0.1{extra},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n"
        ),
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "serving.key",
            "-out",
            "serving.csr",
            "-subj",
            "/CN=kube-apiserver",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "serving.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "serving.crt",
            "-days",
            "30",
            "-extfile",
            "serving.ext",
        ],
    )?;
    fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "admin.key",
            "-out",
            "admin.csr",
            "-subj",
            "/O=system:masters/CN=eso-testenv-admin",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "admin.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "admin.crt",
            "-days",
            "30",
            "-extfile",
            "client.ext",
        ],
    )?;
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"])?;
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(())
}

fn kubeconfig(server: &str, certs: &Path) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testenv\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: admin\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n\
         contexts:\n- name: testenv\n  context:\n    cluster: testenv\n    user: admin\n    namespace: default\ncurrent-context: testenv\n",
        ca = certs.join("ca.crt").display(),
        crt = certs.join("admin.crt").display(),
        key = certs.join("admin.key").display(),
    )
}

/// What `restart` needs to start a component again: its program, arguments and current pid.
struct ComponentState {
    program: PathBuf,
    args: Vec<String>,
    pid: u32,
}

impl ComponentState {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "program": self.program.display().to_string(),
            "args": self.args,
            "pid": self.pid,
        })
    }

    fn from_json(v: &serde_json::Value) -> Option<Self> {
        Some(Self {
            program: PathBuf::from(v.get("program")?.as_str()?),
            args: v
                .get("args")?
                .as_array()?
                .iter()
                .map(|a| a.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()?,
            pid: u32::try_from(v.get("pid")?.as_u64()?).ok()?,
        })
    }
}

fn component_file(dir: &Path, name: &str) -> PathBuf {
    dir.join("components").join(format!("{name}.json"))
}

/// Start a component in its own process group, logging to `<dir>/logs/<name>.log`, and record
/// its command line and pid in `<dir>/components/<name>.json`.
pub(crate) fn spawn(name: &str, program: &Path, args: &[String], dir: &Path) -> Result<u32> {
    spawn_logged(name, program, args, dir, false)
}

fn spawn_logged(
    name: &str,
    program: &Path,
    args: &[String],
    dir: &Path,
    append: bool,
) -> Result<u32> {
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let log = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(logs.join(format!("{name}.log")))?;
    let err = log.try_clone()?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let state = ComponentState {
        program: program.to_path_buf(),
        args: args.to_vec(),
        pid: child.id(),
    };
    fs::create_dir_all(dir.join("components"))?;
    fs::write(
        component_file(dir, name),
        serde_json::to_vec_pretty(&state.to_json())?,
    )?;
    Ok(child.id())
}

pub(crate) fn wait_for(
    what: &str,
    timeout: Duration,
    logs: &Path,
    log: &str,
    mut ok: impl FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let tail = fs::read_to_string(logs.join(log)).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(30).collect();
    bail!(
        "{what} did not become ready in {}s; last log lines ({}):\n{}",
        timeout.as_secs(),
        logs.join(log).display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

fn tcp_open(port: u16) -> bool {
    tcp_open_on([127, 0, 0, 1].into(), port)
}

fn tcp_open_on(ip: std::net::IpAddr, port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_millis(200)).is_ok()
}

pub(crate) fn kubectl_ok(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> bool {
    Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub(crate) fn write_state(dir: &Path, vars: &BTreeMap<String, String>, pids: &[u32]) -> Result<()> {
    fs::write(dir.join("env.json"), serde_json::to_vec_pretty(vars)?)?;
    fs::write(
        dir.join("pids"),
        pids.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )?;
    let mut sh = fs::File::create(dir.join("env.sh"))?;
    for (k, v) in vars {
        writeln!(sh, "export {k}={}", shell_quote(v))?;
    }
    Ok(())
}

impl Instance {
    fn read_vars(&self) -> Result<BTreeMap<String, String>> {
        let path = self.dir.join("env.json");
        let bytes = fs::read(&path).with_context(|| {
            format!(
                "testenv{} is not up ({} missing); run `cargo xtask testenv{} up`",
                self.label(),
                path.display(),
                self.flag()
            )
        })?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// True when a previously started environment still answers.
    fn healthy(&self) -> Result<bool> {
        healthy_vars(&self.read_vars()?)
    }

    /// The environment variables that point tests, kubectl and the AWS SDK at this environment.
    pub fn env_vars(&self) -> Result<Vec<(String, String)>> {
        Ok(self.read_vars()?.into_iter().collect())
    }
}

fn healthy_vars(vars: &BTreeMap<String, String>) -> Result<bool> {
    let (Some(kc), Some(kubectl), Some(moto)) = (
        vars.get("ESO_TESTENV_KUBECONFIG"),
        vars.get("ESO_TESTENV_KUBECTL"),
        vars.get("ESO_TESTENV_MOTO_URL"),
    ) else {
        return Ok(false);
    };
    let moto_port = moto
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let moto_ip = moto
        .trim_start_matches("http://")
        .split(':')
        .next()
        .and_then(|h| h.parse().ok())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    Ok(tcp_open_on(moto_ip, moto_port)
        && kubectl_ok(
            Path::new(kubectl),
            Path::new(kc),
            &["get", "--raw", "/readyz"],
        ))
}

/// The environment variables that point tests, kubectl and the AWS SDK at the running testenv.
pub fn env_vars() -> Result<Vec<(String, String)>> {
    Instance::default().env_vars()
}

/// Start everything (or reuse a healthy running environment). Returns the state folder.
pub fn up() -> Result<PathBuf> {
    Instance::default().up()
}

/// Stop every component and delete the run state.
pub fn down() -> Result<()> {
    Instance::default().down()
}

impl Instance {
    /// Start everything (or reuse a healthy running environment). Returns the state folder.
    pub fn up(&self) -> Result<PathBuf> {
        self.up_with(false)
    }

    /// Like [`Instance::up`]; `node`: also run a node (scheduler, containerd, kubelet,
    /// kube-proxy; see `node.rs`), with the apiserver and moto on the node's bridge address.
    pub fn up_with(&self, node: bool) -> Result<PathBuf> {
        if self.healthy().unwrap_or(false)
            && (self.read_vars()?.contains_key("ESO_TESTENV_NODE") == node)
        {
            println!(
                "testenv{}: already up ({})",
                self.label(),
                self.dir.display()
            );
            return Ok(self.dir.clone());
        }
        let _ = self.down();
        let bins = build_binaries()?;
        let node_bins = if node {
            crate::node::preflight()?;
            Some(build_node_binaries()?)
        } else {
            None
        };
        let venv = moto_venv()?;

        let dir = self.dir.clone();
        let _ = fs::remove_dir_all(&dir);
        let certs = dir.join("certs");
        let logs = dir.join("logs");
        fs::create_dir_all(&logs)?;
        // Where the apiserver and moto listen: loopback, or the node's bridge (pods reach it).
        let host = if node {
            crate::node::GATEWAY
        } else {
            "127.0.0.1"
        };
        let host_ip: std::net::IpAddr = host.parse()?;
        if node {
            crate::node::prepare(&dir)?;
            make_certs(
                &certs,
                &[crate::node::GATEWAY, crate::node::KUBERNETES_SERVICE_IP],
            )?;
        } else {
            make_certs(&certs, &[])?;
        }
        let arg = |s: &str| s.to_string();
        let path = |p: PathBuf| p.display().to_string();
        let mut pids = Vec::new();

        // etcd
        let (etcd_port, peer_port) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        pids.push(spawn(
            "etcd",
            &bins.join("etcd"),
            &[
                arg("--name=testenv"),
                format!("--data-dir={}", path(dir.join("etcd"))),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=testenv={peer_url}"),
                arg("--unsafe-no-fsync=true"),
                // `bench scale` keeps 100,000 ExternalSecrets and their Secrets (~1 GB with
                // history); the 2 GiB default would fill up and turn etcd read-only.
                arg("--quota-backend-bytes=8589934592"),
                arg("--log-level=warn"),
            ],
            &dir,
        )?);
        // Written early so `down` can clean up after a failed start.
        write_state(&dir, &BTreeMap::new(), &pids)?;
        wait_for("etcd", Duration::from_secs(60), &logs, "etcd.log", || {
            tcp_open(etcd_port)
        })?;

        // kube-apiserver
        let api_port = free_port()?;
        let server = format!("https://{host}:{api_port}");
        let kc = dir.join("kubeconfig");
        fs::write(&kc, kubeconfig(&server, &certs))?;
        let mut api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={host}"),
            format!("--advertise-address={host}"),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", path(certs.join("serving.crt"))),
            format!("--tls-private-key-file={}", path(certs.join("serving.key"))),
            format!("--client-ca-file={}", path(certs.join("ca.crt"))),
            format!("--service-account-key-file={}", path(certs.join("sa.pub"))),
            format!(
                "--service-account-signing-key-file={}",
                path(certs.join("sa.key"))
            ),
            arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local"),
            arg("--api-audiences=https://kubernetes.default.svc.cluster.local,sts.amazonaws.com"),
            arg("--authorization-mode=RBAC"),
            format!("--service-cluster-ip-range={}", crate::node::SERVICE_CIDR),
            arg("--allow-privileged=true"),
            arg("--v=0"),
        ];
        if node {
            // Pods get their ServiceAccount token volume (ServiceAccount admission stays on);
            // `kubectl logs/exec` reach the kubelet on the bridge with the admin certificate.
            api_args.extend([
                format!(
                    "--kubelet-client-certificate={}",
                    path(certs.join("admin.crt"))
                ),
                format!("--kubelet-client-key={}", path(certs.join("admin.key"))),
                format!(
                    "--kubelet-certificate-authority={}",
                    path(certs.join("ca.crt"))
                ),
                arg("--kubelet-preferred-address-types=InternalIP"),
            ]);
        } else {
            api_args.push(arg("--disable-admission-plugins=ServiceAccount"));
        }
        pids.push(spawn(
            "kube-apiserver",
            &bins.join("kube-apiserver"),
            &api_args,
            &dir,
        )?);
        write_state(&dir, &BTreeMap::new(), &pids)?;
        let kubectl = bins.join("kubectl");
        wait_for(
            "kube-apiserver",
            Duration::from_secs(120),
            &logs,
            "kube-apiserver.log",
            || kubectl_ok(&kubectl, &kc, &["get", "--raw", "/readyz"]),
        )?;

        // kube-controller-manager: garbage collection, namespace deletion, service accounts and tokens.
        pids.push(spawn(
            "kube-controller-manager",
            &bins.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={}", path(kc.clone())),
                format!("--authentication-kubeconfig={}", path(kc.clone())),
                format!("--authorization-kubeconfig={}", path(kc.clone())),
                if node {
                    arg(crate::node::CONTROLLERS)
                } else {
                    arg("--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token")
                },
                format!("--root-ca-file={}", path(certs.join("ca.crt"))),
                format!(
                    "--service-account-private-key-file={}",
                    path(certs.join("sa.key"))
                ),
                arg("--leader-elect=false"),
                arg("--bind-address=127.0.0.1"),
                arg("--secure-port=0"),
                arg("--concurrent-gc-syncs=5"),
                arg("--v=0"),
            ],
            &dir,
        )?);
        write_state(&dir, &BTreeMap::new(), &pids)?;
        wait_for(
            "kube-controller-manager (default ServiceAccount)",
            Duration::from_secs(120),
            &logs,
            "kube-controller-manager.log",
            || {
                kubectl_ok(
                    &kubectl,
                    &kc,
                    &["get", "serviceaccount", "default", "-n", "default"],
                )
            },
        )?;

        // moto
        let moto_port = free_port()?;
        let moto_url = format!("http://{host}:{moto_port}");
        pids.push(spawn(
            "moto",
            &venv.join("bin").join("python"),
            &[
                arg("-m"),
                arg("moto.server"),
                arg("-H"),
                arg(host),
                arg("-p"),
                moto_port.to_string(),
            ],
            &dir,
        )?);
        write_state(&dir, &BTreeMap::new(), &pids)?;
        wait_for("moto", Duration::from_secs(60), &logs, "moto.log", || {
            tcp_open_on(host_ip, moto_port)
        })?;

        let mut node_vars = Vec::new();
        if let Some(node_bins) = &node_bins {
            node_vars = crate::node::start(&dir, node_bins, &bins, &kc, &certs, &mut pids)?;
        }

        let mut vars = BTreeMap::new();
        let bin_path = match std::env::var("PATH") {
            Ok(p) if !p.is_empty() => format!("{}:{p}", bins.display()),
            _ => bins.display().to_string(),
        };
        for (k, v) in [
            ("KUBECONFIG", path(kc.clone())),
            ("ESO_TESTENV_KUBECONFIG", path(kc.clone())),
            ("ESO_TESTENV_DIR", path(dir.clone())),
            ("ESO_TESTENV_KUBECTL", path(kubectl.clone())),
            ("ESO_TESTENV_HELM", path(bins.join("helm"))),
            ("ESO_TESTENV_MOTO_URL", moto_url.clone()),
            ("PATH", bin_path),
            ("AWS_ENDPOINT_URL", moto_url.clone()),
            ("AWS_SECRETSMANAGER_ENDPOINT", moto_url.clone()),
            ("AWS_STS_ENDPOINT", moto_url.clone()),
            ("AWS_REGION", arg("us-east-1")),
            ("AWS_DEFAULT_REGION", arg("us-east-1")),
            ("AWS_ACCESS_KEY_ID", arg("testing")),
            ("AWS_SECRET_ACCESS_KEY", arg("testing")),
            ("AWS_EC2_METADATA_DISABLED", arg("true")),
        ] {
            vars.insert(k.to_string(), v);
        }
        vars.extend(node_vars);
        write_state(&dir, &vars, &pids)?;
        Ok(dir)
    }
}

pub(crate) fn signal(pid: u32, sig: &str) -> bool {
    // Negative pid: the whole process group (each component runs in its own).
    Command::new("kill")
        .args([sig, "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Instance {
    /// Stop every component and delete the run state.
    pub fn down(&self) -> Result<()> {
        let dir = self.dir.clone();
        let node = dir.join("node").is_dir();
        let vars = self.read_vars().unwrap_or_default();
        let component = |name: &str| -> Option<ComponentState> {
            let b = fs::read(component_file(&dir, name)).ok()?;
            ComponentState::from_json(&serde_json::from_slice(&b).ok()?)
        };
        if node
            && let (Some(kubectl), Some(kc)) = (
                vars.get("ESO_TESTENV_KUBECTL"),
                vars.get("ESO_TESTENV_KUBECONFIG"),
            )
        {
            crate::node::drain(&dir, Path::new(kubectl), Path::new(kc));
        }
        let kube_proxy = component("kube-proxy").map(|c| c.program);
        let pids: Vec<u32> = fs::read_to_string(dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        // Reverse start order: moto, controller-manager, apiserver, etcd.
        for pid in pids.iter().rev() {
            signal(*pid, "-TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for pid in pids.iter().rev() {
            while Instant::now() < deadline && signal(*pid, "-0") {
                std::thread::sleep(Duration::from_millis(100));
            }
            signal(*pid, "-KILL");
        }
        let mut left = Vec::new();
        if node {
            left = crate::node::cleanup(&dir, kube_proxy.as_deref())?;
            let mounts = crate::node::mounts_under(&dir);
            if !mounts.is_empty() {
                // Never delete through a mount point (a volume could be a host folder).
                bail!(
                    "testenv{}: could not unmount {}; the run folder is kept",
                    self.label(),
                    mounts.join(", ")
                );
            }
        }
        if dir.exists() {
            // Keep the logs of the last run for post-mortems; drop everything else.
            for entry in fs::read_dir(&dir)? {
                let p = entry?.path();
                if p.file_name().is_some_and(|n| n == "logs") {
                    continue;
                }
                if p.is_dir() {
                    let _ = fs::remove_dir_all(&p);
                } else {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        if !pids.is_empty() {
            println!("testenv{}: stopped", self.label());
        }
        if !left.is_empty() {
            bail!(
                "testenv{}: the node left behind:\n  {}",
                self.label(),
                left.join("\n  ")
            );
        }
        Ok(())
    }
}

/// The port in a `--flag=http://127.0.0.1:<port>` style argument.
fn url_port(args: &[String], flag: &str) -> Option<u16> {
    args.iter()
        .find_map(|a| a.strip_prefix(flag))
        .and_then(|u| u.split(',').next())
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.trim_end_matches('/').parse().ok())
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !signal(pid, "-0") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Instance {
    /// Stop one component (SIGTERM, or SIGKILL when `kill`) and start it again with the same
    /// program, arguments and data directory; return once the environment answers again.
    pub fn restart(&self, component: &str, kill: bool) -> Result<Restarted> {
        let name = component_name(component)?;
        let file = component_file(&self.dir, name);
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&file).with_context(|| {
            format!(
                "{} missing: testenv{} was not started by this version of xtask; run `cargo xtask testenv{} down` and `up`",
                file.display(),
                self.label(),
                self.flag()
            )
        })?)?;
        let state = ComponentState::from_json(&json)
            .with_context(|| format!("{} is not a component record", file.display()))?;
        let vars = self.read_vars()?;
        let stop = Instant::now();
        signal(state.pid, if kill { "-KILL" } else { "-TERM" });
        if !wait_gone(state.pid, Duration::from_secs(20)) {
            signal(state.pid, "-KILL");
            if !wait_gone(state.pid, Duration::from_secs(5)) {
                bail!("{name} (pid {}) did not exit", state.pid);
            }
        }
        let stopped = stop.elapsed();
        let start = Instant::now();
        let pid = spawn_logged(name, &state.program, &state.args, &self.dir, true)?;
        // Keep `pids` (used by `down`) in start order, with the new pid in place of the old one.
        let pids: Vec<u32> = fs::read_to_string(self.dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .map(|p| if p == state.pid { pid } else { p })
            .collect();
        write_state(&self.dir, &vars, &pids)?;
        let logs = self.dir.join("logs");
        let log = format!("{name}.log");
        let kubectl = vars.get("ESO_TESTENV_KUBECTL").map(PathBuf::from);
        let kc = vars.get("ESO_TESTENV_KUBECONFIG").map(PathBuf::from);
        let api_ready = || match (&kubectl, &kc) {
            (Some(kubectl), Some(kc)) => kubectl_ok(kubectl, kc, &["get", "--raw", "/readyz"]),
            _ => false,
        };
        match name {
            "etcd" => {
                let port = url_port(&state.args, "--listen-client-urls=").unwrap_or(0);
                wait_for("etcd", Duration::from_secs(60), &logs, &log, || {
                    tcp_open(port)
                })?;
                wait_for(
                    "kube-apiserver (after etcd restart)",
                    Duration::from_secs(120),
                    &logs,
                    "kube-apiserver.log",
                    api_ready,
                )?;
            }
            "kube-apiserver" => {
                wait_for(
                    "kube-apiserver",
                    Duration::from_secs(120),
                    &logs,
                    &log,
                    api_ready,
                )?;
            }
            "moto" => {
                let port = state.args.last().and_then(|p| p.parse().ok()).unwrap_or(0);
                let ip = state
                    .args
                    .iter()
                    .position(|a| a == "-H")
                    .and_then(|i| state.args.get(i + 1))
                    .and_then(|h| h.parse().ok())
                    .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
                wait_for("moto", Duration::from_secs(60), &logs, &log, || {
                    tcp_open_on(ip, port)
                })?;
            }
            _ => {
                std::thread::sleep(Duration::from_secs(1));
                if !signal(pid, "-0") {
                    bail!(
                        "{name} exited right after its restart; see {}",
                        logs.join(&log).display()
                    );
                }
            }
        }
        Ok(Restarted {
            component: name,
            stopped,
            healthy: start.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_and_dirs() {
        assert_eq!(Instance::default().dir, state_dir());
        let i = Instance::named("faults").expect("valid");
        assert!(i.dir.ends_with("target/testenv-faults"));
        assert_eq!(i.flag(), " --instance faults");
        for bad in ["", "Faults", "a/b", "..", "a b"] {
            assert!(Instance::named(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn component_aliases_and_ports() {
        assert_eq!(component_name("apiserver").ok(), Some("kube-apiserver"));
        assert_eq!(component_name("etcd").ok(), Some("etcd"));
        assert!(component_name("kubelet").is_err());
        let args = vec![
            "--name=testenv".to_string(),
            "--listen-client-urls=http://127.0.0.1:40123".to_string(),
        ];
        assert_eq!(url_port(&args, "--listen-client-urls="), Some(40123));
        assert_eq!(url_port(&args, "--nope="), None);
    }
}
