//! `--web.config.file`: TLS and basic authentication for the metrics
//! endpoint, in the format of Prometheus' exporter-toolkit
//! (`docs/web-configuration.md` there), which node_exporter and the other
//! exporters read, so a fleet's existing files work unchanged:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt        # relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: clients.crt
//! basic_auth_users:
//!   prometheus: $2y$10$...       # bcrypt
//! ```
//!
//! Like exporter-toolkit, unknown keys are refused. Keys it knows that this
//! endpoint does not implement are refused too, with a line naming them,
//! never ignored: a setting that silently did nothing would be a security
//! surprise. Parsing ([`WebConfig::parse`]) does no I/O; certificates are
//! read by [`super::tls`].

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    str::FromStr as _,
};

use serde::{Deserialize, de::IgnoredAny};

/// Why a web config file cannot be used. Every message is one line that
/// names the file and what to change.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file could not be read.
    #[error(
        "cannot read the web config {path}: {source}; pass a readable file to --web.config.file"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, not a mapping, an unknown key or a value of the wrong type.
    #[error("invalid web config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A key of exporter-toolkit's format that this endpoint does not
    /// implement.
    #[error("web config {path}: {key} is not supported by reaper-trace; {hint}")]
    Unsupported {
        path: PathBuf,
        key: &'static str,
        hint: &'static str,
    },
    /// A value outside the allowed set, or a required companion missing.
    #[error("web config {path}: {message}")]
    Bad { path: PathBuf, message: String },
    /// A basic-auth user whose password is not a bcrypt hash.
    #[error(
        "web config {path}: the password of basic_auth_users.{user} is not a bcrypt hash ({reason}); \
         store a hash such as `htpasswd -nbB USER PASSWORD` prints, not the password"
    )]
    BadHash {
        path: PathBuf,
        user: String,
        reason: String,
    },
}

/// How a TLS client must authenticate with a certificate
/// (`client_auth_type`). exporter-toolkit's other two values,
/// `RequestClientCert` and `RequireAnyClientCert`, accept certificates
/// nobody checks: they are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `NoClientCert` (the default).
    None,
    /// `VerifyClientCertIfGiven`: a certificate is optional, but checked
    /// against `client_ca_file` when sent.
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`.
    Require,
}

/// A TLS protocol version (`min_version`, `max_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The TLS settings, with paths resolved against the file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    /// Set exactly when `client_auth` is not `None`.
    pub client_ca_file: Option<PathBuf>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

/// A validated web config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// User name → bcrypt hash; empty: no authentication.
    pub basic_auth_users: BTreeMap<String, String>,
    /// Extra response headers (`http_server_config.headers`).
    pub headers: Vec<(String, String)>,
    /// One-line notes to print at start (settings that change nothing here
    /// but are worth knowing, e.g. `http2: true`).
    pub notes: Vec<String>,
}

// The file as written. Every struct denies unknown keys, as exporter-toolkit
// does (it decodes with yaml.UnmarshalStrict).

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    tls_server_config: Option<FileTls>,
    http_server_config: Option<FileHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    // Known to exporter-toolkit, not implemented here: refused by name.
    cert: Option<IgnoredAny>,
    key: Option<IgnoredAny>,
    client_ca: Option<IgnoredAny>,
    client_allowed_sans: Option<IgnoredAny>,
    cipher_suites: Option<IgnoredAny>,
    prefer_server_cipher_suites: Option<IgnoredAny>,
    curve_preferences: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The response headers exporter-toolkit lets a config set (it refuses
/// others, and so does this).
const SETTABLE_HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// An upper bound on the file, far above any real one: the file is read
/// whole, and YAML aliases could otherwise make a small file expensive.
const MAX_FILE_BYTES: u64 = 1 << 20;

impl WebConfig {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let read = |source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FILE_BYTES), &mut text)
            .map_err(read)?;
        WebConfig::parse(&text, path)
    }

    /// Validates the text of the file at `path` (used in messages, and its
    /// directory to resolve relative certificate paths).
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        // An empty file (or one of comments) is an empty config, as in Go.
        let file: FileConfig = if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            FileConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| WebConfigError::Invalid {
                path: path.to_owned(),
                message: one_line(&e.to_string()),
            })?
        };
        let at = At(path);
        let mut config = WebConfig::default();
        if let Some(tls) = file.tls_server_config {
            config.tls = at.tls(tls)?;
        }
        if let Some(http) = file.http_server_config {
            at.http(http, &mut config)?;
        }
        for (user, hash) in file.basic_auth_users.unwrap_or_default() {
            at.check_user(&user, &hash)?;
            config.basic_auth_users.insert(user, hash);
        }
        Ok(config)
    }
}

