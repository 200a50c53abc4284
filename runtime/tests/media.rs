//! Images and audio: measured always; described or transcribed (and then searchable) only through
//! a configured provider — checked against a local server speaking the OpenAI wire format — and
//! otherwise processed with metadata only and a visible "analysis: not configured" note.

mod common;

use base64::Engine;
use common::openai_mock::{OpenAiMock, Reply};
use common::*;
use ragdoll::config::LlmProviderKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

const IMAGES: [(&str, &str, &str); 4] = [
    ("gradient.png", "png", "image/png"),
    ("gradient.jpg", "jpeg", "image/jpeg"),
    ("gradient.gif", "gif", "image/gif"),
    ("gradient.webp", "webp", "image/webp"),
];

const AUDIO: [(&str, &str, u64); 5] = [
    ("tone.wav", "audio/wav", 16000),
    ("tone.mp3", "audio/mpeg", 16000),
    ("tone.m4a", "audio/mp4", 16000),
    ("tone.ogg", "audio/opus", 48000),
    ("tone.flac", "audio/flac", 16000),
];

async fn upload_done(app: &TestApp, rel: &str) -> Value {
    let (status, body) = app.upload_fixture(rel).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rel}: {body}");
    app.wait_done(body["id"].as_str().unwrap()).await
}

