//! JSON-RPC framing over a byte stream that survives a misbehaving client: the server never
//! exits on what it reads.
//!
//! - A body that is not JSON gets a parse error answer (`-32700`, id null); a JSON array (a
//!   batch, which LSP does not use) or an object that is no message gets an invalid-request
//!   answer (`-32600`, with the id when it has one). The server goes on with the next message.
//! - A header block without `Content-Length` cannot be framed: it is dropped with a message on
//!   stderr, and reading resynchronises on the next `Content-Length` header, even one glued to
//!   the end of the lost body.
//! - End of input, or a body cut short by it, ends the server as a closed client would.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use lsp_server::{Connection, Message};
use serde_json::{json, Value};

/// The largest body read (a 1 MB `.mio` file's didChange is about 1 MB).
const MAX_BODY: usize = 256 << 20;

/// Why reading stopped.
enum Frame {
    Body(Vec<u8>),
    /// A header block without a usable `Content-Length`.
    Unframed(String),
    End,
}

/// Reads one frame: header lines up to an empty line, then the body.
fn read_frame(r: &mut impl BufRead) -> std::io::Result<Frame> {
    let mut length: Option<usize> = None;
    let mut headers = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(Frame::End);
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            if headers.is_empty() {
                continue; // stray blank lines between messages
            }
            break;
        }
        headers.push_str(trimmed);
        headers.push('\n');
        // Case-insensitive, and found even after garbage (the rest of a lost body).
        let lower = trimmed.to_ascii_lowercase();
        if let Some(at) = lower.find("content-length:") {
            let value = trimmed[at + "content-length:".len()..].trim();
            length = value.parse().ok();
        }
    }
    // A length past any real message (a corrupt header) is not allocated: the frame is lost
    // and reading resynchronises on the next header.
    let Some(n) = length.filter(|&n| n <= MAX_BODY) else {
        return Ok(Frame::Unframed(headers));
    };
    let mut body = vec![0u8; n];
    match r.read_exact(&mut body) {
        Ok(()) => Ok(Frame::Body(body)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Frame::End),
        Err(e) => Err(e),
    }
}

fn write_raw(out: &Mutex<Box<dyn Write + Send>>, v: &Value) {
    let text = v.to_string();
    let mut w = out
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = write!(w, "Content-Length: {}\r\n\r\n{text}", text.len());
    let _ = w.flush();
}

fn error_answer(id: Value, code: i32, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// What a body holds: a message, or the answer to send back.
fn decode(body: &[u8]) -> Result<Message, Value> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        error_answer(
            Value::Null,
            -32700,
            format!("mio lsp: the message is not JSON ({e})"),
        )
    })?;
    match &v {
        Value::Array(_) => Err(error_answer(
            Value::Null,
            -32600,
            "mio lsp: batches (JSON arrays) are not part of LSP; send one message at a time".into(),
        )),
        Value::Object(o) => {
            let id = o.get("id").cloned().unwrap_or(Value::Null);
            let shaped = o.get("method").is_some_and(Value::is_string)
                || (o.contains_key("id") && (o.contains_key("result") || o.contains_key("error")));
            if !shaped {
                return Err(error_answer(
                    id,
                    -32600,
                    "mio lsp: not a JSON-RPC message (no `method`, and not a response)".into(),
                ));
            }
            serde_json::from_value::<Message>(v.clone()).map_err(|e| {
                error_answer(id, -32600, format!("mio lsp: not a JSON-RPC message ({e})"))
            })
        }
        _ => Err(error_answer(
            Value::Null,
            -32600,
            "mio lsp: a message must be a JSON object".into(),
        )),
    }
}

/// Runs `serve` on a connection whose messages are read from `input` and written to
/// `output`, framed as above; returns when `serve` returns.
pub fn serve<R, W, F>(input: R, output: W, serve: F) -> Result<(), String>
where
    R: BufRead + Send + 'static,
    W: Write + Send + 'static,
    F: FnOnce(Connection) -> Result<(), String>,
{
    let (server, client) = Connection::memory();
    let out: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(output)));
    let writer = {
        let out = out.clone();
        let from_server = client.receiver.clone();
        std::thread::spawn(move || {
            for msg in from_server {
                let mut w = out
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if msg.write(&mut *w).is_err() {
                    break;
                }
            }
        })
    };
    let to_server = client.sender.clone();
    drop(client);
    {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut input = input;
            loop {
                match read_frame(&mut input) {
                    Ok(Frame::Body(body)) => match decode(&body) {
                        Ok(msg) => {
                            if to_server.send(msg).is_err() {
                                break;
                            }
                        }
                        Err(answer) => write_raw(&out, &answer),
                    },
                    Ok(Frame::Unframed(headers)) => eprintln!(
                        "mio lsp: dropped a message without Content-Length (headers: {:?}); waiting for the next header",
                        headers.trim_end()
                    ),
                    Ok(Frame::End) | Err(_) => break,
                }
            }
            // Dropping the sender ends the server's receive loop.
        });
    }
    let result = serve(server);
    // The server is done: its connection is dropped, which ends the writer.
    let _ = writer.join();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_and_lost_framing_resynchronises() {
        let text = "Content-Length: 2\r\n\r\n{}\
                    X-Other: 1\r\n\r\n{\"lost\": true}\
                    Content-Length: 3\r\n\r\n[1]\
                    Content-Length: 99999999999999\r\n\r\n{}\
                    Content-Length: 2\r\n\r\n{}";
        let mut r = std::io::BufReader::new(text.as_bytes());
        assert!(matches!(read_frame(&mut r).unwrap(), Frame::Body(b) if b == b"{}"));
        assert!(matches!(read_frame(&mut r).unwrap(), Frame::Unframed(_)));
        assert!(matches!(read_frame(&mut r).unwrap(), Frame::Body(b) if b == b"[1]"));
        // An absurd length is not allocated; the next frame is read.
        assert!(matches!(read_frame(&mut r).unwrap(), Frame::Unframed(_)));
        assert!(matches!(read_frame(&mut r).unwrap(), Frame::Body(b) if b == b"{}"));
        assert!(matches!(read_frame(&mut r).unwrap(), Frame::End));
        assert!(decode(b"{nope").unwrap_err()["error"]["code"] == -32700);
        assert!(decode(b"[]").unwrap_err()["error"]["code"] == -32600);
        let bad = decode(b"{\"id\": 7, \"x\": 1}").unwrap_err();
        assert_eq!(
            (bad["id"].clone(), bad["error"]["code"].clone()),
            (json!(7), json!(-32600))
        );
        assert!(decode(b"{\"jsonrpc\":\"2.0\",\"method\":\"initialized\",\"params\":{}}").is_ok());
    }
}