/// The file a setting is read from: its errors name it, and relative paths
/// are relative to its directory.
struct At<'a>(&'a Path);

impl At<'_> {
    fn bad(&self, message: String) -> WebConfigError {
        WebConfigError::Bad {
            path: self.0.to_owned(),
            message,
        }
    }

    fn unsupported(&self, key: &'static str, hint: &'static str) -> WebConfigError {
        WebConfigError::Unsupported {
            path: self.0.to_owned(),
            key,
            hint,
        }
    }

    fn resolve(&self, relative: &str) -> PathBuf {
        self.0.parent().unwrap_or(Path::new(".")).join(relative)
    }

    /// `tls_server_config`: the settings, or none when it names no
    /// certificate (exporter-toolkit serves plain HTTP then).
    fn tls(&self, tls: FileTls) -> Result<Option<TlsSettings>, WebConfigError> {
        self.refuse_unimplemented(&tls)?;
        let client_auth = self.client_auth(tls.client_auth_type.as_deref())?;
        let client_ca_file = nonempty(tls.client_ca_file).map(|p| self.resolve(&p));
        match (client_auth, &client_ca_file) {
            (ClientAuth::None, Some(_)) => {
                return Err(self.bad(
                    "client_ca_file is set but client_auth_type is NoClientCert; set \
                     client_auth_type to RequireAndVerifyClientCert (or remove client_ca_file)"
                        .into(),
                ));
            }
            (ClientAuth::VerifyIfGiven | ClientAuth::Require, None) => {
                return Err(self.bad(
                    "client_auth_type verifies client certificates but client_ca_file is \
                     not set; name the CA that signs them"
                        .into(),
                ));
            }
            _ => {}
        }
        let min_version = self.version(tls.min_version, TlsVersion::Tls12)?;
        let max_version = self.version(tls.max_version, TlsVersion::Tls13)?;
        if min_version > max_version {
            return Err(self.bad("min_version is above max_version".into()));
        }
        match (nonempty(tls.cert_file), nonempty(tls.key_file)) {
            (Some(cert), Some(key)) => Ok(Some(TlsSettings {
                cert_file: self.resolve(&cert),
                key_file: self.resolve(&key),
                client_auth,
                client_ca_file,
                min_version,
                max_version,
            })),
            (Some(_), None) => {
                Err(self.bad("tls_server_config has cert_file but no key_file".into()))
            }
            (None, Some(_)) => {
                Err(self.bad("tls_server_config has key_file but no cert_file".into()))
            }
            // A section whose other settings would then do nothing is a
            // mistake.
            (None, None) if client_auth != ClientAuth::None => Err(self.bad(
                "tls_server_config sets client authentication but no cert_file/key_file".into(),
            )),
            (None, None) => Ok(None),
        }
    }

    /// exporter-toolkit's keys this endpoint does not implement: refused by
    /// name, never ignored.
    fn refuse_unimplemented(&self, tls: &FileTls) -> Result<(), WebConfigError> {
        let refused = [
            (
                "tls_server_config.cert",
                tls.cert.is_some(),
                "use cert_file",
            ),
            ("tls_server_config.key", tls.key.is_some(), "use key_file"),
            (
                "tls_server_config.client_ca",
                tls.client_ca.is_some(),
                "use client_ca_file",
            ),
            (
                "tls_server_config.client_allowed_sans",
                tls.client_allowed_sans.is_some(),
                "remove it (any certificate signed by client_ca_file is accepted)",
            ),
            (
                "tls_server_config.cipher_suites",
                tls.cipher_suites.is_some(),
                "remove it (rustls offers only modern AEAD suites)",
            ),
            (
                "tls_server_config.prefer_server_cipher_suites",
                tls.prefer_server_cipher_suites.is_some(),
                "remove it (rustls prefers the server's order)",
            ),
            (
                "tls_server_config.curve_preferences",
                tls.curve_preferences.is_some(),
                "remove it (rustls picks X25519 first)",
            ),
        ];
        if let Some((key, _, hint)) = refused.into_iter().find(|(_, present, _)| *present) {
            return Err(self.unsupported(key, hint));
        }
        Ok(())
    }

    fn client_auth(&self, kind: Option<&str>) -> Result<ClientAuth, WebConfigError> {
        match kind {
            None | Some("" | "NoClientCert") => Ok(ClientAuth::None),
            Some("VerifyClientCertIfGiven") => Ok(ClientAuth::VerifyIfGiven),
            Some("RequireAndVerifyClientCert") => Ok(ClientAuth::Require),
            Some("RequestClientCert" | "RequireAnyClientCert") => Err(self.unsupported(
                "tls_server_config.client_auth_type RequestClientCert/RequireAnyClientCert",
                "they accept unverified certificates: use VerifyClientCertIfGiven or \
                 RequireAndVerifyClientCert with client_ca_file",
            )),
            Some(other) => Err(self.bad(format!(
                "client_auth_type {other:?} is not one of NoClientCert, \
                 VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ))),
        }
    }

    fn version(
        &self,
        v: Option<String>,
        default: TlsVersion,
    ) -> Result<TlsVersion, WebConfigError> {
        match v.as_deref() {
            None | Some("") => Ok(default),
            Some("TLS12") => Ok(TlsVersion::Tls12),
            Some("TLS13") => Ok(TlsVersion::Tls13),
            Some(old @ ("TLS10" | "TLS11")) => Err(self.bad(format!(
                "{old} is not supported (rustls speaks TLS 1.2 and 1.3); use TLS12 or TLS13"
            ))),
            Some(other) => {
                Err(self.bad(format!("TLS version {other:?} is not one of TLS12, TLS13")))
            }
        }
    }

    /// `http_server_config`: the headers to send, and a note for `http2`.
    fn http(&self, http: FileHttp, config: &mut WebConfig) -> Result<(), WebConfigError> {
        if http.http2 == Some(true) {
            config.notes.push(format!(
                "web config {}: http2 is set, but the endpoint serves HTTP/1.1 only \
                 (Prometheus scrapes over HTTP/1.1)",
                self.0.display()
            ));
        }
        for (name, value) in http.headers.unwrap_or_default() {
            let Some(canonical) = SETTABLE_HEADERS
                .iter()
                .find(|h| h.eq_ignore_ascii_case(&name))
            else {
                return Err(self.bad(format!(
                    "http_server_config.headers.{name} cannot be set; only {} can",
                    SETTABLE_HEADERS.join(", ")
                )));
            };
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                return Err(self.bad(format!(
                    "http_server_config.headers.{name} must be printable ASCII"
                )));
            }
            config.headers.push(((*canonical).to_owned(), value));
        }
        Ok(())
    }

    /// A `basic_auth_users` entry: a bcrypt hash, for a name basic auth
    /// can send.
    fn check_user(&self, user: &str, hash: &str) -> Result<(), WebConfigError> {
        if let Err(e) = bcrypt::HashParts::from_str(hash) {
            return Err(WebConfigError::BadHash {
                path: self.0.to_owned(),
                user: user.to_owned(),
                reason: e.to_string(),
            });
        }
        // A user name with a colon could never be sent in basic auth.
        if user.is_empty() || user.contains(':') {
            return Err(self.bad(format!(
                "basic_auth_users has the user name {user:?}; names are non-empty and have no colon"
            )));
        }
        Ok(())
    }
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// A parser's message on one line: its first (serde-saphyr's go on with a
/// snippet of the file, which the first line's position already points at).
fn one_line(message: &str) -> String {
    let first = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("not a YAML mapping");
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/reaper-trace/web.yml";
    /// A bcrypt hash (the cheapest cost) of "secret", made now.
    fn hash() -> String {
        bcrypt::hash("secret", 4).expect("bcrypt hash")
    }

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(text, Path::new(PATH))
    }

    #[test]
    fn parses_tls_and_basic_auth_with_paths_relative_to_the_file() {
        let hash = hash();
        let config = parse(&format!(
            "# exporter-toolkit's format\n\
             tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n\
             \x20 client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
             \x20 min_version: TLS13\n\
             http_server_config:\n  http2: false\n  headers:\n    x-frame-options: deny\n\
             basic_auth_users:\n  prometheus: {hash}\n  'other': '{hash}'\n"
        ))
        .expect("valid config");
        assert_eq!(
            config.tls,
            Some(TlsSettings {
                cert_file: "/etc/reaper-trace/server.crt".into(),
                key_file: "/abs/server.key".into(),
                client_auth: ClientAuth::Require,
                client_ca_file: Some("/etc/reaper-trace/ca.crt".into()),
                min_version: TlsVersion::Tls13,
                max_version: TlsVersion::Tls13,
            })
        );
        assert_eq!(
            config.basic_auth_users.keys().collect::<Vec<_>>(),
            ["other", "prometheus"]
        );
        assert_eq!(config.basic_auth_users["prometheus"], hash);
        assert_eq!(
            config.headers,
            [("X-Frame-Options".to_owned(), "deny".to_owned())]
        );
        assert!(config.notes.is_empty());
    }

    #[test]
    fn empty_files_and_sections_mean_plain_http_without_auth() {
        for text in [
            "",
            "# nothing\n",
            "tls_server_config:\n",
            "basic_auth_users: {}\n",
        ] {
            assert_eq!(parse(text).expect(text), WebConfig::default(), "{text:?}");
        }
        let config = parse("http_server_config:\n  http2: true\n").expect("valid");
        assert_eq!(config.notes.len(), 1, "{:?}", config.notes);
        assert!(config.notes[0].contains("HTTP/1.1 only"));
    }

    #[test]
    fn refuses_unknown_keys_in_one_line() {
        for (text, key) in [
            ("tls_config:\n  cert_file: x\n", "tls_config"),
            ("tls_server_config:\n  certfile: x\n", "certfile"),
            ("http_server_config:\n  http3: true\n", "http3"),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(key) && e.contains(PATH), "{e}");
            assert!(!e.contains('\n'), "{e:?}");
        }
        let e = parse("basic_auth_users: [a, b]\n").expect_err("a list");
        assert!(matches!(e, WebConfigError::Invalid { .. }), "{e}");
        assert!(!e.to_string().contains('\n'), "{e:?}");
        let e = parse("- not: a mapping\n").expect_err("a list");
        assert!(!e.to_string().contains('\n'), "{e:?}");
    }

    #[test]
    fn refuses_known_but_unimplemented_settings_by_name() {
        for (text, key) in [
            (
                "tls_server_config:\n  cert: PEM\n",
                "tls_server_config.cert ",
            ),
            (
                "tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                "cipher_suites",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n",
                "RequestClientCert",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
                "TLS10",
            ),
            (
                "http_server_config:\n  headers:\n    Server: x\n",
                "headers.Server cannot be set",
            ),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(key), "{key}: {e}");
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    #[test]
    fn refuses_half_tls_settings() {
        for (text, says) in [
            ("tls_server_config:\n  cert_file: a\n", "no key_file"),
            ("tls_server_config:\n  key_file: a\n", "no cert_file"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
                "client_ca_file is not set",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
                "client_auth_type is NoClientCert",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
                "\"Sometimes\" is not one of",
            ),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn accepts_the_2y_hashes_htpasswd_writes() {
        // htpasswd -B writes $2y$, the same algorithm as $2b$.
        let hash = hash().replacen("$2b$", "$2y$", 1);
        let config = parse(&format!("basic_auth_users:\n  prometheus: '{hash}'\n")).expect("2y");
        assert!(bcrypt::verify("secret", &config.basic_auth_users["prometheus"]).expect("verify"));
    }

    #[test]
    fn refuses_passwords_that_are_not_bcrypt_hashes() {
        for bad in [
            "secret",
            "$2b$04$tooshort",
            "$1$abc$md5cryptisnotbcrypt00000000000000",
        ] {
            let e = parse(&format!("basic_auth_users:\n  alice: '{bad}'\n")).expect_err(bad);
            assert!(
                matches!(&e, WebConfigError::BadHash { user, .. } if user == "alice"),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("htpasswd -nbB"), "{e}");
        }
        let e = parse(&format!("basic_auth_users:\n  'a:b': '{}'\n", hash())).expect_err("colon");
        assert!(e.to_string().contains("no colon"), "{e}");
    }

    #[test]
    fn a_missing_file_is_one_line_naming_it() {
        let path = std::env::temp_dir().join(format!(
            "reaper-trace-no-such-web-config-{}.yml",
            std::process::id()
        ));
        let e = WebConfig::load(&path).expect_err("missing");
        assert!(matches!(e, WebConfigError::Read { .. }), "{e}");
        let message = e.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("--web.config.file"), "{message}");
        assert!(!message.contains('\n'));
    }
}
