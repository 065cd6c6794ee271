//! kubectl against the local control plane, shared by `demo` and `bench`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The testenv's kubectl with the environment that points it at the control plane.
pub struct Kubectl {
    /// Path of the kubectl binary.
    pub bin: PathBuf,
    /// Environment for every call (`KUBECONFIG`, ...).
    pub envs: Vec<(String, String)>,
}

impl Kubectl {
    /// Run kubectl with `args` (and `stdin` piped in): its stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().context("running kubectl")?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Server-side apply the CRDs in `deploy/crds` under `root` and wait until all three are
    /// Established.
    pub fn install_crds(&self, root: &Path) -> Result<()> {
        self.run(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                &root.join("deploy/crds").display().to_string(),
            ],
            None,
        )?;
        for crd in [
            "externalsecrets",
            "secretstores",
            "clustersecretstores",
            "clusterexternalsecrets",
            "pushsecrets",
            "clusterpushsecrets",
        ] {
            self.run(
                &[
                    "wait",
                    "--for=condition=Established",
                    &format!("crd/{crd}.external-secrets.io"),
                    "--timeout=60s",
                ],
                None,
            )?;
        }
        Ok(())
    }
}
