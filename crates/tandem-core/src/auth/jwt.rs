//! JSON Web Tokens: the built-in [`Authorizer`].
//!
//! The key decides the algorithm, never the token: an HS256 secret accepts only HS256 tokens, an
//! RSA public key only RS256, a P-256 key only ES256, an Ed25519 key only EdDSA. A token with
//! `alg: none`, another algorithm or an HS/RS confusion (an HMAC signed with the public key) is
//! refused. `exp` is required, `nbf` is honoured, `aud` is checked when an audience is set; there
//! is no leeway, so a token ends exactly when it says.
//!
//! The claims say what the holder may open: `docs` maps document name patterns (see
//! [`pattern_matches`]) to right names (see
//! [`Rights::parse_list`]):
//!
//! ```json
//! { "sub": "alice", "exp": 1767225600, "docs": { "notes/*": ["read"], "todo": ["write"] } }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{pattern_matches, AuthError, Authorizer, Credentials, Grant, Rights};
use crate::name::DocName;

/// The shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// The fewest different byte values an HS256 secret must contain.
///
/// Length alone does not make a key: 32 spaces or `abab…` pass a length check and are guessed
/// at once. Random secrets have far more (32 random hex digits hold about 13 of the 16, 48
/// random bytes in base64 about 35); a secret with fewer is refused at start.
pub const MIN_SECRET_DISTINCT_BYTES: usize = 8;

/// The latest expiry a token may name: 9999-12-31T23:59:59Z, in seconds since the Unix epoch.
///
/// A grant's expiry becomes a `SystemTime` and then a connection's `Instant` deadline; an `exp`
/// near 2^63 seconds overflowed that arithmetic and panicked the request handler. No real token
/// needs a later expiry, so a later one is refused (401) before anything computes with it.
pub const MAX_EXP_SECS: u64 = 253_402_300_799;

/// The claims of a Tandem token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtClaims {
    /// Who holds the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, in seconds since the Unix epoch. Required.
    pub exp: u64,
    /// Not valid before, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The audience the token is for; checked when the server has one configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Document name patterns and the rights the holder has on the documents they cover.
    #[serde(default)]
    pub docs: BTreeMap<String, Vec<String>>,
}

/// The claims as read from a verified token (`aud` may be a string or a list there, and
/// `jsonwebtoken` has already checked it).
#[derive(Deserialize)]
struct VerifiedClaims {
    #[serde(default)]
    sub: Option<String>,
    exp: u64,
    #[serde(default)]
    docs: BTreeMap<String, Vec<String>>,
}

