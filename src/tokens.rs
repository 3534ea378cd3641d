//! API tokens: the token file, hashing, and deciding who may do what.
//!
//! # The token file
//! Set `server.token_file` in `canaryd.toml`. One token per line, `#` starts a comment:
//!
//! ```text
//! # name  role   sha256 of the token, hex
//! alice   admin  5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//! grafana read   9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! shop    app    8d9001d32c6a703d95921a77115050f33dd823d3f1730bd35215dcbecad6dc20
//! prom    metrics 3feb00294c5cb577d5679b958fcea898e0e7383fd7565096826c8d1ba55f11f8
//! ```
//!
//! `admin` tokens may read and change rollouts; `read` tokens may read everything (pages, `/v1`
//! reads, `/metrics`, assignment and weight); `app` tokens only the builtin actuator's
//! assignment and weight (for applications); `metrics` tokens only `/metrics` (for Prometheus's
//! `authorization` setting). [`Role::allows`] is the one table of who may do what. Only hashes are
//! stored, so the file gives nobody a token; `canaryd token new NAME --role admin` prints a fresh
//! token once, with the line to add. The name is what the audit trail records as who did it.
//! The file is checked on every request that presents a token (by modification time and size),
//! so edits apply at once, no SIGHUP needed; a file that became unreadable or invalid keeps the
//! last good tokens and is logged.
//!
//! This module owns parsing (pure, every problem with its line), the hashing of tokens and the
//! reload-on-change. SHA-256 and the constant-time comparison of hashes come from AWS-LC
//! (`aws-lc-rs`, already linked for TLS), checked here against the FIPS 180-4 vectors; only hex,
//! which AWS-LC does not export, is written here. It sits below the faces so that `config` can
//! check the token file at load (`canaryd check` and the daemon refuse a bad one alike) and
//! `canaryd token` can hash; the HTTP side (the `Authorization` header, and which of
//! [`Denied`]'s kinds is a 401 or a 403) belongs to `api`.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

/// What a token may do (the token file's second column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read everything: the status pages, `/v1` reads, `/metrics`, assignment and weight.
    Read,
    /// Read, and give commands (pause, resume, ..., emergency stop).
    Admin,
    /// An application: the builtin actuator's assignment and weight only.
    App,
    /// A scraper: `/metrics` only.
    Metrics,
}

impl Role {
    /// Every role, in the order the token file's documentation lists them.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Read, Role::App, Role::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
            Role::App => "app",
            Role::Metrics => "metrics",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether a token of this role may make a request that needs `access`.
    pub fn allows(self, access: Access) -> bool {
        match (self, access) {
            (_, Access::Open) | (Role::Admin, _) => true,
            (Role::Read, Access::Read | Access::Metrics | Access::Assignment) => true,
            (Role::App, Access::Assignment) | (Role::Metrics, Access::Metrics) => true,
            (Role::Read | Role::App | Role::Metrics, _) => false,
        }
    }
}

/// What a request needs, as the server's one access policy (`daemon::access`) classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Probes: `/healthz`, `/readyz`. Nobody is asked for a token.
    Open,
    /// The builtin actuator's assignment and weight: `app`, `read` and `admin` tokens.
    Assignment,
    /// `/metrics`: `metrics`, `read` and `admin` tokens.
    Metrics,
    /// The status pages and `/v1` reads: `read` and `admin` tokens.
    Read,
    /// Commands and the emergency stop: `admin` tokens.
    Admin,
}