async fn fulltext_ids(app: &TestApp, query: &str) -> Vec<String> {
    let (status, answer) = json_of(
        app.post("/v1/search")
            .json(&json!({"query": query, "mode": "fulltext"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["document_id"].as_str().unwrap().to_string())
        .collect()
}

fn media_settings(base: String) -> impl FnOnce(&mut ragdoll::app::RuntimeSettings) {
    move |s| {
        s.llm.provider = LlmProviderKind::Openai;
        s.llm.base_url = base;
        s.llm.api_key = Some("sk-media".into());
        s.llm.vision_model = Some("vision-model".into());
        s.llm.transcription_model = Some("whisper-model".into());
        s.llm.timeout_secs = 5;
        s.llm.max_retries = 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_providers_media_get_metadata_and_a_visible_note() {
    let app = TestApp::start().await;
    for (file, format, mime) in IMAGES {
        let d = upload_done(&app, &format!("media/{file}")).await;
        assert_eq!(d["status"], "processed", "{d}");
        assert_eq!(d["document_type"], "image");
        assert_eq!(d["mime_type"], mime, "{d}");
        let facts = &d["metadata"]["extraction"];
        assert_eq!(facts["format"], format, "{d}");
        assert_eq!(
            (facts["width"].as_u64(), facts["height"].as_u64()),
            (Some(64), Some(48))
        );
        assert_eq!(d["chunk_count"], 0);
        assert_eq!(d["analysis_status"], "skipped");
        let note = d["analysis_note"].as_str().unwrap();
        assert!(note.starts_with("analysis: not configured"), "{note}");
        assert!(note.contains("RAGDOLL_VISION_MODEL"), "{note}");
        assert!(d["summary"].is_null() && d["keywords"] == json!([]), "{d}");
    }
    for (file, mime, rate) in AUDIO {
        let d = upload_done(&app, &format!("media/{file}")).await;
        assert_eq!(d["status"], "processed", "{file}: {d}");
        assert_eq!(d["document_type"], "audio");
        assert_eq!(d["mime_type"], mime, "{d}");
        let facts = &d["metadata"]["extraction"];
        assert_eq!(facts["sample_rate"].as_u64(), Some(rate), "{file}: {d}");
        let seconds = facts["duration_seconds"].as_f64().unwrap();
        // The fixtures hold 1.5 s of tone; AAC and Opus encoders add a few ms of priming.
        assert!((1.45..1.6).contains(&seconds), "{file}: {seconds}");
        assert_eq!(d["chunk_count"], 0);
        let note = d["analysis_note"].as_str().unwrap();
        assert!(
            note.starts_with("analysis: not configured") && note.contains("transcript"),
            "{note}"
        );
    }
    // Nothing was invented: no contents, no chunks, no analysis jobs.
    assert_eq!(app.scalar("SELECT count(*) FROM contents").await, 0);
    assert_eq!(app.scalar("SELECT count(*) FROM chunks").await, 0);
    assert_eq!(
        app.scalar("SELECT count(*) FROM jobs WHERE kind <> 'process_document'")
            .await,
        0
    );
    let (_, stats) = json_of(app.get("/v1/stats").send().await.unwrap()).await;
    assert!(stats.to_string().contains("\"image\""), "{stats}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_media_fail_with_the_reason_and_keep_their_bytes() {
    let app = TestApp::start().await;
    for (file, needle) in [
        ("not-an-image.png", "not a PNG, JPEG, GIF or WebP image"),
        ("truncated.png", "damaged or cut off"),
        ("silence-0s.wav", "contains no audio (0 seconds)"),
        (
            "truncated.wav",
            "truncated: its header promises 1.50 s but only 0.50 s",
        ),
    ] {
        let d = upload_done(&app, &format!("invalid/{file}")).await;
        assert_eq!(d["status"], "failed", "{file}: {d}");
        let error = d["error"].as_str().unwrap();
        assert!(error.contains(needle), "{file}: {error}");
        let job = job_of(&d, "process_document");
        assert_eq!(job["attempts"], 1, "bad bytes are not retried: {job}");
        let kept = count(
            &app.pool,
            "SELECT count(*) FROM document_blobs WHERE document_id = $1",
            uuid_of(&d),
        )
        .await;
        assert_eq!(kept, 1, "the upload is kept for inspection or reprocessing");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vision_and_transcription_make_media_searchable() {
    let mock = OpenAiMock::start(8).await;
    let app = TestApp::start_with(media_settings(mock.base_url.clone())).await;

    let image = upload_done(&app, "media/gradient.png").await;
    assert_eq!(image["status"], "processed", "{image}");
    assert_eq!(image["chunk_count"], 1, "{image}");
    assert_eq!(
        image["metadata"]["extraction"]["described_by"],
        "vision-model"
    );
    assert_eq!(image["analysis_status"], "completed", "{image}");
    assert!(
        fulltext_ids(&app, "bicycle brick wall")
            .await
            .contains(&image["id"].as_str().unwrap().to_string())
    );

    // The vision request carries the image itself, as a data URL, to the vision model.
    let png = std::fs::read(fixture("media/gradient.png")).unwrap();
    let requests = mock.chat_requests();
    let vision: Vec<&Value> = requests
        .iter()
        .filter(|r| r["model"] == "vision-model")
        .collect();
    assert_eq!(vision.len(), 1, "{requests:#?}");
    let parts = vision[0]["messages"][1]["content"].as_array().unwrap();
    assert_eq!(parts[0]["type"], "text");
    assert_eq!(parts[1]["type"], "image_url");
    let url = parts[1]["image_url"]["url"].as_str().unwrap();
    let data = url
        .strip_prefix("data:image/png;base64,")
        .expect("a PNG data URL");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        png
    );

    let audio = upload_done(&app, "media/tone.mp3").await;
    assert_eq!(audio["status"], "processed", "{audio}");
    assert_eq!(
        audio["metadata"]["extraction"]["transcribed_by"],
        "whisper-model"
    );
    assert!(
        fulltext_ids(&app, "quarterly earnings call")
            .await
            .contains(&audio["id"].as_str().unwrap().to_string())
    );
    let transcriptions = mock.transcription_requests();
    assert_eq!(transcriptions.len(), 1);
    let fields = &transcriptions[0];
    let mp3_len = std::fs::metadata(fixture("media/tone.mp3")).unwrap().len();
    let file = fields.iter().find(|(n, _, _)| n == "file").unwrap();
    assert!(
        file.1.as_deref().unwrap().ends_with(".mp3"),
        "the API tells formats apart by extension: {file:?}"
    );
    assert_eq!(file.2, mp3_len.to_string(), "the whole recording is sent");
    assert!(fields.contains(&("model".into(), None, "whisper-model".into())));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_provider_failures_are_retried_or_reported() {
    let mock = OpenAiMock::start(8).await;
    let app = TestApp::start_with(media_settings(mock.base_url.clone())).await;

    // 429 with Retry-After, then an answer: the transcript arrives.
    mock.chat_script([Reply::RateLimited(1)]);
    let audio = upload_done(&app, "media/tone.wav").await;
    assert_eq!(audio["status"], "processed", "{audio}");
    assert_eq!(mock.transcription_requests().len(), 2);

    // An answer that is not a chat completion: the job is retried later and succeeds.
    mock.chat_script([Reply::Garbage]);
    let image = upload_done(&app, "media/gradient.jpg").await;
    assert_eq!(image["status"], "processed", "{image}");
    assert_eq!(job_of(&image, "process_document")["attempts"], 2, "{image}");

    // 401: permanent; the document fails naming the key, and is never given a fake description.
    mock.chat_script([Reply::Status(401)]);
    let refused = upload_done(&app, "media/gradient.gif").await;
    assert_eq!(refused["status"], "failed", "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("vision provider error") && error.contains("RAGDOLL_LLM_API_KEY"),
        "{error}"
    );
    let contents = count(
        &app.pool,
        "SELECT count(*) FROM contents WHERE document_id = $1",
        uuid_of(&refused),
    )
    .await;
    assert_eq!(contents, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_ingested_before_vision_was_configured_is_described_on_reprocess() {
    let app = TestApp::start().await;
    let before = upload_done(&app, "media/gradient.webp").await;
    assert_eq!(before["chunk_count"], 0);
    let db = app.stop().await;

    let mock = OpenAiMock::start(8).await;
    let app = TestApp::start_on(db, media_settings(mock.base_url.clone()), true).await;
    let id = before["id"].as_str().unwrap();
    let resp = app
        .post(&format!("/v1/documents/{id}/reprocess"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let after = loop {
        let d = app.document(id).await;
        if d["chunk_count"] == 1 && d["analysis_status"] == "completed" {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "never described: {d}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        !after["analysis_note"]
            .as_str()
            .unwrap_or_default()
            .contains("not configured"),
        "{after}"
    );
    assert!(
        fulltext_ids(&app, "bicycle")
            .await
            .contains(&id.to_string())
    );
    app.stop().await;
}
