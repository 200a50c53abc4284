-- Search support: tracked searches (optional analytics) and change notifications that let every
-- API process drop its cached search results when documents or chunks change.

CREATE TABLE searches (
    id           bigserial PRIMARY KEY,
    query        text NOT NULL,
    mode         text NOT NULL,
    filters      jsonb NOT NULL DEFAULT '{}'::jsonb,
    result_count integer NOT NULL,
    top_score    double precision,
    took_ms      double precision NOT NULL,
    cached       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX searches_created_at_idx ON searches (created_at);

CREATE FUNCTION ragdoll_notify_documents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ragdoll_documents', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
CREATE TRIGGER chunks_changed AFTER INSERT OR DELETE OR TRUNCATE ON chunks
    FOR EACH STATEMENT EXECUTE FUNCTION ragdoll_notify_documents();
CREATE TRIGGER documents_changed
    AFTER UPDATE OF title, location, metadata, keywords, document_type, summary OR DELETE ON documents
    FOR EACH STATEMENT EXECUTE FUNCTION ragdoll_notify_documents();
