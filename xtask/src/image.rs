//! `cargo xtask image`: the operator's container image, built offline as an OCI archive.
//!
//! The image is one layer on an empty base, the same file layout as the `Dockerfile`'s final stage
//! (which copies the root filesystem this module writes with `--rootfs`):
//!
//! - `/eso-operator`: the operator, a static musl binary (`--target x86_64-unknown-linux-musl`);
//! - `/etc/ssl/certs/ca-certificates.crt`: the build host's CA bundle (Debian `ca-certificates`);
//! - `/etc/passwd`, `/etc/group`: `root` and `nonroot` (65532), `/home/nonroot` owned by 65532;
//! - `/tmp` (mode 1777), for libraries that insist on one (the chart mounts nothing there).
//!
//! Config: `User 65532:65532`, `Entrypoint ["/eso-operator"]`, `SSL_CERT_FILE` set. Every entry has
//! mtime 0 and fixed owners, so two builds of the same binary give the same digests.
//!
//! The archive is an OCI image layout in a tar (`oci-layout`, `index.json`, `blobs/sha256/…`),
//! loadable with `ctr -n k8s.io images import` and `podman load`. The index names the image in
//! both `org.opencontainers.image.ref.name` and containerd's `io.containerd.image.name`.
//!
//! The same writer builds the node's small images (`pause`, the guide's `printenv` application)
//! from the static Go binary in `xtask/go/tiny`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The chart's default image repository (`deploy/charts/eso-rs/values.yaml` `image.repository`);
/// the image is tagged with the chart's `appVersion`, so `helm install` with default values runs it.
pub const OPERATOR_REPOSITORY: &str = "ghcr.io/example/eso-rs";
/// The musl target the operator is built for.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The user (and group) the image runs as, as distroless' `nonroot`.
pub const NONROOT: u64 = 65532;
/// Where the CA bundle is read from on the build host and written to in the image.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One entry of a layer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the image, without a leading `/` (e.g. `etc/passwd`).
    pub path: String,
    /// Permission bits (e.g. `0o755`, `0o1777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// `None` for a directory, the content for a regular file.
    pub data: Option<Vec<u8>>,
}

impl Entry {
    /// A directory owned by root.
    pub fn dir(path: &str, mode: u32) -> Self {
        Self {
            path: path.into(),
            mode,
            uid: 0,
            gid: 0,
            data: None,
        }
    }
    /// A regular file owned by root.
    pub fn file(path: &str, mode: u32, data: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            mode,
            uid: 0,
            gid: 0,
            data: Some(data),
        }
    }
}

