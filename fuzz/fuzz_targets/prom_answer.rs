//! A Prometheus HTTP answer (a status, 200 unless a first byte from 1 to 8 says otherwise, and the body): the byte-level
//! matrix reader and the JSON-tree reader agree wherever the fast one reads; errors are
//! bounded and typed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A first byte from 1 to 8 chooses another status than 200 (and is not part of the body).
    let (status, body) = match data.split_first() {
        Some((&s, body)) if (1..=8).contains(&s) => {
            (canaryd_fuzz::inputs::status_from_byte(s), body)
        }
        _ => (200, data),
    };
    let _ = canaryd_fuzz::check_prom_answer(status, body);
});
