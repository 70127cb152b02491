// wasm-chord for the browser and Node: the public API over the wasm-bindgen
// module in ../pkg (built by scripts/web/build.sh). Types: ./index.d.ts.
//
// Design notes:
// - Model bytes go from the network (or a Blob, or a file in Node) into wasm
//   memory chunk by chunk: JavaScript never holds a second whole copy.
// - Generation runs one token per wasm call and yields to the event loop in
//   between, so the page stays responsive and an AbortSignal can stop it.
// - Every error is a WasmChordError with a `code`. Should the wasm module
//   ever trap (a panic), the call throws code PANIC and the dead instance is
//   replaced by a fresh one from the same compiled module: the wasm-bindgen
//   glue (which keeps its instance in module state) is imported again under
//   another URL (`?instance=N`, so the module loader makes a new module
//   record) and instantiated from the kept WebAssembly.Module. Later
//   loadModel calls work again, and the objects that lived in the dead
//   instance (models, generations) throw code MODEL_LOST. Only when the new
//   instance cannot be made does every call throw POISONED.

import { openModelCache } from "./cache.js";

export { clearModelCache } from "./cache.js";
export { loadModelInWorker, WorkerModel } from "./worker-client.js";

/** An error from wasm-chord, with a stable `code` (see index.d.ts). */
export class WasmChordError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = "WasmChordError";
    this.code = code;
  }
}

const isNode =
  typeof process !== "undefined" && process.versions != null && process.versions.node != null;

let ready = null;
// Rejects when the live instance panics (see init()).
let instancePanicked = null;
// The glue module of the live instance (its exports are the wasm API), set
// by init(); null while none is live.
let wasm = null;
// What the instances are made from: a compiled WebAssembly.Module (bytes
// are compiled once), or the URL/Request/Response given to init().
let wasmSource;
const GLUE_URL = new URL("../pkg/wasm_chord_web.js", import.meta.url).href;
// Set only when a dead instance could not be replaced: every call throws it.
let poisoned = null;
// Counts the instances replaced after a panic. Every wasm object remembers
// the epoch it was made in; one from an older epoch lives in a dead
// instance and is never touched again (not even freed: its pointer means
// nothing to the new instance).
let epoch = 0;
// The panic message that ended each epoch, by epoch.
const failures = [];

/**
 * Loads and instantiates the wasm module once. Called by loadModel; call it
 * yourself to pass the module's bytes, a URL or a compiled WebAssembly.Module.
 */
export function init(moduleOrPath) {
  if (!ready) {
    ready = (async () => {
      if (wasmSource === undefined) {
        let input = moduleOrPath;
        if (input === undefined && isNode) {
          const { readFile } = await import("node:fs/promises");
          input = await readFile(new URL("../pkg/wasm_chord_web_bg.wasm", import.meta.url));
        }
        if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) {
          input = await WebAssembly.compile(input);
        }
        wasmSource = input;
      }
      // Epoch 0 imports the glue under its own URL; each replacement after a
      // panic under a new one, which gives fresh glue state.
      const glue = await import(epoch === 0 ? GLUE_URL : `${GLUE_URL}?instance=${epoch}`);
      await glue.default(wasmSource === undefined ? undefined : { module_or_path: wasmSource });
      // A panic inside a future traps in a callback that no call of ours
      // sees; the instance's panic hook calls this first, and the pending
      // async calls end with PANIC (callAsync races them against it).
      let reject;
      const panicked = new Promise((_, r) => {
        reject = r;
      });
      panicked.catch(() => {});
      glue.setPanicListener((msg) => reject(new WebAssembly.RuntimeError(String(msg))));
      wasm = glue;
      instancePanicked = panicked;
    })();
    ready.catch(() => {
      ready = null;
    });
  }
  return ready;
}

function convert(e) {
  if (e instanceof WasmChordError) return e;
  if (typeof WebAssembly !== "undefined" && e instanceof WebAssembly.RuntimeError) {
    let detail = e.message;
    try {
      detail = wasm.panicMessage() ?? detail;
    } catch {
      // The instance is gone; keep the trap's own message.
    }
    replaceInstance(detail);
    return new WasmChordError("PANIC", `wasm-chord failed: ${detail}`, { cause: e });
  }
  if (e && typeof e === "object" && typeof e.code === "string" && e.name === "WasmChordError") {
    return new WasmChordError(e.code, e.message);
  }
  return e;
}

