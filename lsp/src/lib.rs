//! The `.mio` language server (`mio lsp`): LSP over stdio with lsp-server and lsp-types. The
//! only crate that knows LSP: everything it says comes from the same parser, checker and
//! catalog as the CLI. One file per feature; every request and notification runs under
//! `catch_unwind`, so an internal error becomes a log message, never a dead server.

mod completion;
mod diagnostics;
pub mod document;
mod hover;
mod navigation;
mod semantic;
pub mod transport;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{self as notif, Notification as _};
use lsp_types::request::{self as req, Request as _};
use lsp_types::*;
use serde_json::Value;

use document::{Document, Encoding};

/// Runs the server until the client shuts it down.
pub fn run(conn: Connection) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (id, params) = conn.initialize_start()?;
    let init: InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let encoding = negotiate(&init);
    let result = InitializeResult {
        capabilities: capabilities(encoding),
        server_info: Some(ServerInfo {
            name: "mio".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
    };
    conn.initialize_finish(id, serde_json::to_value(result)?)?;
    let mut server = Server {
        conn: &conn,
        docs: HashMap::new(),
        pending: HashMap::new(),
        encoding,
    };
    // Messages are taken in batches of whatever has arrived: edits only record the text, and
    // a document is analysed when a request needs it or the batch is done, so a burst of
    // keystrokes is analysed once, at its last version. A request made stale by a later edit
    // in the same batch, or cancelled, is answered without work.
    let mut shutting_down = false;
    while let Ok(first) = conn.receiver.recv() {
        let mut batch = vec![first];
        while let Ok(m) = conn.receiver.try_recv() {
            batch.push(m);
        }
        let cancelled: Vec<RequestId> = batch
            .iter()
            .filter_map(|m| match m {
                Message::Notification(n) if n.method == "$/cancelRequest" => {
                    serde_json::from_value::<CancelParams>(n.params.clone())
                        .ok()
                        .map(|p| match p.id {
                            NumberOrString::Number(n) => RequestId::from(n),
                            NumberOrString::String(s) => RequestId::from(s),
                        })
                }
                _ => None,
            })
            .collect();
        let mut last_change: HashMap<String, usize> = HashMap::new();
        for (k, m) in batch.iter().enumerate() {
            if let Message::Notification(n) = m {
                if n.method == notif::DidChangeTextDocument::METHOD {
                    if let Some(u) = n.params["textDocument"]["uri"].as_str() {
                        last_change.insert(u.to_string(), k);
                    }
                }
            }
        }
        for (k, msg) in batch.into_iter().enumerate() {
            match msg {
                Message::Request(r) => {
                    if r.method == req::Shutdown::METHOD {
                        shutting_down = true;
                        server.send(Message::Response(Response::new_ok(r.id, ())));
                        continue;
                    }
                    if shutting_down {
                        server.send(Message::Response(Response::new_err(
                            r.id,
                            ErrorCode::InvalidRequest as i32,
                            "shutdown was requested".into(),
                        )));
                        continue;
                    }
                    if cancelled.contains(&r.id) {
                        server.send(Message::Response(Response::new_err(
                            r.id,
                            ErrorCode::RequestCanceled as i32,
                            "cancelled".into(),
                        )));
                        continue;
                    }
                    let uri = r.params["textDocument"]["uri"].as_str().map(String::from);
                    if uri
                        .as_ref()
                        .and_then(|u| last_change.get(u))
                        .is_some_and(|&j| j > k)
                    {
                        server.send(Message::Response(Response::new_err(
                            r.id,
                            ErrorCode::ContentModified as i32,
                            "the document changed since this request".into(),
                        )));
                        continue;
                    }
                    server.analyse_pending(uri.as_deref());
                    server.request(r);
                }
                Message::Notification(n) => {
                    if n.method == notif::Exit::METHOD {
                        return Ok(());
                    }
                    server.notification(n);
                }
                Message::Response(_) => {}
            }
        }
        server.analyse_pending(None);
    }
    Ok(())
}

/// UTF-8 when the client offers it, else the protocol's default, UTF-16.
fn negotiate(init: &InitializeParams) -> Encoding {
    let offered = init
        .capabilities
        .general
        .as_ref()
        .and_then(|g| g.position_encodings.as_ref());
    match offered {
        Some(encs) if encs.contains(&PositionEncodingKind::UTF8) => Encoding::Utf8,
        _ => Encoding::Utf16,
    }
}

fn capabilities(encoding: Encoding) -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(match encoding {
            Encoding::Utf8 => PositionEncodingKind::UTF8,
            Encoding::Utf16 => PositionEncodingKind::UTF16,
        }),
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["(".into(), ".".into(), "=".into()]),
            ..Default::default()
        }),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(
            SemanticTokensOptions {
                legend: semantic::legend(),
                full: Some(SemanticTokensFullOptions::Bool(true)),
                range: None,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

struct Server<'a> {
    conn: &'a Connection,
    docs: HashMap<Uri, Document>,
    /// Texts received and not analysed yet (the latest version of each document).
    pending: HashMap<Uri, (String, i32)>,
    encoding: Encoding,
}

/// A request's failure, sent back as an LSP error.
type Failure = (ErrorCode, String);

fn params<P: serde::de::DeserializeOwned>(r: &Request) -> Result<P, Failure> {
    serde_json::from_value(r.params.clone()).map_err(|e| (ErrorCode::InvalidParams, e.to_string()))
}

impl Server<'_> {
    fn send(&self, msg: Message) {
        // The client went away: the receive loop ends on its own.
        let _ = self.conn.sender.send(msg);
    }

    fn log(&self, level: MessageType, message: String) {
        let params = LogMessageParams {
            typ: level,
            message,
        };
        self.send(Message::Notification(Notification::new(
            notif::LogMessage::METHOD.into(),
            params,
        )));
    }

    fn request(&mut self, r: Request) {
        let id: RequestId = r.id.clone();
        let method = r.method.clone();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.dispatch(&r)));
        let response = match outcome {
            Ok(Ok(value)) => Response::new_ok(id, value),
            Ok(Err((code, message))) => Response::new_err(id, code as i32, message),
            Err(panic) => {
                let why = panic_text(&panic);
                self.log(
                    MessageType::ERROR,
                    format!("mio: internal error in {method}: {why}"),
                );
                Response::new_err(
                    id,
                    ErrorCode::InternalError as i32,
                    format!("internal error: {why}"),
                )
            }
        };
        self.send(Message::Response(response));
    }

    fn dispatch(&mut self, r: &Request) -> Result<Value, Failure> {
        let json = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| (ErrorCode::InternalError, e.to_string()))
        };
        match r.method.as_str() {
            req::Completion::METHOD => {
                let p: CompletionParams = params(r)?;
                let pos = p.text_document_position;
                let items = self
                    .doc(&pos.text_document.uri)
                    .map(|d| completion::complete(d, pos.position))
                    .unwrap_or_default();
                json(serde_json::to_value(CompletionResponse::Array(items)))
            }
            req::HoverRequest::METHOD => {
                let p: HoverParams = params(r)?;
                let pos = p.text_document_position_params;
                let hover = self
                    .doc(&pos.text_document.uri)
                    .and_then(|d| hover::hover(d, pos.position));
                json(serde_json::to_value(hover))
            }
            req::GotoDefinition::METHOD => {
                let p: GotoDefinitionParams = params(r)?;
                let pos = p.text_document_position_params;
                let uri = pos.text_document.uri.clone();
                let loc = self
                    .doc(&uri)
                    .and_then(|d| navigation::definition(d, &uri, pos.position))
                    .map(GotoDefinitionResponse::Scalar);
                json(serde_json::to_value(loc))
            }
            req::References::METHOD => {
                let p: ReferenceParams = params(r)?;
                let pos = p.text_document_position;
                let uri = pos.text_document.uri.clone();
                let locs = self
                    .doc(&uri)
                    .map(|d| {
                        navigation::references(d, &uri, pos.position, p.context.include_declaration)
                    })
                    .unwrap_or_default();
                json(serde_json::to_value(locs))
            }
            req::DocumentSymbolRequest::METHOD => {
                let p: DocumentSymbolParams = params(r)?;
                let symbols = self
                    .doc(&p.text_document.uri)
                    .map(navigation::symbols)
                    .unwrap_or_default();
                json(serde_json::to_value(DocumentSymbolResponse::Nested(
                    symbols,
                )))
            }
            req::Formatting::METHOD => {
                let p: DocumentFormattingParams = params(r)?;
                let edits = self.doc(&p.text_document.uri).and_then(format_edits);
                json(serde_json::to_value(edits))
            }
            req::SemanticTokensFullRequest::METHOD => {
                let p: SemanticTokensParams = params(r)?;
                let tokens = self.doc(&p.text_document.uri).map(semantic::tokens);
                json(serde_json::to_value(
                    tokens.map(SemanticTokensResult::Tokens),
                ))
            }
            other => Err((
                ErrorCode::MethodNotFound,
                format!("mio does not handle {other}"),
            )),
        }
    }

    fn doc(&self, uri: &Uri) -> Option<&Document> {
        self.docs.get(uri)
    }

    fn notification(&mut self, n: Notification) {
        let method = n.method.clone();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.on_notification(n))) {
            self.log(
                MessageType::ERROR,
                format!("mio: internal error in {method}: {}", panic_text(&panic)),
            );
        }
    }

    fn on_notification(&mut self, n: Notification) {
        match n.method.as_str() {
            notif::DidOpenTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<DidOpenTextDocumentParams>(n.params) {
                    let d = p.text_document;
                    self.update(d.uri, d.text, d.version);
                }
            }
            notif::DidChangeTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<DidChangeTextDocumentParams>(n.params) {
                    let uri = p.text_document.uri;
                    // Full sync: the last change holds the whole text. A ranged change (from a
                    // client that ignored our capability) is applied to the text we have.
                    let mut text = match self.pending.remove(&uri) {
                        Some((t, _)) => t,
                        None => self
                            .docs
                            .get(&uri)
                            .map(|d| d.text.clone())
                            .unwrap_or_default(),
                    };
                    for c in p.content_changes {
                        match c.range {
                            None => text = c.text,
                            Some(range) => {
                                let idx = document::LineIndex::new(&text, self.encoding);
                                let (a, b) =
                                    (idx.offset(&text, range.start), idx.offset(&text, range.end));
                                if a <= b && b <= text.len() {
                                    text.replace_range(a..b, &c.text);
                                }
                            }
                        }
                    }
                    self.update(uri, text, p.text_document.version);
                }
            }
            notif::DidCloseTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<DidCloseTextDocumentParams>(n.params) {
                    self.docs.remove(&p.text_document.uri);
                    self.pending.remove(&p.text_document.uri);
                    self.publish(p.text_document.uri, vec![], None);
                }
            }
            notif::DidSaveTextDocument::METHOD => {
                // Imports may have changed on disk: analyse the open documents again.
                let open: Vec<(Uri, String, i32)> = self
                    .docs
                    .iter()
                    .map(|(u, d)| (u.clone(), d.text.clone(), d.version))
                    .collect();
                for (uri, text, version) in open {
                    self.update(uri, text, version);
                }
            }
            _ => {}
        }
    }

    /// Records a document's new text; it is analysed when needed (see [`run`]).
    fn update(&mut self, uri: Uri, text: String, version: i32) {
        self.pending.insert(uri, (text, version));
    }

    /// Analyses the pending text of `uri` (of every document with `None`) and publishes its
    /// diagnostics.
    fn analyse_pending(&mut self, uri: Option<&str>) {
        let todo: Vec<Uri> = self
            .pending
            .keys()
            .filter(|u| uri.is_none_or(|want| u.as_str() == want))
            .cloned()
            .collect();
        for u in todo {
            let Some((text, version)) = self.pending.remove(&u) else {
                continue;
            };
            let analysed = catch_unwind(AssertUnwindSafe(|| {
                let doc = Document::new(&u, text, version, self.encoding);
                let diags = diagnostics::collect(&doc, &u);
                (doc, diags)
            }));
            match analysed {
                Ok((doc, diags)) => {
                    // Publish first: dropping the previous analysis takes a while on a large file.
                    self.publish(u.clone(), diags, Some(version));
                    self.docs.insert(u, doc);
                }
                Err(panic) => self.log(
                    MessageType::ERROR,
                    format!(
                        "mio: internal error analysing {}: {}",
                        u.as_str(),
                        panic_text(&panic)
                    ),
                ),
            }
        }
    }

    fn publish(&self, uri: Uri, diagnostics: Vec<Diagnostic>, version: Option<i32>) {
        let params = PublishDiagnosticsParams {
            uri,
            diagnostics,
            version,
        };
        self.send(Message::Notification(Notification::new(
            notif::PublishDiagnostics::METHOD.into(),
            params,
        )));
    }
}

/// One edit replacing the document with its formatted text; none when it is formatted or
/// does not parse.
fn format_edits(d: &Document) -> Option<Vec<TextEdit>> {
    let formatted = mio_grammar::format::format(&d.text).ok()?;
    if formatted == d.text {
        return Some(vec![]);
    }
    let end = d.index.position(&d.text, d.text.len());
    Some(vec![TextEdit::new(
        Range::new(Position::new(0, 0), end),
        formatted,
    )])
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// `mio lsp`: the server over stdin and stdout, framed by [`transport`] so that no input
/// ends it but the end of input or `exit`.
pub fn run_stdio() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let stdin = std::io::BufReader::new(std::io::stdin());
    transport::serve(stdin, std::io::stdout(), |conn| {
        run(conn).map_err(|e| e.to_string())
    })?;
    Ok(())
}
