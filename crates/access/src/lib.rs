//! Who may call the public API, and how often.
//!
//! - [`token`]: API keys as clients hold them (`cbk_` and 43 characters of
//!   base64url, 256 random bits) and as they are stored (a SHA-256 digest:
//!   the key is never stored or logged, only shown once when it is made).
//! - [`store`]: the `api_keys` table in PostgreSQL (create, list, revoke,
//!   load), used by `chatbot-ops keys` and the gateway.
//! - [`cache`]: the gateway's copy of the active keys, reloaded every
//!   `auth.refresh_secs`, so a request is checked without a database round
//!   trip and a revocation takes effect within that period.
//! - [`limit`]: requests per minute per key, and [`streams`]: streamed
//!   answers at once per key, both shared by every gateway replica through
//!   Redis (one atomic script per check), with this replica's own count when
//!   Redis cannot be reached ([`fallback`]); a busy key takes several cells
//!   of its allowance a call ([`lease`]).
//!
//! The table's migration is `crates/chat/migrations/0002_api_keys.sql`, in the
//! one migration sequence chat applies.

pub mod cache;
pub mod fallback;
pub mod lease;
pub mod limit;
pub mod store;
pub mod streams;
pub mod token;

pub use cache::{AuthError, KeyCache};
pub use limit::{Decision, Limiter};
pub use store::{ApiKey, KeyStore, Limits, StoreError};
pub use streams::{Slot, StreamSlots};
pub use token::Token;
