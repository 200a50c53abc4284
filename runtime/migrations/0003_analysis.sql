-- Analysis and re-embedding support.
--
-- Chunk vectors may be empty while `ragdoll reembed` rebuilds them for a new model or dimension;
-- such chunks are found by full-text search only until their document is re-embedded.
ALTER TABLE chunks ALTER COLUMN embedding DROP NOT NULL;

-- How summary and keywords were produced (e.g. `llm:gpt-4o-mini`, `extractive`), and the keywords
-- as a full-text vector so keyword matches count in full-text and hybrid search.
ALTER TABLE documents ADD COLUMN analysis_method text;
ALTER TABLE documents ADD COLUMN keywords_tsv tsvector NOT NULL DEFAULT ''::tsvector;
ALTER TABLE documents ADD COLUMN terms_counted boolean NOT NULL DEFAULT false;
CREATE INDEX documents_keywords_tsv_idx ON documents USING gin (keywords_tsv);

-- Corpus statistics for TF-IDF keywords: in how many analysed documents each term occurs.
CREATE TABLE term_stats (
    term      text PRIMARY KEY,
    documents integer NOT NULL DEFAULT 0
);
