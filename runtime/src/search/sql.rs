//! The SQL of a search, built as one statement per request (no follow-up queries):
//! semantic (cosine distance ordered by the HNSW index), full-text (`websearch_to_tsquery` +
//! `ts_rank_cd`), hybrid (reciprocal rank fusion of both lists, in SQL), with document filters,
//! an optional usage boost and optional best-chunk-per-document grouping.
//!
//! `hnsw.ef_search` and `hnsw.iterative_scan = relaxed_order` are session settings of every pooled
//! connection (see `db::connect`), so a selective filter still yields `limit` rows without an
//! extra round trip; outer queries re-sort the relaxed order.

use pgvector::Vector;
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::{Mode, Search, SearchHit, ValidFilters};
use crate::config::SearchSettings;

const HIT_COLUMNS: &str = "c.id AS chunk_id, c.document_id, d.title, d.location, d.document_type, \
     c.content, c.chunk_index, d.metadata, c.usage_count, c.returned_at";
const FROM_CHUNKS: &str = " FROM chunks c JOIN documents d ON d.id = c.document_id";

/// How chunks are ranked; the semantic kinds carry the query vector.
pub enum Ranking {
    Fulltext,
    Semantic(Vector),
    Hybrid(Vector),
}

pub async fn run(
    pool: &PgPool,
    search: &Search,
    ranking: Ranking,
    text_search_config: &str,
    settings: &SearchSettings,
) -> Result<Vec<SearchHit>, sqlx::Error> {
    let mut qb = build(search, ranking, text_search_config, settings);
    qb.build_query_as::<SearchHit>().fetch_all(pool).await
}

/// How many candidates each list contributes before fusion, grouping and the final limit.
fn candidates(search: &Search) -> i64 {
    let limit = i64::from(search.limit);
    if search.group_by_document {
        (limit * 10).min(1000)
    } else if search.mode == Mode::Hybrid {
        (limit * 3).max(50)
    } else {
        limit
    }
}

pub fn build(
    search: &Search,
    ranking: Ranking,
    text_search_config: &str,
    settings: &SearchSettings,
) -> QueryBuilder<Postgres> {
    build_with_prefix("", search, ranking, text_search_config, settings)
}

/// `EXPLAIN ANALYZE` of the statement `build` produces (for diagnosing plans on real data).
pub fn build_explain(
    search: &Search,
    ranking: Ranking,
    text_search_config: &str,
    settings: &SearchSettings,
) -> QueryBuilder<Postgres> {
    build_with_prefix(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) ",
        search,
        ranking,
        text_search_config,
        settings,
    )
}

fn build_with_prefix(
    prefix: &str,
    search: &Search,
    ranking: Ranking,
    text_search_config: &str,
    settings: &SearchSettings,
) -> QueryBuilder<Postgres> {
    let mut qb = QueryBuilder::new(format!(
        "{prefix}SELECT chunk_id, document_id, title, location, document_type, content, chunk_index, \
         metadata, similarity, score FROM ("
    ));
    if search.group_by_document {
        qb.push("SELECT DISTINCT ON (document_id) * FROM (");
    }
    // Scored: the raw score, times the usage boost when enabled.
    qb.push("SELECT r0.*, ");
    if settings.usage_boost > 0.0 {
        qb.push("(r0.raw_score * (1 + ")
            .push_bind(settings.usage_boost)
            .push(
                " * (0.7 * least(ln(r0.usage_count + 1) / ln(100), 1) + 0.3 * coalesce(\
                 exp(-extract(epoch FROM now() - r0.returned_at) / 2592000.0), 0))))::float8",
            );
    } else {
        qb.push("r0.raw_score");
    }
    qb.push(" AS score FROM (");
    let n = candidates(search);
    match ranking {
        Ranking::Fulltext => fulltext_ranked(&mut qb, search, text_search_config, n),
        Ranking::Semantic(v) => semantic_ranked(&mut qb, search, v, n),
        Ranking::Hybrid(v) => {
            hybrid_ranked(&mut qb, search, v, text_search_config, n, settings.rrf_k)
        }
    }
    qb.push(") r0");
    if search.group_by_document {
        qb.push(") r1 ORDER BY document_id, score DESC, chunk_id");
    }
    qb.push(") r ORDER BY score DESC, chunk_id LIMIT ")
        .push_bind(i64::from(search.limit));
    qb
}

fn push_filters(qb: &mut QueryBuilder<Postgres>, f: &ValidFilters) {
    if let Some(t) = &f.document_types {
        qb.push(" AND d.document_type = ANY(")
            .push_bind(t.clone())
            .push(")");
    }
    if let Some(ids) = &f.document_ids {
        qb.push(" AND c.document_id = ANY(")
            .push_bind(ids.clone())
            .push(")");
    }
    if let Some(m) = &f.metadata {
        qb.push(" AND d.metadata @> ")
            .push_bind(m.clone())
            .push("::jsonb");
    }
    if let Some(k) = &f.keywords_any {
        qb.push(" AND d.keywords && ")
            .push_bind(k.clone())
            .push("::text[]");
    }
    if let Some(k) = &f.keywords_all {
        qb.push(" AND d.keywords @> ")
            .push_bind(k.clone())
            .push("::text[]");
    }
    if let Some(t) = f.created_after {
        qb.push(" AND d.created_at >= ").push_bind(t);
    }
    if let Some(t) = f.created_before {
        qb.push(" AND d.created_at < ").push_bind(t);
    }
}