/**
 * After a trap: a fresh wasm instance from the same compiled module, with
 * new memory (the old one, with every model in it, goes to the garbage
 * collector). The WebGPU device is opened again on the next use.
 */
function replaceInstance(detail) {
  failures[epoch] = detail;
  epoch += 1;
  gpu = null;
  wasm = null;
  ready = null;
  // Every entry point awaits init(); start the new instance now.
  init().catch((err) => {
    poisoned = new WasmChordError(
      "POISONED",
      `the wasm-chord module failed earlier (${detail}) and could not be restarted (${err?.message ?? err}); ` +
        "load the page or worker again",
      { cause: err },
    );
  });
}

/** The MODEL_LOST error for an object made in `born`, an older epoch. */
function lostError(born) {
  if (born < 0) return new WasmChordError("MODEL_LOST", "the model was disposed");
  return new WasmChordError(
    "MODEL_LOST",
    `this model was lost when the wasm-chord module failed (${failures[born] ?? "a panic"}); ` +
      "load it again with loadModel",
  );
}

/** Runs a call into wasm, turning its failures into WasmChordErrors. */
function call(f) {
  if (poisoned) throw poisoned;
  try {
    return f();
  } catch (e) {
    throw convert(e);
  }
}

/** `call` for a wasm call that returns a Promise. */
async function callAsync(f) {
  if (poisoned) throw poisoned;
  const panicked = instancePanicked;
  try {
    const pending = f();
    return await (panicked ? Promise.race([pending, panicked]) : pending);
  } catch (e) {
    throw convert(e);
  }
}

function abortError(signal) {
  return new WasmChordError("ABORTED", "aborted", { cause: signal?.reason });
}

/**
 * Lets the event loop run (abort handlers, input, rendering, messages to a
 * worker) between tokens. A MessageChannel message is an ordinary task, so
 * tasks already queued run first; `scheduler.yield()` would not do: its
 * continuation runs ahead of queued messages, and a worker never saw its
 * "abort".
 */
function yieldToEventLoop() {
  if (typeof setImmediate === "function") return new Promise((r) => setImmediate(r));
  return new Promise((r) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close();
      r();
    };
    ch.port2.postMessage(0);
  });
}

/**
 * Internal, for the tests: panics inside a future (as an async WebGPU step
 * could) in a `panic-test` build; INVALID_ARGUMENT in every other build.
 */
export async function _panicAsyncForTesting() {
  await init();
  if (typeof wasm.panicAsyncForTesting !== "function") {
    throw new WasmChordError("INVALID_ARGUMENT", "not a panic-test build");
  }
  return callAsync(() => wasm.panicAsyncForTesting());
}

/**
 * Internal, for the tests: panics inside wasm in a build made with the
 * crate's `panic-test` feature; INVALID_ARGUMENT in every other build.
 */
export async function _panicForTesting() {
  await init();
  return call(() => {
    if (typeof wasm.panicForTesting !== "function") {
      throw new WasmChordError("INVALID_ARGUMENT", "not a panic-test build");
    }
    wasm.panicForTesting();
  });
}

const BACKENDS = ["auto", "webgpu", "cpu"];

/**
 * The backend `loadModel` tries first here: "webgpu" where `navigator.gpu`
 * exists, else "cpu". (`model.backend()` tells what a model really runs on:
 * without an adapter "auto" falls back to the CPU.)
 */
export function backend() {
  return typeof navigator !== "undefined" && navigator.gpu ? "webgpu" : "cpu";
}

let gpu = null;

/**
 * Opens the WebGPU device once per module instance: resolves with the wasm
 * `WebGpu`, or rejects with UNSUPPORTED_BACKEND and the reason.
 */
function openGpu() {
  if (!gpu) {
    gpu = (async () => {
      if (typeof navigator === "undefined" || !navigator.gpu) {
        throw new WasmChordError("UNSUPPORTED_BACKEND", "WebGPU: navigator.gpu is not available here");
      }
      await init();
      return await callAsync(() => wasm.openWebGpu());
    })();
  }
  return gpu;
}

