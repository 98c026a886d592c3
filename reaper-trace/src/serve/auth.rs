//! HTTP basic authentication against the bcrypt hashes of the web config.
//!
//! bcrypt is slow on purpose (tens of milliseconds at the usual costs), and
//! the daemon's runtime is one thread shared with the tracer: each check runs
//! on the blocking pool, one at a time, so that a flood of wrong passwords
//! costs one core at most and never stalls tracing. A password that passed
//! is remembered as an HMAC under a key made at start, so the next scrapes
//! with it cost a hash, not a bcrypt (exporter-toolkit caches the same way).
//! Both comparisons run in constant time: bcrypt's own, and `hmac::verify`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use base64::Engine as _;
use ring::{hmac, rand::SystemRandom};
use tokio::sync::Semaphore;

/// The challenge sent with a 401.
pub const CHALLENGE: &str = "Basic realm=\"reaper-trace\", charset=\"UTF-8\"";

/// The users of `basic_auth_users`, and the passwords seen to match.
pub struct BasicAuth {
    /// User name → bcrypt hash.
    users: BTreeMap<String, String>,
    /// A hash that an unknown user's password is checked against, so that
    /// a wrong name takes as long as a wrong password.
    decoy: String,
    key: hmac::Key,
    /// User name → the HMAC of the last password that matched its hash.
    passed: Mutex<HashMap<String, hmac::Tag>>,
    /// One bcrypt at a time.
    bcrypt_turn: Arc<Semaphore>,
}

/// Why the authenticator could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No randomness for the HMAC key.
    #[error("cannot make a random key for basic auth (the system's random source failed)")]
    Random,
}

impl BasicAuth {
    /// `None` for an empty user list (no authentication).
    pub fn new(users: BTreeMap<String, String>) -> Result<Option<BasicAuth>, AuthError> {
        let Some(decoy) = users.values().next().cloned() else {
            return Ok(None);
        };
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| AuthError::Random)?;
        Ok(Some(BasicAuth {
            users,
            decoy,
            key,
            passed: Mutex::new(HashMap::new()),
            bcrypt_turn: Arc::new(Semaphore::new(1)),
        }))
    }

    /// Whether the `Authorization` header's value names a user and its
    /// password.
    pub async fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let message = [user.as_bytes(), b"\0", &password].concat();
        let remembered = self
            .passed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user)
            .map(|tag| hmac::verify(&self.key, &message, tag.as_ref()).is_ok());
        if remembered == Some(true) {
            return true;
        }
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let Ok(turn) = Arc::clone(&self.bcrypt_turn).acquire_owned().await else {
            return false;
        };
        // The turn ends with the bcrypt itself, not with this future: a
        // client that hangs up (or is evicted) mid-check cannot start more.
        let matched = tokio::task::spawn_blocking(move || {
            let matched = bcrypt::verify(&password, &hash);
            drop(turn);
            matched
        })
        .await
        .is_ok_and(|r| r.unwrap_or(false));
        if matched && known {
            self.passed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(user, hmac::sign(&self.key, &message));
        }
        matched && known
    }
}

/// The user and password of `Basic <base64 of user:password>` (RFC 7617);
/// the scheme's name is case-insensitive.
pub fn parse_basic(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
        .into_bytes()
    }

    #[test]
    fn parses_basic_credentials() {
        assert_eq!(
            parse_basic(&header("prometheus:pa:ss word")),
            Some(("prometheus".into(), b"pa:ss word".to_vec()))
        );
        assert_eq!(
            parse_basic(b"basic cHJvbTo="),
            Some(("prom".into(), Vec::new()))
        );
        for bad in [
            &b""[..],
            b"Basic",
            b"Bearer cHJvbTp4",
            b"Basic !!!",
            b"Basic bm9jb2xvbg==",
        ] {
            assert_eq!(parse_basic(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn checks_passwords_and_remembers_the_ones_that_matched() {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(async {
                let users = BTreeMap::from([(
                    "prometheus".to_owned(),
                    bcrypt::hash("right", 4).expect("hash"),
                )]);
                let auth = BasicAuth::new(users).expect("auth").expect("users");
                assert!(!auth.check(None).await);
                assert!(!auth.check(Some(&header("prometheus:wrong"))).await);
                assert!(!auth.check(Some(&header("nobody:right"))).await);
                assert!(auth.passed.lock().unwrap().is_empty());
                assert!(auth.check(Some(&header("prometheus:right"))).await);
                assert_eq!(auth.passed.lock().unwrap().len(), 1);
                // Remembered, and a wrong one still fails after it.
                assert!(auth.check(Some(&header("prometheus:right"))).await);
                assert!(!auth.check(Some(&header("prometheus:righ"))).await);
                assert!(!auth.check(Some(&header("prometheus:right "))).await);
            });
        assert!(BasicAuth::new(BTreeMap::new()).expect("empty").is_none());
    }
}
