//! The worker loop: per-queue concurrency slots that claim jobs, wake on `LISTEN/NOTIFY` (with a
//! poll as fallback), heartbeat while a job runs, record the outcome (complete / retry with
//! backoff / fail), reap jobs of dead workers, survive database restarts, and on shutdown finish
//! or release what they hold.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Job, NOTIFY_CHANNEL, Queue};
use crate::config::QueueSettings;
use crate::db::notify::Heard;

/// Why a job attempt did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (network, provider 5xx/429, database hiccup).
    #[error("{0}")]
    Retryable(String),
    /// Will fail the same way again (corrupt file, unsupported content): fail now.
    #[error("{0}")]
    Permanent(String),
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Retryable(format!("database error: {e}"))
    }
}

/// What runs jobs. `handle` must be idempotent: a job may run again after a crash.
pub trait JobHandler: Send + Sync + 'static {
    fn handle(&self, job: &Job) -> impl Future<Output = Result<(), JobError>> + Send;
    /// Called once when a job has failed for good (no attempts left, or a permanent error).
    fn on_failed(&self, job: &Job, error: &str) -> impl Future<Output = ()> + Send;
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Queues to serve and how many jobs of each may run at once.
    pub queues: Vec<(Queue, usize)>,
    pub settings: QueueSettings,
    pub worker_id: String,
}

/// A worker id that tells operators where a job ran: host, pid and a random suffix.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ragdoll".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

/// Runs workers until `shutdown` is cancelled and every slot has finished or released its job.
pub async fn run<H: JobHandler>(
    pool: PgPool,
    handler: Arc<H>,
    config: WorkerConfig,
    shutdown: CancellationToken,
) {
    let notifies: Arc<HashMap<Queue, Arc<Notify>>> = Arc::new(
        config
            .queues
            .iter()
            .map(|(q, _)| (*q, Arc::new(Notify::new())))
            .collect(),
    );
    let mut tasks = JoinSet::new();
    tasks.spawn(listen(pool.clone(), notifies.clone(), shutdown.clone()));
    tasks.spawn(reap(
        pool.clone(),
        handler.clone(),
        config.queues.iter().map(|(q, _)| *q).collect(),
        config.settings.clone(),
        shutdown.clone(),
    ));
    for (queue, concurrency) in &config.queues {
        for slot in 0..(*concurrency).max(1) {
            let ctx = Slot {
                pool: pool.clone(),
                handler: handler.clone(),
                queue: *queue,
                notify: notifies[queue].clone(),
                settings: config.settings.clone(),
                worker_id: format!("{}/{}-{}", config.worker_id, queue, slot),
                shutdown: shutdown.clone(),
            };
            tasks.spawn(ctx.run());
        }
    }
    tracing::info!(worker = %config.worker_id, queues = ?config.queues, "workers started");
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res {
            tracing::error!(error = %e, "worker task panicked");
        }
    }
    tracing::info!(worker = %config.worker_id, "workers stopped");
}

/// Wakes the slots of a queue when Postgres announces a job; all of them after a reconnect.
async fn listen(
    pool: PgPool,
    notifies: Arc<HashMap<Queue, Arc<Notify>>>,
    shutdown: CancellationToken,
) {
    crate::db::notify::listen(pool, NOTIFY_CHANNEL, shutdown, |heard| match heard {
        Heard::Notification(payload) => match payload.parse::<Queue>() {
            Ok(q) => {
                if let Some(n) = notifies.get(&q) {
                    n.notify_waiters();
                }
            }
            Err(e) => tracing::debug!(error = %e, "ignoring notification"),
        },
        Heard::MaybeMissed => notifies.values().for_each(|n| n.notify_waiters()),
    })
    .await
}