/**
 * Backends usable here, best first: ["webgpu", "cpu"] when navigator.gpu
 * gives an adapter and a device, else ["cpu"].
 */
export async function availableBackends() {
  try {
    await openGpu();
    return ["webgpu", "cpu"];
  } catch {
    return ["cpu"];
  }
}

/** The WebGPU adapter in use (name, features, limits), or null without one. */
export async function webgpuInfo() {
  try {
    const g = await openGpu();
    return { summary: g.summary(), maxBufferBytes: g.maxBufferBytes() };
  } catch {
    return null;
  }
}

/** What the module was built with ({version, backends, simd128, threads, maxModelBytes}). */
export async function buildInfo() {
  await init();
  return call(() => wasm.buildInfo());
}

/**
 * Bytes of wasm memory this instance holds (its high-water mark: wasm memory
 * never shrinks). On the CPU path it includes the whole model file; on
 * WebGPU only the header and the largest tensor passed through it.
 */
export async function memoryBytes() {
  await init();
  return call(() => wasm.memoryBytes());
}

const CHUNK = 1 << 20;

async function* chunksOf(source, signal) {
  if (source instanceof Uint8Array) {
    for (let i = 0; i < source.length; i += 16 * CHUNK) yield source.subarray(i, i + 16 * CHUNK);
    return;
  }
  if (source instanceof ArrayBuffer) {
    yield* chunksOf(new Uint8Array(source), signal);
    return;
  }
  if (typeof ReadableStream !== "undefined" && source instanceof ReadableStream) {
    const reader = source.getReader();
    let finished = false;
    try {
      for (;;) {
        if (signal?.aborted) throw abortError(signal);
        const { value, done } = await reader.read();
        if (done) {
          finished = true;
          return;
        }
        yield value;
      }
    } finally {
      // Stopped early (error, abort, bad header): stop the transfer too.
      if (!finished) await reader.cancel().catch(() => {});
      reader.releaseLock?.();
    }
  }
  if (typeof Blob !== "undefined" && source instanceof Blob) {
    for (let i = 0; i < source.size; i += 16 * CHUNK) {
      if (signal?.aborted) throw abortError(signal);
      yield new Uint8Array(await source.slice(i, i + 16 * CHUNK).arrayBuffer());
    }
    return;
  }
  throw new WasmChordError("INVALID_ARGUMENT", "expected a URL, a File/Blob, bytes or a ReadableStream");
}

/** Feeds chunks into a ModelLoader, reporting download progress. */
async function receive(loader, chunks, total, signal, report, call) {
  let loaded = 0;
  for await (const chunk of chunks) {
    if (signal?.aborted) throw abortError(signal);
    call(() => loader.push(chunk));
    loaded += chunk.length;
    report(loaded, total);
  }
  return loaded;
}

function progressReporter(onProgress, cached) {
  return (phase, loaded, total) => {
    if (!onProgress) return;
    const fraction =
      phase === "load" ? loaded : total ? Math.min(1, loaded / total) : undefined;
    onProgress({ phase, loaded: phase === "load" ? undefined : loaded, total, fraction, cached });
  };
}

function finishLoad(loader, options, cached, call) {
  // A WebGPU loader uploaded every tensor while the bytes arrived; finishing
  // only checks and assembles.
  const report = progressReporter(options.onProgress, cached);
  const model = call(() =>
    loader.finish(options.sha256?.toLowerCase(), options.contextSize, (f) => {
      if (options.signal?.aborted) return false;
      report("load", f);
      return true;
    }),
  );
  return model;
}