/// A key that cannot be used.
#[derive(Debug, Error)]
pub enum JwtKeyError {
    /// An HS256 secret shorter than [`MIN_SECRET_BYTES`].
    #[error("the secret has {0} bytes; HS256 needs at least {MIN_SECRET_BYTES}")]
    SecretTooShort(usize),
    /// An HS256 secret that is long enough but guessable: only whitespace, or fewer than
    /// [`MIN_SECRET_DISTINCT_BYTES`] different bytes (one byte repeated, a short pattern).
    #[error(
        "the secret is {0} (HS256 needs at least {MIN_SECRET_DISTINCT_BYTES} different bytes, not \
         all whitespace); use random bytes, e.g. `head -c 48 /dev/urandom | base64`"
    )]
    WeakSecret(&'static str),
    /// PEM that holds no RSA, P-256 or Ed25519 key of the expected kind.
    #[error("not a PEM-encoded {0} key (RSA, EC P-256 or Ed25519)")]
    UnsupportedKey(&'static str),
    /// Signing failed.
    #[error("could not sign the token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// Verifies tokens with one key and turns their claims into grants.
#[derive(Clone)]
pub struct JwtAuthorizer {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthorizer")
            .field("algorithm", &self.algorithm())
            .field("audience", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

impl JwtAuthorizer {
    /// Accepts HS256 tokens signed with `secret` (at least [`MIN_SECRET_BYTES`] bytes).
    pub fn hs256(secret: &[u8]) -> Result<Self, JwtKeyError> {
        check_secret(secret)?;
        Ok(Self::with_key(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// Accepts tokens signed by the private half of a PEM public key: RSA (RS256), EC P-256
    /// (ES256) or Ed25519 (EdDSA).
    pub fn from_public_key_pem(pem: &[u8]) -> Result<Self, JwtKeyError> {
        let (key, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (key, Algorithm::RS256)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (key, Algorithm::ES256)
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (key, Algorithm::EdDSA)
        } else {
            return Err(JwtKeyError::UnsupportedKey("public"));
        };
        Ok(Self::with_key(key, algorithm))
    }

    fn with_key(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        // `jsonwebtoken` accepts a token during the second its `exp` names; RFC 7519 §4.1.4
        // says it is expired from that second on. This makes `now >= exp` refused.
        validation.reject_tokens_expiring_in_less_than = 1;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Self { key, validation }
    }

    /// Also requires tokens to name `audience` in their `aud` claim.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.validation.set_audience(&[audience.into()]);
        self.validation.validate_aud = true;
        // `jsonwebtoken` lets a token without `aud` through an audience check; a token minted
        // for no audience in particular must not open a server that asks for one.
        self.validation.set_required_spec_claims(&["exp", "aud"]);
        self
    }

    /// The one algorithm this authorizer accepts, e.g. `"RS256"`.
    pub fn algorithm(&self) -> String {
        format!("{:?}", self.validation.algorithms[0])
    }

    /// Checks a token's signature and time limits and returns who it names and what it grants
    /// per pattern.
    fn verify(&self, token: &str) -> Result<VerifiedClaims, AuthError> {
        let claims = jsonwebtoken::decode::<VerifiedClaims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| AuthError::Unauthenticated(describe(error.kind()).to_owned()))?;
        if claims.exp > MAX_EXP_SECS {
            return Err(AuthError::Unauthenticated(
                "token expiry out of range".to_owned(),
            ));
        }
        Ok(claims)
    }
}

fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet",
        ErrorKind::InvalidAudience => "token is for another audience",
        ErrorKind::InvalidSignature => "bad token signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token algorithm not accepted"
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => "token has no audience",
        ErrorKind::MissingRequiredClaim(_) => "token has no expiry",
        _ => "malformed token",
    }
}

#[async_trait]
impl Authorizer for JwtAuthorizer {
    async fn authorize(
        &self,
        credentials: &Credentials,
        doc: &DocName,
    ) -> Result<Grant, AuthError> {
        let token = credentials
            .token
            .as_deref()
            .ok_or_else(|| AuthError::Unauthenticated("missing token".to_owned()))?;
        let claims = self.verify(token)?;
        let mut rights = Rights::NONE;
        for (pattern, names) in &claims.docs {
            let granted = Rights::parse_list(names)
                .map_err(|error| AuthError::Unauthenticated(format!("malformed token: {error}")))?;
            if pattern_matches(pattern, doc) {
                rights |= granted;
            }
        }
        if rights.is_empty() {
            return Err(AuthError::Forbidden(
                "the token does not cover this document".to_owned(),
            ));
        }
        Ok(Grant {
            subject: claims.sub,
            rights,
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(claims.exp)),
        })
    }
}

/// Mints tokens, for development and scripts (`tandem token`).
#[derive(Clone)]
pub struct JwtSigner {
    key: EncodingKey,
    algorithm: Algorithm,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// Signs HS256 tokens with `secret` (at least [`MIN_SECRET_BYTES`] bytes).
    pub fn hs256(secret: &[u8]) -> Result<Self, JwtKeyError> {
        check_secret(secret)?;
        Ok(Self {
            key: EncodingKey::from_secret(secret),
            algorithm: Algorithm::HS256,
        })
    }

    /// Signs with a PEM private key (PKCS#8 or PKCS#1 RSA): RS256, ES256 (P-256) or EdDSA.
    pub fn from_private_key_pem(pem: &[u8]) -> Result<Self, JwtKeyError> {
        let (key, algorithm) = if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            (key, Algorithm::RS256)
        } else if let Ok(key) = EncodingKey::from_ec_pem(pem) {
            (key, Algorithm::ES256)
        } else if let Ok(key) = EncodingKey::from_ed_pem(pem) {
            (key, Algorithm::EdDSA)
        } else {
            return Err(JwtKeyError::UnsupportedKey("private"));
        };
        Ok(Self { key, algorithm })
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &JwtClaims) -> Result<String, JwtKeyError> {
        Ok(jsonwebtoken::encode(
            &Header::new(self.algorithm),
            claims,
            &self.key,
        )?)
    }
}

fn check_secret(secret: &[u8]) -> Result<(), JwtKeyError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(JwtKeyError::SecretTooShort(secret.len()));
    }
    if secret.iter().all(u8::is_ascii_whitespace) {
        return Err(JwtKeyError::WeakSecret("only whitespace"));
    }
    let mut seen = [false; 256];
    for &byte in secret {
        seen[usize::from(byte)] = true;
    }
    if seen.iter().filter(|&&seen| seen).count() < MIN_SECRET_DISTINCT_BYTES {
        return Err(JwtKeyError::WeakSecret("too repetitive"));
    }
    Ok(())
}

