//! The endpoint's TLS: rustls with the *ring* provider, from the PEM files
//! the web config names. ring rather than aws-lc-rs (rustls' default)
//! because ring builds for the static musl release with the C compiler that
//! is already there, while aws-lc-rs needs cmake and more for it (see the
//! workspace Cargo.toml).

use std::{path::Path, sync::Arc};

use rustls::{
    RootCertStore, ServerConfig, SupportedProtocolVersion,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use tokio_rustls::TlsAcceptor;

use super::webconfig::{ClientAuth, TlsSettings, TlsVersion};

/// Why the TLS settings cannot be used; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error(
        "cannot use the certificate {path}: {message}; cert_file must be a PEM certificate chain"
    )]
    Cert { path: String, message: String },
    /// The key file is unreadable or holds no PEM private key.
    #[error("cannot use the private key {path}: {message}; key_file must be a PEM private key")]
    Key { path: String, message: String },
    /// The client CA file is unreadable or holds no usable certificate.
    #[error(
        "cannot use the client CA {path}: {message}; client_ca_file must hold PEM CA certificates"
    )]
    ClientCa { path: String, message: String },
    /// rustls refused the combination (a key that does not match the
    /// certificate, an unsupported key type).
    #[error("cannot set up TLS with {cert} and {key}: {source}")]
    Config {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block in it".into());
    }
    Ok(certs)
}

/// The acceptor for `settings`, reading its files now.
pub fn acceptor(settings: &TlsSettings) -> Result<TlsAcceptor, TlsError> {
    let shown = |p: &Path| p.display().to_string();
    let cert_chain = certificates(&settings.cert_file).map_err(|message| TlsError::Cert {
        path: shown(&settings.cert_file),
        message,
    })?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|e| TlsError::Key {
        path: shown(&settings.key_file),
        message: e.to_string(),
    })?;
    let config_error = |source| TlsError::Config {
        cert: shown(&settings.cert_file),
        key: shown(&settings.key_file),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (settings.min_version..=settings.max_version).contains(v))
    .map(|(_, p)| p)
    .collect();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(config_error)?;
    let builder = match (settings.client_auth, &settings.client_ca_file) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (required, Some(ca_file)) => {
            let ca_error = |message| TlsError::ClientCa {
                path: shown(ca_file),
                message,
            };
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_file).map_err(ca_error)? {
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if required == ClientAuth::VerifyIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder
                .with_client_cert_verifier(verifier.build().map_err(|e| ca_error(e.to_string()))?)
        }
    };
    let mut config = builder
        .with_single_cert(cert_chain, key)
        .map_err(config_error)?;
    // The endpoint speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
