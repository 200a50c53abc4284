//! LISTEN on a Postgres channel for the life of the process: connect (retrying with backoff),
//! deliver each notification's payload, and tell the handler whenever notifications may have been
//! missed (on every (re)connect and when the connection drops), until shutdown.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// What the handler hears.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard<'a> {
    Notification(&'a str),
    /// Connected or reconnected: anything sent meanwhile was not delivered.
    MaybeMissed,
}

pub async fn listen(
    pool: PgPool,
    channel: &str,
    shutdown: CancellationToken,
    mut handle: impl FnMut(Heard<'_>),
) {
    let mut delay = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let connect = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            r = connect => match r {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, channel, "cannot LISTEN; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        delay = Duration::from_millis(200);
        handle(Heard::MaybeMissed);
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = shutdown.cancelled() => return,
            };
            match next {
                Ok(Some(n)) => handle(Heard::Notification(n.payload())),
                Ok(None) => {
                    tracing::warn!(channel, "LISTEN connection lost; reconnecting");
                    handle(Heard::MaybeMissed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, channel, "LISTEN failed; reconnecting");
                    handle(Heard::MaybeMissed);
                    break;
                }
            }
        }
    }
}
