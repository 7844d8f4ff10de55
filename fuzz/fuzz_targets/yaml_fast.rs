//! The fast YAML reader against the full parser: whatever document the fast reader takes,
//! serde-saphyr must read to the same tree (the fast reader answers `None`, never a
//! different tree, for what it is not certain of).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(fast) = isthmus_api::fast_yaml::parse(text) {
            let full: Result<serde_json::Value, _> = isthmus_api::yaml::from_str(text);
            match full {
                Ok(full) => assert_eq!(fast, full, "the fast reader differs on {text:?}"),
                Err(e) => panic!("the fast reader took what the full parser refuses ({e}): {text:?}"),
            }
        }
    }
});
