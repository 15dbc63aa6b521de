//! How a `postgres://` URL reaches its server: the connection settings, and TLS as
//! libpq's `sslmode` and `sslrootcert` ask for it, over rustls.
//!
//! | `sslmode`     | TLS                                        | the server's certificate         |
//! |---------------|--------------------------------------------|----------------------------------|
//! | `disable`     | never                                      | -                                |
//! | `allow`       | only if a plain connection is refused      | not checked                      |
//! | `prefer`      | if the server offers it (the default)      | not checked                      |
//! | `require`     | always                                     | not checked                      |
//! | `verify-ca`   | always                                     | signed by the CA of `sslrootcert`|
//! | `verify-full` | always                                     | same, and names the host         |
//!
//! As in libpq, `prefer` and `require` with a `sslrootcert` check the chain as
//! `verify-ca` does, `prefer` falls back to a plain connection when the TLS handshake
//! fails, and `verify-ca`/`verify-full` without `sslrootcert` read
//! `~/.postgresql/root.crt`. Client certificates (`sslcert`, `sslkey`) are not
//! supported.
//!
//! No error here names the URL: it may hold a password.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::postgres::config::SslMode;
use ::postgres::{Client, Config, NoTls};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<Self> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(invalid(format!(
                    "sslmode `{}` is not one of disable, allow, prefer, require, verify-ca, verify-full",
                    crate::domain::names::echo(other)
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

fn invalid(message: String) -> Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("invalid PostgreSQL URL: {message}"),
    )
    .into()
}

/// A server to connect to: the driver's settings and the TLS the URL asks for.
#[derive(Clone)]
pub(crate) struct Target {
    config: Config,
    mode: TlsMode,
    /// `None` for `disable`.
    tls: Option<MakeRustlsConnect>,
}

impl Target {
    /// Reads a `postgres://` URL. `sslmode` and `sslrootcert` are taken out and
    /// handled here; every other parameter goes to the driver.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = None;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode = Some(TlsMode::parse(&percent_decode(key, value)?)?),
                "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(key, value)?)),
                "sslcert" | "sslkey" | "sslpassword" => {
                    return Err(invalid(format!(
                        "`{key}`: client certificates are not supported"
                    )));
                }
                _ => rest.push(pair),
            }
        }
        let driver_url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: Config = driver_url
            .parse()
            .map_err(|e: ::postgres::Error| invalid(with_causes(&e)))?;
        if config.get_application_name().is_none() {
            config.application_name("turnstile");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let mode = mode.unwrap_or(TlsMode::Prefer);
        config.ssl_mode(match mode {
            TlsMode::Disable | TlsMode::Allow => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        let tls = match mode {
            TlsMode::Disable => None,
            _ => Some(MakeRustlsConnect::new(client_config(mode, root_cert)?)),
        };
        Ok(Self { config, mode, tls })
    }

    /// The same server and TLS, with driver settings changed by `change`.
    pub(crate) fn adjusted(&self, change: impl FnOnce(&mut Config)) -> Self {
        let mut target = self.clone();
        change(&mut target.config);
        target
    }

    /// Opens a connection as `sslmode` says, or fails with an error that names the
    /// host, the port and the mode, never the password.
    pub(crate) fn connect(&self) -> Result<Client> {
        self.try_connect().map_err(|e| self.failed(&e))
    }

    fn failed(&self, e: &Failure) -> Error {
        let cause = match e.0.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => with_causes(&e.0),
        };
        let mut message = format!(
            "cannot connect to PostgreSQL at {} (sslmode={}): {cause}",
            self.place(),
            self.mode.name(),
        );
        if self.mode == TlsMode::Disable && e.refused_plain() {
            message.push_str(
                "; the server accepts only encrypted connections: use sslmode=verify-full",
            );
        }
        std::io::Error::other(message).into()
    }

    fn try_connect(&self) -> Result<Client, Failure> {
        let plain = |config: &Config| config.connect(NoTls).map_err(Failure);
        let tls =
            |config: &Config, tls: &MakeRustlsConnect| config.connect(tls.clone()).map_err(Failure);
        match (&self.tls, self.mode) {
            (None, _) => plain(&self.config),
            (Some(t), TlsMode::Allow) => plain(&self.config).or_else(|first| {
                let mut config = self.config.clone();
                config.ssl_mode(SslMode::Require);
                tls(&config, t).map_err(|_| first)
            }),
            (Some(t), TlsMode::Prefer) => tls(&self.config, t).or_else(|e| {
                if !e.is_tls() {
                    return Err(e);
                }
                let mut config = self.config.clone();
                config.ssl_mode(SslMode::Disable);
                plain(&config)
            }),
            (Some(t), _) => tls(&self.config, t),
        }
    }

    /// `host:port` of the first host, for messages.
    fn place(&self) -> String {
        use ::postgres::config::Host;
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }
}

