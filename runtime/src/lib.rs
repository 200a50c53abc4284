//! Ragdoll runtime: ingests documents (text, Markdown, HTML, XML, PDF, DOCX, CSV, JSON, YAML),
//! chunks and embeds them through a Postgres-backed job queue, and stores them in PostgreSQL with
//! pgvector. The `ragdoll` binary (src/main.rs) is a thin CLI over this library.

pub mod analysis;
pub mod api;
pub mod app;
pub mod chunk;
pub mod client;
pub mod config;
pub mod db;
pub mod embed;
pub mod extract;
pub mod http;
pub mod maintenance;
pub mod metrics;
pub mod pipeline;
pub mod providers;
pub mod queue;
pub mod search;
