//! The testenv node (`cargo xtask testenv up --node`): kube-scheduler, containerd + runc, kubelet
//! and kube-proxy beside the control plane, so the control plane runs pods the way kind's does.
//!
//! - kube-scheduler, kubelet and kube-proxy are built from `xtask/go/node`, which pins the same
//!   `k8s.io/kubernetes` release as the control plane (`xtask/go/k8s`); containerd, runc, the CNI
//!   plugins, iptables and nft come from Debian packages (installed with apt-get when missing).
//! - Images are never pulled: the pod sandbox (`pause`) and the guide's application (`printenv`)
//!   are built here from the static Go program in `xtask/go/tiny` and imported into containerd;
//!   `cargo xtask image` builds the operator's.
//! - Network: a Linux bridge of our own with the gateway address [`GATEWAY`]; pods get addresses
//!   in [`POD_CIDR`] from the CNI bridge + host-local plugins (IPAM state in the run folder); the
//!   apiserver and moto listen on the gateway address, so pods reach them, and the `kubernetes`
//!   Service (10.96.0.1:443) reaches the apiserver through kube-proxy (nftables mode: one table of
//!   its own). No address outside loopback and the bridge is ever a target; IP forwarding is not
//!   turned on (the bridge is no gateway for the CNI plugin: pods only talk to the host and to
//!   each other on the bridge).
//! - cgroups: cgroup v1 (hybrid here), kubelet with the `cgroupfs` driver under a cgroup root of
//!   our own ([`cgroup_root`]), so `down` can find and remove every pod cgroup.
//! - Everything lives in the instance's run folder (containerd root and state, kubelet root,
//!   CNI config and IPAM state); `down` deletes the pods, stops the components, kills what is
//!   left in our cgroups, unmounts what is left under the run folder, deletes the sandboxes'
//!   network namespaces, kube-proxy's and kubelet's firewall rules and the bridge, then checks
//!   that nothing of it remains ([`leftovers`]).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The bridge's (host side) address: the node IP, and where the apiserver and moto listen.
pub const GATEWAY: &str = "10.244.0.1";
/// Pod addresses (host-local IPAM range on the bridge).
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The apiserver's `--service-cluster-ip-range`; `kubernetes` is its first address.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's ClusterIP (in the apiserver's serving certificate).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// The Node's name.
pub const NODE_NAME: &str = "eso-node";
/// The pod sandbox image containerd is configured with.
pub const PAUSE_IMAGE: &str = "localhost/eso-rs/pause:1";
/// The user's-guide application image (prints its environment, then sleeps).
pub const PRINTENV_IMAGE: &str = "localhost/eso-rs/printenv:1";
/// Debian packages the node needs.
pub const PACKAGES: [&str; 5] = [
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "nftables",
];
/// The cgroup v1 hierarchies kubelet and runc use here (plus `unified` on hybrid hosts).
const CGROUP_CONTROLLERS: [&str; 9] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
];

/// kube-controller-manager's controllers with a node: the control plane's, plus what runs
/// Deployments (ReplicaSets, pods), Services (EndpointSlices), PodDisruptionBudgets, the
/// `kube-root-ca.crt` ConfigMap every ServiceAccount token volume mounts, and node lifecycle
/// (it lifts the `not-ready` taint kubelet registers with).
pub const CONTROLLERS: &str = "--controllers=garbage-collector-controller,namespace-controller,\
serviceaccount-controller,serviceaccount-token-controller,deployment-controller,\
replicaset-controller,endpointslice-controller,disruption-controller,\
root-ca-certificate-publisher-controller,node-lifecycle-controller,pod-garbage-collector-controller";

/// Install Debian packages that are missing (`apt-get install`; root only).
pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("node: apt-get install {}", missing.join(" "));
    let status = Command::new("apt-get")
        .args(["update", "-q"])
        .stdout(Stdio::null())
        .status()
        .context("running apt-get update (the node needs Debian packages and root)")?;
    if !status.success() {
        bail!("apt-get update failed ({status})");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .context("running apt-get install")?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", missing.join(" "));
    }
    Ok(())
}

/// Why this machine cannot run the node, if it cannot.
pub fn preflight() -> Result<()> {
    let uid = run_out("id", &["-u"])?;
    if uid != "0" {
        bail!("the testenv node needs root (kubelet, containerd, network namespaces)");
    }
    if !Path::new("/sys/fs/cgroup/memory").is_dir()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").is_file()
    {
        bail!("no cgroup hierarchy at /sys/fs/cgroup");
    }
    Ok(())
}

