//! Giving freed memory back to the system after a large read.
//!
//! A complete list from an API server parses every object as a JSON tree before keeping its
//! small typed form; the trees are freed at once, but glibc's allocator keeps the freed
//! pages of its arenas (one per thread that allocated) mapped, so the resident set would
//! stay at the peak of the read. `malloc_trim` hands them back.

/// Returns the allocator's free pages to the system (glibc on Linux; nothing elsewhere).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only releases memory that is already free; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The size from which glibc maps a block on its own: its default, kept fixed by
/// [`keep_large_blocks_mapped`].
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Keeps every block of [`MMAP_THRESHOLD`] or more mapped on its own, for the process's life
/// (glibc on Linux; nothing elsewhere, nor when `GLIBC_TUNABLES` sets the threshold).
///
/// glibc raises the threshold to the size of any mapped block freed, up to 32 MB. A page of
/// an API server's list (500 objects, a few MB of JSON, copied twice) is such a block: after
/// the first, the next ones come from the arena of the thread that reads them, the arena
/// grows by that much, and the objects parsed meanwhile, some of which live on, are placed
/// among them. Once the list is read, the freed memory is in pieces between those objects that
/// `malloc_trim` cannot return: about 1 MB per remote cluster read. Mapped, a large block goes
/// back to the system when it is freed. The blocks the xDS server encodes for a proxy are
/// below the threshold or are large messages that it writes and frees once; measured, the
/// push costs the same CPU (docs/BENCHMARKS.md).
pub fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if threshold_tuned() {
            return;
        }
        #[allow(unsafe_code)]
        // SAFETY: mallopt sets an allocator parameter; it takes no pointer. The value fits
        // an int.
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
        if set != 1 {
            tracing::debug!("the allocator's mmap threshold could not be fixed");
        }
    }
}

/// Whether `GLIBC_TUNABLES` sets the mmap threshold (then the process keeps that one).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn threshold_tuned() -> bool {
    std::env::var("GLIBC_TUNABLES")
        .is_ok_and(|t| tunable(&t, "glibc.malloc.mmap_threshold").is_some())
}

/// The value `tunables` (a `GLIBC_TUNABLES` value: `name=value` entries separated by `:`)
/// gives `name`.
fn tunable<'a>(tunables: &'a str, name: &str) -> Option<&'a str> {
    tunables.split(':').find_map(|entry| {
        let (n, value) = entry.trim().split_once('=')?;
        (n == name).then_some(value)
    })
}

/// The tunable that says how many freed blocks of a size a thread caches.
const TCACHE_COUNT: &str = "glibc.malloc.tcache_count";

/// The `GLIBC_TUNABLES` entry that turns glibc's per-thread cache of freed blocks off.
pub const NO_THREAD_CACHE: &str = "glibc.malloc.tcache_count=0";

/// The `GLIBC_TUNABLES` value the control plane runs with, given the current one: the
/// current entries and [`NO_THREAD_CACHE`]; `None` when the current value already says how
/// many blocks a thread caches (the user's choice stays).
///
/// glibc puts a freed block of up to 1 KB in the freeing thread's cache, up to seven of a
/// size, whatever arena it came from, and that thread's next allocation of the size takes it
/// from there, without the arena's ordering. The control plane's threads hand each other
/// what they made: the watchers' JSON to the reader thread, the reader's objects to the
/// model, the model's snapshots to the xDS workers. Cached, such blocks came back as objects
/// kept in another thread's arena, among what it had parsed and freed: holes that the
/// arenas could not give back, 0.4-0.5 MB per remote cluster of 4,000 pods. Without the
/// cache every block goes back to its own arena at once. Measured, the push to 1,000
/// proxies took 10-20% more CPU than a run with the cache in the same hour, at or above the
/// spread of earlier runs (docs/BENCHMARKS.md).
/// The tunable is read only when a process starts, hence [`restart_without_thread_cache`].
pub fn tunables_without_thread_cache(current: Option<&str>) -> Option<String> {
    match current.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) if tunable(c, TCACHE_COUNT).is_some() => None,
        Some(c) => Some(format!("{c}:{NO_THREAD_CACHE}")),
        None => Some(NO_THREAD_CACHE.to_string()),
    }
}

/// Set in the environment of the process [`restart_without_thread_cache`] starts: it never
/// starts itself a second time, even where the loader drops `GLIBC_TUNABLES` (a setuid or
/// file-capability binary), which would otherwise restart it forever.
pub const RESTARTED_ENV: &str = "ISTHMUS_RESTARTED_WITHOUT_THREAD_CACHE";

