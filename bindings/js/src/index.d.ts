// Types of the wasm-chord package (src/index.js).

/** Stable error codes: `err.code` of every WasmChordError. */
export type ErrorCode =
  | "INVALID_ARGUMENT" // an option or argument is wrong (type, range, unknown key)
  | "BAD_MODEL" // not a valid GGUF file
  | "UNSUPPORTED_MODEL" // valid GGUF this runtime cannot run (architecture, tensor type)
  | "MODEL_TOO_LARGE" // does not fit (CPU: wasm32 memory; WebGPU: one tensor in wasm memory; see docs/web.md)
  | "INTEGRITY" // size or sha256 differ from what was expected
  | "NETWORK" // the download failed
  | "TOKENIZER"
  | "TEMPLATE" // the chat template failed to render, or there is none
  | "CONTEXT_FULL" // the prompt does not fit into contextSize
  | "ABORTED" // the AbortSignal fired, or onProgress/onText asked to stop
  | "SUPERSEDED" // a newer generation started on the same model
  | "UNSUPPORTED_BACKEND" // an unknown backend, or backend: "webgpu" without a WebGPU adapter
  | "RUNTIME" // any other failure inside the model
  | "PANIC" // the wasm module trapped (a bug); it was restarted with a fresh instance, its models are lost
  | "MODEL_LOST" // a call on a model (or a generation) that lived in an instance ended by a PANIC, or after dispose()
  | "POISONED"; // after a PANIC the module could not be restarted: every call throws this (load the page again)

export class WasmChordError extends Error {
  readonly name: "WasmChordError";
  readonly code: ErrorCode;
}

/** "webgpu": WebGPU (navigator.gpu); "cpu": the wasm simd128 CPU path. */
export type Backend = "cpu" | "webgpu";

export interface BuildInfo {
  version: string;
  /** Backends compiled in, best first: ["webgpu", "cpu"]. */
  backends: Backend[];
  /** The module was compiled with `-C target-feature=+simd128`. */
  simd128: boolean;
  /** wasm threads (SharedArrayBuffer): not used; rayon runs on the calling thread. */
  threads: boolean;
  /** Largest model file the CPU path accepts, in bytes. */
  maxModelBytes: number;
}

export interface LoadProgress {
  /** "download": bytes arriving (network, cache, file); "load": weights set up. */
  phase: "download" | "load";
  loaded?: number;
  total?: number;
  /** 0..1 within the phase, when known. */
  fraction?: number;
  /** The bytes come from the model cache, not the network. */
  cached: boolean;
}

export interface LoadOptions {
  /** Expected sha256 (hex) of the file: checked while it streams in. */
  sha256?: string;
  /** KV cache size in tokens (default 2048). */
  contextSize?: number;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Keep URL downloads in the Cache API (default true where available). */
  cache?: boolean;
  cacheName?: string;
  /**
   * "auto" (default): WebGPU when navigator.gpu gives an adapter and a device,
   * else the CPU (`info.backendFallback` says why). "webgpu": WebGPU or
   * UNSUPPORTED_BACKEND. "cpu": the CPU path.
   */
  backend?: "auto" | Backend;
}

/** Sampling and stopping (llama.cpp's defaults unless set). */
export interface GenerateOptions {
  /** Most new tokens (default 256). */
  maxTokens?: number;
  stop?: string | string[];
  /** Greedy when 0 (default 0.8). */
  temperature?: number;
  greedy?: boolean;
  topK?: number;
  topP?: number;
  minP?: number;
  typicalP?: number;
  repeatPenalty?: number;
  repeatLastN?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Same seed and options give the same text (default 0xFFFFFFFF). */
  seed?: number;
  /** token id -> bias; -Infinity bans a token. */
  logitBias?: Record<number, number> | Map<number, number>;
  signal?: AbortSignal;
  /** Called with each text piece; return false to stop. */
  onText?: (piece: string) => boolean | void;
}

export interface GenerateStats {
  promptTokens: number;
  promptMs: number;
  generatedTokens: number;
  genMs: number;
  tokensPerSecond: number;
  backend: Backend;
}

