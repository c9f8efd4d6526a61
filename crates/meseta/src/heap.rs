//! Gives memory freed by bursts of work back to the kernel.
//!
//! glibc's malloc keeps freed chunks in its arenas (one per busy thread) and returns only the
//! top of the main heap on its own, so the memory a deployment used transiently (offers, task
//! descriptions, store writes, event JSON) stays resident long after it was freed: after 10,000
//! instances were placed, a master held ~100 MB resident of which ~40 MB was in use.
//! `malloc_trim(0)` releases the free pages inside every arena (`MADV_DONTNEED`) without moving
//! live data. A background thread of the master and agent processes calls it when the arenas
//! hold at least [`MIN_FREE`] bytes free and what is resident beyond the live heap has grown by
//! at least [`MIN_GROWTH`] since the last trim, checking every [`PERIOD`].
#![allow(unsafe_code)]

use std::time::Duration;

/// How often the arenas are looked at.
const PERIOD: Duration = Duration::from_secs(1);
/// Free bytes below which trimming is not worth a pass over the arenas.
const MIN_FREE: usize = 8 << 20;
/// Growth of the resident bytes beyond the live heap since the last trim before the next one.
const MIN_GROWTH: u64 = 4 << 20;

/// Starts the trimming thread (a no-op where the allocator is not glibc's).
pub fn start_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("heap-trim".into())
            .spawn(trim_loop);
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the heap trimming thread");
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_loop() {
    // Resident bytes beyond the live heap (code, stacks, free pages still mapped) after the
    // last trim; a trim is due once free pages have added MIN_GROWTH to it.
    let mut excess_after_trim: u64 = 0;
    loop {
        std::thread::sleep(PERIOD);
        let Some((rss, in_use, free)) = usage() else {
            return;
        };
        let excess = rss.saturating_sub(in_use);
        if free >= MIN_FREE && excess >= excess_after_trim.saturating_add(MIN_GROWTH) {
            // SAFETY: malloc_trim only releases pages of free chunks, under the arenas' locks;
            // live allocations are untouched.
            unsafe { libc::malloc_trim(0) };
            excess_after_trim = usage().map_or(excess, |(r, u, _)| r.saturating_sub(u));
        } else if excess < excess_after_trim {
            excess_after_trim = excess;
        }
    }
}

/// Resident bytes, heap bytes in use and heap bytes free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn usage() -> Option<(u64, u64, usize)> {
    let rss = resident_bytes()?;
    // SAFETY: mallinfo2 reads glibc's allocator statistics under the arenas' own locks; it
    // has no preconditions.
    let info = unsafe { libc::mallinfo2() };
    Some((rss, u64::try_from(info.uordblks).ok()?, info.fordblks))
}

/// The process's resident size (`/proc/self/statm`, second field, in pages).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    Some(pages * u64::try_from(page).ok()?)
}
