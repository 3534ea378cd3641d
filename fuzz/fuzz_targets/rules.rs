//! Rule files: any text through parsing and validation. Every refusal names file:line:col;
//! every accepted rule is one the daemon can run (see `canaryd_fuzz::assert_rule_usable`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = canaryd_fuzz::check_rule_text(text);
    }
});
