//! The crate's modules use only modules below them in the layers its lib.rs documents
//! (see isthmus-layers).

#[test]
fn modules_use_only_the_layers_below_them() {
    isthmus_layers::check(env!("CARGO_MANIFEST_DIR"));
}
