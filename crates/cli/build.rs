//! Finds the protobuf descriptors envoy-types ships (`src/generated/types.bin`, every
//! Envoy API message) so that `proxy-config --offline` can write generated resources as
//! Envoy's own JSON. The file is the dependency's, located through `cargo metadata`, and
//! copied into OUT_DIR; nothing of it is kept in the repository. And, for release builds
//! linked by LLD, hands the linker `symbol-order.txt` ([`order_symbols`]).

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
/// functions spread over the 36 MB of text made 22-23 MB of it resident in a control plane
/// that runs 5.5 MB of it (docs/BENCHMARKS.md, "The code the control plane runs, laid out
/// together"). Only LLD takes a symbol ordering file: [`link_order::give_order`] says when it
/// is the linker. The list names functions as the toolchain that made it mangles them (Rust
/// 1.95.0, with this Cargo.lock): names a build does not have are skipped without a warning,
/// so a stale list, or another toolchain, lays out less and never fails a build.
/// `ISTHMUS_SYMBOL_ORDER=off` builds without it (to measure against). The same linker packs
/// the binary's relative relocations where the C library reads them
/// ([`link_order::pack_relocations`]).
fn order_symbols() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let list = manifest.join("symbol-order.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rerun-if-changed=build_support/link_order.rs");
    println!("cargo:rerun-if-env-changed=ISTHMUS_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=ISTHMUS_PACK_RELOCATIONS");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("PROFILE") != "release" {
        // What follows asks rustc twice; a debug build never gets the list.
        return;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let run = |args: &[&str]| {
        Command::new(&rustc)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let (target, rustflags) = (var("TARGET"), var("CARGO_ENCODED_RUSTFLAGS"));
    let rustc_version = run(&["-vV"]);
    let sysroot = PathBuf::from(run(&["--print", "sysroot"]).trim());
    let ships_lld = sysroot
        .join("lib/rustlib")
        .join(&target)
        .join("bin/gcc-ld/ld.lld")
        .is_file();
    let build = link_order::Build {
        release: var("PROFILE") == "release",
        off: var("ISTHMUS_SYMBOL_ORDER") == "off",
        target: &target,
        rustflags: &rustflags,
        linker_env: std::env::var_os("RUSTC_LINKER").is_some(),
        rustc_version: &rustc_version,
        ships_lld,
    };
    let glibc = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if link_order::pack_relocations(&build, &glibc, var("ISTHMUS_PACK_RELOCATIONS") == "off") {
        for arg in ["-z", "pack-relative-relocs"] {
            println!("cargo:rustc-link-arg-bins=-Xlinker");
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
    if !link_order::give_order(&build) || !list.is_file() {
        return;
    }
    // `-Xlinker` passes each argument whole (a `-Wl,` argument is split at commas).
    for arg in [
        format!("--symbol-ordering-file={}", list.display()),
        "--no-warn-symbol-ordering".to_string(),
    ] {
        println!("cargo:rustc-link-arg-bins=-Xlinker");
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
