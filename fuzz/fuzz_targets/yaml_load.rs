//! The YAML loader: any text a user's file (or a ConfigMap) may hold is read into
//! resources and diagnostics, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let loaded = isthmus_api::load_str(text, None, "default");
        // Every diagnostic renders.
        for d in &loaded.diagnostics {
            let _ = d.to_string();
        }
    }
});