fn run_out(cmd: &str, args: &[&str]) -> Result<String> {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !o.status.success() {
        bail!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn run_quiet(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// FNV-1a of the run folder: names that are unique per instance (bridge, cgroup root).
fn tag(dir: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.display().to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

/// The bridge's name (at most 15 characters).
pub fn bridge(dir: &Path) -> String {
    format!("esobr{}", tag(dir))
}

/// kubelet's `cgroupRoot`, one per instance.
pub fn cgroup_root(dir: &Path) -> String {
    format!("eso-testenv-{}", tag(dir))
}

/// The unix socket of the instance's containerd.
pub fn containerd_socket(dir: &Path) -> PathBuf {
    dir.join("node").join("containerd").join("containerd.sock")
}

/// Create the bridge with the gateway address (idempotent).
pub fn create_bridge(dir: &Path) -> Result<()> {
    let br = bridge(dir);
    if !run_quiet("ip", &["link", "show", &br]) {
        run_out("ip", &["link", "add", &br, "type", "bridge"])?;
    }
    let addrs = run_out("ip", &["-4", "-o", "addr", "show", "dev", &br])?;
    if !addrs.contains(&format!("{GATEWAY}/")) {
        run_out("ip", &["addr", "add", &format!("{GATEWAY}/24"), "dev", &br])?;
    }
    run_out("ip", &["link", "set", &br, "up"])?;
    Ok(())
}

/// Create the cgroup root in every hierarchy (kubelet requires it to exist).
fn create_cgroup_root(dir: &Path) -> Result<()> {
    let root = cgroup_root(dir);
    for c in CGROUP_CONTROLLERS.iter().chain(["unified"].iter()) {
        let base = Path::new("/sys/fs/cgroup").join(c);
        if !base.is_dir() {
            continue;
        }
        let p = base.join(&root);
        fs::create_dir_all(&p).with_context(|| format!("creating cgroup {}", p.display()))?;
        if *c == "cpuset" {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let v = fs::read_to_string(base.join(f))?;
                fs::write(p.join(f), v.trim())
                    .with_context(|| format!("writing {}", p.join(f).display()))?;
            }
        }
    }
    Ok(())
}

/// containerd's config: state and root in the run folder, runc with cgroupfs, CNI from Debian.
pub fn containerd_config(dir: &Path) -> String {
    let base = dir.join("node").join("containerd");
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  enable_selinux = false
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
        root = base.join("root").display(),
        state = base.join("state").display(),
        sock = containerd_socket(dir).display(),
        pause = PAUSE_IMAGE,
        cni = dir.join("node").join("cni").display(),
    )
}

/// The CNI network: bridge + host-local (+ loopback, which containerd adds itself). The bridge
/// is not the plugin's gateway (so it does not turn on IP forwarding); the default route points
/// at the address we gave the bridge.
pub fn cni_config(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("eso-{}", tag(dir)),
        "plugins": [{
            "type": "bridge",
            "bridge": bridge(dir),
            "isGateway": false,
            "isDefaultGateway": false,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": dir.join("node").join("ipam").display().to_string(),
                "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY, "rangeStart": "10.244.0.10"}]],
                "routes": [{"dst": "0.0.0.0/0", "gw": GATEWAY}],
            },
        }],
    })
    .to_string()
}

/// kubelet's serving certificate, signed by the testenv CA for the node address (the apiserver
/// verifies it for `kubectl logs/exec`).
fn kubelet_certs(certs: &Path) -> Result<()> {
    let ssl = |args: &[&str]| -> Result<()> {
        let o = Command::new("openssl")
            .current_dir(certs)
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
    };
    fs::write(
        certs.join("kubelet.ext"),
        format!("subjectAltName=IP:{GATEWAY},DNS:{NODE_NAME}\nextendedKeyUsage=serverAuth\n"),
    )?;
    ssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "kubelet.key",
        "-out",
        "kubelet.csr",
        "-subj",
        &format!("/CN=system:node:{NODE_NAME}"),
    ])?;
    ssl(&[
        "x509",
        "-req",
        "-in",
        "kubelet.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "kubelet.crt",
        "-days",
        "30",
        "-extfile",
        "kubelet.ext",
    ])
}