/// Seconds since the Unix epoch, as JWT time claims count.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(docs: &[(&str, &[&str])], exp: u64) -> JwtClaims {
        JwtClaims {
            sub: Some("alice".into()),
            exp,
            nbf: None,
            iat: None,
            aud: None,
            docs: docs
                .iter()
                .map(|(p, r)| (p.to_string(), r.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    async fn authorize(
        authorizer: &JwtAuthorizer,
        token: &str,
        doc: &str,
    ) -> Result<Grant, AuthError> {
        let credentials = Credentials {
            token: Some(token.to_owned()),
            ..Credentials::default()
        };
        authorizer
            .authorize(&credentials, &DocName::from(doc))
            .await
    }

    #[tokio::test]
    async fn grants_the_union_of_matching_patterns() {
        let signer = JwtSigner::hs256(SECRET).expect("secret");
        let authorizer = JwtAuthorizer::hs256(SECRET).expect("secret");
        let token = signer
            .sign(&claims(
                &[("notes/*", &["read", "-presence"]), ("notes/a", &["write"])],
                unix_now() + 60,
            ))
            .expect("sign");
        let grant = authorize(&authorizer, &token, "notes/a")
            .await
            .expect("grant");
        assert!(grant.rights.contains(Rights::WRITE));
        assert_eq!(grant.subject.as_deref(), Some("alice"));
        let grant = authorize(&authorizer, &token, "notes/b")
            .await
            .expect("grant");
        assert_eq!(grant.rights, Rights::READ);
        assert!(matches!(
            authorize(&authorizer, &token, "notesX").await,
            Err(AuthError::Forbidden(_))
        ));
    }

    #[tokio::test]
    async fn refuses_expired_and_forged_tokens() {
        let signer = JwtSigner::hs256(SECRET).expect("secret");
        let authorizer = JwtAuthorizer::hs256(SECRET).expect("secret");
        let expired = signer
            .sign(&claims(&[("*", &["read"])], unix_now() - 1))
            .expect("sign");
        assert_eq!(
            authorize(&authorizer, &expired, "a").await,
            Err(AuthError::Unauthenticated("token expired".into()))
        );
        let other = JwtSigner::hs256(b"another secret, also 32 bytes long").expect("secret");
        let forged = other
            .sign(&claims(&[("*", &["write"])], unix_now() + 60))
            .expect("sign");
        assert_eq!(
            authorize(&authorizer, &forged, "a").await,
            Err(AuthError::Unauthenticated("bad token signature".into()))
        );
    }

    #[tokio::test]
    async fn absurd_expiries_are_refused_not_overflowed() {
        let signer = JwtSigner::hs256(SECRET).expect("secret");
        let authorizer = JwtAuthorizer::hs256(SECRET).expect("secret");
        for exp in [MAX_EXP_SECS + 1, 9_300_000_000_000_000_000, u64::MAX] {
            let token = signer
                .sign(&claims(&[("*", &["read"])], exp))
                .expect("sign");
            assert_eq!(
                authorize(&authorizer, &token, "a").await,
                Err(AuthError::Unauthenticated(
                    "token expiry out of range".into()
                )),
                "exp {exp}"
            );
        }
        let token = signer
            .sign(&claims(&[("*", &["read"])], MAX_EXP_SECS))
            .expect("sign");
        let grant = authorize(&authorizer, &token, "a").await.expect("grant");
        assert_eq!(
            grant.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(MAX_EXP_SECS))
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            JwtAuthorizer::hs256(b"short"),
            Err(JwtKeyError::SecretTooShort(5))
        ));
    }

    #[test]
    fn guessable_secrets_are_refused() {
        let weak: [&[u8]; 5] = [
            &[b' '; 32],
            b" \t\n\r \t\n\r \t\n\r \t\n\r \t\n\r \t\n\r \t\n\r \t\n\r ",
            &[b'a'; 64],
            &[0; 32],
            b"abcdefgabcdefgabcdefgabcdefgabcdefg",
        ];
        for secret in weak {
            assert!(
                matches!(
                    JwtAuthorizer::hs256(secret),
                    Err(JwtKeyError::WeakSecret(_))
                ),
                "accepted {secret:?}"
            );
            assert!(
                matches!(JwtSigner::hs256(secret), Err(JwtKeyError::WeakSecret(_))),
                "signer accepted {secret:?}"
            );
        }
        // Eight different bytes is the least accepted; a random hex secret has more.
        assert!(JwtAuthorizer::hs256(b"abcdefghabcdefghabcdefghabcdefgh").is_ok());
        assert!(JwtAuthorizer::hs256(b"3f9a61c0d2b7e8455ac1f07e9d3b2a68").is_ok());
    }
}
