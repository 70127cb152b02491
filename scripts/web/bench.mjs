// Tokens/s of the wasm CPU path in Node, for docs/web.md: loads MODEL with
// the npm package (scripts/web/build.sh first), then times a greedy
// generation of N tokens after PROMPT, RUNS times, and prints the best run.
//
//   node scripts/web/bench.mjs MODEL [PROMPT] [N] [RUNS]
import { loadModel, buildInfo } from "../../bindings/js/src/index.js";

const [path, prompt = "The history of the city begins", n = "64", runs = "3"] = process.argv.slice(2);
if (!path) {
  console.error("usage: node scripts/web/bench.mjs MODEL [PROMPT] [N] [RUNS]");
  process.exit(2);
}
const t0 = performance.now();
const model = await loadModel(path, { contextSize: 512 });
const loadMs = performance.now() - t0;
const info = await buildInfo();
let best = null;
for (let i = 0; i < Number(runs); i++) {
  model.reset(); // evaluate the prompt again each run
  const r = await model.complete(prompt, { maxTokens: Number(n), temperature: 0 });
  const s = r.stats;
  const promptTps = (s.promptTokens * 1000) / s.promptMs;
  if (!best || s.tokensPerSecond > best.genTps) {
    best = { genTps: s.tokensPerSecond, promptTps, promptTokens: s.promptTokens, tokens: s.generatedTokens, stop: r.stopReason };
  }
}
console.log(
  `${model.info.architecture} ${(model.info.fileBytes / 1048576).toFixed(0)} MB | load ${loadMs.toFixed(0)} ms | ` +
    `prompt: ${best.promptTokens} tokens, ${best.promptTps.toFixed(1)} tok/s | ` +
    `generated: ${best.tokens} tokens, ${best.genTps.toFixed(1)} tok/s | stop: ${best.stop} | ` +
    `backend: ${model.backend()}, simd128 ${info.simd128}, 1 thread`,
);
model.dispose();
