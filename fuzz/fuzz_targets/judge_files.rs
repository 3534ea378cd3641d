//! `canaryd judge` on two data files: the first two bytes choose the check (kind, direction,
//! settings), the rest is the baseline file's text, then after a NUL byte the canary's (without
//! one, both sides read the same text). Bad lines are errors naming the line; verdicts are
//! sound (see `canaryd_fuzz::assert_result_sound`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (baseline, canary) = text.split_once('\0').unwrap_or((&text, &text));
    let spec = canaryd_fuzz::inputs::spec_from_bytes(*a, *b);
    let _ = canaryd_fuzz::check_judge_texts(&spec, baseline, canary);
});
