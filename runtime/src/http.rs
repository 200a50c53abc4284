//! Outgoing HTTP clients. Owns installing the rustls crypto provider (ring, no C toolchain
//! needed) exactly once before any reqwest client is built.

use std::sync::Once;

/// A reqwest client builder with TLS ready to use.
pub fn client_builder() -> reqwest::ClientBuilder {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only if another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}