async function loadFromChunks(chunks, total, options, cached, hash = Boolean(options.sha256)) {
  // Hashing costs about as much as the copy into wasm: only when a digest
  // is expected or will be recorded for the cache. On WebGPU the bytes go
  // to GPU buffers tensor by tensor as they arrive (no whole copy in wasm
  // memory); on the CPU the whole file goes into wasm memory.
  const born = epoch;
  // A panic elsewhere during the load's awaits ends the loader too.
  const loaderCall = (f) => {
    if (born !== epoch) throw lostError(born);
    return call(f);
  };
  const loader = call(() =>
    options._gpu
      ? new wasm.GpuModelLoader(options._gpu, total ?? undefined, hash)
      : new wasm.ModelLoader(total ?? undefined, hash),
  );
  try {
    const report = progressReporter(options.onProgress, cached);
    await receive(loader, chunks, total, options.signal, (l, t) => report("download", l, t), loaderCall);
    const sha256 = loaderCall(() => loader.sha256());
    const raw = finishLoad(loader, options, cached, loaderCall);
    return { raw, sha256, size: raw.info().fileBytes };
  } catch (e) {
    if (options.signal?.aborted) throw abortError(options.signal);
    throw convert(e);
  } finally {
    if (born === epoch) loader.free();
  }
}

async function loadFromUrl(url, options) {
  const cache = options.cache === false ? null : await openModelCache(options.cacheName);
  if (cache) {
    const hit = await cache.lookup(url);
    if (hit) {
      try {
        const expect = options.sha256 ?? hit.meta.sha256;
        const { raw } = await loadFromChunks(
          chunksOf(hit.body, options.signal),
          hit.meta.size,
          { ...options, sha256: expect },
          true,
          true,
        );
        return raw;
      } catch (e) {
        if (e.code !== "INTEGRITY" && e.code !== "BAD_MODEL") throw e;
        console.warn(`wasm-chord: the cached copy of ${url} failed its check (${e.message}); downloading it again`);
        await cache.remove(url);
      }
    }
  }
  // Our own controller, so that a failed check also stops the download
  // (the cache's branch of the stream would otherwise read on).
  const transfer = new AbortController();
  const stop = () => transfer.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", stop, { once: true });
  let resp;
  try {
    resp = await fetch(url, { signal: transfer.signal });
  } catch (e) {
    options.signal?.removeEventListener("abort", stop);
    if (options.signal?.aborted) throw abortError(options.signal);
    throw new WasmChordError("NETWORK", `fetching ${url} failed: ${e.message}`, { cause: e });
  }
  if (!resp.ok || !resp.body) {
    options.signal?.removeEventListener("abort", stop);
    throw new WasmChordError("NETWORK", `fetching ${url} failed: HTTP ${resp.status}`);
  }
  // With a content encoding the length is that of the compressed body.
  const len = resp.headers.get("content-encoding") ? null : resp.headers.get("content-length");
  const total = len != null && /^\d+$/.test(len) ? Number(len) : undefined;
  let body = resp.body;
  let store = null;
  if (cache) {
    const [mine, theirs] = body.tee();
    body = mine;
    store = cache.begin(url, theirs);
  }
  let loaded;
  try {
    loaded = await loadFromChunks(
      chunksOf(body, options.signal),
      total,
      options,
      false,
      cache != null || Boolean(options.sha256),
    );
  } catch (e) {
    transfer.abort();
    store?.abort();
    throw e;
  } finally {
    options.signal?.removeEventListener("abort", stop);
  }
  // Only a file that passed every check is kept, with its digest and size.
  await store?.commit({ sha256: loaded.sha256, size: loaded.size });
  return loaded.raw;
}

async function nodeFileChunks(path, signal) {
  const { open } = await import("node:fs/promises");
  const fh = await open(path, "r");
  const { size } = await fh.stat();
  async function* gen() {
    try {
      const buf = new Uint8Array(16 * CHUNK);
      for (;;) {
        if (signal?.aborted) throw abortError(signal);
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) return;
        yield buf.subarray(0, bytesRead);
      }
    } finally {
      await fh.close();
    }
  }
  return { chunks: gen(), size };
}

/**
 * Loads a GGUF model from a URL (streamed, cached), a File/Blob, bytes, a
 * ReadableStream, or (in Node) a file path. See index.d.ts for the options.
 */
