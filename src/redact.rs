//! Credentials masked before anything is recorded or shown: the password of a URL's userinfo
//! (or a lone userinfo, usually a token), the values of query and fragment parameters whose
//! name says secret (`token`, `secret`, `password`, `api_key`, `sig`, ..., compared
//! case-insensitively), `Bearer`/`Basic` credentials and `name=value` pairs in free text, and
//! any value a caller knows to be a secret (one read from a file), each replaced by [`MASK`].
//! [`SecretUrl`] carries a URL whose `Display` and `Debug` are masked, so an error that holds
//! one cannot print its credentials by mistake. Pure: no I/O; it decides nothing but what to hide.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Known secrets shorter than this are not searched for in free text: masking every `a` of a
/// message would hide it without protecting anything.
const MIN_KNOWN_SECRET: usize = 4;

/// Whether a parameter (or header) named `name` holds a secret: its letters and digits, lower
/// case, contain one of the usual words, or are `sig`/`code`.
pub fn is_sensitive_name(name: &str) -> bool {
    let plain: String = percent_decoded(name)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const WORDS: [&str; 10] = [
        "secret",
        "token",
        "pass",
        "pwd",
        "key",
        "signature",
        "credential",
        "auth",
        "session",
        "cookie",
    ];
    WORDS.iter().any(|w| plain.contains(w)) || matches!(plain.as_str(), "sig" | "code")
}

fn percent_decoded(text: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy()
}

/// One URL (or URL-like text) with its credentials masked: `http://u:***@h/p?token=***&a=1`.
/// Text that is not a URL is left as it is, but for sensitive `?name=value` pairs.
pub fn url(text: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(text.len());
    let rest = match text.find("://") {
        Some(at) => {
            let (scheme, after) = text.split_at(at + 3);
            out.push_str(scheme);
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            let (authority, rest) = after.split_at(end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) if !userinfo.is_empty() => {
                    match userinfo.split_once(':') {
                        Some((user, password)) if !password.is_empty() => {
                            out.push_str(user);
                            out.push(':');
                            out.push_str(MASK);
                        }
                        Some((user, _)) => {
                            out.push_str(user);
                            out.push(':');
                        }
                        None => out.push_str(MASK),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                _ => out.push_str(authority),
            }
            rest
        }
        None => text,
    };
    // Path, then `?query`, then `#fragment`: parameters are masked in the last two.
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (rest, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_fragment, None),
    };
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        out.push_str(&parameters(query));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(&parameters(fragment));
    }
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

/// `a=1&token=x` with the sensitive values masked.
fn parameters(text: &str) -> String {
    text.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_sensitive_name(name) => {
                format!("{name}={MASK}")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether `text` (a URL) carries credentials that [`url`] would mask.
pub fn has_credentials(text: &str) -> bool {
    matches!(url(text), Cow::Owned(_))
}

static URL_IN_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b[a-z][a-z0-9+.\-]*://[^\s"'<>`]+"#).expect("a valid pattern")
});
static PAIR_IN_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"([A-Za-z0-9_.\-%]+)=([^&\s"'<>`#;,)\]]+)"#).expect("a valid pattern")
});
static SCHEME_CREDENTIAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(bearer|basic|token)(\s+)([A-Za-z0-9._~+/=\-]{8,})")
        .expect("a valid pattern")
});

/// Free text (an error, an answer's body) with every credential it shows masked: each URL as
/// [`url`] masks it, sensitive `name=value` pairs wherever they are, and the credential after
/// `Bearer`, `Basic` or `token` (8 characters or more, so "the token file" stays as it is).
pub fn text(text: &str) -> Cow<'_, str> {
    let urls = URL_IN_TEXT.replace_all(text, |c: &Captures| url(&c[0]).into_owned());
    let pairs = PAIR_IN_TEXT.replace_all(&urls, |c: &Captures| {
        if is_sensitive_name(&c[1]) && &c[2] != MASK {
            format!("{}={MASK}", &c[1])
        } else {
            c[0].to_string()
        }
    });
    let schemes = SCHEME_CREDENTIAL.replace_all(&pairs, |c: &Captures| {
        if &c[3] == MASK {
            c[0].to_string()
        } else {
            format!("{}{}{MASK}", &c[1], &c[2])
        }
    });
    if schemes == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(schemes.into_owned())
    }
}

/// [`text`], with every occurrence of the `known` secrets masked too (those of 4 characters or
/// more; the caller's own, such as a token read from a file).
pub fn text_without<S: AsRef<str>>(text_in: &str, known: &[S]) -> String {
    let mut out = text_in.to_string();
    for secret in known {
        let secret = secret.as_ref().trim();
        if secret.len() >= MIN_KNOWN_SECRET {
            out = out.replace(secret, MASK);
        }
    }
    text(&out).into_owned()
}

