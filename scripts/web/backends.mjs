// Loads a model by URL on each backend in a fresh page of headless Chromium
// (WebGPU on SwiftShader) and prints, per backend, the wasm memory after
// loading (memoryBytes(): the instance's high-water mark), the load time
// and, when asked, the speed of a short greedy generation. A measurement,
// not a test: see docs/web.md.
//
//   node scripts/web/backends.mjs MODEL_DIR MODEL [webgpu,cpu] [TOKENS] [CONTEXT]
import { chromium } from "../../bindings/js/node_modules/playwright-core/index.mjs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "./serve.mjs";

const [dir, model, backends = "webgpu,cpu", tokens = "0", context = "256"] = process.argv.slice(2);
if (!dir || !model) {
  console.error("usage: node scripts/web/backends.mjs MODEL_DIR MODEL [webgpu,cpu] [TOKENS] [CONTEXT]");
  process.exit(2);
}
const server = await serve({ models: dir });
const profile = await mkdtemp(join(tmpdir(), "wasm-chord-chromium-"));
const context_ = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"],
});
try {
  for (const backend of backends.split(",")) {
    const page = await context_.newPage();
    await page.goto(`${server.url}/examples/web/`);
    const r = await page.evaluate(
      async ([model, backend, tokens, context]) => {
        const { loadModel, memoryBytes } = await import("/bindings/js/src/index.js");
        const mib = (n) => Math.round((n / 1048576) * 10) / 10;
        const t0 = performance.now();
        let m;
        try {
          m = await loadModel(model, { backend, cache: false, contextSize: context });
        } catch (e) {
          return { backend, error: `${e.code}: ${e.message}`, memoryMiB: mib(await memoryBytes()) };
        }
        const out = {
          backend: m.backend(),
          fileMiB: mib(m.info.fileBytes),
          loadS: Math.round(performance.now() - t0) / 1000,
          memoryMiB: mib(await memoryBytes()),
        };
        if (tokens > 0) {
          const r = await m.complete("Once upon a time", { maxTokens: tokens, greedy: true });
          out.promptTokens = r.stats.promptTokens;
          out.promptS = Math.round(r.stats.promptMs) / 1000;
          out.generated = r.stats.generatedTokens;
          out.tokensPerSecond = Math.round(r.stats.tokensPerSecond * 100) / 100;
        }
        m.dispose();
        return out;
      },
      [`/models/${model}`, backend, Number(tokens), Number(context)],
    );
    console.log(JSON.stringify(r));
    await page.close();
  }
} finally {
  await context_.close();
  await server.close();
  await rm(profile, { recursive: true, force: true });
}