/// kubelet's configuration file.
pub fn kubelet_config(dir: &Path, certs: &Path, healthz_port: u16) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {GATEWAY}
tlsCertFile: "{crt}"
tlsPrivateKeyFile: "{key}"
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: "{ca}"}}
authorization: {{mode: AlwaysAllow}}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroot}
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{sock}
clusterDomain: cluster.local
resolvConf: "{resolv}"
makeIPTablesUtilChains: false
localStorageCapacityIsolation: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 8760h
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 5s
"#,
        ca = certs.join("ca.crt").display(),
        crt = certs.join("kubelet.crt").display(),
        key = certs.join("kubelet.key").display(),
        cgroot = cgroup_root(dir),
        sock = containerd_socket(dir).display(),
        resolv = dir.join("node").join("resolv.conf").display(),
    )
}

/// kube-proxy's configuration file (nftables mode; no sysctl or conntrack changes).
pub fn kube_proxy_config(kubeconfig: &Path, metrics_port: u16, healthz_port: u16) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: "{kc}"
hostnameOverride: {NODE_NAME}
bindAddress: {GATEWAY}
clusterCIDR: {POD_CIDR}
metricsBindAddress: 127.0.0.1:{metrics_port}
healthzBindAddress: 127.0.0.1:{healthz_port}
nodePortAddresses: ["{GATEWAY}/32"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kc = kubeconfig.display(),
    )
}

/// Write containerd's, CNI's, kubelet's and kube-proxy's files; create bridge and cgroup root.
pub fn prepare(dir: &Path) -> Result<()> {
    preflight()?;
    apt_install(&PACKAGES)?;
    let node = dir.join("node");
    for d in ["containerd", "cni", "ipam", "kubelet", "logs"] {
        fs::create_dir_all(node.join(d))?;
    }
    fs::write(node.join("containerd.toml"), containerd_config(dir))?;
    fs::write(node.join("cni").join("10-eso.conflist"), cni_config(dir))?;
    // Pods resolve nothing: they use addresses (the Service IP, the gateway for moto).
    fs::write(node.join("resolv.conf"), "options ndots:1\n")?;
    create_bridge(dir)?;
    create_cgroup_root(dir)?;
    Ok(())
}

/// `ctr` against the instance's containerd, in the `k8s.io` namespace.
pub fn ctr(dir: &Path, args: &[&str]) -> Result<String> {
    let sock = containerd_socket(dir);
    let mut all = vec![
        "--address",
        sock.to_str().unwrap_or_default(),
        "-n",
        "k8s.io",
    ];
    all.extend_from_slice(args);
    run_out("ctr", &all)
}

/// Import an OCI archive into the node's containerd.
pub fn import(dir: &Path, archive: &Path) -> Result<()> {
    let a = archive.display().to_string();
    ctr(dir, &["images", "import", "--no-unpack=false", &a])
        .or_else(|_| ctr(dir, &["images", "import", &a]))
        .with_context(|| format!("importing {a} into the node's containerd"))?;
    Ok(())
}

/// Build (once, cached by the Go version and source) the `tiny` program; returns its path.
pub fn tiny_binary(cache: &Path) -> Result<PathBuf> {
    let src = crate::project_root().join("xtask").join("go").join("tiny");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run_out("go", &["version"])?
        .bytes()
        .chain(fs::read(src.join("main.go"))?)
        .chain(fs::read(src.join("go.mod"))?)
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    let out = cache.join(format!("tiny-{h:016x}")).join("tiny");
    if out.is_file() {
        return Ok(out);
    }
    let status = Command::new("go")
        .current_dir(&src)
        .env("CGO_ENABLED", "0")
        .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
        .arg(&out)
        .arg(".")
        .status()
        .context("running go build in xtask/go/tiny")?;
    if !status.success() {
        bail!("go build in xtask/go/tiny failed ({status})");
    }
    Ok(out)
}

/// Build the pause and printenv images (OCI archives in the run folder) and import them.
pub fn import_tiny_images(dir: &Path, cache: &Path) -> Result<()> {
    let bin = fs::read(tiny_binary(cache)?)?;
    for (mode, reference, user) in [
        ("pause", PAUSE_IMAGE, "65535:65535"),
        ("printenv", PRINTENV_IMAGE, "65532:65532"),
    ] {
        let spec = crate::image::tiny_spec(bin.clone(), mode, reference, user);
        let archive = dir.join("node").join(format!("{mode}.oci.tar"));
        crate::image::write_archive(&spec, &archive)?;
        import(dir, &archive)?;
    }
    Ok(())
}

