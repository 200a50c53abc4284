//! Bad input gets a clear error and loses nothing: empty, oversized, unsupported, corrupt and
//! malicious uploads, malformed requests and missing credentials.

mod common;

use std::io::Write;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

fn detail(body: &serde_json::Value) -> String {
    body["detail"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_at_upload_with_clear_problems() {
    let app = TestApp::start_with(|s| s.ingestion.max_file_size = 1 << 20).await;

    let (status, body) = app.upload_fixture("invalid/empty.txt").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("empty"), "{body}");

    let (status, body) = app.upload_fixture("invalid/program.bin").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(
        detail(&body).contains("not a supported document type"),
        "{body}"
    );

    // Images other than PNG, JPEG, GIF and WebP.
    let bmp = b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0\x01\0\0\0\x01\0".to_vec();
    let (status, body) = app.upload("photo.bmp", bmp).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(detail(&body).contains("image/bmp"), "{body}");

    let zip = {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        z.start_file("data.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"hello").unwrap();
        z.finish().unwrap();
        buf.into_inner()
    };
    let (status, body) = app.upload("archive.zip", zip).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(detail(&body).contains("not a DOCX"), "{body}");

    // Not multipart, not JSON.
    let resp = app
        .post("/v1/documents")
        .body("hello")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Metadata that is not JSON, or not an object.
    for (meta, needle) in [
        ("{not json", "not valid JSON"),
        ("[1,2]", "must be a JSON object"),
    ] {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
            )
            .text("metadata", meta);
        let (status, body) = json_of(
            app.post("/v1/documents")
                .multipart(form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(detail(&body).contains(needle), "{body}");
    }
    // Unknown form fields and JSON fields are refused, not ignored.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
        )
        .text("colour", "red");
    let (status, body) = json_of(
        app.post("/v1/documents")
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        detail(&body).contains("unknown form field `colour`"),
        "{body}"
    );
    let (status, body) = json_of(
        app.post("/v1/documents")
            .json(&json!({"content": "x", "colour": "red"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(detail(&body).contains("unknown field `colour`"), "{body}");
    let (status, body) = json_of(
        app.post("/v1/documents")
            .json(&json!({"content": "x", "document_type": "exe"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        detail(&body).contains("unknown document_type `exe`"),
        "{body}"
    );
    let form = reqwest::multipart::Form::new().text("title", "no file");
    let (status, body) = json_of(
        app.post("/v1/documents")
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(detail(&body).contains("no `file` field"), "{body}");

    // Nothing above was stored.
    assert_eq!(app.scalar("SELECT count(*) FROM documents").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_uploads_get_413_without_being_buffered() {
    let app = TestApp::start_with(|s| s.ingestion.max_file_size = 1 << 20).await;
    // Declared too large: answered 413 from the headers alone, before any body byte is sent.
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/documents HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: {}\r\n\r\n",
        3 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut tcp, head.as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await
    .expect("answered without waiting for the body")
    .unwrap();
    let response = String::from_utf8_lossy(&buf[..n]);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("RAGDOLL_MAX_FILE_SIZE"), "{response}");

    // Streamed without a length: refused as soon as the stream passes the limit.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let stream = futures::stream::unfold(0usize, move |i| {
        let counter = counter.clone();
        async move {
            if i >= 64 {
                return None; // 2 MiB in all, if the server kept reading
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(vec![b'b'; 32 << 10]), i + 1))
        }
    });
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream))
        .file_name("streamed.txt");
    let form = reqwest::multipart::Form::new().part("file", part);
    let (status, body) = json_of(
        app.post("/v1/documents")
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let chunks_sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        chunks_sent < 64,
        "the server stopped reading early ({chunks_sent} of 64 chunks sent)"
    );

    // JSON content over the limit.
    let content = "c".repeat((1 << 20) + 10);
    let (status, _) = json_of(
        app.post("/v1/documents")
            .json(&json!({"content": content}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Just under the limit is fine.
    let ok = vec![b'w'; (1 << 20) - 100]
        .iter()
        .enumerate()
        .map(|(i, c)| if i % 7 == 0 { b' ' } else { *c })
        .collect();
    let (status, body) = app.upload("fits.txt", ok).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(app.scalar("SELECT count(*) FROM documents").await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_files_fail_alone_with_the_extractor_error() {
    let app = TestApp::start_with(|s| s.ingestion.max_decompressed_size = 4 << 20).await;
    let bomb = {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("word/document.xml", opts).unwrap();
        z.write_all(b"<w:document><w:body><w:p><w:r><w:t>").unwrap();
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..64 {
            z.write_all(&zeros).unwrap(); // 64 MiB of text, a few dozen KiB compressed
        }
        z.write_all(b"</w:t></w:r></w:p></w:body></w:document>")
            .unwrap();
        z.finish().unwrap();
        buf.into_inner()
    };
    assert!(bomb.len() < 1 << 20, "bomb is small: {}", bomb.len());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.pdf",
            std::fs::read(fixture("invalid/truncated.pdf")).unwrap(),
            "cannot read PDF",
        ),
        (
            "not-a-zip.docx",
            std::fs::read(fixture("invalid/not-a-zip.docx")).unwrap(),
            "not a valid zip container",
        ),
        ("bomb.docx", bomb, "decompression limit"),
        ("broken.json", b"{\"a\": [1, 2".to_vec(), "cannot read JSON"),
    ];
    let mut bad = Vec::new();
    for (name, bytes, needle) in cases {
        let (status, body) = app.upload(name, bytes).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        bad.push((name, uuid_of(&body), needle));
    }
    let (_, good) = app.upload_fixture("documents/bicycle-history.txt").await;
    for (name, id, needle) in bad {
        let d = app.wait_done(&id.to_string()).await;
        assert_eq!(d["status"], "failed", "{name}: {d}");
        let err = d["error"].as_str().unwrap_or_default();
        assert!(
            err.starts_with("extraction failed:") && err.contains(needle),
            "{name}: {err}"
        );
        assert_eq!(d["chunk_count"], 0);
        // A permanent error is not retried pointlessly.
        assert_eq!(d["jobs"][0]["attempts"], 1, "{name}");
        assert_eq!(d["jobs"][0]["status"], "failed");
        // The bytes are kept: the document can be fixed up and reprocessed later.
        assert_eq!(
            count(
                &app.pool,
                "SELECT count(*) FROM document_blobs WHERE document_id = $1",
                id
            )
            .await,
            1
        );
    }
    let g = app.wait_done(good["id"].as_str().unwrap()).await;
    assert_eq!(
        g["status"], "processed",
        "other documents are unaffected: {g}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_file_types_are_accepted() {
    use ragdoll::extract::DocumentType;
    let app = TestApp::start_with(|s| {
        s.ingestion.allowed_file_types = vec![DocumentType::Pdf, DocumentType::Markdown]
    })
    .await;
    let (status, body) = app.upload_fixture("documents/bicycle-history.txt").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(
        detail(&body).contains("text documents are not accepted here")
            && detail(&body).contains("pdf, markdown"),
        "{body}"
    );
    let (status, _) = app.upload_fixture("documents/energy-report.pdf").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_is_required_on_v1() {
    let app = TestApp::start().await;
    let resp = app.http.get(app.url("/v1/documents")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (_, body) = json_of(resp).await;
    assert!(detail(&body).contains("missing API key"), "{body}");
    let resp = app
        .http
        .get(app.url("/v1/documents"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .http
        .get(app.url("/v1/documents"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Probes need no key.
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    app.stop().await;
}