export interface GenerateResult {
  text: string;
  tokens: Uint32Array;
  stopReason: "eos" | "maxTokens" | "stop" | "contextFull" | "aborted";
  stats: GenerateStats;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | string;
  content: string;
  [key: string]: unknown;
}

export type GenerateInput = string | Uint32Array | number[] | { messages: ChatMessage[] };

export interface ModelInfo {
  architecture: string;
  name: string;
  nVocab: number;
  nCtxTrain: number;
  nLayer: number;
  nEmbd: number;
  contextSize: number;
  fileBytes: number;
  /** The Jinja source used for chat, or null when there is none. */
  chatTemplate: string | null;
  /** The file has no template; the architecture's built-in one is used. */
  chatTemplateFallback: boolean;
  backend: Backend;
  /** Why backend "auto" did not run on WebGPU; null when it did or was not asked. */
  backendFallback: string | null;
}

export interface WebGpuInfo {
  /** Adapter name, API, optional features (shader-f16, subgroups), binding limit. */
  summary: string;
  /** Largest GPU buffer the adapter allows (a weight larger than that is split by rows). */
  maxBufferBytes: number;
}

/** Text pieces as they are generated; `.result` for the whole outcome. */
export class TextStream implements AsyncIterable<string> {
  [Symbol.asyncIterator](): AsyncIterator<string>;
  readonly result: Promise<GenerateResult>;
}

export class Model {
  readonly info: ModelInfo;
  backend(): Backend;
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): Uint32Array;
  detokenize(tokens: ArrayLike<number>): string;
  applyChatTemplate(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
  generate(input: GenerateInput, options?: GenerateOptions): TextStream;
  complete(input: GenerateInput, options?: GenerateOptions): Promise<GenerateResult>;
  chat(messages: ChatMessage[], options?: GenerateOptions): TextStream;
  reset(): void;
  /**
   * Frees the model's memory; later calls throw MODEL_LOST. Does nothing for
   * a model lost to a PANIC (its memory went with the dead instance).
   */
  dispose(): void;
}

export type ModelSource = string | URL | Blob | ArrayBuffer | Uint8Array | ReadableStream<Uint8Array>;

export function init(moduleOrPath?: BufferSource | WebAssembly.Module | URL | string | Response): Promise<void>;
/**
 * Loads a model. Also after a PANIC: the module then runs on a fresh
 * instance, and only the models loaded before the panic are lost.
 */
export function loadModel(source: ModelSource, options?: LoadOptions): Promise<Model>;
export function backend(): Backend;
export function availableBackends(): Promise<Backend[]>;
/** Bytes of wasm memory this instance holds (high-water mark; CPU path: includes the model file). */
export function memoryBytes(): Promise<number>;
/** The WebGPU adapter loadModel uses, or null where there is none. */
export function webgpuInfo(): Promise<WebGpuInfo | null>;
export function buildInfo(): Promise<BuildInfo>;
export function clearModelCache(url?: string, cacheName?: string): Promise<void>;

/**
 * The Model API with the model in a dedicated Web Worker (browsers): the page's
 * main thread never blocks on a token. Methods that return values return Promises.
 * A PANIC in the worker ends it: later calls throw MODEL_LOST, and
 * loadModelInWorker starts a new worker.
 */
export class WorkerModel {
  readonly info: ModelInfo;
  backend(): Backend;
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): Promise<Uint32Array>;
  detokenize(tokens: ArrayLike<number>): Promise<string>;
  applyChatTemplate(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): Promise<string>;
  generate(input: GenerateInput, options?: GenerateOptions): TextStream;
  complete(input: GenerateInput, options?: GenerateOptions): Promise<GenerateResult>;
  chat(messages: ChatMessage[], options?: GenerateOptions): TextStream;
  reset(): Promise<void>;
  /** Frees the model and ends the worker. */
  dispose(): Promise<void>;
}

/** Like loadModel, in a new Web Worker. Bytes are moved (transferred) to it. */
export function loadModelInWorker(source: ModelSource, options?: LoadOptions): Promise<WorkerModel>;
