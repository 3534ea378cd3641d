//! The email notifier: SMTP through lettre, with STARTTLS, implicit TLS or plain (for a local
//! relay), optional AUTH, and a multipart/alternative body (plain text and HTML). It owns the
//! SMTP exchange and the classification of its failures; the wording comes from
//! [`super::content`]. The password is never logged nor put in an error.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncTransport, Message, Tokio1Executor};

use super::{Notification, Notifier, NotifyError, SendFuture, content};

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text, for a relay on the same host or network. No AUTH over it.
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl SmtpTls {
    /// The usual port for this mode.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// What the email notifier needs, validated and with secrets read.
#[derive(Clone)]
pub struct EmailSettings {
    pub name: String,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Username and password.
    pub credentials: Option<(String, String)>,
    /// PEM certificates trusted in addition to the system's roots.
    pub extra_roots: Vec<Vec<u8>>,
    pub timeout: Duration,
}

/// Sends each notification as one email to every `to` address.
#[derive(Clone)]
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    target: String,
    timeout: Duration,
    /// The password, masked in every error (a server's reply may quote what it was sent).
    secrets: Vec<String>,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("target", &self.target)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl EmailNotifier {
    /// Builds the SMTP transport (no connection is made until the first send).
    pub fn new(settings: EmailSettings) -> Result<EmailNotifier, String> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .timeout(Some(settings.timeout));
        let params = || -> Result<TlsParameters, String> {
            let mut b = TlsParameters::builder(settings.host.clone());
            for pem in &settings.extra_roots {
                let cert = Certificate::from_pem(pem)
                    .map_err(|e| format!("cannot read the CA certificate: {e}"))?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls()
                .map_err(|e| format!("cannot set up TLS for {}: {e}", settings.host))
        };
        builder = match settings.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::Starttls => builder.tls(Tls::Required(params()?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(params()?)),
        };
        if let Some((user, password)) = &settings.credentials {
            builder = builder
                .credentials(Credentials::new(user.clone(), password.clone()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(EmailNotifier {
            transport: builder.build(),
            from: settings.from,
            to: settings.to,
            target: format!(
                "email receiver `{}` via {}:{}",
                settings.name, settings.host, settings.port
            ),
            timeout: settings.timeout,
            secrets: settings.credentials.into_iter().map(|(_, p)| p).collect(),
        })
    }

    /// The message for one notification (public for tests and previews).
    pub fn message(&self, n: &Notification, idempotency_key: &str) -> Result<Message, NotifyError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(content::subject(n))
            .message_id(Some(message_id(idempotency_key, &self.from)))
            .date(n.at.into());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                content::text(n),
                content::html(n),
            ))
            .map_err(|e| NotifyError::Message {
                detail: e.to_string(),
            })
    }

    fn classify(&self, e: &lettre::transport::smtp::Error) -> NotifyError {
        let target = self.target.clone();
        let detail = crate::redact::text_without(&e.to_string(), &self.secrets);
        if let Some(code) = e.status() {
            let code_num = code_number(&code.to_string());
            // 535: authentication credentials invalid; 534/538: mechanism or encryption needed.
            if matches!(code_num, 530 | 534 | 535 | 538) {
                return NotifyError::Auth { target, detail };
            }
            return NotifyError::Smtp {
                target,
                code: code_num,
                detail,
            };
        }
        if e.is_timeout() {
            return NotifyError::Timeout {
                target,
                after: self.timeout,
            };
        }
        // lettre reports a failed handshake (an untrusted certificate, ...) as a connection
        // error whose cause is the TLS library's.
        if e.is_tls() || detail.contains("certificate") || detail.contains("handshake") {
            return NotifyError::Tls { target, detail };
        }
        if e.is_client() {
            // No matching AUTH mechanism, a STARTTLS the server does not offer, ...
            return NotifyError::Smtp {
                target,
                code: 0,
                detail,
            };
        }
        if is_refused(e) {
            return NotifyError::Connect { target, detail };
        }
        NotifyError::Network { target, detail }
    }
}

fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::AddrNotAvailable
            );
        }
        cause = err.source();
    }
    false
}

fn code_number(code: &str) -> u16 {
    code.trim().parse().unwrap_or(0)
}

/// `<KEY@DOMAIN>` with KEY made of the idempotency key's safe characters, so every attempt of
/// one outbox message carries the same Message-ID.
pub fn message_id(idempotency_key: &str, from: &Mailbox) -> String {
    let local: String = idempotency_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("<{local}@{}>", from.email.domain())
}

impl Notifier for EmailNotifier {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn send<'a>(&'a self, n: &'a Notification, key: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            let message = self.message(n, key)?;
            self.transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| self.classify(&e))
        })
    }
}
