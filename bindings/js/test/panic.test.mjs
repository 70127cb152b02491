// The panic fallback end to end, on a build with the crate's `panic-test`
// feature (scripts/web/test.sh makes one and points WASMCHORD_PANIC_BUILD at
// its copy of src/index.js): a panic inside wasm throws code PANIC with the
// panic's message, and every later call throws POISONED instead of running
// on the broken instance.
import { test } from "node:test";
import assert from "node:assert/strict";

const BUILD = process.env.WASMCHORD_PANIC_BUILD;
const MODEL = process.env.WASMCHORD_TINY_MODEL;
const skip = BUILD && MODEL ? false : "WASMCHORD_PANIC_BUILD is not set (scripts/web/test.sh sets it)";

test("a panic throws PANIC, then every call throws POISONED", { skip }, async () => {
  const pkg = await import(BUILD);
  const model = await pkg.loadModel(MODEL);
  assert.equal((await model.complete("a", { maxTokens: 2, greedy: true })).tokens.length, 2);
  await assert.rejects(pkg._panicForTesting(), (e) => {
    assert.ok(e instanceof pkg.WasmChordError);
    assert.equal(e.code, "PANIC");
    assert.match(e.message, /deliberate panic/);
    return true;
  });
  assert.throws(() => model.generate("a", { maxTokens: 2 }), (e) => e.code === "POISONED" && /deliberate panic/.test(e.message));
  await assert.rejects(pkg.loadModel(MODEL), (e) => e.code === "POISONED");
});