export async function loadModel(source, options = {}) {
  const wanted = options.backend ?? "auto";
  if (!BACKENDS.includes(wanted)) {
    throw new WasmChordError(
      "UNSUPPORTED_BACKEND",
      `backend "${options.backend}" is not in this build (available: ${BACKENDS.join(", ")})`,
    );
  }
  await init();
  if (options.signal?.aborted) throw abortError(options.signal);
  // "auto": WebGPU when it opens, else the CPU with the reason kept for
  // model.info.backendFallback; "webgpu": WebGPU or UNSUPPORTED_BACKEND.
  let fallback = null;
  if (wanted !== "cpu") {
    try {
      options = { ...options, _gpu: await openGpu() };
    } catch (e) {
      if (wanted === "webgpu" || e.code === "POISONED" || e.code === "PANIC") throw e;
      fallback = e.message;
    }
  }
  let raw;
  try {
    raw = await loadFrom(source, options);
  } catch (e) {
    // A model WebGPU cannot run (a weight type it lacks: found with the
    // header) goes to the CPU under "auto" when the source can be read
    // again (not a ReadableStream, which is consumed).
    const again = !(typeof ReadableStream !== "undefined" && source instanceof ReadableStream);
    if (!(options._gpu && wanted === "auto" && e.code === "UNSUPPORTED_MODEL" && again)) throw e;
    fallback = e.message;
    const { _gpu, ...cpu } = options;
    void _gpu;
    raw = await loadFrom(source, cpu);
  }
  return new Model(raw, fallback);
}