/// What to put in an image.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Full reference, e.g. `ghcr.io/example/eso-rs:0.1.0`.
    pub reference: String,
    /// `User` of the image config (`uid:gid`).
    pub user: String,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Env` (`KEY=value`).
    pub env: Vec<String>,
    /// The single layer's entries (parents are listed before their children).
    pub entries: Vec<Entry>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Built {
    /// The OCI archive.
    pub archive: PathBuf,
    /// The image reference it is named with.
    pub reference: String,
    /// `sha256:…` of the image manifest (the image's digest).
    pub manifest_digest: String,
    /// Bytes a registry transfers: the compressed layer, the config and the manifest.
    pub compressed: u64,
    /// Bytes of the unpacked root filesystem (sum of file sizes).
    pub unpacked: u64,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The uncompressed layer tar: deterministic (sorted as given, mtime 0, numeric owners only).
pub fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(0);
        match &e.data {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{}/", e.path), std::io::empty())
                    .with_context(|| format!("adding {} to the layer", e.path))?;
            }
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, &e.path, data.as_slice())
                    .with_context(|| format!("adding {} to the layer", e.path))?;
            }
        }
    }
    Ok(b.into_inner()?)
}

fn gzip(b: &[u8]) -> Result<Vec<u8>> {
    // GzEncoder writes mtime 0 and no file name: the same input gives the same bytes.
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(b)?;
    Ok(gz.finish()?)
}

/// Write `spec` as an OCI image layout in a tar at `archive`.
pub fn write_archive(spec: &Spec, archive: &Path) -> Result<Built> {
    let layer = layer_tar(&spec.entries)?;
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let layer_gz = gzip(&layer)?;
    let layer_digest = sha256_hex(&layer_gz);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "User": spec.user,
            "Entrypoint": spec.entrypoint,
            "Env": spec.env,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "cargo xtask image"}],
    }))?;
    let config_digest = sha256_hex(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer_gz.len(),
        }],
    }))?;
    let manifest_digest = sha256_hex(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "org.opencontainers.image.ref.name": spec.reference,
                "io.containerd.image.name": spec.reference,
            },
        }],
    }))?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();

    let mut out = tar::Builder::new(Vec::new());
    out.mode(tar::HeaderMode::Deterministic);
    let mut add = |name: &str, data: &[u8], dir: bool| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(0);
        if dir {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
        }
        out.append_data(&mut h, name, data)
            .with_context(|| format!("adding {name} to the archive"))?;
        Ok(())
    };
    add("oci-layout", &layout, false)?;
    add("index.json", &index, false)?;
    add("blobs/", &[], true)?;
    add("blobs/sha256/", &[], true)?;
    add(&format!("blobs/sha256/{manifest_digest}"), &manifest, false)?;
    add(&format!("blobs/sha256/{config_digest}"), &config, false)?;
    add(&format!("blobs/sha256/{layer_digest}"), &layer_gz, false)?;
    let bytes = out.into_inner()?;
    if let Some(parent) = archive.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(archive, bytes).with_context(|| format!("writing {}", archive.display()))?;
    let unpacked = spec
        .entries
        .iter()
        .filter_map(|e| e.data.as_ref().map(|d| d.len() as u64))
        .sum();
    Ok(Built {
        archive: archive.to_path_buf(),
        reference: spec.reference.clone(),
        manifest_digest: format!("sha256:{manifest_digest}"),
        compressed: (layer_gz.len() + config.len() + manifest.len()) as u64,
        unpacked,
    })
}

/// Write the layer's entries as a directory tree at `root` (for the Dockerfile's `COPY`).
/// Owners are set when running as root (otherwise left as the current user).
pub fn write_rootfs(entries: &[Entry], root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(root)?;
    let is_root = output_of("id", &["-u"]).map(|u| u == "0").unwrap_or(false);
    for e in entries {
        let p = root.join(&e.path);
        match &e.data {
            None => fs::create_dir_all(&p)?,
            Some(d) => fs::write(&p, d)?,
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(e.mode))
            .with_context(|| format!("chmod {}", p.display()))?;
        if is_root {
            let uid = u32::try_from(e.uid).context("uid out of range")?;
            let gid = u32::try_from(e.gid).context("gid out of range")?;
            std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", p.display()))?;
        }
    }
    Ok(())
}

fn output_of(cmd: &str, args: &[&str]) -> Result<String> {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !o.status.success() {
        bail!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// `/etc/passwd`, `/etc/group` and the directories every image here has.
fn base_entries(ca_bundle: Option<Vec<u8>>) -> Vec<Entry> {
    let mut v = vec![
        Entry::dir("etc", 0o755),
        Entry::file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
                .to_vec(),
        ),
        Entry::file(
            "etc/group",
            0o644,
            b"root:x:0:\nnonroot:x:65532:\n".to_vec(),
        ),
    ];
    if let Some(ca) = ca_bundle {
        v.push(Entry::dir("etc/ssl", 0o755));
        v.push(Entry::dir("etc/ssl/certs", 0o755));
        v.push(Entry::file("etc/ssl/certs/ca-certificates.crt", 0o644, ca));
    }
    v.push(Entry::dir("home", 0o755));
    v.push(Entry {
        path: "home/nonroot".into(),
        mode: 0o700,
        uid: NONROOT,
        gid: NONROOT,
        data: None,
    });
    v.push(Entry::dir("tmp", 0o1777));
    v
}

/// The operator image's spec around a built binary.
pub fn operator_spec(binary: Vec<u8>, ca_bundle: Vec<u8>, tag: &str) -> Spec {
    let mut entries = base_entries(Some(ca_bundle));
    entries.push(Entry::file("eso-operator", 0o755, binary));
    Spec {
        reference: format!("{OPERATOR_REPOSITORY}:{tag}"),
        user: format!("{NONROOT}:{NONROOT}"),
        entrypoint: vec!["/eso-operator".into()],
        env: vec![PATH_ENV.into(), format!("SSL_CERT_FILE={CA_BUNDLE}")],
        entries,
    }
}

/// A one-binary image from the `tiny` Go program (`pause` or `printenv`), run as `user`.
pub fn tiny_spec(binary: Vec<u8>, mode: &str, reference: &str, user: &str) -> Spec {
    let mut entries = base_entries(None);
    entries.push(Entry::file(mode, 0o755, binary));
    Spec {
        reference: reference.into(),
        user: user.into(),
        entrypoint: vec![format!("/{mode}")],
        env: vec![PATH_ENV.into()],
        entries,
    }
}

/// The chart's `appVersion` (the operator image's tag).
pub fn chart_app_version() -> Result<String> {
    let chart = fs::read_to_string(
        crate::project_root()
            .join("deploy")
            .join("charts")
            .join("eso-rs")
            .join("Chart.yaml"),
    )?;
    chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .context("Chart.yaml has no appVersion")
}

/// `target/image`.
pub fn out_dir() -> PathBuf {
    crate::project_root().join("target").join("image")
}

/// The operator archive's path.
pub fn operator_archive() -> Result<PathBuf> {
    Ok(out_dir().join(format!("eso-operator-{}.oci.tar", chart_app_version()?)))
}

fn ensure_musl_toolchain() -> Result<()> {
    let installed = output_of("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == MUSL_TARGET) {
        println!("image: rustup target add {MUSL_TARGET}");
        let s = Command::new("rustup")
            .args(["target", "add", MUSL_TARGET])
            .current_dir(crate::project_root())
            .status()?;
        if !s.success() {
            bail!("rustup target add {MUSL_TARGET} failed ({s})");
        }
    }
    // ring compiles C and assembly: the cc crate needs a musl C compiler.
    if Command::new("musl-gcc").arg("--version").output().is_err() {
        crate::node::apt_install(&["musl-tools"])?;
    }
    Ok(())
}

/// How the operator binary in the image is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `--release` (thin LTO, stripped): the image users run and whose size is published.
    Release,
    /// The dev profile, stripped afterwards: the same static musl binary and the same image
    /// layout, without the optimizer. CI's in-pod suite uses it, because its dependencies' build
    /// scripts and proc-macros are the ones the workspace's debug build already compiled, and
    /// unoptimized code generation is several times cheaper than a release build on two cores.
    Dev,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "debug",
        }
    }
}

/// Build the static operator binary; returns its path.
pub fn build_operator_binary(profile: Profile) -> Result<PathBuf> {
    ensure_musl_toolchain()?;
    let start = Instant::now();
    let mut args = vec![
        "build",
        "--locked",
        "-p",
        "eso-operator",
        "--target",
        MUSL_TARGET,
    ];
    if profile == Profile::Release {
        args.insert(1, "--release");
    }
    println!("image: cargo {}", args.join(" "));
    let s = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(&args)
        .current_dir(crate::project_root())
        .status()
        .context("running cargo build")?;
    if !s.success() {
        bail!("building the static operator failed ({s})");
    }
    println!(
        "image: operator built in {:.0}s",
        start.elapsed().as_secs_f64()
    );
    Ok(binary_path(profile))
}

fn binary_path(profile: Profile) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"));
    dir.join(MUSL_TARGET)
        .join(profile.dir())
        .join("eso-operator")
}

/// The binary as it goes into the image: the release build is stripped by its profile; a dev
/// build is stripped here (into a copy, so cargo's own artifact stays as cargo wrote it).
fn image_binary(profile: Profile, path: &Path) -> Result<Vec<u8>> {
    if profile == Profile::Release {
        return fs::read(path).with_context(|| format!("reading {}", path.display()));
    }
    let stripped = out_dir().join("eso-operator-dev");
    fs::create_dir_all(out_dir())?;
    let s = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&stripped)
        .arg(path)
        .status()
        .context("running strip (binutils)")?;
    if !s.success() {
        bail!("strip {} failed ({s})", path.display());
    }
    fs::read(&stripped).with_context(|| format!("reading {}", stripped.display()))
}

/// Check the binary is static (no program interpreter), so it runs on an empty base.
fn check_static(bin: &[u8]) -> Result<()> {
    // ELF64: program headers at e_phoff (0x20), e_phentsize (0x36), e_phnum (0x38); PT_INTERP = 3.
    let get = |at: usize, n: usize| -> Result<u64> {
        let s = bin.get(at..at + n).context("not an ELF file")?;
        Ok(s.iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    if bin.get(0..4) != Some(b"\x7fELF".as_slice()) || bin.get(4) != Some(&2) {
        bail!("not an ELF64 binary");
    }
    let phoff = usize::try_from(get(0x20, 8)?)?;
    let phentsize = usize::try_from(get(0x36, 2)?)?;
    let phnum = usize::try_from(get(0x38, 2)?)?;
    for i in 0..phnum {
        if get(phoff + i * phentsize, 4)? == 3 {
            bail!("the binary is dynamically linked (it has a PT_INTERP header)");
        }
    }
    Ok(())
}

/// Build the operator image; `rootfs`: also write its root filesystem there (the Dockerfile's).
/// Both profiles give the same layout and the same reference (the chart's default image).
pub fn build_operator_image(
    rootfs: Option<&Path>,
    skip_build: bool,
    profile: Profile,
) -> Result<Built> {
    let bin_path = if skip_build {
        binary_path(profile)
    } else {
        build_operator_binary(profile)?
    };
    let bin = image_binary(profile, &bin_path)?;
    check_static(&bin).with_context(|| format!("{}", bin_path.display()))?;
    let ca = fs::read(CA_BUNDLE).with_context(|| {
        format!("reading {CA_BUNDLE} (install Debian's ca-certificates on the build host)")
    })?;
    let spec = operator_spec(bin, ca, &chart_app_version()?);
    if let Some(root) = rootfs {
        write_rootfs(&spec.entries, root)?;
        println!("image: root filesystem written to {}", root.display());
    }
    write_archive(&spec, &operator_archive()?)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// `cargo xtask image [--rootfs DIR] [--skip-build] [--dev]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut rootfs = None;
    let mut skip_build = false;
    let mut profile = Profile::Release;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rootfs" => rootfs = Some(PathBuf::from(it.next().context("--rootfs needs a dir")?)),
            "--skip-build" => skip_build = true,
            "--dev" => profile = Profile::Dev,
            other => bail!("unknown image flag {other:?} (--rootfs DIR, --skip-build, --dev)"),
        }
    }
    let b = build_operator_image(rootfs.as_deref(), skip_build, profile)?;
    println!(
        "image: {} ({})\n  archive {}\n  compressed {} ({} bytes), unpacked {} ({} bytes)",
        b.reference,
        b.manifest_digest,
        b.archive.display(),
        mib(b.compressed),
        b.compressed,
        mib(b.unpacked),
        b.unpacked
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_tar(b: &[u8]) -> Vec<(String, u32, u64, Vec<u8>)> {
        let mut a = tar::Archive::new(b);
        let mut v = Vec::new();
        for e in a.entries().into_iter().flatten().flatten() {
            let mut e = e;
            let path = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let mode = e.header().mode().unwrap_or(0);
            let uid = e.header().uid().unwrap_or(0);
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap_or(0);
            v.push((path, mode, uid, data));
        }
        v
    }

    #[test]
    fn operator_layout_is_the_distroless_nonroot_shape() {
        let spec = operator_spec(b"bin".to_vec(), b"ca".to_vec(), "9.9.9");
        assert_eq!(spec.reference, "ghcr.io/example/eso-rs:9.9.9");
        assert_eq!(spec.user, "65532:65532");
        assert_eq!(spec.entrypoint, vec!["/eso-operator".to_string()]);
        let tar = layer_tar(&spec.entries).unwrap_or_default();
        let entries = read_tar(&tar);
        let find = |p: &str| entries.iter().find(|e| e.0 == p).cloned();
        assert_eq!(
            find("eso-operator").map(|e| (e.1, e.3)),
            Some((0o755, b"bin".to_vec()))
        );
        assert_eq!(
            find("etc/ssl/certs/ca-certificates.crt").map(|e| e.3),
            Some(b"ca".to_vec())
        );
        assert_eq!(find("tmp/").map(|e| e.1), Some(0o1777));
        assert_eq!(
            find("home/nonroot/").map(|e| (e.1, e.2)),
            Some((0o700, 65532))
        );
        let passwd = find("etc/passwd").map(|e| String::from_utf8_lossy(&e.3).to_string());
        assert!(passwd.is_some_and(|p| p.contains("nonroot:x:65532:65532:")));
    }

    #[test]
    fn archive_is_a_deterministic_oci_layout() {
        let dir = std::env::temp_dir().join(format!("eso-image-test-{}", std::process::id()));
        let spec = tiny_spec(b"pause".to_vec(), "pause", "localhost/t:1", "65535:65535");
        let a = write_archive(&spec, &dir.join("a.tar")).unwrap_or_else(|e| panic!("{e:#}"));
        let b = write_archive(&spec, &dir.join("b.tar")).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let bytes = fs::read(&a.archive).unwrap_or_default();
        assert_eq!(bytes, fs::read(&b.archive).unwrap_or_default());
        let entries = read_tar(&bytes);
        let index = entries
            .iter()
            .find(|e| e.0 == "index.json")
            .map(|e| serde_json::from_slice::<serde_json::Value>(&e.3).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(
            index["manifests"][0]["annotations"]["io.containerd.image.name"],
            "localhost/t:1"
        );
        // Every blob is stored under its own digest.
        for (path, _, _, data) in &entries {
            if let Some(d) = path.strip_prefix("blobs/sha256/").filter(|d| !d.is_empty()) {
                assert_eq!(sha256_hex(data), d, "{path}");
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn static_check() {
        assert!(check_static(b"not elf").is_err());
        // The test binary itself is dynamically linked (glibc target).
        let me = std::env::current_exe().ok().and_then(|p| fs::read(p).ok());
        if let Some(me) = me {
            assert!(check_static(&me).is_err());
        }
    }

    #[test]
    fn chart_default_image_is_the_one_built() {
        let values =
            fs::read_to_string(crate::project_root().join("deploy/charts/eso-rs/values.yaml"))
                .unwrap_or_default();
        assert!(
            values.contains(&format!("repository: {OPERATOR_REPOSITORY}")),
            "values.yaml image.repository must be {OPERATOR_REPOSITORY}"
        );
        assert!(chart_app_version().is_ok());
    }

    /// The Dockerfile's final stage is the same layout: an empty base with the root filesystem
    /// `cargo xtask image --rootfs` writes, the same user and entrypoint.
    #[test]
    fn dockerfile_builds_the_same_layout() {
        let df = fs::read_to_string(crate::project_root().join("Dockerfile")).unwrap_or_default();
        let last = df.rsplit("\nFROM ").next().unwrap_or_default();
        assert!(
            last.starts_with("scratch"),
            "final stage must be FROM scratch"
        );
        assert!(df.contains("cargo xtask image --rootfs /rootfs"));
        assert!(last.contains("COPY --from=build /rootfs/ /"));
        assert!(
            last.contains(
                "COPY --from=build --chown=65532:65532 /rootfs/home/nonroot /home/nonroot"
            )
        );
        assert!(last.contains("USER 65532:65532"));
        assert!(last.contains(&format!("ENV SSL_CERT_FILE={CA_BUNDLE}")));
        assert!(last.contains(r#"ENTRYPOINT ["/eso-operator"]"#));
    }
}
