//! `cargo xtask ci`. (Being written.)
use anyhow::Result;

pub fn run(_args: &[String]) -> Result<()> {
    anyhow::bail!("ci not implemented yet")
}
