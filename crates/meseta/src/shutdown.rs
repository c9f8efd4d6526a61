//! Stopping servers on SIGTERM or Ctrl-C.
//!
//! The async side drains gracefully (streams closed, tasks killed or left to a restarted agent).
//! Beside it a watchdog on a plain OS thread, which needs no async runtime, ends the process when
//! the grace period after the first signal runs out, so a stalled runtime cannot keep a server
//! alive; a second signal ends it at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

/// How often the watchdog looks at the signal flag.
const POLL: Duration = Duration::from_millis(50);

/// Arms the watchdog: after the first SIGTERM/SIGINT, `grace` for the graceful stop; a second
/// signal exits with status 130 at once.
pub fn arm_watchdog(grace: Duration) -> anyhow::Result<()> {
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // Order matters: the conditional exit looks at the flag before this signal sets it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&signalled))
            .context("installing the second-signal handler")?;
        signal_hook::flag::register(sig, Arc::clone(&signalled))
            .context("installing the signal handler")?;
    }
    std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            watch(&signalled, grace, POLL);
            eprintln!(
                "error: did not stop within the {}s grace period after the signal; exiting",
                grace.as_secs_f64()
            );
            std::process::exit(1);
        })
        .context("starting the shutdown watchdog")?;
    Ok(())
}

/// Returns `grace` after `flag` is first seen set.
fn watch(flag: &AtomicBool, grace: Duration, poll: Duration) {
    while !flag.load(Ordering::SeqCst) {
        std::thread::sleep(poll);
    }
    std::thread::sleep(grace);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_watch_ends_a_grace_period_after_the_flag() {
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            f.store(true, Ordering::SeqCst);
        });
        let start = Instant::now();
        watch(&flag, Duration::from_millis(40), Duration::from_millis(5));
        // At least the delay before the flag plus the grace: never early.
        assert!(start.elapsed() >= Duration::from_millis(70));
        setter.join().expect("setter");
    }
}
