//! Why a command could not do its job, as one line, and the exit code that
//! goes with it.

use chatbot_common::error::ErrorChain;

use crate::output::Outcome;

/// A failure that stops a command.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// An HTTP endpoint did not answer usably.
    #[error("{what} at {url} is unreachable: {detail}")]
    Unreachable {
        /// What was asked (`the health verdict`).
        what: &'static str,
        /// Where.
        url: String,
        /// Why, in one line.
        detail: String,
    },
    /// PostgreSQL could not be reached or refused a query.
    #[error("PostgreSQL: {0}")]
    Database(String),
    /// Bad usage or configuration.
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (`writing /var/backups/chatbot/…/manifest.json`).
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `pg_dump` or `pg_restore` failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// Its error message, in one line.
        detail: String,
    },
    /// The object storage refused or could not be reached.
    #[error("object storage: {0}")]
    Storage(String),
    /// A backup file does not match its manifest.
    #[error(
        "checksum mismatch: {file} has sha256 {actual}, its manifest says {expected}; nothing was restored"
    )]
    Checksum {
        /// The file.
        file: String,
        /// The manifest's sha256.
        expected: String,
        /// The file's sha256.
        actual: String,
    },
    /// A backup is missing, incomplete or unusable.
    #[error("{0}")]
    Backup(String),
    /// The command refuses to go on (a target database that holds data).
    #[error("{0}")]
    Refused(String),
    /// What the command was to act on does not exist.
    #[error("{0}")]
    NotFound(String),
}

impl OpsError {
    /// The exit code that goes with the error.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Unreachable { .. } | Self::Database(_) => Outcome::Unreachable,
            Self::Usage(_) => Outcome::Usage,
            Self::Io { .. }
            | Self::Tool { .. }
            | Self::Storage(_)
            | Self::Checksum { .. }
            | Self::Backup(_)
            | Self::Refused(_)
            | Self::NotFound(_) => Outcome::Fail,
        }
    }

    /// A PostgreSQL error with its causes, in one line.
    pub fn database(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Database(ErrorChain(error).to_string())
    }

    /// A local file error, saying what was being done.
    pub fn io(what: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            what: what.to_string(),
            source,
        }
    }

    /// An object storage error with its causes, in one line (servers answer
    /// with multi-line XML bodies).
    pub fn storage(
        what: impl std::fmt::Display,
        error: &(dyn std::error::Error + 'static),
    ) -> Self {
        Self::Storage(one_line(&format!("{what}: {}", ErrorChain(error))))
    }
}

/// `text` with every run of whitespace (newlines included) made one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