/// The secrets a URL carries: its userinfo's password (or lone user) and its sensitive
/// parameters' values, decoded as they are sent and as written.
pub fn secrets_of(url_text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut add = |value: &str| {
        found.push(value.to_string());
        let decoded = percent_decoded(value);
        if decoded != value {
            found.push(decoded.into_owned());
        }
    };
    if let Some(at) = url_text.find("://") {
        let after = &url_text[at + 3..];
        let authority = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            match userinfo.split_once(':') {
                Some((_, password)) if !password.is_empty() => add(password),
                Some(_) => {}
                None if !userinfo.is_empty() => add(userinfo),
                None => {}
            }
        }
    }
    let params = url_text.split_once('?').map(|(_, q)| q).into_iter().chain(
        url_text
            .split_once('#')
            .map(|(_, f)| f)
            .filter(|_| !url_text.contains('?')),
    );
    for part in params {
        for pair in part.split(['&', '#']) {
            if let Some((name, value)) = pair.split_once('=')
                && !value.is_empty()
                && is_sensitive_name(name)
            {
                add(value);
            }
        }
    }
    found
}

/// A URL that may carry credentials. `Display` and `Debug` show it masked ([`url`]); only
/// [`SecretUrl::expose`] gives the URL to send a request to.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL with its credentials, for the request itself only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&url(&self.0))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", url(&self.0))
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        SecretUrl(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_and_secret_parameters() {
        let cases = [
            ("http://prom:9090", "http://prom:9090"),
            (
                "http://user:pa55@prom:9090/x",
                "http://user:***@prom:9090/x",
            ),
            (
                "https://ghp_abc123@github.com/a",
                "https://***@github.com/a",
            ),
            ("http://user:@h/", "http://user:@h/"),
            // The last `@` ends the userinfo: a password may hold one.
            ("http://u:p@ss@h/p", "http://u:***@h/p"),
            (
                "https://h/hook?a=1&secret=s3&Token=t&API_KEY=k&b=",
                "https://h/hook?a=1&secret=***&Token=***&API_KEY=***&b=",
            ),
            (
                "https://h/p?sig=x&code=y&x-amz-signature=z",
                "https://h/p?sig=***&code=***&x-amz-signature=***",
            ),
            (
                "https://h/cb#access_token=abc&state=1",
                "https://h/cb#access_token=***&state=1",
            ),
            ("https://h/p?q=1#frag", "https://h/p?q=1#frag"),
            ("https://h/p?api%5Fkey=v", "https://h/p?api%5Fkey=***"),
            ("/weights?secret=x", "/weights?secret=***"),
            ("not a url", "not a url"),
        ];
        for (given, masked) in cases {
            assert_eq!(url(given), masked, "{given}");
            assert_eq!(has_credentials(given), given != masked, "{given}");
        }
    }

    #[test]
    fn free_text_is_masked_wherever_credentials_appear() {
        let cases = [
            (
                "cannot reach http://u:pw@127.0.0.1:9/api (connection refused)",
                "cannot reach http://u:***@127.0.0.1:9/api (connection refused)",
            ),
            (
                "POST http://h/w?secret=abc returned 500: upstream refused /w?secret=abc&x=1",
                "POST http://h/w?secret=*** returned 500: upstream refused /w?secret=***&x=1",
            ),
            (
                "two: https://a:b@x and \"https://y/?token=t\".",
                "two: https://a:***@x and \"https://y/?token=***\".",
            ),
            (
                "authorization: Bearer abc.def-123",
                "authorization: Bearer ***",
            ),
            (
                "Authorization: Basic dXNlcjpwYXNz",
                "Authorization: Basic ***",
            ),
            ("password=hunter22, user=bob", "password=***, user=bob"),
            ("cannot read the token file", "cannot read the token file"),
            (
                "Authorization: token ghp_1234abcd",
                "Authorization: token ***",
            ),
            // PromQL label matchers are quoted values: left alone.
            (
                "query `rate(x{token=\"a\"}[1m])` failed",
                "query `rate(x{token=\"a\"}[1m])` failed",
            ),
            (
                "nothing secret here: 3 of 5 passed",
                "nothing secret here: 3 of 5 passed",
            ),
        ];
        for (given, masked) in cases {
            assert_eq!(text(given), masked, "{given}");
        }
    }

    #[test]
    fn known_secrets_are_masked_even_without_a_telling_name() {
        let masked = text_without(
            "the hook said: T000/B000/XyZ987 is gone",
            &["T000/B000/XyZ987"],
        );
        assert_eq!(masked, "the hook said: *** is gone");
        // Too short to search for: left, rather than masking every `ab`.
        assert_eq!(text_without("abc", &["ab"]), "abc");
    }

    #[test]
    fn a_url_names_its_secrets_as_written_and_as_sent() {
        let mut found = secrets_of("http://u:p%40ss@h/x?token=t1&a=2#sig=s");
        found.sort();
        assert_eq!(found, ["p%40ss", "p@ss", "s", "t1"]);
        assert_eq!(secrets_of("https://tok@h/"), ["tok"]);
        assert!(secrets_of("https://h/p?q=1").is_empty());
    }

    #[test]
    fn a_secret_url_prints_masked_and_sends_as_given() {
        let u = SecretUrl::new("http://u:pw@h/p?secret=s");
        assert_eq!(u.to_string(), "http://u:***@h/p?secret=***");
        assert_eq!(
            format!("{u:?}"),
            "SecretUrl(\"http://u:***@h/p?secret=***\")"
        );
        assert_eq!(u.expose(), "http://u:pw@h/p?secret=s");
    }
}
