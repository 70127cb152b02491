// The demo page: pick a model (URL or file), watch it load, chat with it,
// see tokens/s and the backend. Served from the repository root, it imports
// the package straight from bindings/js (build it first: scripts/web/build.sh).
import { loadModel, loadModelInWorker, buildInfo } from "../../bindings/js/src/index.js";

const $ = (id) => document.getElementById(id);
const status = (text, state) => {
  $("status").textContent = text;
  $("status").dataset.state = state;
};
const mb = (n) => (n / 1048576).toFixed(1) + " MB";

let model = null;
let messages = [];
let running = null; // AbortController of the generation in progress

function setBusy(busy) {
  $("send").disabled = busy || !model;
  $("stop").disabled = !busy;
  $("reset").disabled = busy || !model;
}

async function load(source, sha256) {
  await model?.dispose();
  model = null;
  messages = [];
  $("log").textContent = "";
  setBusy(false);
  status("loading…", "loading");
  $("progress").value = 0;
  const t0 = performance.now();
  let fromCache = false;
  try {
    const inWorker = $("use-worker").checked;
    model = await (inWorker ? loadModelInWorker : loadModel)(source, {
      sha256: sha256 || undefined,
      contextSize: Number($("ctx").value) || 2048,
      backend: $("backend-choice").value,
      onProgress: (p) => {
        fromCache = p.cached;
        if (p.phase === "download") {
          $("progress").value = (p.fraction ?? 0) * 0.9;
          const where = p.cached ? "reading from cache" : "downloading";
          status(`${where} ${mb(p.loaded)}${p.total ? " / " + mb(p.total) : ""}`, "loading");
        } else {
          $("progress").value = 0.9 + 0.1 * p.fraction;
          status(`setting up weights ${(p.fraction * 100).toFixed(0)}%`, "loading");
        }
        if (p.phase === "download" && p.fraction === 1) {
          status(`${p.cached ? "read from cache" : "downloaded"}; setting up weights`, "loading");
        }
      },
    });
  } catch (e) {
    status(`${e.code ?? "ERROR"}: ${e.message}`, "error");
    return;
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(2);
  const info = model.info;
  const build = await buildInfo();
  $("progress").value = 1;
  status(`ready (${fromCache ? "from cache" : "downloaded"}, ${secs} s)`, "ready");
  $("status").dataset.cached = String(fromCache);
  const where = $("use-worker").checked ? ", in a worker" : ", main thread";
  const backend = await model.backend();
  const kind = backend === "webgpu" ? "WebGPU" : build.simd128 ? "wasm simd128" : "wasm";
  $("backend").textContent = `${backend} (${kind}${where})`;
  $("backend").dataset.backend = backend;
  $("backend").title = info.backendFallback ? `WebGPU not used: ${info.backendFallback}` : "";
  $("model-info").textContent =
    `${info.name || "(unnamed)"} · ${info.architecture} · ${info.nLayer} layers · ` +
    `vocab ${info.nVocab} · ${mb(info.fileBytes)} · context ${info.contextSize}` +
    (info.chatTemplateFallback ? " · built-in chat template" : "") +
    (info.backendFallback ? ` · on the CPU: ${info.backendFallback}` : "");
  setBusy(false);
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  $("log").append(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

async function send(text) {
  if (!model || running) return;
  const mode = document.querySelector('input[name="mode"]:checked').value;
  const opts = {
    maxTokens: Number($("max-tokens").value) || 128,
    temperature: $("greedy").checked ? 0 : Number($("temperature").value),
    seed: Number($("seed").value) || 0,
  };
  running = new AbortController();
  setBusy(true);
  $("gen-state").dataset.state = "running";
  $("gen-state").textContent = "generating…";
  addMessage("user", text);
  const out = addMessage("assistant", "");
  out.id = "output";
  document.querySelectorAll(".msg.assistant").forEach((d) => d !== out && d.removeAttribute("id"));
  let stream;
  if (mode === "chat") {
    messages.push({ role: "user", content: text });
    stream = model.chat(messages, { ...opts, signal: running.signal });
  } else {
    stream = model.generate(text, { ...opts, signal: running.signal });
  }
  const t0 = performance.now();
  let n = 0;
  try {
    for await (const piece of stream) {
      out.textContent += piece;
      n++;
      const secs = (performance.now() - t0) / 1000;
      $("tps").textContent = `${(n / secs).toFixed(1)} pieces/s`;
    }
    const r = await stream.result;
    if (mode === "chat") messages.push({ role: "assistant", content: r.text.trim() });
    $("tps").textContent = `${r.stats.tokensPerSecond.toFixed(1)} tokens/s (${r.stats.generatedTokens} tokens)`;
    $("prompt-stats").textContent =
      `${r.stats.promptTokens} tokens in ${r.stats.promptMs.toFixed(0)} ms`;
    $("gen-state").textContent = `done (${r.stopReason})`;
    $("gen-state").dataset.state = "done";
  } catch (e) {
    if (mode === "chat") messages.pop();
    $("gen-state").textContent = `${e.code ?? "ERROR"}: ${e.message}`;
    $("gen-state").dataset.state = e.code === "ABORTED" ? "done" : "error";
  } finally {
    running = null;
    setBusy(false);
  }
}

$("load-url").addEventListener("click", () => {
  const url = $("model-url").value.trim();
  if (url) load(url, $("model-sha").value.trim());
});
$("model-file").addEventListener("change", (ev) => {
  const f = ev.target.files?.[0];
  if (f) load(f, $("model-sha").value.trim());
});
$("prompt-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("prompt").value;
  if (text.trim()) {
    $("prompt").value = "";
    send(text);
  }
});
$("stop").addEventListener("click", () => running?.abort());
$("reset").addEventListener("click", async () => {
  messages = [];
  await model?.reset();
  $("log").textContent = "";
});

// ?model=URL fills the field; &autoload=1 loads it at once.
const params = new URLSearchParams(location.search);
if (params.get("model")) $("model-url").value = params.get("model");
if (params.get("sha256")) $("model-sha").value = params.get("sha256");
if (params.get("worker") === "0") $("use-worker").checked = false;
if (params.get("backend")) $("backend-choice").value = params.get("backend");
if (params.get("model") && params.get("autoload")) $("load-url").click();