/// Every process whose command line mentions the run folder (containerd's shims name its socket).
fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    let mut v = Vec::new();
    let me = std::process::id();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) {
                v.push((pid, cmd.trim().to_string()));
            }
        }
    }
    v
}

/// Processes in our cgroup tree (the pods' containers).
fn cgroup_pids(dir: &Path) -> Vec<u32> {
    let mut v = Vec::new();
    let root = Path::new("/sys/fs/cgroup")
        .join("pids")
        .join(cgroup_root(dir));
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            v.extend(s.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(rd) = fs::read_dir(&d) {
            stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    v
}

/// Every cgroup directory of ours, deepest first.
fn cgroup_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for c in CGROUP_CONTROLLERS.iter().chain(["unified"].iter()) {
        let root = Path::new("/sys/fs/cgroup").join(c).join(cgroup_root(dir));
        if !root.is_dir() {
            continue;
        }
        let mut stack = vec![root];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = fs::read_dir(&d) {
                stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            all.push(d);
        }
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    all
}

/// Mount points under the run folder (containers' rootfs, shm, kubelet volumes), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut v: Vec<String> = fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m.starts_with(&needle))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v.dedup();
    v
}

/// Network namespaces (files under /run/netns) that our pods' processes are in, by inode.
fn pod_netns(pids: &[u32]) -> Vec<PathBuf> {
    let inodes: Vec<u64> = pids
        .iter()
        .filter_map(|p| fs::metadata(format!("/proc/{p}/ns/net")).ok())
        .map(|m| m.ino())
        .collect();
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            if let Ok(m) = fs::metadata(e.path())
                && inodes.contains(&m.ino())
            {
                v.push(e.path());
            }
        }
    }
    v
}

/// The network namespaces containerd's CRI made for sandboxes (recorded at `up`, see
/// [`record_netns`]), still present.
fn recorded_netns(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string(dir.join("node").join("netns-seen"))
        .unwrap_or_default()
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

/// Remember the network namespaces our pods use (called while they run), so `down` can remove
/// them even after their processes are gone.
pub fn record_netns(dir: &Path) {
    let mut seen: Vec<PathBuf> = recorded_netns(dir);
    for p in pod_netns(&cgroup_pids(dir)) {
        if !seen.contains(&p) {
            seen.push(p);
        }
    }
    let text: Vec<String> = seen.iter().map(|p| p.display().to_string()).collect();
    let _ = fs::write(dir.join("node").join("netns-seen"), text.join("\n"));
}

/// nft/iptables state of ours: kube-proxy's tables and kubelet's/CNI's chains.
fn firewall_leftovers() -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(t) = run_out("nft", &["list", "tables"]) {
        v.extend(
            t.lines()
                .filter(|l| l.contains("kube-proxy"))
                .map(|l| format!("nft {l}")),
        );
    }
    for bin in ["iptables-save", "ip6tables-save"] {
        if let Ok(s) = run_out(bin, &[]) {
            v.extend(
                s.lines()
                    .filter(|l| l.starts_with(':') && (l.contains("KUBE-") || l.contains("CNI-")))
                    .map(|l| format!("{bin}: chain {l}")),
            );
        }
    }
    v
}

/// What a stopped node left behind: processes, mounts, network namespaces, firewall rules,
/// the bridge and cgroups. Empty after a clean `down`.
pub fn leftovers(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    v.extend(
        processes_under(dir)
            .into_iter()
            .map(|(p, c)| format!("process {p}: {c}")),
    );
    v.extend(
        cgroup_pids(dir)
            .into_iter()
            .map(|p| format!("process {p} in our cgroups")),
    );
    v.extend(mounts_under(dir).into_iter().map(|m| format!("mount {m}")));
    v.extend(
        recorded_netns(dir)
            .into_iter()
            .map(|n| format!("netns {}", n.display())),
    );
    v.extend(firewall_leftovers());
    if run_quiet("ip", &["link", "show", &bridge(dir)]) {
        v.push(format!("bridge {}", bridge(dir)));
    }
    v.extend(
        cgroup_dirs(dir)
            .into_iter()
            .map(|d| format!("cgroup {}", d.display())),
    );
    v
}

