// The worker side of loadModelInWorker (./worker-client.js): runs the
// package inside a dedicated Web Worker so that the page's main thread never
// blocks on a token. Messages in: {id, op, args}; out: {id, type, ...}.

import { loadModel, WasmChordError, _panicForTesting } from "./index.js";

let model = null;
const running = new Map(); // generation id -> AbortController

function post(msg) {
  self.postMessage(msg);
}

function fail(id, e) {
  post({
    id,
    type: "error",
    code: e?.code ?? "RUNTIME",
    message: e?.message ?? String(e),
  });
}

async function handle({ id, op, args }) {
  switch (op) {
    case "load": {
      const [source, options] = args;
      model?.dispose();
      model = null;
      const ac = new AbortController();
      running.set(id, ac);
      try {
        model = await loadModel(source, {
          ...options,
          signal: ac.signal,
          onProgress: (p) => post({ id, type: "progress", progress: p }),
        });
      } finally {
        running.delete(id);
      }
      post({ id, type: "done", result: { info: model.info, backend: model.backend() } });
      return;
    }
    case "generate": {
      if (!model) throw new WasmChordError("INVALID_ARGUMENT", "no model loaded");
      const [input, options] = args;
      const ac = new AbortController();
      running.set(id, ac);
      try {
        const stream = model.generate(input, { ...options, signal: ac.signal });
        for await (const piece of stream) post({ id, type: "text", piece });
        post({ id, type: "done", result: await stream.result });
      } finally {
        running.delete(id);
      }
      return;
    }
    case "abort":
      running.get(args[0])?.abort();
      return;
    case "call": {
      // Synchronous Model methods: tokenize, detokenize, applyChatTemplate, reset.
      if (!model) throw new WasmChordError("INVALID_ARGUMENT", "no model loaded");
      const [method, params] = args;
      if (!["tokenize", "detokenize", "applyChatTemplate", "reset"].includes(method)) {
        throw new WasmChordError("INVALID_ARGUMENT", `unknown method ${method}`);
      }
      post({ id, type: "done", result: model[method](...params) });
      return;
    }
    case "dispose":
      model?.dispose();
      model = null;
      post({ id, type: "done", result: null });
      return;
    case "_panicForTesting":
      // Internal, for the tests (a build with the `panic-test` feature).
      await _panicForTesting();
      return;
    default:
      throw new WasmChordError("INVALID_ARGUMENT", `unknown operation ${op}`);
  }
}

self.onmessage = (ev) => {
  handle(ev.data).catch((e) => fail(ev.data.id, e));
};
