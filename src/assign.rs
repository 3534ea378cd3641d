//! Sticky assignment of keys (users, sessions, tenants) to the baseline or the canary.
//!
//! This module owns the bucket a key falls into and nothing else: it reads no state, keeps no
//! table of assignments and does no I/O. Stickiness comes from the hash alone: a key's bucket
//! depends only on the salt and the key, so a key in the canary at 10% stays in at 25%.
//!
//! # The hash (a compatibility promise)
//! `bucket(salt, key) = fnv1a64(salt ++ ":" ++ key) % 10_000`, where `fnv1a64` is the 64-bit
//! FNV-1a hash (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`) over the UTF-8 bytes.
//! A key is in the canary when `bucket < weight * 100`. We implement FNV-1a here rather than use
//! Rust's `DefaultHasher`, whose output is allowed to change between releases: changing the hash
//! would move users between versions in the middle of a rollout. The pinned vectors in the tests
//! must never change.

use crate::rollout::Targeting;
use serde::{Deserialize, Serialize};

/// Number of buckets: weights are resolved to 0.01 percentage points.
pub const BUCKETS: u64 = 10_000;

/// Which version serves a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Baseline,
    Canary,
}

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// The key's bucket in `0..BUCKETS`: `fnv1a64(salt ++ ":" ++ key) % 10_000`.
pub fn bucket(salt: &str, key: &str) -> u16 {
    let mut input = Vec::with_capacity(salt.len() + 1 + key.len());
    input.extend_from_slice(salt.as_bytes());
    input.push(b':');
    input.extend_from_slice(key.as_bytes());
    // The remainder is below 10 000, so it always fits.
    (fnv1a64(&input) % BUCKETS) as u16
}

/// Which version serves `key` when the canary has `weight`% of traffic (values above 100 count
/// as 100). The deny list wins (never canary), then the allow list (always canary while the
/// weight is above 0), then the hash bucket.
pub fn assign(targeting: &Targeting, weight: u8, key: &str) -> Variant {
    if targeting.deny.iter().any(|k| k == key) {
        return Variant::Baseline;
    }
    if weight > 0 && targeting.allow.iter().any(|k| k == key) {
        return Variant::Canary;
    }
    let threshold = u16::from(weight.min(100)) * 100;
    if bucket(&targeting.salt, key) < threshold {
        Variant::Canary
    } else {
        Variant::Baseline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn bucket_hashes_salt_colon_key() {
        assert_eq!(
            u64::from(bucket("s", "k")),
            fnv1a64(b"s:k") % BUCKETS,
            "the salt and key are joined by one colon"
        );
        assert_ne!(bucket("a", "b:c"), bucket("a:b", "d"));
    }

    fn targeting(allow: &[&str], deny: &[&str]) -> Targeting {
        Targeting {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
            salt: "checkout-v2".to_string(),
        }
    }

    #[test]
    fn lists_and_bounds() {
        let t = targeting(&["alice", "both"], &["bob", "both"]);
        let cases: &[(&str, u8, Variant, &str)] = &[
            ("bob", 100, Variant::Baseline, "denied key never in canary"),
            ("both", 100, Variant::Baseline, "deny beats allow"),
            ("alice", 1, Variant::Canary, "allowed key in canary at 1%"),
            (
                "alice",
                0,
                Variant::Baseline,
                "nobody in canary at 0%, not even allowed keys",
            ),
            ("carol", 0, Variant::Baseline, "0% means baseline"),
            ("carol", 100, Variant::Canary, "100% means canary"),
            (
                "carol",
                250,
                Variant::Canary,
                "weights above 100 count as 100",
            ),
        ];
        for &(key, weight, want, why) in cases {
            assert_eq!(assign(&t, weight, key), want, "{why}");
        }
    }
}
