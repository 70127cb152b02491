// Compiled with `tsc --noEmit` by scripts/web/test.sh: the declarations in
// src/index.d.ts describe the API the way the tests and the demo use it.
import {
  loadModel,
  buildInfo,
  backend,
  availableBackends,
  webgpuInfo,
  memoryBytes,
  clearModelCache,
  loadModelInWorker,
  WasmChordError,
  type Backend,
  type GenerateResult,
  type LoadProgress,
} from "../src/index.js";

async function demo(file: Blob, signal: AbortSignal): Promise<string> {
  const progress: LoadProgress[] = [];
  const model = await loadModel(file, {
    contextSize: 1024,
    sha256: "00",
    signal,
    onProgress: (p) => progress.push(p),
    backend: "auto",
  });
  const b: Backend = model.backend();
  const info = await buildInfo();
  const simd: boolean = info.simd128;
  const compiled: Backend[] = info.backends;
  const why: string | null = model.info.backendFallback;
  const adapter = await webgpuInfo();
  const gpuBytes: number = (adapter?.maxBufferBytes ?? 0) + (await memoryBytes());
  const stream = model.generate("Hello", { maxTokens: 8, temperature: 0, stop: ["\n"], signal });
  let text = "";
  for await (const piece of stream) text += piece;
  const r: GenerateResult = await stream.result;
  const tps: number = r.stats.tokensPerSecond;
  const reply = await model.chat([{ role: "user", content: "Hi" }], { greedy: true }).result;
  await model.complete(model.tokenize("x"), { onText: (t) => t.length < 10, logitBias: { 5: -Infinity } });
  const prompt: string = model.applyChatTemplate([{ role: "user", content: "Hi" }]);
  await clearModelCache();
  const all: Backend[] = await availableBackends();
  model.dispose();
  const w = await loadModelInWorker("https://example.org/m.gguf", { contextSize: 512 });
  const ids: Uint32Array = await w.tokenize("hi");
  for await (const piece of w.chat([{ role: "user", content: "Hi" }], { maxTokens: 4 })) text += piece;
  await w.dispose();
  void ids;
  try {
    await loadModel("https://example.org/m.gguf");
  } catch (e) {
    if (e instanceof WasmChordError && e.code === "MODEL_TOO_LARGE") return "too large";
  }
  return `${b} ${simd} ${text} ${tps} ${reply.stopReason} ${prompt} ${all} ${backend()} ${compiled} ${why} ${gpuBytes}`;
}
void demo;
