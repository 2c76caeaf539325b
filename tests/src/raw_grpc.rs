//! gRPC calls made of bytes the caller chooses, over a bare HTTP/2 connection: malformed
//! protobuf, length prefixes that lie, any method path, with or without the token. What a
//! broken or hostile client could send, which a generated client never would.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;
use tonic::Code;

/// How a server answered a raw call.
#[derive(Debug)]
pub struct RawReply {
    pub code: Code,
    pub message: String,
    /// The response's gRPC frames, as received.
    pub body: Vec<u8>,
}

/// A gRPC frame: uncompressed flag, big-endian length, the message.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 5);
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// A frame whose header claims `length` bytes but which carries only `message`.
pub fn frame_claiming(length: u32, message: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(0);
    out.put_u32(length);
    out.put_slice(message);
    out.freeze()
}

/// A frame marked compressed, with no compression negotiated.
pub fn compressed_frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(1);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// Sends `body` as the request of method `path` (e.g. `/tally.worker.WorkerService/RunTask`)
/// to `addr` (`host:port`, plaintext), with `authorization` as the token header if given.
pub async fn call(
    addr: &str,
    path: &str,
    authorization: Option<&str>,
    body: Bytes,
) -> Result<RawReply, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let request = request.body(()).map_err(|e| e.to_string())?;
    let (response, mut send) = client
        .send_request(request, false)
        .map_err(|e| format!("send request: {e}"))?;
    // The server may answer (and reset the stream) before it has read everything.
    let _ = send.send_data(body, true);
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    let (parts, mut received) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = received.data().await {
        let chunk = chunk.map_err(|e| format!("response body: {e}"))?;
        let _ = received.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = received
        .trailers()
        .await
        .map_err(|e| format!("trailers: {e}"))?;
    // A call that fails before any message has its status in the headers ("trailers-only").
    let status_headers = match &trailers {
        Some(trailers) if trailers.contains_key("grpc-status") => trailers,
        _ => &parts.headers,
    };
    let code = status_headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from)
        .ok_or_else(|| format!("no grpc-status in the answer (HTTP {})", parts.status))?;
    let message = status_headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default();
    Ok(RawReply {
        code,
        message,
        body: data,
    })
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) =
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
