//! Finds the protobuf descriptors envoy-types ships (`src/generated/types.bin`, every
//! Envoy API message) so that `proxy-config --offline` can write generated resources as
//! Envoy's own JSON. The file is the dependency's, located through `cargo metadata`, and
//! copied into OUT_DIR; nothing of it is kept in the repository.

use std::path::PathBuf;
use std::process::Command;

#[path = "build_support/link_order.rs"]
#[allow(dead_code)]
mod link_order;

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
/// out together"). Only LLD takes a symbol ordering file: [`link_order::give_order`] says
/// when it is the linker. Names the build no longer has are skipped without a warning: a
/// stale list lays out less, never fails a build. `ISTHMUS_SYMBOL_ORDER=off` builds without
/// it (to measure against).
fn order_symbols() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let list = manifest.join("symbol-order.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rerun-if-changed=build_support/link_order.rs");
    println!("cargo:rerun-if-env-changed=ISTHMUS_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("-vV")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let (target, rustflags) = (var("TARGET"), var("CARGO_ENCODED_RUSTFLAGS"));
    let build = link_order::Build {
        release: var("PROFILE") == "release",
        off: var("ISTHMUS_SYMBOL_ORDER") == "off",
        target: &target,
        rustflags: &rustflags,
        linker_env: std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some(),
        rustc_version: &rustc_version,
    };
    if !link_order::give_order(&build) || !list.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
