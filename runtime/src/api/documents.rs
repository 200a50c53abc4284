//! `/v1/documents`: upload (multipart file or JSON text), list, show, update, delete, reprocess.
//! Uploads are size-checked before and while they stream in, typed on arrival (415 for what we do
//! not ingest) and stored with their first job in one transaction.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::db::documents::{self, Created, Document, ListFilter, NewDocument, Status};
use crate::extract::{self, DocumentType, ExtractError};
use crate::queue::{self, JobRow};

#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    /// Store the document even if the same content is already stored.
    #[serde(default)]
    force: bool,
}

/// A document given as text.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJson {
    content: String,
    title: Option<String>,
    /// A JSON object.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// text, markdown, html, xml, csv, json or yaml (detected when absent).
    document_type: Option<String>,
    location: Option<String>,
    #[serde(default)]
    force: bool,
}

/// A document given as a file.
#[derive(ToSchema)]
#[allow(dead_code)] // describes the multipart form for OpenAPI
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    title: Option<String>,
    /// A JSON object, as text.
    metadata: Option<String>,
    document_type: Option<String>,
    location: Option<String>,
    force: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedBody {
    id: Uuid,
    status: String,
    duplicate: bool,
}

/// What an upload carried, before validation.
#[derive(Default)]
struct Upload {
    bytes: Vec<u8>,
    filename: Option<String>,
    title: Option<String>,
    metadata: Option<Value>,
    document_type: Option<String>,
    location: Option<String>,
    force: bool,
}

/// Upload a document (multipart file or JSON text); processing continues in the background.
#[utoipa::path(post, path = "/v1/documents", tag = "documents", params(CreateQuery),
    request_body(content((UploadForm = "multipart/form-data"), (CreateJson = "application/json"))),
    responses((status = 202, body = CreatedBody, description = "stored, processing queued"),
              (status = 200, body = CreatedBody, description = "the same content is already stored"),
              (status = 400), (status = 413), (status = 415)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<CreateQuery>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<Response> {
    let max = state.settings.max_file_size;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        // Multipart framing adds a little; anything beyond the limit plus 1 MiB cannot fit.
        if len > max.saturating_add(1 << 20) {
            return Err(too_large(max));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let upload = if content_type.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(req, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        read_multipart(mp, max).await?
    } else if content_type.starts_with("application/json") {
        let ApiJson(body) = ApiJson::<CreateJson>::from_request(req, &state).await?;
        if body.content.len() as u64 > max {
            return Err(too_large(max));
        }
        Upload {
            bytes: body.content.into_bytes(),
            filename: body.location.clone(),
            title: body.title,
            metadata: body.metadata,
            document_type: body.document_type,
            location: body.location,
            force: body.force,
        }
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send multipart/form-data with a `file` field, or application/json with `content`",
        ));
    };
    let new = validate(upload, query.force)?;
    let allowed = &state.settings.allowed_file_types;
    if !allowed.is_empty() && !allowed.contains(&new.document_type) {
        let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{} documents are not accepted here (RAGDOLL_ALLOWED_FILE_TYPES: {})",
                new.document_type,
                names.join(", ")
            ),
        ));
    }
    let created = documents::create(&state.pool, new, state.settings.max_attempts).await?;
    Ok(match created {
        Created::New { id } => (
            StatusCode::ACCEPTED,
            [(header::LOCATION, format!("/v1/documents/{id}"))],
            Json(CreatedBody {
                id,
                status: "pending".into(),
                duplicate: false,
            }),
        )
            .into_response(),
        Created::Duplicate { id, status } => (
            StatusCode::OK,
            Json(CreatedBody {
                id,
                status,
                duplicate: true,
            }),
        )
            .into_response(),
    })
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload exceeds the {max}-byte limit (RAGDOLL_MAX_FILE_SIZE)"),
    )
}

fn multipart_error(e: axum::extract::multipart::MultipartError, max: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(max)
    } else {
        ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
    }
}

async fn read_multipart(mut mp: Multipart, max: u64) -> ApiResult<Upload> {
    let mut up = Upload::default();
    let mut saw_file = false;
    while let Some(mut field) = mp.next_field().await.map_err(|e| multipart_error(e, max))? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "file" => {
                saw_file = true;
                up.filename = field.file_name().map(String::from);
                while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, max))? {
                    if (up.bytes.len() + chunk.len()) as u64 > max {
                        return Err(too_large(max));
                    }
                    up.bytes.extend_from_slice(&chunk);
                }
            }
            "title" | "metadata" | "document_type" | "location" | "force" => {
                let text = field.text().await.map_err(|e| multipart_error(e, max))?;
                match name.as_str() {
                    "title" => up.title = Some(text),
                    "document_type" => up.document_type = Some(text),
                    "location" => up.location = Some(text),
                    "force" => up.force = matches!(text.trim(), "true" | "1" | "yes"),
                    _ => {
                        let v = serde_json::from_str(&text).map_err(|e| {
                            ApiError::bad_request(format!("`metadata` is not valid JSON: {e}"))
                        })?;
                        up.metadata = Some(v);
                    }
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field `{other}` (expected file, title, metadata, document_type, location, force)"
                )));
            }
        }
    }
    if !saw_file {
        return Err(ApiError::bad_request("the form has no `file` field"));
    }
    Ok(up)
}

