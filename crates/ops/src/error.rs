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
}

impl OpsError {
    /// The exit code that goes with the error.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Unreachable { .. } | Self::Database(_) => Outcome::Unreachable,
            Self::Usage(_) => Outcome::Usage,
        }
    }

    /// A PostgreSQL error with its causes, in one line.
    pub fn database(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Database(ErrorChain(error).to_string())
    }
}
