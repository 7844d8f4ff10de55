//! What an object read from an API server keeps in memory, beside the same object read from
//! a registry file: measured with a counting allocator, live bytes after reading.
#![allow(unsafe_code)]

use isthmus_api::ObjectReader;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const PODS: usize = 5000;

fn api_pod(i: usize) -> serde_json::Value {
    let svc = format!("svc-{}", i / 10);
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{svc}-{}", i % 10), "namespace": "ns-0", "labels": {"app": svc}},
        "spec": {"serviceAccountName": svc},
        "status": {"podIP": format!("10.0.{}.{}", i / 250, i % 250 + 1), "phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

#[test]
fn an_object_from_the_api_keeps_no_more_than_one_from_a_file() {
    // From the API, through the reader the Kubernetes source uses.
    let values: Vec<serde_json::Value> = (0..PODS).map(api_pod).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let mut reader = ObjectReader::new();
    let kept: Vec<_> = values
        .iter()
        .map(|v| reader.read(v).expect("reads").0)
        .collect();
    let api = LIVE.load(Ordering::Relaxed) - before;
    drop(values);

    // From files, ten pods of a service per file, as `bench` writes them.
    let texts: Vec<String> = (0..PODS / 10)
        .map(|s| {
            (0..10)
                .map(|e| {
                    let i = s * 10 + e;
                    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: svc-{s}-{e}, namespace: ns-0, labels: {{app: svc-{s}}}}}\nspec: {{serviceAccountName: svc-{s}}}\nstatus: {{podIP: 10.0.{}.{}, phase: Running}}\n---\n", i / 250, i % 250 + 1)
                })
                .collect()
        })
        .collect();
    let before = LIVE.load(Ordering::Relaxed);
    let mut from_files = Vec::new();
    for t in &texts {
        let mut loaded =
            isthmus_api::load_str(t, Some(std::path::Path::new("/reg/ns-0/f.yaml")), "ns-0");
        for r in &mut loaded.resources {
            r.origin.forget_text();
        }
        from_files.extend(loaded.resources);
    }
    let files = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "{PODS} pods: {} bytes each from the API, {} bytes each from files",
        api / PODS as isize,
        files / PODS as isize
    );
    assert_eq!(kept.len(), from_files.len());
    // A file's pod keeps its place in the file (an `Arc` of 40 bytes); one from the API has
    // no origin to keep, so it must come out at least that much smaller, less rounding.
    assert!(
        api + (PODS as isize) * 32 <= files,
        "a pod from the API keeps {} bytes, one from a file {}",
        api / PODS as isize,
        files / PODS as isize
    );
}
