//! YAML read as every Isthmus reader reads it: serde-saphyr without comment events. Nothing
//! here reads comments, and with the events on the parser buffers them while it resolves a
//! collection entry and refuses a run of more than 96 ("too many buffered comments while
//! looking ahead"), so a valid file with a long comment block before a list item was
//! refused (found by the `yaml_fast` fuzz target).

/// Reads `text` (one YAML document) into `T`.
pub fn from_str<'de, T: serde::Deserialize<'de>>(text: &'de str) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, serde_saphyr::options! { emit_comments: false })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_comment_block_before_a_list_item_is_read() {
        let text = format!("hosts:\n{}- a.example.com\n", "# why\n".repeat(200));
        let v: serde_json::Value = super::from_str(&text).expect("valid YAML");
        assert_eq!(v["hosts"][0], "a.example.com");
        let refused = serde_saphyr::from_str::<serde_json::Value>(&text);
        assert!(
            refused.is_err(),
            "serde-saphyr's defaults now read it: this module may no longer be needed"
        );
    }
}
