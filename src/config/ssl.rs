//! `database.sslmode` and friends: what the connector asks of TLS. The handshake itself is in
//! `source::postgres::tls`.

use std::{fmt, path::PathBuf, str::FromStr};

/// `database.sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "{other:?} is not an sslmode; use disable, allow, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslConfig {
    pub mode: SslMode,
    /// PEM file with the certificates that may sign the server's (`database.sslrootcert`).
    pub root_cert: Option<PathBuf>,
}