/// A failed connection attempt.
struct Failure(::postgres::Error);

impl Failure {
    /// Whether the TLS handshake failed (as opposed to the server refusing the login).
    fn is_tls(&self) -> bool {
        use std::error::Error as _;
        let mut source = self.0.source();
        while let Some(e) = source {
            if e.downcast_ref::<rustls::Error>().is_some() {
                return true;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.get_ref().is_some_and(|i| i.is::<rustls::Error>())
            {
                return true;
            }
            source = e.source();
        }
        false
    }

    /// Whether the server refused a connection without encryption (pg_hba.conf).
    fn refused_plain(&self) -> bool {
        self.0.as_db_error().is_some_and(|db| {
            *db.code() == ::postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                && db.message().contains("no encryption")
        })
    }
}

/// The driver's error and its causes, which its own message leaves out
/// ("error performing TLS handshake: invalid peer certificate: UnknownIssuer"). No
/// cause holds the URL: parse errors name the parameter, not its value.
fn with_causes(e: &::postgres::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// `%XX` escapes of a URL parameter.
fn percent_decode(key: &str, value: &str) -> Result<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("`{key}`: a bad `%` escape")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("`{key}` is not UTF-8")))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client settings for `mode`.
fn client_config(mode: TlsMode, root_cert: Option<PathBuf>) -> Result<ClientConfig> {
    let provider = provider();
    let root_cert = match (mode, root_cert) {
        (_, Some(path)) => Some(path),
        (TlsMode::VerifyCa | TlsMode::VerifyFull, None) => Some(default_root_cert().ok_or_else(|| {
            invalid(format!(
                "sslmode={} needs sslrootcert=FILE (or ~/.postgresql/root.crt), the CA certificate that signed the server's certificate",
                mode.name()
            ))
        })?),
        _ => None,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::other(format!("TLS settings: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match root_cert {
        None => Arc::new(AnyCertificate(provider)),
        Some(path) => {
            let chain =
                WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(&path)?), provider)
                    .build()
                    .map_err(|e| std::io::Error::other(format!("TLS settings: {e}")))?;
            if mode == TlsMode::VerifyFull {
                chain
            } else {
                Arc::new(ChainOnly(chain))
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// libpq's default CA file, when it exists.
fn default_root_cert() -> Option<PathBuf> {
    let path = Path::new(&std::env::var_os("HOME")?).join(".postgresql/root.crt");
    path.is_file().then_some(path)
}

fn root_store(path: &Path) -> Result<RootCertStore> {
    let unreadable = |e: &dyn std::fmt::Display| -> Error {
        std::io::Error::other(format!("cannot read sslrootcert `{}`: {e}", path.display())).into()
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        roots
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"no certificate in the file"));
    }
    Ok(roots)
}

/// `verify-ca`: the chain must lead to a trusted CA; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // INVARIANT: the WebPKI verifier checks the chain before the name, so a
            // name mismatch means the chain was valid.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a CA: encryption against a passive listener, as
/// libpq gives; the certificate is not checked, the handshake's signatures are.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(url: &str) -> Result<TlsMode> {
        Target::parse(url).map(|t| t.mode)
    }

    #[test]
    fn b1_sslmode_defaults_to_prefer_and_reads_every_libpq_mode() -> Result<()> {
        assert_eq!(mode_of("postgres://u@h/db")?, TlsMode::Prefer);
        for (text, mode) in [
            ("disable", TlsMode::Disable),
            ("allow", TlsMode::Allow),
            ("prefer", TlsMode::Prefer),
            ("require", TlsMode::Require),
        ] {
            assert_eq!(mode_of(&format!("postgres://u@h/db?sslmode={text}"))?, mode);
        }
        let t = Target::parse(
            "postgres://u@h/db?application_name=x&sslmode=require&connect_timeout=3",
        )?;
        assert_eq!(t.config.get_application_name(), Some("x"));
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        Ok(())
    }

    #[test]
    fn b1_bad_tls_parameters_are_refused_without_echoing_the_password() {
        for url in [
            "postgres://u:hunter2@h/db?sslmode=verify-everything",
            "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=/no/such/ca.pem",
            "postgres://u:hunter2@h/db?sslcert=/c.pem",
            "postgres://u:hunter2@h/db?sslrootcert=%zz",
        ] {
            let Err(e) = Target::parse(url) else {
                panic!("refused: {url}")
            };
            let text = e.to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("ssl"), "{text}");
        }
    }

    #[test]
    fn percent_escapes_are_decoded() -> Result<()> {
        assert_eq!(percent_decode("k", "%2Fetc%2Fca.pem")?, "/etc/ca.pem");
        assert_eq!(percent_decode("k", "plain")?, "plain");
        assert!(percent_decode("k", "%4").is_err());
        Ok(())
    }
}