/// `SELECT <columns> ... ORDER BY distance LIMIT n` on the HNSW index; `columns` must give
/// `similarity`.
fn nearest(qb: &mut QueryBuilder<Postgres>, columns: &str, search: &Search, v: &Vector, n: i64) {
    qb.push("SELECT ")
        .push(columns)
        .push(", (1 - (c.embedding <=> ")
        .push_bind(v.clone())
        .push("))::float8 AS similarity")
        .push(FROM_CHUNKS)
        .push(" WHERE c.embedding IS NOT NULL");
    push_filters(qb, &search.filters);
    qb.push(" ORDER BY c.embedding <=> ")
        .push_bind(v.clone())
        .push(" LIMIT ")
        .push_bind(n);
}

fn push_threshold(qb: &mut QueryBuilder<Postgres>, alias: &str, search: &Search) {
    if let Some(t) = search.threshold {
        qb.push(" WHERE ")
            .push(alias)
            .push(".similarity >= ")
            .push_bind(f64::from(t));
    }
}

/// `SELECT <columns>, rank ... ORDER BY ts_rank_cd DESC LIMIT n`. A chunk matches when its text
/// or its document's keywords match; the candidates come from both GIN indexes through one
/// uncorrelated `ARRAY(... UNION ...)`, so neither index is given up for an OR across tables.
fn best_text_matches(
    qb: &mut QueryBuilder<Postgres>,
    columns: &str,
    search: &Search,
    config: &str,
    n: i64,
) {
    let tsquery = |qb: &mut QueryBuilder<Postgres>| {
        qb.push("websearch_to_tsquery(")
            .push_bind(config.to_string())
            .push("::regconfig, ")
            .push_bind(search.query.clone())
            .push(")");
    };
    qb.push("SELECT ")
        .push(columns)
        .push(", ts_rank_cd(c.content_tsv || d.keywords_tsv, q.query)::float8 AS rank")
        .push(FROM_CHUNKS)
        .push(" CROSS JOIN ");
    tsquery(qb);
    qb.push(
        " AS q(query) WHERE c.id = ANY(ARRAY(SELECT m.id FROM chunks m WHERE m.content_tsv @@ ",
    );
    tsquery(qb);
    qb.push(" UNION SELECT k.id FROM chunks k JOIN documents kd ON kd.id = k.document_id WHERE kd.keywords_tsv @@ ");
    tsquery(qb);
    qb.push("))");
    push_filters(qb, &search.filters);
    qb.push(" ORDER BY rank DESC, c.id LIMIT ").push_bind(n);
}

fn semantic_ranked(qb: &mut QueryBuilder<Postgres>, search: &Search, v: Vector, n: i64) {
    qb.push("SELECT s.*, s.similarity AS raw_score FROM (");
    nearest(qb, HIT_COLUMNS, search, &v, n);
    qb.push(") s");
    push_threshold(qb, "s", search);
}

fn fulltext_ranked(qb: &mut QueryBuilder<Postgres>, search: &Search, config: &str, n: i64) {
    qb.push("SELECT t.*, NULL::float8 AS similarity, t.rank AS raw_score FROM (");
    best_text_matches(qb, HIT_COLUMNS, search, config, n);
    qb.push(") t");
}

fn hybrid_ranked(
    qb: &mut QueryBuilder<Postgres>,
    search: &Search,
    v: Vector,
    config: &str,
    n: i64,
    k: f64,
) {
    let (ws, wf) = search.weights;
    qb.push("SELECT ")
        .push(HIT_COLUMNS)
        .push(
            ", f.similarity, f.score AS raw_score FROM (SELECT coalesce(sem.id, ft.id) AS id, \
               sem.similarity, coalesce(",
        )
        .push_bind(ws)
        .push(" / (")
        .push_bind(k)
        .push(" + sem.rank), 0) + coalesce(")
        .push_bind(wf)
        .push(" / (")
        .push_bind(k)
        .push(
            " + ft.rank), 0) AS score FROM (SELECT s.id, s.similarity, row_number() OVER \
               (ORDER BY s.similarity DESC, s.id) AS rank FROM (",
        );
    nearest(qb, "c.id", search, &v, n);
    qb.push(") s");
    push_threshold(qb, "s", search);
    qb.push(") sem FULL OUTER JOIN (SELECT t.id, row_number() OVER (ORDER BY t.rank DESC, t.id) AS rank FROM (");
    best_text_matches(qb, "c.id", search, config, n);
    qb.push(") t) ft ON sem.id = ft.id) f JOIN chunks c ON c.id = f.id JOIN documents d ON d.id = c.document_id");
}
