//! The local control plane. (Being written.)
use anyhow::Result;

pub fn run(_args: &[String]) -> Result<()> {
    anyhow::bail!("testenv not implemented yet")
}
