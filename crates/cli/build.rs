//! Finds the protobuf descriptors envoy-types ships (`src/generated/types.bin`, every
//! Envoy API message) so that `proxy-config --offline` can write generated resources as
//! Envoy's own JSON. The file is the dependency's, located through `cargo metadata`, and
//! copied into OUT_DIR; nothing of it is kept in the repository.

use std::path::PathBuf;
use std::process::Command;

fn main() {
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
