// A small static file server for the demo page and the end-to-end test:
// serves the repository root (so /examples/web/ can import /bindings/js/)
// and, when given, a folder of models under /models/. Loopback only.
//
//   node scripts/web/serve.mjs [--port 8080] [--models DIR]
//   then open http://127.0.0.1:8080/examples/web/
import { createServer } from "node:http";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".gguf": "application/octet-stream",
  ".ts": "text/plain; charset=utf-8",
};

/** Starts the server; resolves to {url, hits, close}. `hits` counts GETs per path. */
export function serve({ port = 0, models } = {}) {
  const hits = new Map();
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    hits.set(path, (hits.get(path) ?? 0) + 1);
    let base = ROOT;
    let rel = path;
    if (models && path.startsWith("/models/")) {
      base = resolve(models);
      rel = path.slice("/models".length);
    }
    let file = normalize(join(base, rel));
    if (file !== base && !file.startsWith(base + sep)) {
      res.writeHead(403).end();
      return;
    }
    try {
      let st = await stat(file);
      if (st.isDirectory()) {
        file = join(file, "index.html");
        st = await stat(file);
      }
      res.writeHead(200, {
        "content-type": TYPES[extname(file)] ?? "application/octet-stream",
        "content-length": st.size,
        "cache-control": "no-store",
      });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  return new Promise((ok) => {
    server.listen(port, "127.0.0.1", () => {
      const url = `http://127.0.0.1:${server.address().port}`;
      ok({ url, hits, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const { url } = await serve({ port: Number(arg("--port") ?? 8080), models: arg("--models") });
  console.log(`serving ${ROOT} at ${url}/examples/web/`);
}
