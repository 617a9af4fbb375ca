//! `futex(2)` (the kernel side is `crate::proc::futex`) and `clone`'s
//! thread flavour lives in `process.rs`.

use folium_abi::Errno;
use folium_abi::errno::SysResult;

use super::time::read_timespec;
use crate::proc::{Task, futex};

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;
const FUTEX_BITSET_MATCH_ANY: u32 = u32::MAX;

/// The bits a wait or wake matches: `val3` for the `_BITSET` operations
/// (EINVAL if empty), every bit for the others.
fn bitset(given: bool, val3: u32) -> Result<u32, Errno> {
    match (given, val3) {
        (false, _) => Ok(FUTEX_BITSET_MATCH_ANY),
        (true, 0) => Err(Errno::EINVAL),
        (true, b) => Ok(b),
    }
}

/// `futex(uaddr, op, val, timeout or val2, uaddr2, val3)`. The operations
/// glibc's and musl's threads use: WAIT, WAKE, WAIT_BITSET, WAKE_BITSET,
/// REQUEUE, CMP_REQUEUE (private or not: one kind here, see
/// `crate::proc::futex`). The others (WAKE_OP, the PI operations, FD) are
/// ENOSYS, as on a Linux built without them.
pub fn futex(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (uaddr, op, val, timeout, uaddr2, val3) =
        (a[0], a[1], a[2] as u32, a[3], a[4], a[5] as u32);
    // Linux takes `op` as an int.
    let op = u64::from(op as u32);
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    let realtime = op & FUTEX_CLOCK_REALTIME != 0;
    if realtime && cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET {
        return Err(Errno::ENOSYS);
    }
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bits = bitset(cmd == FUTEX_WAIT_BITSET, val3)?;
            let until = if timeout == 0 {
                u64::MAX
            } else {
                let ns = read_timespec(task, timeout)?;
                let mono = crate::time::monotonic_ns();
                if cmd == FUTEX_WAIT {
                    // Relative, on the monotonic clock.
                    mono.saturating_add(ns)
                } else if realtime {
                    // Absolute on CLOCK_REALTIME, moved to the monotonic
                    // scale.
                    mono.saturating_add(ns.saturating_sub(crate::time::realtime_ns()))
                } else {
                    ns
                }
            };
            futex::wait(task, uaddr, val, until, bits).map(|()| 0)
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            let bits = bitset(cmd == FUTEX_WAKE_BITSET, val3)?;
            // Linux wakes at least one, whatever the count (an int).
            let n = if (val as i32) <= 0 { 1 } else { val };
            futex::wake(task, uaddr, n, bits).map(u64::from)
        }
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            // Counts are ints: a negative one is EINVAL.
            let (n_wake, n_move) = (val as i32, timeout as u32 as i32);
            if n_wake < 0 || n_move < 0 {
                return Err(Errno::EINVAL);
            }
            let cmp = (cmd == FUTEX_CMP_REQUEUE).then_some(val3);
            futex::requeue(task, uaddr, uaddr2, n_wake as u32, n_move as u32, cmp).map(u64::from)
        }
        _ => Err(Errno::ENOSYS),
    }
}
