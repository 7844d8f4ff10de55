//! Finds the protobuf descriptors envoy-types ships (`src/generated/types.bin`, every
//! Envoy API message) so that `proxy-config --offline` can write generated resources as
//! Envoy's own JSON. The file is the dependency's, located through `cargo metadata`, and
//! copied into OUT_DIR; nothing of it is kept in the repository.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    order_symbols();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    // Only this platform's packages (the others' are never downloaded); `--locked`: the
    // versions Cargo.lock names, the ones being built.
    let target = std::env::var("TARGET").expect("TARGET");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", &target])
        .arg("--manifest-path")
        .arg(manifest.join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let envoy_types = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .map(PathBuf::from)
        .expect("envoy-types among the dependencies");
    let descriptors = envoy_types
        .parent()
        .expect("a manifest's folder")
        .join("src/generated/types.bin");
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("envoy-types.bin");
    std::fs::copy(&descriptors, &target)
        .unwrap_or_else(|e| panic!("copying {}: {e}", descriptors.display()));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", descriptors.display());
}

/// The functions the control plane runs, listed in `symbol-order.txt` (made by
/// `scripts/symbol-order.sh`), are laid out first and together in the release binary's text.
///
/// The kernel maps a binary's code into a process in blocks around each page it runs, so
/// functions spread over the 36 MB of text made some 22 MB of it resident in a control plane
/// that runs about 5 MB of it (docs/BENCHMARKS.md, "The code the control plane runs, laid
/// out together"). Only LLD takes a symbol ordering file; it is the default linker of Rust
/// 1.90 and later on x86_64 Linux, so the list is given only there, in release builds, and
/// when no other linker is chosen. Names the build no longer has are skipped without a
/// warning: a stale list lays out less, never fails a build. `ISTHMUS_SYMBOL_ORDER=off`
/// builds without it (to measure against).
fn order_symbols() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let list = manifest.join("symbol-order.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rerun-if-env-changed=ISTHMUS_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let off = std::env::var("ISTHMUS_SYMBOL_ORDER").as_deref() == Ok("off");
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let other_linker = flags.contains("linker")
        || flags.contains("fuse-ld")
        || std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some();
    if !release
        || off
        || target != "x86_64-unknown-linux-gnu"
        || other_linker
        || !rustc_links_with_lld()
        || !list.is_file()
    {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether the compiler is Rust 1.90 or later (which links x86_64 Linux binaries with its
/// own LLD by default).
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(release) = text.lines().find_map(|l| l.strip_prefix("release: ")) else {
        return false;
    };
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
