//! Signal plumbing of the shim: SIGTERM/SIGINT/SIGHUP/SIGCHLD are blocked and consumed
//! synchronously with `sigtimedwait`, so no async handlers exist. SIGPIPE is ignored so the shim
//! survives its agent's death. Children get a clean mask (std resets it after fork).

use std::time::Duration;

use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};

const WATCHED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGCHLD,
];

fn watched_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in WATCHED {
        set.add(s);
    }
    set
}

/// Block the watched signals and ignore SIGPIPE. Call before spawning anything.
pub(crate) fn setup() {
    let _ = signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched_set()), None);
    // SAFETY: installing SIG_IGN runs no handler code, so there is no reentrancy concern.
    unsafe {
        let _ = signal::signal(Signal::SIGPIPE, SigHandler::SigIgn);
    }
}

/// Wait up to `timeout` for a watched signal; returns its number, or None on timeout/EINTR.
pub(crate) fn wait(timeout: Duration) -> Option<i32> {
    let set = watched_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the duration of the call; a null siginfo pointer is
    // allowed by sigtimedwait(2).
    let rc = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    (rc > 0).then_some(rc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_times_out_without_signal() {
        // Only this test's thread blocks the set; a short timeout must return None.
        let _ = signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&watched_set()), None);
        assert_eq!(wait(Duration::from_millis(5)), None);
    }

    #[test]
    fn wait_returns_pending_signal() {
        let _ = signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&watched_set()), None);
        // Thread-directed so the other test threads are unaffected.
        // SAFETY: pthread_self() is always a valid thread handle for the calling thread.
        let rc = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGHUP) };
        assert_eq!(rc, 0);
        assert_eq!(wait(Duration::from_millis(100)), Some(libc::SIGHUP));
    }
}
