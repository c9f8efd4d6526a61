//! The process's memory allocator: jemalloc, returning freed memory to the kernel in servers.
//!
//! A master places thousands of tasks in bursts: offers, task descriptions, store writes and
//! event JSON live for a moment, long-lived task records are allocated among them. glibc's
//! malloc left those records scattered over pages that stayed resident once the burst was over
//! (10,000 tasks cost a master ~4.3 KiB each in resident memory, of which ~2.1 KiB was live,
//! even with `malloc_trim` after every burst). jemalloc keeps each size class in its own slabs
//! and allocates from the lowest free slot, so the same burst leaves far fewer half-empty pages
//! (~3 KiB per task on the same run), and it is faster under the master's many small
//! allocations.
//!
//! jemalloc gives unused pages back only when it is called (or from its own background
//! thread) after they have been unused for a decay time. [`configure_for_server`] turns the
//! background thread on and shortens the decay for long-running master and agent processes; the
//! CLI and the task shim keep jemalloc's defaults and no extra thread (the shim forks, and
//! stays single-threaded until it does).
//!
//! Built with the `heap-profile` feature, a server answers SIGUSR2 by printing jemalloc's
//! totals (allocated, active, resident, metadata, retained) to stderr, writing its full
//! statistics to `$TMPDIR/meseta-heap.<pid>.<n>.stats` and, when the process was started with
//! `_RJEM_MALLOC_CONF=prof:true,...`, dumping a sampled heap profile that `jeprof` reads (where
//! the live bytes were allocated, by call stack).
#![allow(unsafe_code)]

use std::time::Duration;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (its `malloc_conf` global; `_RJEM_MALLOC_CONF` in
/// the environment still overrides them). One arena instead of jemalloc's default of four per
/// CPU: a master's threads take turns on one core lock anyway, and each extra arena keeps its
/// own partly used slabs after a burst. With 100,000 instances placed on 10,000 agents the
/// master's resident memory when all ran was 258–281 MiB with one arena against 294–300 MiB
/// with the default, at the same placement and launch rates.
#[used]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: Option<&'static std::ffi::c_char> = Some(OPTIONS);

/// The option string [`MALLOC_CONF`] points at (NUL-terminated).
// SAFETY: a pointer to the first byte of a static C string literal is valid for 'static.
const OPTIONS: &std::ffi::c_char = unsafe { &*c"narenas:1".as_ptr() };

/// How long freed pages stay mapped before the background thread returns them (jemalloc's
/// default is 10 s, which keeps a burst's pages resident long after it). Placing 100,000
/// instances on 10,000 agents, the master's resident memory when all ran was 286-328 MiB with
/// 1 s, of which ~70 MiB were pages already freed; 240-313 MiB with 300 ms (six runs; 222-233
/// MiB five seconds later), and 218-253 MiB with 100 ms (three runs), at the same placement
/// rates.
const DIRTY_DECAY: Duration = Duration::from_millis(100);

/// Shortens jemalloc's decay and starts its background purging thread. Failures are logged:
/// the process runs correctly without them, only with more resident memory.
pub fn configure_for_server() {
    if let Err(e) = set_decay(DIRTY_DECAY) {
        tracing::warn!(error = %e, "cannot set the allocator's decay time");
    }
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "cannot start the allocator's background thread");
    }
    #[cfg(feature = "heap-profile")]
    if let Err(e) = profile::arm() {
        tracing::warn!(error = %e, "cannot arm the heap profile on SIGUSR2");
    }
}

/// Sets the dirty decay of arenas created from now on and of those that exist; muzzy pages
/// (already advised away but still mapped) are released at once.
fn set_decay(dirty: Duration) -> Result<(), tikv_jemalloc_ctl::Error> {
    let dirty_ms = isize::try_from(dirty.as_millis()).unwrap_or(isize::MAX);
    // SAFETY: these mallctl names take an ssize_t, which is what isize is on every target
    // jemalloc supports; writing them only changes purging policy.
    unsafe {
        tikv_jemalloc_ctl::raw::write(b"arenas.dirty_decay_ms\0", dirty_ms)?;
        tikv_jemalloc_ctl::raw::write(b"arenas.muzzy_decay_ms\0", 0isize)?;
    }
    let narenas = tikv_jemalloc_ctl::arenas::narenas::read()?;
    for i in 0..narenas {
        // Arenas not created yet answer an error; they will take the defaults set above.
        let dirty = format!("arena.{i}.dirty_decay_ms\0");
        let muzzy = format!("arena.{i}.muzzy_decay_ms\0");
        // SAFETY: as above.
        unsafe {
            let _ = tikv_jemalloc_ctl::raw::write(dirty.as_bytes(), dirty_ms);
            let _ = tikv_jemalloc_ctl::raw::write(muzzy.as_bytes(), 0isize);
        }
    }
    Ok(())
}

/// Heap statistics and profiles on SIGUSR2 (the `heap-profile` feature).
#[cfg(feature = "heap-profile")]
mod profile {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// How often the dumping thread looks at the signal flag.
    const POLL: Duration = Duration::from_millis(100);

    /// Installs the SIGUSR2 flag and the thread that dumps when it is set.
    pub(super) fn arm() -> std::io::Result<()> {
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR2, Arc::clone(&flag))?;
        std::thread::Builder::new()
            .name("heap-profile".into())
            .spawn(move || {
                let mut n = 0u32;
                loop {
                    std::thread::sleep(POLL);
                    if flag.swap(false, Ordering::Relaxed) {
                        dump(n);
                        n += 1;
                    }
                }
            })?;
        Ok(())
    }

    /// One dump: totals to stderr, full statistics to a file, a profile if profiling is on.
    fn dump(n: u32) {
        use tikv_jemalloc_ctl::{epoch, stats};
        const MIB: f64 = 1024.0 * 1024.0;
        let _ = epoch::advance();
        let read = |r: tikv_jemalloc_ctl::Result<usize>| r.map_or(f64::NAN, |v| v as f64 / MIB);
        eprintln!(
            "heap: allocated {:.1} MiB, active {:.1} MiB, resident {:.1} MiB, metadata {:.1} MiB, \
             mapped {:.1} MiB, retained {:.1} MiB",
            read(stats::allocated::read()),
            read(stats::active::read()),
            read(stats::resident::read()),
            read(stats::metadata::read()),
            read(stats::mapped::read()),
            read(stats::retained::read()),
        );
        let path =
            std::env::temp_dir().join(format!("meseta-heap.{}.{n}.stats", std::process::id()));
        match std::fs::File::create(&path) {
            Ok(f) => {
                if let Err(e) = tikv_jemalloc_ctl::stats_print::stats_print(f, Default::default()) {
                    eprintln!("heap: cannot write {}: {e}", path.display());
                } else {
                    eprintln!("heap: statistics in {}", path.display());
                }
            }
            Err(e) => eprintln!("heap: cannot create {}: {e}", path.display()),
        }
        if tikv_jemalloc_ctl::profiling::prof::read().unwrap_or(false) {
            // SAFETY: prof.dump takes a `const char *` file name; null means the default
            // name (`<prof_prefix>.<pid>.<seq>.m<n>.heap`).
            let r = unsafe {
                tikv_jemalloc_ctl::raw::write(b"prof.dump\0", std::ptr::null::<std::ffi::c_char>())
            };
            match r {
                Ok(()) => eprintln!("heap: profile dumped (prof_prefix)"),
                Err(e) => eprintln!("heap: cannot dump the profile: {e}"),
            }
        }
    }
}
