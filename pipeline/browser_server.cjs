// Playwright's browser server (what `playwright launch-server` runs) with one rule of
// rrstream's: every HTTP request and WebSocket upgrade must carry the launch's secret
// in the `x-rrstream-browser-secret` header, or is refused with 403 before Playwright
// sees it (its `GET /json` would otherwise tell anyone the WebSocket path).
//
//     node browser_server.cjs <playwright-core package dir>   (stdin: {"secret", "options"})
//
// pipeline/browser_host.py starts it with the driver's own node and package, and hands
// the secret only to the node's session actors. The secret comes on stdin, never in
// argv or the environment, which other processes can read in /proc. Prints the
// endpoint once Chromium runs, as `launch-server` does.
"use strict";

const crypto = require("crypto");
const http = require("http");
const path = require("path");

const HEADER = "x-rrstream-browser-secret";

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (chunk) => chunks.push(chunk));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

function carriesSecret(request, secret) {
  const given = request.headers[HEADER];
  if (typeof given !== "string") return false;
  const presented = crypto.createHash("sha256").update(given).digest();
  return crypto.timingSafeEqual(presented, secret);
}

// Playwright creates its HTTP server with http.createServer; every server this process
// makes gets the check in front of its "request" and "upgrade" events. Checked once per
// connection, nothing per message.
function guardServers(secret) {
  const createServer = http.createServer;
  http.createServer = function guardedCreateServer(...args) {
    const server = createServer.apply(this, args);
    const emit = server.emit;
    server.emit = function guardedEmit(event, request, target, ...rest) {
      if (event === "upgrade" && !carriesSecret(request, secret)) {
        target.end("HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n");
        return true;
      }
      if (event === "request" && !carriesSecret(request, secret)) {
        target.statusCode = 403;
        target.end();
        return true;
      }
      return emit.call(this, event, request, target, ...rest);
    };
    return server;
  };
}

async function main() {
  const packageDir = process.argv[2];
  const { secret, options } = JSON.parse(await readStdin());
  if (typeof secret !== "string" || secret.length < 32) throw new Error("no browser secret given");
  guardServers(crypto.createHash("sha256").update(secret).digest());
  const { chromium } = require(path.resolve(packageDir));
  const server = await chromium.launchServer(options);
  console.log(server.wsEndpoint());
}

main().catch((error) => {
  console.error(String((error && error.stack) || error));
  process.exit(1);
});