/// Periodically fails jobs whose worker died on their last attempt.
async fn reap<H: JobHandler>(
    pool: PgPool,
    handler: Arc<H>,
    queues: Vec<Queue>,
    settings: QueueSettings,
    shutdown: CancellationToken,
) {
    let every =
        (settings.visibility_timeout() / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        for q in &queues {
            match super::reap_expired(&pool, *q).await {
                Ok(jobs) => {
                    for job in jobs {
                        let err = "worker stopped responding during the last attempt";
                        tracing::warn!(job = job.id, kind = %job.kind, "{err}");
                        handler.on_failed(&job, err).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, queue = %q, "reaping expired jobs failed"),
            }
        }
    }
}

struct Slot<H> {
    pool: PgPool,
    handler: Arc<H>,
    queue: Queue,
    notify: Arc<Notify>,
    settings: QueueSettings,
    worker_id: String,
    shutdown: CancellationToken,
}

impl<H: JobHandler> Slot<H> {
    async fn run(self) {
        let mut db_delay = Duration::from_millis(100);
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claimed = super::claim(
                &self.pool,
                self.queue,
                &self.worker_id,
                self.settings.visibility_timeout(),
            )
            .await;
            match claimed {
                Ok(Some(job)) => {
                    db_delay = Duration::from_millis(100);
                    self.run_job(job).await;
                }
                Ok(None) => {
                    db_delay = Duration::from_millis(100);
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(self.settings.poll_interval()) => {}
                        _ = self.shutdown.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, queue = %self.queue, "claiming a job failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(db_delay) => {}
                        _ = self.shutdown.cancelled() => return,
                    }
                    db_delay = (db_delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn run_job(&self, job: Job) {
        let span = tracing::info_span!("job", id = job.id, kind = %job.kind, queue = %job.queue,
            attempt = job.attempts, document = ?job.document_id);
        self.run_job_in_span(job).instrument(span).await
    }

    async fn run_job_in_span(&self, job: Job) {
        let started = std::time::Instant::now();
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.pool.clone(),
            job.id,
            self.worker_id.clone(),
            self.settings.visibility_timeout(),
        ));
        let work = self.handler.handle(&job);
        tokio::pin!(work);
        let outcome = tokio::select! {
            r = &mut work => Some(r),
            _ = self.shutdown.cancelled() => {
                tracing::info!(grace = ?self.settings.shutdown_grace(), "shutting down; letting the running job finish");
                tokio::time::timeout(self.settings.shutdown_grace(), &mut work).await.ok()
            }
        };
        heartbeat.abort();
        let elapsed = started.elapsed();
        let outcome_label = match &outcome {
            None => "released",
            Some(Ok(())) => "succeeded",
            Some(Err(JobError::Retryable(_))) if job.attempts < job.max_attempts => "retried",
            Some(Err(_)) => "failed",
        };
        crate::metrics::metrics()
            .background_jobs
            .with_label_values(&[job.kind.as_str(), outcome_label])
            .inc();
        match outcome {
            None => {
                tracing::warn!("job did not finish within the shutdown grace period; releasing it");
                self.persist("release", || {
                    super::release(&self.pool, job.id, &self.worker_id)
                })
                .await;
            }
            Some(Ok(())) => {
                tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "job succeeded");
                self.persist("complete", || {
                    super::complete(&self.pool, job.id, &self.worker_id)
                })
                .await;
            }
            Some(Err(JobError::Retryable(msg))) if job.attempts < job.max_attempts => {
                let delay = super::backoff(
                    job.attempts,
                    Duration::from_millis(self.settings.backoff_base_ms),
                    Duration::from_millis(self.settings.backoff_max_ms),
                );
                tracing::warn!(error = %msg, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
                self.persist("retry", || {
                    super::retry_later(&self.pool, job.id, &self.worker_id, &msg, delay)
                })
                .await;
            }
            Some(Err(e)) => {
                let msg = match &e {
                    JobError::Retryable(m) => {
                        format!("{m} (gave up after {} attempts)", job.attempts)
                    }
                    JobError::Permanent(m) => m.clone(),
                };
                tracing::error!(error = %msg, "job failed");
                let recorded = self
                    .persist("fail", || {
                        super::fail(&self.pool, job.id, &self.worker_id, &msg)
                    })
                    .await;
                if recorded {
                    self.handler.on_failed(&job, &msg).await;
                }
            }
        }
    }

    /// Records a job outcome, retrying while the database is unavailable. Returns whether this
    /// worker still owned the job. If the database never comes back within the budget, the job
    /// stays `running` and is reclaimed after the visibility timeout — never lost.
    async fn persist<F, Fut>(&self, what: &str, op: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<bool, sqlx::Error>>,
    {
        let mut delay = Duration::from_millis(100);
        for _ in 0..12 {
            match op().await {
                Ok(true) => return true,
                Ok(false) => {
                    tracing::warn!("could not {what} the job: it is no longer held by this worker");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not {what} the job; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::error!(
            "giving up recording the job outcome; it will be retried after the visibility timeout"
        );
        false
    }
}

async fn heartbeat_loop(pool: PgPool, job_id: i64, worker_id: String, visibility: Duration) {
    let every = (visibility / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        match super::heartbeat(&pool, job_id, &worker_id, visibility).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "job lock lost (reclaimed or deleted); the work may run again elsewhere"
                );
                return;
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}
