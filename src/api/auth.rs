//! API tokens: the token file, hashing, and deciding who may do what.
//!
//! # The token file
//! Set `server.token_file` in `canaryd.toml`. One token per line, `#` starts a comment:
//!
//! ```text
//! # name  role   sha256 of the token, hex
//! alice   admin  5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//! grafana read   9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```
//!
//! `admin` tokens may read and change rollouts; `read` tokens may only read. Only hashes are
//! stored, so the file gives nobody a token; `canaryd token new NAME --role admin` prints a fresh
//! token once, with the line to add. The name is what the audit trail records as who did it.
//! The file is checked on every request that presents a token (by modification time and size),
//! so edits apply at once, no SIGHUP needed; a file that became unreadable or invalid keeps the
//! last good tokens and is logged.
//!
//! This module owns parsing (pure, every problem with its line), SHA-256 (implemented here: a
//! 60-line function checked against the FIPS 180-4 vectors, rather than a new dependency), the
//! constant-time comparison of hashes and the reload-on-change. It decides nothing about HTTP
//! status codes beyond [`Denied`].

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read rollouts, history, analyses.
    Read,
    /// Read, and give commands (pause, resume, ..., emergency stop).
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "read" => Some(Role::Read),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// One line of the token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    pub hash: [u8; 32],
}

/// Why the token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {path} is not valid:\n{}", .problems.join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Parse the token file's text; every problem at once, each with `path:line`. Pure.
pub fn parse_tokens(path: &Path, text: &str) -> Result<Vec<TokenEntry>, TokenFileError> {
    let mut entries: Vec<TokenEntry> = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, role, hash] = fields[..] else {
            problems.push(format!(
                "{at}: expected `NAME ROLE SHA256-HEX`, found {} field(s)",
                fields.len()
            ));
            continue;
        };
        let Some(role) = Role::parse(role) else {
            problems.push(format!(
                "{at}: unknown role `{role}`; use `admin` or `read`"
            ));
            continue;
        };
        let Some(hash) = parse_hex32(hash) else {
            problems.push(format!(
                "{at}: `{hash}` is not a SHA-256 in hex (64 hex digits); \
                 `canaryd token new {name}` prints the line to add"
            ));
            continue;
        };
        if entries.iter().any(|e| e.name == name) {
            problems.push(format!(
                "{at}: the name `{name}` is used twice; names identify people in the audit trail"
            ));
            continue;
        }
        entries.push(TokenEntry {
            name: name.to_string(),
            role,
            hash,
        });
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(TokenFileError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compare two hashes in time independent of where they differ.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// SHA-256 of `data` (FIPS 180-4).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut message = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (slot, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *slot = slot.wrapping_add(v);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// A fresh random token: 32 bytes from `/dev/urandom`, in hex.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex(&bytes))
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, an unknown one, or no token file configured: 401.
    Unauthenticated(String),
    /// A known token whose role does not allow this: 403.
    Forbidden(String),
}

/// Who a request is from, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Default)]
struct Loaded {
    entries: Vec<TokenEntry>,
    /// Modification time and size of the file the entries came from.
    stamp: Option<(SystemTime, u64)>,
}

/// The daemon's tokens, re-read when the file changes.
#[derive(Debug)]
pub struct Tokens {
    path: Option<PathBuf>,
    loaded: RwLock<Loaded>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Tokens {
    /// No token file: every authenticated request is refused.
    pub fn none() -> Self {
        Tokens {
            path: None,
            loaded: RwLock::new(Loaded::default()),
        }
    }

    /// Load the token file at start; an unreadable or invalid file is an error then.
    pub fn load(path: Option<&Path>) -> Result<Self, TokenFileError> {
        let Some(path) = path else {
            return Ok(Tokens::none());
        };
        let before = stamp(path);
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let entries = parse_tokens(path, &text)?;
        Ok(Tokens {
            path: Some(path.to_path_buf()),
            loaded: RwLock::new(Loaded {
                entries,
                stamp: before,
            }),
        })
    }

    /// Re-read the file if its modification time or size changed. A bad file keeps the old
    /// tokens.
    pub fn refresh(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let now = stamp(path);
        let known = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stamp;
        if now == known {
            return;
        }
        let parsed = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read {
                path: path.clone(),
                source,
            })
            .and_then(|text| parse_tokens(path, &text));
        let mut loaded = self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loaded.stamp = now;
        match parsed {
            Ok(entries) => {
                tracing::info!(file = %path.display(), tokens = entries.len(), "Reloaded the API tokens.");
                loaded.entries = entries;
            }
            Err(e) => {
                tracing::error!(error = %e, "The token file changed but cannot be used; keeping the previous tokens.");
            }
        }
    }

