//! Shared pieces of Folium's user programs (the binaries are in `src/bin`).
#![no_std]

/// Decodes a `wait4` status word the way a shell reports it.
pub fn describe_status(status: u32) -> (&'static str, u32) {
    if status & 0x7f == 0 {
        ("exited with status", (status >> 8) & 0xff)
    } else {
        ("killed by signal", status & 0x7f)
    }
}

/// The exit code a shell would give a child with this status
/// (`128 + signal` for a signal).
pub fn exit_code(status: u32) -> i32 {
    if status & 0x7f == 0 {
        ((status >> 8) & 0xff) as i32
    } else {
        128 + (status & 0x7f) as i32
    }
}
