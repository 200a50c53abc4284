//! Document analysis, run by the `analysis` queue: a summary and keywords from the configured
//! LLM, or extractively without one (`extractive`); the method is recorded on the document.
//! Keywords become a full-text vector of the document (so keyword matches count in full-text and
//! hybrid search) and feed the corpus statistics that TF-IDF keywords are ranked against.

pub mod extractive;

use sqlx::PgPool;
use uuid::Uuid;

use crate::providers::chat::Chat;
use crate::queue::worker::JobError;

pub struct Analyzer {
    pub chat: Option<Chat>,
    /// Documents shorter than this get no summary.
    pub summary_min_chars: usize,
    pub max_keywords: usize,
    pub text_search_config: String,
}

async fn corpus(pool: &PgPool, terms: &[String]) -> Result<extractive::Corpus, sqlx::Error> {
    let documents: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE terms_counted")
        .fetch_one(pool)
        .await?;
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT term, documents FROM term_stats WHERE term = ANY($1)")
            .bind(terms)
            .fetch_all(pool)
            .await?;
    Ok(extractive::Corpus {
        documents,
        frequency: rows.into_iter().map(|(t, n)| (t, i64::from(n))).collect(),
    })
}

impl Analyzer {
    pub fn method(&self) -> String {
        self.chat.as_ref().map_or_else(
            || "extractive".to_string(),
            |c| format!("llm:{}", c.summary_model),
        )
    }

    pub async fn analyze(&self, pool: &PgPool, id: Uuid) -> Result<(), JobError> {
        let Some(text) = crate::db::documents::load_text(pool, id).await? else {
            // Nothing to analyse (e.g. an image without a vision model): the document says why.
            return Ok(());
        };
        let chars = text.chars().count();
        let terms = extractive::distinct_terms(&text);
        let (summary, note) = if chars < self.summary_min_chars {
            (
                None,
                Some(format!(
                    "summary skipped: the document has {chars} characters (minimum {})",
                    self.summary_min_chars
                )),
            )
        } else {
            let s = match &self.chat {
                Some(chat) => Some(
                    chat.summarize(&text)
                        .await
                        .map_err(|e| e.into_job_error("LLM"))?,
                ),
                None => extractive::summarize(&text, 300),
            };
            (s, None)
        };
        let keywords = match &self.chat {
            Some(chat) => chat
                .keywords(&text, self.max_keywords)
                .await
                .map_err(|e| e.into_job_error("LLM"))?,
            None => extractive::keywords(&text, &corpus(pool, &terms).await?, self.max_keywords),
        };
        let mut tx = pool.begin().await?;
        let counted: Option<bool> =
            sqlx::query_scalar("SELECT terms_counted FROM documents WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(counted) = counted else {
            return Ok(()); // deleted meanwhile
        };
        if !counted {
            sqlx::query(
                "INSERT INTO term_stats (term, documents) SELECT t, 1 FROM unnest($1::text[]) AS t \
                 ON CONFLICT (term) DO UPDATE SET documents = term_stats.documents + 1",
            )
            .bind(&terms)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE documents SET summary = $2, keywords = $3, \
                 keywords_tsv = to_tsvector($4::regconfig, array_to_string($3, ' ')), \
                 analysis_status = 'completed', analysis_method = $5, analysis_note = $6, \
                 terms_counted = true, updated_at = now() \
             WHERE id = $1",
        )
        .bind(id)
        .bind(summary)
        .bind(&keywords)
        .bind(&self.text_search_config)
        .bind(self.method())
        .bind(note)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
