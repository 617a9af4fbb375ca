//! `cargo xtask bench`: in-guest benchmarks (see issue-specific commands).

use crate::{Opts, Result};

pub fn run(_o: &Opts) -> Result<bool> {
    Err("no benchmark is built in yet".into())
}
