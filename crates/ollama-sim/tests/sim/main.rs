//! Integration tests of the Ollama simulator: each test starts its own
//! simulator in-process on a free port and talks HTTP to it.

mod control;
mod faults;
mod helpers;
mod python_client;
mod wire;
