//! Who may open which document, and what they may do there.
//!
//! An [`Authorizer`] looks at a connection's [`Credentials`] (a token, the request headers, the
//! remote address) and a document name, and either refuses ([`AuthError`]: not authenticated,
//! or authenticated but not for this document) or answers with a [`Grant`]: who the peer is,
//! its [`Rights`] and when the grant expires. The server enforces the rights: a peer without
//! [`Rights::WRITE`] never changes the document, one without [`Rights::PRESENCE`] is invisible.
//!
//! [`JwtAuthorizer`] checks signed tokens; [`AllowAll`] is the anonymous mode for development
//! on loopback. An embedding app implements the trait itself to use its own sessions.

use std::fmt;
use std::net::SocketAddr;
use std::ops::{BitOr, BitOrAssign};
use std::str::FromStr;
use std::time::SystemTime;

use async_trait::async_trait;
use thiserror::Error;

use crate::name::DocName;

pub mod jwt;

pub use jwt::{JwtAuthorizer, JwtClaims, JwtKeyError, JwtSigner};

/// What a peer may do with a document. Every right includes [`Rights::READ`]: a peer that may
/// open a document receives its content and everyone's presence.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights(u8);

impl Rights {
    /// No rights: the document may not be opened.
    pub const NONE: Rights = Rights(0);
    /// Receive the document and everyone's presence.
    pub const READ: Rights = Rights(1);
    /// Publish one's own presence (awareness state).
    pub const PRESENCE: Rights = Rights(1 << 1);
    /// Send custom events to the document's other peers.
    pub const EVENTS: Rights = Rights(1 << 2);
    /// Change the document.
    pub const WRITE: Rights = Rights(1 << 3);
    /// List and delete documents.
    pub const ADMIN: Rights = Rights(1 << 4);
    /// Everything.
    pub const ALL: Rights = Rights(0b1_1111);