/// Starts this process again in its place (same PID, same arguments, the running binary
/// even if its file was replaced), with glibc's thread cache off
/// ([`tunables_without_thread_cache`]). Returns `Ok` without doing so when it runs so
/// already, when the user set the cache's count, when `GLIBC_TUNABLES` is not UTF-8 (left
/// as the user wrote it), or when this process is itself such a restart ([`RESTARTED_ENV`]);
/// an error when the start failed, and then the process goes on as it is. Must be called
/// before any thread is started. Linux with glibc only; a no-op elsewhere.
///
/// A profiler that does not follow `exec` (valgrind without `--trace-children=yes`,
/// heaptrack) sees only the first process: give it `GLIBC_TUNABLES` with the count set.
pub fn restart_without_thread_cache() -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt as _;
        if std::env::var_os(RESTARTED_ENV).is_some() {
            return Ok(());
        }
        let current = match std::env::var("GLIBC_TUNABLES") {
            Ok(t) => Some(t),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => return Ok(()),
        };
        let Some(tunables) = tunables_without_thread_cache(current.as_deref()) else {
            return Ok(());
        };
        let mut args = std::env::args_os();
        // The running image, also when its file was deleted or replaced since.
        let mut command = std::process::Command::new("/proc/self/exe");
        if let Some(name) = args.next() {
            command.arg0(name);
        }
        Err(command
            .args(args)
            .env("GLIBC_TUNABLES", tunables)
            .env(RESTARTED_ENV, "1")
            .exec())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        Ok(())
    }
}

/// Whether glibc's per-thread cache is off in this process ([`NO_THREAD_CACHE`] in
/// `GLIBC_TUNABLES`, read at its start); never elsewhere than on Linux with glibc.
pub fn thread_cache_off() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        std::env::var("GLIBC_TUNABLES").is_ok_and(|t| tunable(&t, TCACHE_COUNT) == Some("0"))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`: in-use bytes
/// of every arena, and of large blocks mapped on their own): the memory the process holds
/// live, which the resident set exceeds by what the allocator keeps free for later.
/// `None` where the allocator cannot say.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallinfo2 takes nothing and returns a plain struct by value.
    {
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Adds `isthmus_heap_in_use_bytes` ([`heap_in_use`], read when scraped; no sample where
/// it is unknown) to `registry`.
pub fn register(registry: &prometheus::Registry) -> prometheus::Result<()> {
    registry.register(Box::new(crate::metrics::ReadWhenScraped::new(
        "isthmus_heap_in_use_bytes",
        "Bytes the allocator has handed out and not had back.",
        &[],
        |g: &prometheus::IntGaugeVec| {
            if let Some(b) = heap_in_use() {
                g.with_label_values(&[] as &[&str])
                    .set(crate::metrics::gauge_value(b));
            }
        },
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_cache_is_turned_off_unless_the_user_set_it() {
        assert_eq!(
            tunables_without_thread_cache(None).as_deref(),
            Some("glibc.malloc.tcache_count=0")
        );
        assert_eq!(
            tunables_without_thread_cache(Some("  ")).as_deref(),
            Some("glibc.malloc.tcache_count=0")
        );
        assert_eq!(
            tunables_without_thread_cache(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0")
        );
        // Set either way by the user: kept, and no restart (which would loop otherwise).
        assert_eq!(
            tunables_without_thread_cache(Some("glibc.malloc.tcache_count=7")),
            None
        );
        assert_eq!(
            tunables_without_thread_cache(Some(
                "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"
            )),
            None
        );
        // Another tunable whose name merely contains the word is not the cache's count.
        assert_eq!(
            tunables_without_thread_cache(Some("glibc.malloc.tcache_max=64")).as_deref(),
            Some("glibc.malloc.tcache_max=64:glibc.malloc.tcache_count=0")
        );
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    fn a_large_block_stays_mapped_after_a_larger_one_is_freed() {
        if threshold_tuned() {
            eprintln!("GLIBC_TUNABLES sets the mmap threshold: the process keeps that one");
            return;
        }
        keep_large_blocks_mapped();
        const MB: usize = 1 << 20;
        // SAFETY: blocks from malloc, each asked its usable size while held and freed once.
        let usable = unsafe {
            // Without the fixed threshold, freeing this raises it to 4 MB...
            let larger = libc::malloc(4 * MB);
            assert!(!larger.is_null());
            libc::free(larger);
            // ...and this one would come from an arena.
            let block = libc::malloc(MB);
            assert!(!block.is_null());
            let usable = libc::malloc_usable_size(block);
            libc::free(block);
            usable
        };
        // A block mapped on its own is whole pages (MB + 4080 usable); one from an arena is
        // the size asked, rounded to 16 bytes (MB + 8).
        assert!(
            usable > MB + 1024,
            "a 1 MB block came from an arena ({usable} usable)"
        );
    }

    #[test]
    fn heap_in_use_grows_with_what_is_held() {
        let Some(before) = heap_in_use() else { return };
        // Large beside whatever the tests running at the same time allocate or free.
        let held = vec![7u8; 256 << 20];
        let during = heap_in_use().unwrap_or_default();
        assert!(during >= before + (128 << 20), "{before} -> {during}");
        assert_eq!(held[held.len() - 1], 7);
        drop(held);
        let registry = prometheus::Registry::new();
        register(&registry).expect("register");
        let text = crate::metrics::encode(&registry);
        assert!(text.contains("isthmus_heap_in_use_bytes "), "{text}");
    }
}
