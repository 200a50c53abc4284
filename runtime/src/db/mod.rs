//! Database access: the connection pool, the embedded migrations and the dimension-pinned vector
//! schema (`schema`), and the document/chunk repository (`documents`).

pub mod documents;
pub mod notify;
pub mod schema;

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::DatabaseSettings;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(String),
    #[error("could not connect to the database within {secs}s: {source}")]
    Unreachable { secs: u64, source: sqlx::Error },
}

/// Connects a pool, retrying while the database is not reachable yet (pods often start before
/// Postgres is ready) up to `connect_timeout_secs`. `session` settings (e.g. `hnsw.ef_search`)
/// travel in the startup packet, so they cost no round trip.
pub async fn connect(
    settings: &DatabaseSettings,
    session: &[(&str, String)],
) -> Result<PgPool, DbError> {
    let mut opts: PgConnectOptions = settings
        .url
        .parse::<PgConnectOptions>()
        .map_err(|e| DbError::InvalidUrl(e.to_string()))?;
    if let Some(mode) = &settings.ssl_mode
        && !settings.url.contains("sslmode=")
    {
        let mode = mode
            .parse::<sqlx::postgres::PgSslMode>()
            .map_err(|e| DbError::InvalidUrl(format!("RAGDOLL_DATABASE_SSL_MODE: {e}")))?;
        opts = opts.ssl_mode(mode);
    }
    let opts = opts
        .application_name("ragdoll")
        .options(session.iter().map(|(k, v)| (*k, v.as_str())))
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(settings.connect_timeout_secs);
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(true)
            .connect_with(opts.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(source) => {
                return Err(DbError::Unreachable {
                    secs: settings.connect_timeout_secs,
                    source,
                });
            }
        }
    }
}