    /// Whether every right in `other` is also in `self`.
    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` without the rights in `other`.
    pub fn without(self, other: Rights) -> Rights {
        Rights(self.0 & !other.0)
    }

    /// Whether no right is granted.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses a list of right names as tokens carry them.
    ///
    /// `read` grants reading and presence (a viewer shows up among the present unless the list
    /// says `-presence`); `presence` and `events` grant themselves and reading; `write` grants
    /// everything but `admin`; `admin` grants everything. Names starting with `-` take a right
    /// away after the others are added, so `["write", "-presence"]` is an invisible editor.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Rights, UnknownRight> {
        let mut granted = Rights::NONE;
        let mut removed = Rights::NONE;
        for name in names {
            let name = name.as_ref();
            match name.strip_prefix('-') {
                Some(negated) => removed |= Self::single(negated)?,
                None => granted |= Self::implied(name.parse()?),
            }
        }
        let rights = granted.without(removed);
        // Whatever is left still includes reading, unless nothing is left at all.
        Ok(if rights.is_empty() || removed.contains(Rights::READ) {
            Rights::NONE
        } else {
            rights | Rights::READ
        })
    }

    fn single(name: &str) -> Result<Rights, UnknownRight> {
        name.parse()
    }

    fn implied(right: Rights) -> Rights {
        match right {
            Rights::READ => Rights::READ | Rights::PRESENCE,
            Rights::WRITE => Rights::ALL.without(Rights::ADMIN),
            Rights::ADMIN => Rights::ALL,
            other => other | Rights::READ,
        }
    }

    /// The names of the rights held, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Rights::READ, "read"),
            (Rights::PRESENCE, "presence"),
            (Rights::EVENTS, "events"),
            (Rights::WRITE, "write"),
            (Rights::ADMIN, "admin"),
        ]
        .into_iter()
        .filter(|(right, _)| self.contains(*right))
        .map(|(_, name)| name)
        .collect()
    }
}

impl BitOr for Rights {
    type Output = Rights;

    fn bitor(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }
}

impl BitOrAssign for Rights {
    fn bitor_assign(&mut self, other: Rights) {
        self.0 |= other.0;
    }
}

impl FromStr for Rights {
    type Err = UnknownRight;

    /// One right by name, without implications: `read`, `presence`, `events`, `write`, `admin`.
    fn from_str(name: &str) -> Result<Rights, UnknownRight> {
        match name {
            "read" => Ok(Rights::READ),
            "presence" => Ok(Rights::PRESENCE),
            "events" => Ok(Rights::EVENTS),
            "write" => Ok(Rights::WRITE),
            "admin" => Ok(Rights::ADMIN),
            other => Err(UnknownRight(other.to_owned())),
        }
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// A right name that is not one of `read`, `presence`, `events`, `write`, `admin`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("unknown right {0:?} (expected read, presence, events, write or admin)")]
pub struct UnknownRight(pub String);

/// Whether a document name pattern covers a name.
///
/// `*` covers every document; a pattern ending in `*` covers the names starting with what
/// precedes it (`notes/*` covers `notes/a` and `notes/a/b`, not `notes` nor `notesX`); any other
/// pattern covers exactly one name. Names are compared as bytes.
pub fn pattern_matches(pattern: &str, name: &DocName) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.as_bytes().starts_with(prefix.as_bytes()),
        None => name.as_bytes() == pattern.as_bytes(),
    }
}

/// What a connection or request presents to prove who it is.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The bearer token: from `?token=`, `Authorization: Bearer` or the configured cookie.
    pub token: Option<String>,
    /// The request's headers, for authorizers that read their own (a session cookie, say).
    pub headers: http::HeaderMap,
    /// The peer's address, when the server knows it.
    pub remote_addr: Option<SocketAddr>,
}

/// What an authorizer granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who the peer is (a token's `sub`), for logs and hooks.
    pub subject: Option<String>,
    /// What the peer may do with the document; never empty.
    pub rights: Rights,
    /// When the grant ends: a connection still open then is closed (4401).
    pub expires_at: Option<SystemTime>,
}

/// Why an authorizer refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials, or credentials that prove nothing (bad signature, expired): HTTP 401.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Valid credentials that do not cover this document: HTTP 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
}

/// Decides who may open which document.
///
/// Called once per connection, before the WebSocket upgrade, and once per HTTP request. It must
/// not block: do I/O with `.await`.
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// Decides whether `credentials` may open `doc`, and with which rights.
    async fn authorize(&self, credentials: &Credentials, doc: &DocName)
        -> Result<Grant, AuthError>;

    /// Decides what `credentials` may do with every document whose name starts with `prefix`
    /// (listing documents needs [`Rights::ADMIN`] over the prefix listed).
    ///
    /// By default this authorizes the pattern `prefix*` as if it were a document name: a grant
    /// whose patterns cover that name (`*`, or `notes/*` for the prefix `notes/a`) covers every
    /// name with the prefix. Authorizers whose rules are not prefixes should override it.
    async fn authorize_prefix(
        &self,
        credentials: &Credentials,
        prefix: &[u8],
    ) -> Result<Grant, AuthError> {
        let mut pattern = prefix.to_vec();
        pattern.push(b'*');
        self.authorize(credentials, &DocName::from(pattern)).await
    }
}

/// Lets everyone do everything: the anonymous mode, for development on loopback.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[async_trait]
impl Authorizer for AllowAll {
    async fn authorize(&self, _: &Credentials, _: &DocName) -> Result<Grant, AuthError> {
        Ok(Grant {
            subject: None,
            rights: Rights::ALL,
            expires_at: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rights(names: &[&str]) -> Rights {
        Rights::parse_list(names).expect("known rights")
    }

    #[test]
    fn read_includes_presence_unless_taken_away() {
        assert_eq!(rights(&["read"]), Rights::READ | Rights::PRESENCE);
        assert_eq!(rights(&["read", "-presence"]), Rights::READ);
        assert_eq!(rights(&["presence"]), Rights::READ | Rights::PRESENCE);
        assert_eq!(rights(&["events"]), Rights::READ | Rights::EVENTS);
    }

    #[test]
    fn write_implies_all_but_admin() {
        let write = rights(&["write"]);
        assert!(write.contains(Rights::READ | Rights::PRESENCE | Rights::EVENTS));
        assert!(!write.contains(Rights::ADMIN));
        assert_eq!(rights(&["admin"]), Rights::ALL);
        assert_eq!(
            rights(&["write", "-presence"]),
            Rights::ALL.without(Rights::ADMIN | Rights::PRESENCE)
        );
    }

    #[test]
    fn taking_away_read_leaves_nothing() {
        assert!(rights(&["write", "-read"]).is_empty());
        assert!(rights(&[] as &[&str]).is_empty());
    }

    #[test]
    fn unknown_rights_are_errors() {
        assert!(Rights::parse_list(&["wrte"]).is_err());
        assert!(Rights::parse_list(&["-everything"]).is_err());
    }

    #[test]
    fn patterns_respect_prefix_boundaries() {
        let name = |s: &str| DocName::from(s);
        assert!(pattern_matches("notes/*", &name("notes/a")));
        assert!(pattern_matches("notes/*", &name("notes/a/b")));
        assert!(!pattern_matches("notes/*", &name("notesX")));
        assert!(!pattern_matches("notes/*", &name("notes")));
        assert!(pattern_matches("notes", &name("notes")));
        assert!(!pattern_matches("notes", &name("notes/a")));
        assert!(pattern_matches("*", &name("anything/at/all")));
        assert!(!pattern_matches("a*", &DocName::from(vec![0xff])));
    }
}
