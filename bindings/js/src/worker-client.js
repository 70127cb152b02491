// loadModelInWorker: the same Model API, with the model in a dedicated Web
// Worker (./worker.js) so the page's main thread stays free while tokens are
// computed. Every method that returned a value returns a Promise of it.
//
// A panic inside the worker rejects the call with code PANIC, as on the main
// thread; the model in it is then lost, so the worker is ended and every
// later call on this WorkerModel throws MODEL_LOST. Each loadModelInWorker
// starts a worker of its own, so loading again just works.

import { TextStream, WasmChordError } from "./index.js";

/** A model running inside a Web Worker. */
export class WorkerModel {
  #worker;
  #next = 1;
  #pending = new Map(); // id -> {onMessage}
  #dead = null;
  info;
  #backend;

  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = (ev) => this.#pending.get(ev.data.id)?.onMessage(ev.data);
    worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.#kill(new WasmChordError("PANIC", `the model worker failed: ${ev.message ?? "error"}`));
    };
  }

  #kill(err) {
    this.#dead = new WasmChordError("MODEL_LOST", `the model worker is gone (${err.message}); load the model again`);
    for (const p of this.#pending.values()) p.onMessage({ type: "error", code: err.code, message: err.message });
    this.#pending.clear();
    this.#worker.terminate();
  }

  /** Sends an operation; `onMessage` sees every reply until "done" or "error". */
  _send(op, args, onMessage, transfer = []) {
    if (this.#dead) throw this.#dead;
    const id = this.#next++;
    this.#pending.set(id, {
      onMessage: (m) => {
        if (m.type === "done" || m.type === "error") this.#pending.delete(id);
        if (m.type === "error" && ["PANIC", "POISONED", "MODEL_LOST"].includes(m.code) && !this.#dead) {
          // The worker's own instance was replaced, but the model in it is
          // gone: end the worker (its memory with it).
          this.#dead = new WasmChordError(
            "MODEL_LOST",
            `this model was lost when its worker failed (${m.message}); load it again`,
          );
          this.#worker.terminate();
          queueMicrotask(() => {
            for (const p of this.#pending.values()) {
              p.onMessage({ type: "error", code: "MODEL_LOST", message: this.#dead.message });
            }
            this.#pending.clear();
          });
        }
        onMessage(m);
      },
    });
    this.#worker.postMessage({ id, op, args }, transfer);
    return id;
  }

  _request(op, args, onProgress, transfer) {
    return new Promise((resolve, reject) => {
      try {
        this._send(
          op,
          args,
          (m) => {
            if (m.type === "progress") onProgress?.(m.progress);
            else if (m.type === "done") resolve(m.result);
            else if (m.type === "error") reject(new WasmChordError(m.code, m.message));
          },
          transfer,
        );
      } catch (e) {
        reject(e);
      }
    });
  }

  _loaded({ info, backend }) {
    this.info = info;
    this.#backend = backend;
    return this;
  }

  backend() {
    return this.#backend;
  }

  tokenize(text, options) {
    return this._request("call", ["tokenize", [text, options]]);
  }

  detokenize(tokens) {
    return this._request("call", ["detokenize", [Array.from(tokens)]]);
  }

  applyChatTemplate(messages, options) {
    return this._request("call", ["applyChatTemplate", [messages, options]]);
  }

  reset() {
    return this._request("call", ["reset", []]);
  }

  generate(input, options = {}) {
    const { signal, onText, ...rest } = options;
    const queue = [];
    let wake = null;
    let id;
    const push = (m) => {
      queue.push(m);
      wake?.();
    };
    let settled = false;
    let resolve, reject;
    const result = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    result.catch(() => {});
    // Nothing to stop once the worker is gone.
    const abort = () => id !== undefined && !this.#dead && this._send("abort", [id], () => {});
    const self = this;
    async function* run() {
      const fail = (e) => {
        settled = true;
        reject(e);
        throw e;
      };
      if (signal?.aborted) fail(new WasmChordError("ABORTED", "aborted", { cause: signal.reason }));
      try {
        id = self._send("generate", [input instanceof Uint32Array ? Array.from(input) : input, rest], push);
      } catch (e) {
        fail(e);
      }
      signal?.addEventListener("abort", abort, { once: true });
      try {
        for (;;) {
          while (queue.length === 0) await new Promise((r) => (wake = r));
          const m = queue.shift();
          if (m.type === "text") {
            if (onText?.(m.piece) === false) abort();
            yield m.piece;
          } else if (m.type === "done") {
            settled = true;
            resolve(m.result);
            return;
          } else if (m.type === "error") {
            const e = new WasmChordError(m.code, m.message);
            settled = true;
            reject(e);
            throw e;
          }
        }
      } finally {
        signal?.removeEventListener("abort", abort);
        if (!settled) {
          // The reader stopped early: stop the worker and report the end.
          abort();
          result.catch(() => {});
          resolve({ text: "", tokens: new Uint32Array(), stopReason: "aborted", stats: null });
        }
      }
    }
    return new TextStream(run(), result);
  }

  complete(input, options = {}) {
    return this.generate(input, options).result;
  }

  chat(messages, options = {}) {
    return this.generate({ messages }, options);
  }

  /** Frees the model and ends the worker. */
  async dispose() {
    if (this.#dead) return;
    try {
      await this._request("dispose", []);
    } finally {
      this.#worker.terminate();
      this.#dead = new WasmChordError("MODEL_LOST", "the model was disposed");
    }
  }
}

/**
 * Like loadModel, with the model in a new dedicated Web Worker. `source` may
 * be a URL, a File/Blob or bytes (moved to the worker).
 */
export async function loadModelInWorker(source, options = {}) {
  const { onProgress, signal, ...rest } = options;
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  const model = new WorkerModel(worker);
  // Resolve relative URLs here: inside the worker they would resolve
  // against the worker script's address.
  const src =
    source instanceof URL || typeof source === "string"
      ? new URL(String(source), globalThis.location?.href).href
      : source;
  const transfer = src instanceof ArrayBuffer ? [src] : ArrayBuffer.isView(src) ? [src.buffer] : [];
  let id;
  const abort = () => id !== undefined && model._send("abort", [id], () => {});
  signal?.addEventListener("abort", abort, { once: true });
  try {
    const loaded = await new Promise((resolve, reject) => {
      id = model._send(
        "load",
        [src, rest],
        (m) => {
          if (m.type === "progress") onProgress?.(m.progress);
          else if (m.type === "done") resolve(m.result);
          else if (m.type === "error") reject(new WasmChordError(m.code, m.message));
        },
        transfer,
      );
    });
    return model._loaded(loaded);
  } catch (e) {
    worker.terminate();
    throw e;
  } finally {
    signal?.removeEventListener("abort", abort);
  }
}
