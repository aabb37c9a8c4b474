//! The root package carries only the end-to-end tests of the whole stack, in
//! `tests/e2e/`: they start the four services and the Ollama simulator as real
//! processes against throwaway PostgreSQL and Redis instances.
