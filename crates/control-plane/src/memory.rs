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
