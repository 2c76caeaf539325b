//! Lineage for discovery platforms: every job that writes a table sends OpenLineage run
//! events (START, then COMPLETE or FAIL) to `--openlineage-url`: an HTTP endpoint
//! (`http://host:port/api/v1/lineage`, Marquez's and Datahub's) or a file of JSON lines
//! (`file:PATH`). Sending never holds up or fails a job: events go out from their own task
//! and a failed send is logged.

pub(crate) mod columns;
pub(crate) mod events;
pub(crate) mod indirect;
pub(crate) mod recorder;
#[cfg(test)]
mod test_tables;

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// How long one HTTP send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineageTarget {
    File(PathBuf),
    Http(hyper::Uri),
}

impl LineageTarget {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("file:") {
            if path.is_empty() {
                return Err(
                    "--openlineage-url file: needs a path (file:/var/log/lineage.jsonl)"
                        .to_string(),
                );
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("--openlineage-url {url}: {e}"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http"), Some(_)) => Ok(Self::Http(uri)),
            (Some("https"), _) => Err(format!(
                "--openlineage-url {url}: https is not supported yet; send to a collector on \
                 http or write file:PATH"
            )),
            _ => Err(format!(
                "--openlineage-url {url}: give http://host:port/path or file:PATH"
            )),
        }
    }
}

pub(crate) struct LineageSender {
    target: LineageTarget,
    /// One writer at a time keeps each event on its own line.
    file: Mutex<()>,
}

impl LineageSender {
    pub(crate) fn new(target: LineageTarget) -> Self {
        Self {
            target,
            file: Mutex::new(()),
        }
    }

    /// Sends `event`; a failure is logged, never returned.
    pub(crate) async fn send(&self, event: &Value) {
        let sent = match &self.target {
            LineageTarget::File(path) => self.append(path, event).await,
            LineageTarget::Http(uri) => {
                match tokio::time::timeout(SEND_TIMEOUT, post(uri, event)).await {
                    Ok(sent) => sent,
                    Err(_) => Err(format!("no answer within {SEND_TIMEOUT:?}")),
                }
            }
        };
        if let Err(e) = sent {
            tracing::warn!(target = ?self.target, "sending an OpenLineage event: {e}");
        }
    }

    async fn append(&self, path: &PathBuf, event: &Value) -> Result<(), String> {
        let _one_writer = self.file.lock().await;
        let mut line = event.to_string();
        line.push('\n');
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.write_all(line.as_bytes())
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.flush().await.map_err(|e| e.to_string())
    }
}

/// POSTs `event` as JSON to `uri` over HTTP/1.1; an answer other than 2xx is an error.
async fn post(uri: &hyper::Uri, event: &Value) -> Result<(), String> {
    let host = uri.host().ok_or("no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let authority = uri.authority().map_or(host.to_string(), |a| a.to_string());
    let request = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(event.to_string())))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(format!("{uri} answered {status}: {body}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_files_or_http() {
        assert_eq!(
            LineageTarget::parse("file:/tmp/l.jsonl").unwrap(),
            LineageTarget::File(PathBuf::from("/tmp/l.jsonl"))
        );
        assert!(matches!(
            LineageTarget::parse("http://marquez:5000/api/v1/lineage").unwrap(),
            LineageTarget::Http(_)
        ));
        for bad in ["file:", "https://x/api", "ftp://x", "nothing"] {
            assert!(LineageTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn events_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lineage.jsonl");
        let sender = LineageSender::new(LineageTarget::File(path.clone()));
        sender
            .send(&serde_json::json!({"eventType": "START"}))
            .await;
        sender
            .send(&serde_json::json!({"eventType": "COMPLETE"}))
            .await;
        let text = std::fs::read_to_string(&path).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["eventType"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(kinds, vec!["START", "COMPLETE"]);
    }

    #[tokio::test]
    async fn events_are_posted_as_json() {
        // A one-shot HTTP server that keeps what it was sent.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            while !String::from_utf8_lossy(&received).contains("\"START\"}") {
                let n = socket.read(&mut buffer).await.unwrap();
                received.extend_from_slice(&buffer[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(received).unwrap()
        });
        let uri: hyper::Uri = format!("http://{address}/api/v1/lineage").parse().unwrap();
        post(&uri, &serde_json::json!({"eventType": "START"}))
            .await
            .unwrap();
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /api/v1/lineage HTTP/1.1"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("content-type: application/json")
        );
    }
}