    /// Who presents `token`, if anybody. Every entry is compared, in constant time each.
    pub fn identify(&self, token: &str) -> Option<Caller> {
        self.refresh();
        let hash = sha256(token.as_bytes());
        let loaded = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = None;
        for entry in &loaded.entries {
            if constant_time_eq(&entry.hash, &hash) && found.is_none() {
                found = Some(Caller {
                    name: entry.name.clone(),
                    role: entry.role,
                });
            }
        }
        found
    }

    /// Decide on a request that needs `need`, given its `Authorization` header value.
    pub fn authorize(&self, header: Option<&str>, need: Role) -> Result<Caller, Denied> {
        if self.path.is_none() {
            return Err(Denied::Unauthenticated(
                "this needs an API token, and the daemon has none configured: set \
                 `server.token_file` in canaryd.toml (see `canaryd token new --help`)"
                    .to_string(),
            ));
        }
        let Some(header) = header else {
            return Err(Denied::Unauthenticated(
                "this needs an API token: send `Authorization: Bearer <token>`".to_string(),
            ));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(Denied::Unauthenticated(
                "the Authorization header must be `Bearer <token>`".to_string(),
            ));
        };
        let Some(caller) = self.identify(token) else {
            return Err(Denied::Unauthenticated("unknown API token".to_string()));
        };
        if need == Role::Admin && caller.role != Role::Admin {
            return Err(Denied::Forbidden(format!(
                "the token `{}` is read-only; this needs an admin token",
                caller.name
            )));
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_fips_vectors() {
        let cases: [(&[u8], &str); 3] = [
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex(&sha256(input)), want);
        }
        // Lengths around the padding boundary.
        let long = vec![b'a'; 1_000_000];
        assert_eq!(
            hex(&sha256(&long)),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn the_token_file_reports_every_bad_line_with_its_number() {
        let good = hex(&sha256(b"x"));
        let text = format!(
            "# comment\nalice admin {good}\n\nbob root {good}\ncarol read abc\nalice read {good}\ndave\n"
        );
        let err = parse_tokens(Path::new("tokens"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokens:4: unknown role `root`"), "{err}");
        assert!(err.contains("tokens:5: `abc` is not a SHA-256"), "{err}");
        assert!(
            err.contains("tokens:6: the name `alice` is used twice"),
            "{err}"
        );
        assert!(
            err.contains("tokens:7: expected `NAME ROLE SHA256-HEX`"),
            "{err}"
        );
    }

    #[test]
    fn tokens_are_identified_and_roles_enforced() {
        let dir = std::env::temp_dir().join(format!("canaryd-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(
            &path,
            format!(
                "alice admin {}\ngraf read {}\n",
                hex(&sha256(b"s3cret")),
                hex(&sha256(b"look"))
            ),
        )
        .unwrap();
        let tokens = Tokens::load(Some(&path)).unwrap();
        let alice = tokens
            .authorize(Some("Bearer s3cret"), Role::Admin)
            .unwrap();
        assert_eq!(alice.name, "alice");
        assert!(matches!(
            tokens.authorize(Some("Bearer look"), Role::Admin),
            Err(Denied::Forbidden(_))
        ));
        assert!(tokens.authorize(Some("Bearer look"), Role::Read).is_ok());
        assert!(matches!(
            tokens.authorize(Some("Bearer nope"), Role::Read),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            tokens.authorize(None, Role::Read),
            Err(Denied::Unauthenticated(_))
        ));
        // An edit applies at once; a broken edit keeps the last good tokens.
        std::fs::write(&path, format!("bob admin {}\n", hex(&sha256(b"new")))).unwrap();
        assert_eq!(tokens.identify("new").unwrap().name, "bob");
        assert!(tokens.identify("s3cret").is_none());
        std::fs::write(&path, "bob admin not-a-hash-and-longer\n").unwrap();
        assert_eq!(tokens.identify("new").unwrap().name, "bob");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn new_tokens_are_random_hex() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
