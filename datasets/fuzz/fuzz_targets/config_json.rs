#![no_main]

//! `config.json`: any bytes parse to a config or an error; a config that validates has the
//! invariants the model relies on, and survives a save/parse round trip.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = bert::BertConfig::from_json_str(text) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    assert!(config.vocab_size > 0 && config.num_attention_heads > 0);
    assert_eq!(config.hidden_size % config.num_attention_heads, 0);
    assert!(config.pad_token_id.is_none_or(|p| p < config.vocab_size));
    let again = bert::BertConfig::from_json_str(&config.to_json_string()).expect("round trip");
    assert!(again.validate().is_ok());
    assert_eq!(again.hidden_size, config.hidden_size);
    assert_eq!(again.num_labels(), config.num_labels());
});
