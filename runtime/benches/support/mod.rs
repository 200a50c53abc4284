//! Shared by the benchmarks: the admin connection from DATABASE_URL, fresh databases, percentiles.
#![allow(dead_code)]

use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

pub fn admin_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            eprintln!("DATABASE_URL is not set; run `make bench` (it starts the local Postgres)");
            std::process::exit(2);
        }
    }
}

pub async fn admin_pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect to DATABASE_URL")
}

/// Drops and recreates database `name`; returns its URL.
pub async fn fresh_db(admin: &PgPool, admin_url: &str, name: &str) -> String {
    drop_db(admin, name).await;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin)
        .await
        .expect("create database");
    let (base, _) = admin_url.rsplit_once('/').expect("database in url");
    format!("{base}/{name}")
}

pub async fn drop_db(admin: &PgPool, name: &str) {
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(admin)
    .await
    .expect("drop database");
}

/// The `p`-th percentile (0-100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