fn kill_pids(pids: &[u32], sig: &str) {
    for p in pids {
        let _ = Command::new("kill")
            .args([sig, &p.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Remove what the node left (after its components were stopped): container processes in our
/// cgroups and shims of our containerd, mounts under the run folder, the pods' network
/// namespaces, kube-proxy's nft tables and kubelet's iptables chains, the bridge, our cgroups.
pub fn cleanup(dir: &Path, kube_proxy: Option<&Path>) -> Result<Vec<String>> {
    record_netns(dir);
    for sig in ["-TERM", "-KILL"] {
        let mut pids = cgroup_pids(dir);
        pids.extend(processes_under(dir).into_iter().map(|(p, _)| p));
        if pids.is_empty() {
            break;
        }
        kill_pids(&pids, sig);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !cgroup_pids(dir).is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for m in mounts_under(dir) {
        let _ = run_quiet("umount", &["-l", &m]);
    }
    for n in recorded_netns(dir) {
        let p = n.display().to_string();
        let _ = run_quiet("umount", &["-l", &p]);
        let _ = fs::remove_file(&n);
    }
    if let Some(kp) = kube_proxy
        && kp.is_file()
    {
        // Removes the rules of every kube-proxy mode (iptables, ipvs, nftables).
        let _ = Command::new(kp)
            .arg("--cleanup")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    for fam in ["ip", "ip6"] {
        let _ = run_quiet("nft", &["delete", "table", fam, "kube-proxy"]);
    }
    for (bin, tables) in [
        ("iptables", ["filter", "nat", "mangle"]),
        ("ip6tables", ["filter", "nat", "mangle"]),
    ] {
        for t in tables {
            let Ok(s) = run_out(bin, &["-t", t, "-S"]) else {
                continue;
            };
            // Rules jumping to our chains first, then the chains.
            for rule in s
                .lines()
                .filter(|l| l.starts_with("-A ") && l.contains("-j KUBE-"))
            {
                let mut args: Vec<&str> = vec!["-t", t, "-D"];
                args.extend(rule.split_whitespace().skip(1));
                let _ = run_quiet(bin, &args);
            }
            for chain in s
                .lines()
                .filter_map(|l| l.strip_prefix("-N "))
                .filter(|c| c.starts_with("KUBE-") || c.starts_with("CNI-"))
            {
                let _ = run_quiet(bin, &["-t", t, "-F", chain]);
                let _ = run_quiet(bin, &["-t", t, "-X", chain]);
            }
        }
    }
    let br = bridge(dir);
    if run_quiet("ip", &["link", "show", &br]) {
        let _ = run_quiet("ip", &["link", "delete", &br]);
    }
    for d in cgroup_dirs(dir) {
        let _ = fs::remove_dir(&d);
    }
    let left = leftovers(dir);
    let _ = fs::remove_file(dir.join("node").join("netns-seen"));
    Ok(left)
}

fn kubectl_out(kubectl: &Path, kc: &Path, args: &[&str]) -> Result<String> {
    let mut all = vec!["--kubeconfig", kc.to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    run_out(kubectl.to_str().unwrap_or("kubectl"), &all)
}

/// True when the Node reports Ready.
pub fn node_ready(kubectl: &Path, kc: &Path) -> bool {
    kubectl_out(
        kubectl,
        kc,
        &[
            "get",
            "node",
            NODE_NAME,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    )
    .map(|s| s == "True")
    .unwrap_or(false)
}

/// Start kube-scheduler, containerd (then import the node's images), kubelet and kube-proxy,
/// and wait for the Node to be Ready. Returns the variables the environment gains.
pub fn start(
    dir: &Path,
    node_bins: &Path,
    bins: &Path,
    kc: &Path,
    certs: &Path,
    pids: &mut Vec<u32>,
) -> Result<Vec<(String, String)>> {
    use crate::testenv::{free_port, spawn, wait_for, write_state};
    let logs = dir.join("logs");
    let node = dir.join("node");
    let kubectl = bins.join("kubectl");
    let kcs = kc.display().to_string();
    let start = Instant::now();

    let sched_port = free_port()?;
    pids.push(spawn(
        "kube-scheduler",
        &node_bins.join("kube-scheduler"),
        &[
            format!("--kubeconfig={kcs}"),
            format!("--authentication-kubeconfig={kcs}"),
            format!("--authorization-kubeconfig={kcs}"),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={sched_port}"),
            "--v=0".into(),
        ],
        dir,
    )?);
    write_state(dir, &Default::default(), pids)?;

    pids.push(spawn(
        "containerd",
        Path::new("/usr/bin/containerd"),
        &[format!(
            "--config={}",
            node.join("containerd.toml").display()
        )],
        dir,
    )?);
    write_state(dir, &Default::default(), pids)?;
    wait_for(
        "containerd",
        Duration::from_secs(60),
        &logs,
        "containerd.log",
        || ctr(dir, &["version"]).is_ok(),
    )?;
    import_tiny_images(dir, &crate::testenv::cache_root()?)?;

    let kubelet_healthz = free_port()?;
    kubelet_certs(certs)?;
    fs::write(
        node.join("kubelet.yaml"),
        kubelet_config(dir, certs, kubelet_healthz),
    )?;
    pids.push(spawn(
        "kubelet",
        &node_bins.join("kubelet"),
        &[
            format!("--config={}", node.join("kubelet.yaml").display()),
            format!("--kubeconfig={kcs}"),
            format!("--root-dir={}", node.join("kubelet").display()),
            format!("--cert-dir={}", node.join("kubelet-pki").display()),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={GATEWAY}"),
            "--v=1".into(),
        ],
        dir,
    )?);
    write_state(dir, &Default::default(), pids)?;

    let (kp_metrics, kp_healthz) = (free_port()?, free_port()?);
    fs::write(
        node.join("kube-proxy.yaml"),
        kube_proxy_config(kc, kp_metrics, kp_healthz),
    )?;
    pids.push(spawn(
        "kube-proxy",
        &node_bins.join("kube-proxy"),
        &[
            format!("--config={}", node.join("kube-proxy.yaml").display()),
            "--v=0".into(),
        ],
        dir,
    )?);
    write_state(dir, &Default::default(), pids)?;

    wait_for(
        "the node (kubelet Ready)",
        Duration::from_secs(180),
        &logs,
        "kubelet.log",
        || node_ready(&kubectl, kc),
    )?;
    println!(
        "testenv: node {NODE_NAME} Ready {:.1}s after its components started",
        start.elapsed().as_secs_f64()
    );
    Ok(vec![
        ("ESO_TESTENV_NODE".into(), NODE_NAME.into()),
        ("ESO_TESTENV_NODE_IP".into(), GATEWAY.into()),
        (
            "ESO_TESTENV_CONTAINERD".into(),
            containerd_socket(dir).display().to_string(),
        ),
        ("ESO_TESTENV_PRINTENV_IMAGE".into(), PRINTENV_IMAGE.into()),
    ])
}

/// Before the components stop: stop the controllers and the scheduler (nothing recreates
/// pods), delete every pod and wait (at most 45s) until kubelet has torn them down through the
/// runtime (containers stopped, sandboxes' networks deleted by CNI).
pub fn drain(dir: &Path, kubectl: &Path, kc: &Path) {
    for name in ["kube-controller-manager", "kube-scheduler"] {
        if let Ok(b) = fs::read(dir.join("components").join(format!("{name}.json")))
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b)
            && let Some(pid) = v.get("pid").and_then(|p| p.as_u64())
        {
            let pid = pid as u32;
            crate::testenv::signal(pid, "-TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && crate::testenv::signal(pid, "-0") {
                std::thread::sleep(Duration::from_millis(100));
            }
            crate::testenv::signal(pid, "-KILL");
        }
    }
    record_netns(dir);
    if kubectl_out(
        kubectl,
        kc,
        &[
            "delete",
            "pods",
            "--all",
            "-A",
            "--grace-period=1",
            "--wait=false",
        ],
    )
    .is_err()
    {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(45);
    while Instant::now() < deadline {
        let pods =
            kubectl_out(kubectl, kc, &["get", "pods", "-A", "-o", "name"]).unwrap_or_default();
        let tasks = ctr(dir, &["tasks", "ls", "-q"]).unwrap_or_default();
        if pods.trim().is_empty() && tasks.trim().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `cargo xtask node-e2e [--keep] [--dev-image]`: the node instance up (`--instance node --node`),
/// the operator image built (`--dev-image`: from the dev profile, see [`crate::image::Profile`])
/// and loaded, the in-pod suite (`crates/operator/tests/node.rs`), the rollout suite
/// (`crates/operator/tests/node_rollout.rs`), and the node down again with the leftover check
/// (unless `--keep`).
pub fn e2e(args: &[String]) -> Result<()> {
    let keep = args.iter().any(|a| a == "--keep");
    let profile = if args.iter().any(|a| a == "--dev-image") {
        crate::image::Profile::Dev
    } else {
        crate::image::Profile::Release
    };
    let inst = crate::testenv::Instance::named("node")?;
    let total = Instant::now();
    let result = (|| -> Result<()> {
        let t = Instant::now();
        inst.up_with(true)?;
        println!(
            "node-e2e: testenv --instance node up --node in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let built = crate::image::build_operator_image(None, false, profile)?;
        import(inst.dir(), &built.archive)?;
        println!(
            "node-e2e: operator image {} built and imported in {:.1}s (compressed {} bytes, unpacked {} bytes)",
            built.reference,
            t.elapsed().as_secs_f64(),
            built.compressed,
            built.unpacked
        );
        record_netns(inst.dir());
        let t = Instant::now();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            // `--workspace`, not `-p eso-operator`: features unify as in CI's workspace build, so
            // the test binary `cargo test --workspace --no-run` built is reused, not rebuilt.
            .args(["test", "--workspace", "--test", "node", "--", "--nocapture"])
            .env("ESO_NODE_TESTENV", inst.dir())
            .current_dir(crate::project_root())
            .status()
            .context("running cargo test --test node")?;
        record_netns(inst.dir());
        if !status.success() {
            bail!("the in-pod suite failed ({status})");
        }
        // Pods follow their Secrets (the operator as a host process with
        // --enable-workload-rollout, the guide's app in pods).
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "test",
                "--workspace",
                "--test",
                "node_rollout",
                "--",
                "--nocapture",
            ])
            .env("ESO_NODE_TESTENV", inst.dir())
            .current_dir(crate::project_root())
            .status()
            .context("running cargo test --test node_rollout")?;
        record_netns(inst.dir());
        if !status.success() {
            bail!("the rollout node suite failed ({status})");
        }
        println!(
            "node-e2e: in-pod suite passed in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        Ok(())
    })();
    if keep {
        println!("node-e2e: --keep: the node stays up (cargo xtask testenv --instance node down)");
        return result;
    }
    let t = Instant::now();
    let down = inst.down();
    println!("node-e2e: down in {:.1}s", t.elapsed().as_secs_f64());
    result?;
    down?;
    println!(
        "node-e2e: passed in {:.1}s; nothing left behind",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_limits_and_differ_per_instance() {
        let a = bridge(Path::new("/work/x/target/testenv-node"));
        let b = bridge(Path::new("/work/y/target/testenv-node"));
        assert!(a.len() <= 15, "{a}");
        assert_ne!(a, b);
        assert!(cgroup_root(Path::new("/t")).starts_with("eso-testenv-"));
    }

    #[test]
    fn configs_point_into_the_run_folder() {
        let dir = Path::new("/r/target/testenv-node");
        let c = containerd_config(dir);
        assert!(c.contains("root = \"/r/target/testenv-node/node/containerd/root\""));
        assert!(c.contains(&format!("sandbox_image = \"{PAUSE_IMAGE}\"")));
        assert!(c.contains("SystemdCgroup = false"));
        let cni: serde_json::Value = serde_json::from_str(&cni_config(dir)).unwrap();
        assert_eq!(cni["plugins"][0]["isGateway"], false);
        assert_eq!(cni["plugins"][0]["ipMasq"], false);
        assert_eq!(cni["plugins"][0]["bridge"], bridge(dir));
        let k = kubelet_config(dir, Path::new("/certs"), 1);
        assert!(k.contains("cgroupDriver: cgroupfs"));
        assert!(k.contains("makeIPTablesUtilChains: false"));
        assert!(kube_proxy_config(Path::new("/kc"), 1, 2).contains("mode: nftables"));
    }

    /// Both Go modules pin the same Kubernetes release: node and control plane stay one version.
    #[test]
    fn node_and_control_plane_pin_the_same_kubernetes() {
        let pin = |m: &str| {
            fs::read_to_string(
                crate::project_root()
                    .join("xtask/go")
                    .join(m)
                    .join("go.mod"),
            )
            .unwrap()
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("require k8s.io/kubernetes ")
                    .map(String::from)
            })
            .unwrap()
        };
        assert_eq!(pin("k8s"), pin("node"));
    }
}