async function loadFrom(source, options) {
  const isUrlLike = typeof source === "string" || source instanceof URL;
  if (isUrlLike && isNode && !/^(https?|data|blob):/i.test(String(source))) {
    const path = source instanceof URL ? source : String(source).replace(/^file:\/\//, "");
    const { chunks, size } = await nodeFileChunks(path, options.signal);
    return (await loadFromChunks(chunks, size, options, false)).raw;
  }
  if (isUrlLike) return loadFromUrl(String(source), options);
  const size = source?.size ?? source?.byteLength;
  return (await loadFromChunks(chunksOf(source, options.signal), size, options, false)).raw;
}

function generateOptionsJson(options) {
  const { signal, onText, ...rest } = options;
  void signal;
  void onText;
  const o = { ...rest };
  if (o.logitBias) {
    const bias = {};
    const entries = o.logitBias instanceof Map ? o.logitBias.entries() : Object.entries(o.logitBias);
    for (const [k, v] of entries) bias[k] = v === -Infinity ? null : v;
    o.logitBias = bias;
  }
  return JSON.stringify(o);
}

/**
 * A running generation: iterate it for text pieces (for await), or await
 * `.result` for the whole text, stop reason and speed.
 */
export class TextStream {
  #iterator;
  #started = false;
  #result;

  constructor(iterator, result) {
    this.#iterator = iterator;
    this.#result = result;
  }

  [Symbol.asyncIterator]() {
    if (this.#started) throw new WasmChordError("INVALID_ARGUMENT", "a TextStream can be read once");
    this.#started = true;
    return this.#iterator;
  }

  /** Resolves when generation ends (reading the stream if nobody does). */
  get result() {
    if (!this.#started) {
      this.#started = true;
      (async () => {
        for await (const _ of this.#iterator) void _;
      })().catch(() => {});
    }
    return this.#result;
  }
}

/** A loaded model with its conversation cache. */
export class Model {
  #raw;
  #info;
  // The epoch of the instance that holds the model; -1 once disposed.
  #epoch = epoch;

  constructor(raw, backendFallback = null) {
    this.#raw = raw;
    this.#info = { ...call(() => raw.info()), backendFallback };
  }

  /** `call`, after checking that the model's instance is still the live one. */
  #call(f) {
    if (this.#epoch !== epoch) throw lostError(this.#epoch);
    return call(f);
  }

  /**
   * {architecture, name, nVocab, nCtxTrain, nLayer, nEmbd, contextSize, fileBytes,
   * chatTemplate, backend, backendFallback, ...}; `backendFallback` says why
   * `backend: "auto"` did not get WebGPU (null when it did or was not asked).
   */
  get info() {
    return this.#info;
  }

  /** The backend this model runs on ("webgpu" or "cpu"). */
  backend() {
    return this.#call(() => this.#raw.backend());
  }

  tokenize(text, { addSpecial = true, parseSpecial = false } = {}) {
    return this.#call(() => this.#raw.tokenize(String(text), addSpecial, parseSpecial));
  }

  detokenize(tokens) {
    return this.#call(() => this.#raw.detokenize(Uint32Array.from(tokens)));
  }

  /** The prompt text for `messages` with the model's chat template. */
  applyChatTemplate(messages, { addGenerationPrompt = true } = {}) {
    return this.#call(() => this.#raw.renderChat(JSON.stringify(messages), addGenerationPrompt));
  }

  #prompt(input) {
    if (typeof input === "string") return this.tokenize(input);
    if (input instanceof Uint32Array || Array.isArray(input)) return Uint32Array.from(input);
    if (input && Array.isArray(input.messages)) {
      return this.#call(() => this.#raw.chatTokens(JSON.stringify(input.messages)));
    }
    throw new WasmChordError("INVALID_ARGUMENT", "expected a prompt string, token ids or {messages}");
  }

  /**
   * Generates after `input` (a prompt string, token ids or {messages}).
   * Returns a TextStream: `for await (const piece of stream)` or `await stream.result`.
   */
  generate(input, options = {}) {
    const prompt = this.#prompt(input);
    const born = this.#epoch;
    const gen = this.#call(() => this.#raw.start(prompt, generateOptionsJson(options)));
    // Every call on `gen` first checks that its instance is still alive: a
    // panic elsewhere (another model, another generation) ends it too.
    const alive = () => born === epoch;
    const genCall = (f) => {
      if (!alive()) throw lostError(born);
      return call(f);
    };
    const genCallAsync = (f) => {
      if (!alive()) throw lostError(born);
      return callAsync(f);
    };
    const { signal, onText } = options;
    // On WebGPU a step awaits the logits' read-back (a browser cannot block).
    const isAsync = this.#call(() => this.#raw.isAsync());
    const backendName = this.#info.backend;
    let settled = false;
    let resolve, reject;
    const result = new Promise((res, rej) => {
      resolve = (v) => {
        settled = true;
        res(v);
      };
      reject = (e) => {
        settled = true;
        rej(e);
      };
    });
    result.catch(() => {});
    async function* run() {
      let text = "";
      try {
        for (;;) {
          if (signal?.aborted) {
            const rest = genCall(() => gen.cancel());
            if (rest) {
              text += rest;
              onText?.(rest);
              yield rest;
            }
            throw abortError(signal);
          }
          const piece = isAsync ? await genCallAsync(() => gen.stepAsync()) : genCall(() => gen.step());
          if (piece === undefined) break;
          if (piece) {
            text += piece;
            if (onText?.(piece) === false) {
              const rest = genCall(() => gen.cancel());
              if (rest) {
                text += rest;
                yield piece + rest;
              } else {
                yield piece;
              }
              break;
            }
            yield piece;
          }
          await yieldToEventLoop();
        }
        resolve({
          text,
          tokens: genCall(() => gen.tokens()),
          stopReason: genCall(() => gen.stopReason()) ?? "aborted",
          stats: { ...genCall(() => gen.stats()), backend: backendName },
        });
      } catch (e) {
        const err = convert(e);
        reject(err);
        throw err;
      } finally {
        if (alive()) {
          // The reader stopped early (break out of for await): end as aborted.
          const rest = gen.cancel();
          if (!settled) {
            resolve({
              text: text + rest,
              tokens: gen.tokens(),
              stopReason: "aborted",
              stats: { ...gen.stats(), backend: backendName },
            });
          }
          gen.free();
        }
      }
    }
    return new TextStream(run(), result);
  }

  /** Callback form: calls `onText(piece)` (return false to stop) and resolves with the result. */
  async complete(input, options = {}) {
    return this.generate(input, options).result;
  }

  /** Generates the assistant's reply to `messages` with the model's chat template. */
  chat(messages, options = {}) {
    return this.generate({ messages }, options);
  }

  /** Forgets the cached conversation. */
  reset() {
    this.#call(() => this.#raw.reset());
  }

  /**
   * Frees the model's wasm memory; later calls throw MODEL_LOST. Does
   * nothing for a model already lost to a panic (its memory went with the
   * dead instance).
   */
  dispose() {
    if (this.#epoch === epoch) this.#raw.free();
    this.#epoch = -1;
  }
}
