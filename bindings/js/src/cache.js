// The model cache: the Cache API (browsers, secure contexts such as
// https:// and http://localhost). Each model URL has two entries: the file
// itself, written while it downloads, and a small record of its sha256 and
// size, written only after the whole file passed every check (size, GGUF
// header, and the expected sha256 when one was given). A file without its
// record is an interrupted or failed download and is never used.
//
// On a later visit the cached file is streamed into wasm like a download
// and checked again against the record (and against the caller's sha256,
// if given); a damaged entry is deleted and the model downloaded again.

const DEFAULT_NAME = "wasm-chord-models-v1";
// The records live under their own URLs (the Cache API ignores fragments,
// so a "#meta" suffix would replace the file itself).
const META_BASE = "https://wasm-chord.invalid/model-record?url=";

/** The cache, or null where the Cache API is not available (Node, http://). */
export async function openModelCache(name = DEFAULT_NAME) {
  if (typeof caches === "undefined") return null;
  let cache;
  try {
    cache = await caches.open(name);
  } catch {
    return null; // e.g. storage disabled
  }
  const metaKey = (url) =>
    META_BASE + encodeURIComponent(new URL(url, globalThis.location?.href).href);
  return {
    /** {body, meta:{sha256, size}} of a complete entry, or null. */
    async lookup(url) {
      const [file, meta] = await Promise.all([cache.match(url), cache.match(metaKey(url))]);
      if (!file || !meta) {
        if (file) await cache.delete(url);
        return null;
      }
      let m;
      try {
        m = await meta.json();
      } catch {
        m = null;
      }
      if (!m || typeof m.sha256 !== "string" || typeof m.size !== "number" || !file.body) {
        await this.remove(url);
        return null;
      }
      return { body: file.body, meta: m };
    },
    /** Starts writing `stream` as the file of `url`. */
    begin(url, stream) {
      const put = cache
        .put(url, new Response(stream, { headers: { "content-type": "application/octet-stream" } }))
        .then(
          () => true,
          () => false, // quota exceeded or the like: the model still loads
        );
      return {
        async commit(meta) {
          if (!(await put)) return;
          await cache.put(
            metaKey(url),
            new Response(JSON.stringify(meta), { headers: { "content-type": "application/json" } }),
          );
        },
        abort() {
          put.then(() => cache.delete(url)).catch(() => {});
        },
      };
    },
    async remove(url) {
      await Promise.all([cache.delete(url), cache.delete(metaKey(url))]);
    },
  };
}

/** Deletes every cached model (or the one of `url`). */
export async function clearModelCache(url, name = DEFAULT_NAME) {
  if (typeof caches === "undefined") return;
  if (url === undefined) {
    await caches.delete(name);
    return;
  }
  const c = await openModelCache(name);
  await c?.remove(url);
}
