//! Helpers for the end-to-end suites live in tests/.
