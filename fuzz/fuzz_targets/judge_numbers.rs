//! The judge on arbitrary numbers: up to four checks of any kind with any settings (finite,
//! huge, tiny, NaN, ±inf), judged alone and as a family, then scored. No panic; a verdict that
//! is not inconclusive rests only on finite numbers; an analysis passes only on evidence.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: canaryd_fuzz::inputs::Analysis| {
    let (checks, groups, scoring) = input.build();
    let _ = canaryd_fuzz::check_analysis(&checks, &groups, &scoring);
});