fn validate(up: Upload, force_query: bool) -> ApiResult<NewDocument> {
    if up.bytes.is_empty() {
        return Err(ApiError::bad_request("the document is empty"));
    }
    let metadata = match up.metadata {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::bad_request("`metadata` must be a JSON object")),
    };
    let declared = up
        .document_type
        .as_deref()
        .map(str::parse::<DocumentType>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let document_type =
        extract::detect(&up.bytes, up.filename.as_deref(), declared).map_err(|e| match e {
            ExtractError::Unsupported(m) => ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
            other => ApiError::bad_request(other.to_string()),
        })?;
    let title = up
        .title
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let location = up.location.or(up.filename).filter(|l| !l.trim().is_empty());
    Ok(NewDocument {
        location,
        title,
        document_type,
        bytes: up.bytes,
        metadata,
        force: up.force || force_query,
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// pending, processing, processed or failed
    status: Option<String>,
    document_type: Option<String>,
    /// Page size (1-500, default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct ListBody {
    documents: Vec<Document>,
    next_cursor: Option<Uuid>,
}

pub const MAX_PAGE: i64 = 500;

/// Documents, newest first.
#[utoipa::path(get, path = "/v1/documents", tag = "documents", params(ListQuery),
    responses((status = 200, body = ListBody), (status = 400)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListBody>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {MAX_PAGE}"
        )));
    }
    let filter = ListFilter {
        status: q
            .status
            .as_deref()
            .map(str::parse::<Status>)
            .transpose()
            .map_err(ApiError::bad_request)?,
        document_type: q
            .document_type
            .as_deref()
            .map(str::parse::<DocumentType>)
            .transpose()
            .map_err(ApiError::bad_request)?,
        before: q.cursor,
        limit,
    };
    let documents = documents::list(&state.pool, &filter).await?;
    let next_cursor = (documents.len() as i64 == limit)
        .then(|| documents.last().map(|d| d.id))
        .flatten();
    Ok(Json(ListBody {
        documents,
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ShowBody {
    #[serde(flatten)]
    document: Document,
    jobs: Vec<JobRow>,
}

/// A document with its processing jobs.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = Uuid, Path)), responses((status = 200, body = ShowBody), (status = 404)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ShowBody>> {
    let document = documents::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("document {id}")))?;
    let jobs = queue::jobs_for_document(&state.pool, id).await?;
    Ok(Json(ShowBody { document, jobs }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    title: Option<String>,
    /// Replaces the metadata object.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Change the title and/or replace the metadata.
#[utoipa::path(patch, path = "/v1/documents/{id}", tag = "documents", params(("id" = Uuid, Path)),
    request_body = UpdateBody, responses((status = 200, body = Document), (status = 400), (status = 404)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> ApiResult<Json<Document>> {
    let title = body.title.map(|t| t.trim().to_string());
    if title.as_deref() == Some("") {
        return Err(ApiError::bad_request("`title` must not be empty"));
    }
    let metadata = match body.metadata {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(ApiError::bad_request("`metadata` must be a JSON object")),
    };
    documents::update(&state.pool, id, title.as_deref(), metadata.as_ref())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("document {id}")))
}

/// Delete a document with its chunks, contents, bytes and jobs.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    if documents::delete(&state.pool, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("document {id}")))
    }
}

/// Run the pipeline again from the stored bytes.
#[utoipa::path(post, path = "/v1/documents/{id}/reprocess", tag = "documents", params(("id" = Uuid, Path)),
    responses((status = 202, body = CreatedBody), (status = 404)), security(("bearer" = [])))]
pub async fn reprocess(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Response> {
    if documents::reprocess(&state.pool, id, state.settings.max_attempts).await? {
        Ok((
            StatusCode::ACCEPTED,
            Json(CreatedBody {
                id,
                status: "pending".into(),
                duplicate: false,
            }),
        )
            .into_response())
    } else {
        Err(ApiError::not_found(format!("document {id}")))
    }
}
