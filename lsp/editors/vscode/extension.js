// Starts `mio lsp` for .mio files. Everything the editor shows comes from the server.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("mio").get("path") || "mio";
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "mio",
    "mio language server",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "mio" }, { scheme: "untitled", language: "mio" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