impl Access {
    /// What needs this, for a person reading a refusal.
    fn what(self) -> &'static str {
        match self {
            Access::Open => "this",
            Access::Assignment => "the assignment and weight endpoints",
            Access::Metrics => "/metrics",
            Access::Read => "reading rollouts and the status pages",
            Access::Admin => "a command",
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
                "{at}: unknown role `{role}`; use `admin`, `read`, `app` or `metrics`"
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

/// Compare two hashes in time independent of where they differ (AWS-LC's `CRYPTO_memcmp`).
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// SHA-256 of `data` (FIPS 180-4), by AWS-LC.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
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

    /// Decide on a request that needs `need`, given its `Authorization` header value: the
    /// caller when their token's role allows it.
    pub fn authorize(&self, header: Option<&str>, need: Access) -> Result<Caller, Denied> {
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
        if caller.role.allows(need) {
            return Ok(caller);
        }
        let roles: Vec<String> = Role::ALL
            .into_iter()
            .filter(|r| r.allows(need))
            .map(|r| format!("`{}`", r.as_str()))
            .collect();
        let has = match caller.role {
            Role::Read => "is read-only".to_string(),
            role => format!("has the role `{}`", role.as_str()),
        };
        Err(Denied::Forbidden(format!(
            "the token `{}` {has}; {} needs a token with the role {}",
            caller.name,
            need.what(),
            roles.join(" or ")
        )))
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
    fn hashes_compare_equal_only_when_every_byte_matches() {
        let a = sha256(b"s3cret");
        assert!(constant_time_eq(&a, &sha256(b"s3cret")));
        for i in [0, 15, 31] {
            let mut b = a;
            b[i] ^= 1;
            assert!(!constant_time_eq(&a, &b), "byte {i}");
        }
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
            .authorize(Some("Bearer s3cret"), Access::Admin)
            .unwrap();
        assert_eq!(alice.name, "alice");
        assert!(matches!(
            tokens.authorize(Some("Bearer look"), Access::Admin),
            Err(Denied::Forbidden(_))
        ));
        assert!(tokens.authorize(Some("Bearer look"), Access::Read).is_ok());
        assert!(matches!(
            tokens.authorize(Some("Bearer nope"), Access::Read),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            tokens.authorize(None, Access::Read),
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
    fn each_role_may_do_what_the_token_file_documentation_says() {
        use Access::*;
        // (role, what it may do); everything else is refused.
        let table: [(Role, &[Access]); 4] = [
            (Role::Admin, &[Open, Assignment, Metrics, Read, Admin]),
            (Role::Read, &[Open, Assignment, Metrics, Read]),
            (Role::App, &[Open, Assignment]),
            (Role::Metrics, &[Open, Metrics]),
        ];
        for (role, allowed) in table {
            for access in [Open, Assignment, Metrics, Read, Admin] {
                assert_eq!(
                    role.allows(access),
                    allowed.contains(&access),
                    "{role:?} {access:?}"
                );
            }
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        // Files written before the app and metrics roles stay valid, and the new roles parse.
        let good = hex(&sha256(b"x"));
        let text = format!("a admin {good}\nb read {good}\nc app {good}\nd metrics {good}\n");
        let roles: Vec<Role> = parse_tokens(Path::new("t"), &text)
            .unwrap()
            .into_iter()
            .map(|e| e.role)
            .collect();
        assert_eq!(roles, [Role::Admin, Role::Read, Role::App, Role::Metrics]);
    }

    #[test]
    fn a_refusal_names_the_token_and_the_roles_that_would_do() {
        let dir = std::env::temp_dir().join(format!("canaryd-roles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(
            &path,
            format!(
                "shop app {}\nprom metrics {}\n",
                hex(&sha256(b"shop-token")),
                hex(&sha256(b"prom-token"))
            ),
        )
        .unwrap();
        let tokens = Tokens::load(Some(&path)).unwrap();
        let Err(Denied::Forbidden(m)) = tokens.authorize(Some("Bearer shop-token"), Access::Read)
        else {
            panic!("an app token read a page");
        };
        assert!(m.contains("`shop` has the role `app`"), "{m}");
        assert!(m.contains("`admin` or `read`"), "{m}");
        let Err(Denied::Forbidden(m)) =
            tokens.authorize(Some("Bearer prom-token"), Access::Assignment)
        else {
            panic!("a metrics token read an assignment");
        };
        assert!(m.contains("`admin` or `read` or `app`"), "{m}");
        assert_eq!(
            tokens
                .authorize(Some("Bearer prom-token"), Access::Metrics)
                .unwrap()
                .name,
            "prom"
        );
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
