-- Ragdoll runtime schema: documents, their original bytes, extracted contents, chunks with
-- embeddings, and the Postgres-backed job queue.
--
-- The embedding dimension is not fixed here: `chunks.embedding` starts as an unsized `vector`
-- and the runtime pins it to `vector(D)` (and builds the HNSW index) right after these
-- migrations, from its configuration, recording D in `ragdoll_meta`. See `db/schema.rs`.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE ragdoll_meta (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id              uuid PRIMARY KEY,
    location        text NOT NULL,
    title           text NOT NULL,
    document_type   text NOT NULL,
    mime_type       text NOT NULL,
    content_hash    text NOT NULL,
    byte_size       bigint NOT NULL CHECK (byte_size >= 0),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'processed', 'failed')),
    error           text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    summary         text,
    keywords        text[] NOT NULL DEFAULT '{}',
    analysis_status text NOT NULL DEFAULT 'pending'
                    CHECK (analysis_status IN ('pending', 'skipped', 'completed', 'failed')),
    analysis_note   text,
    chunk_count     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz
);
CREATE INDEX documents_content_hash_idx ON documents (content_hash);
CREATE INDEX documents_status_type_idx ON documents (status, document_type);
CREATE INDEX documents_metadata_idx ON documents USING gin (metadata jsonb_path_ops);
CREATE INDEX documents_keywords_idx ON documents USING gin (keywords);
CREATE INDEX documents_created_at_idx ON documents (created_at);

-- The uploaded bytes, kept so that a document can be reprocessed.
CREATE TABLE document_blobs (
    document_id uuid PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    bytes       bytea NOT NULL
);

-- What extraction produced: text now; image descriptions and audio transcripts later.
CREATE TABLE contents (
    id          bigserial PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('text', 'image', 'audio')),
    content     text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (document_id, kind)
);

CREATE TABLE chunks (
    id              bigserial PRIMARY KEY,
    document_id     uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    chunk_index     integer NOT NULL CHECK (chunk_index >= 0),
    content         text NOT NULL,
    content_tsv     tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED,
    embedding       vector NOT NULL,
    embedding_model text NOT NULL,
    usage_count     integer NOT NULL DEFAULT 0,
    returned_at     timestamptz,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Idempotency backstop: a document never has two chunks with the same index.
    UNIQUE (document_id, chunk_index)
);
CREATE INDEX chunks_content_tsv_idx ON chunks USING gin (content_tsv);

CREATE TABLE jobs (
    id           bigserial PRIMARY KEY,
    queue        text NOT NULL CHECK (queue IN ('processing', 'embeddings', 'analysis', 'default')),
    kind         text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    document_id  uuid REFERENCES documents (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_at       timestamptz NOT NULL DEFAULT now(),
    locked_by    text,
    locked_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX jobs_claim_idx ON jobs (queue, run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_running_idx ON jobs (queue, locked_until) WHERE status = 'running';
CREATE INDEX jobs_document_idx ON jobs (document_id);
CREATE INDEX jobs_status_idx ON jobs (status, queue);
-- At most one queued job of a kind per document: enqueueing twice is a no-op.
CREATE UNIQUE INDEX jobs_queued_dedupe_idx ON jobs (document_id, kind)
    WHERE status = 'queued' AND document_id IS NOT NULL;

-- Wake workers of a queue as soon as a job becomes claimable.
CREATE FUNCTION ragdoll_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'queued' THEN
        PERFORM pg_notify('ragdoll_jobs', NEW.queue);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status ON jobs
    FOR EACH ROW EXECUTE FUNCTION ragdoll_notify_job();
