// Uploads a file to the gateway with tus-js-client under Node, the way a script or another
// service would; driven by tests/test_tus_js.py.
//
//   node tests/js/tus_upload.mjs '{"endpoint": ..., "token": ..., "file": ..., ...}'
//
// Options (JSON): endpoint, token, file, folder, filename; retryDelays (a list, or null for
// none); chunkSize; storage (a JSON file where the upload's URL is kept, to resume it in a
// later run); resume (true: continue the upload kept in storage, not a new one); resumeOrigin
// (send the resumed upload to this origin: another gateway process behind the same name);
// holdFirstPatch (print {"event": "patch"} before the first PATCH and wait for a line on
// stdin, so that the test can arm its connection cutter).
//
// Prints one JSON object per line: url, patch, retry, progress, success or error. Exits 0 on
// success, 1 on error.
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const tus = require("tus-js-client");

const opts = JSON.parse(process.argv[2]);
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", (line) => { const next = waiting.shift(); if (next) next(line); });
const nextLine = () => new Promise((resolve) => waiting.push(resolve));

// A new TCP connection for every request: the test's relay cuts one given connection.
const agent = new http.Agent({ keepAlive: false });
const httpStack = new tus.DefaultHttpStack({ agent });

// The file's identity for resuming, independent of the endpoint (as a load balancer in front
// of several gateways would present one name).
function fingerprint(file) {
  const stat = fs.statSync(file.path);
  const id = [path.resolve(file.path), stat.size, stat.mtimeMs].join("\n");
  return Promise.resolve("gateway-" + createHash("sha256").update(id).digest("hex"));
}

let heldPatch = false;
let patches = 0;
let retries = 0;

function start() {
  const file = fs.createReadStream(opts.file);
  const upload = new tus.Upload(file, {
    endpoint: opts.endpoint,
    httpStack,
    fingerprint,
    headers: { Authorization: "Bearer " + opts.token },
    metadata: { folder: opts.folder, filename: opts.filename },
    chunkSize: opts.chunkSize || Infinity,
    retryDelays: opts.retryDelays === undefined ? [0, 500, 1000, 2000, 3000] : opts.retryDelays,
    urlStorage: opts.storage ? new tus.FileUrlStorage(opts.storage) : undefined,
    storeFingerprintForResuming: !!opts.storage,
    removeFingerprintOnSuccess: true,
    onUploadUrlAvailable: () => say({ event: "url", url: upload.url }),
    onBeforeRequest: async (req) => {
      if (req.getMethod() !== "PATCH") return;
      patches += 1;
      say({ event: "patch", offset: Number(req.getHeader("Upload-Offset")), url: req.getURL() });
      if (opts.holdFirstPatch && !heldPatch) {
        heldPatch = true;
        await nextLine();
      }
    },
    onShouldRetry: (err, attempt) => {
      const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
      const retry = !(status >= 400 && status < 500 && status !== 409 && status !== 423);
      if (retry) {
        retries += 1;
        say({ event: "retry", attempt, status, message: String(err.message).slice(0, 200) });
      }
      return retry;
    },
    onSuccess: () => {
      say({ event: "success", url: upload.url, patches, retries });
      lines.close();
      process.exitCode = 0;
    },
    onError: (err) => {
      const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
      say({ event: "error", url: upload.url, status, message: String(err.message).slice(0, 300) });
      lines.close();
      process.exitCode = 1;
    },
  });
  return upload;
}

const upload = start();
const previous = opts.resume ? await upload.findPreviousUploads() : [];
if (opts.resume && !previous.length) {
  say({ event: "error", message: "no upload to resume in " + opts.storage });
  lines.close();
  process.exitCode = 1;
} else {
  if (opts.resume) {
    const kept = previous[0];
    if (opts.resumeOrigin) kept.uploadUrl = opts.resumeOrigin + new URL(kept.uploadUrl).pathname;
    say({ event: "resuming", url: kept.uploadUrl });
    upload.resumeFromPreviousUpload(kept);
  }
  upload.start();
}
