// A small Swift wrapper over the C API: a model, sessions with streaming
// generation, and tokenization. Handles are freed in deinit.
import CWasmChord
import Foundation

/// A failed call: the result code's name and the library's message.
public struct WasmChordError: Error, CustomStringConvertible {
    public let code: wasmchord_result
    public let message: String

    public var description: String {
        String(cString: wasmchord_result_name(Int32(code.rawValue))) + ": " + message
    }

    static func check(_ r: wasmchord_result) throws {
        guard r != WASMCHORD_OK else { return }
        let n = wasmchord_last_error_message(nil, 0)
        var buf = [CChar](repeating: 0, count: n + 1)
        _ = wasmchord_last_error_message(&buf, buf.count)
        throw WasmChordError(code: r, message: String(cString: buf))
    }
}

/// A loaded model; thread-safe, shared by its sessions.
public final class Model {
    let handle: OpaquePointer

    /// Loads a GGUF file on the CPU backend.
    public init(path: String) throws {
        var params = wasmchord_model_params_default()
        var out: OpaquePointer?
        try "cpu".withCString { backend in
            params.backend = backend
            try WasmChordError.check(wasmchord_model_load_file(path, &params, &out))
        }
        handle = out!
    }

    deinit { wasmchord_model_free(handle) }

    /// The model's architecture name (`"llama"`, `"gemma3"`, ...).
    public var architecture: String {
        var info = wasmchord_model_info()
        info.size = MemoryLayout<wasmchord_model_info>.size
        guard wasmchord_model_get_info(handle, &info) == WASMCHORD_OK, let arch = info.arch else {
            return ""
        }
        return String(cString: arch)
    }

    /// Token ids of `text` (size negotiation: ask, then fill).
    public func tokenize(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false) throws -> [UInt32] {
        var utf8 = Array(text.utf8CString.dropLast())
        var n = 0
        let r = wasmchord_tokenize(handle, &utf8, utf8.count, addSpecial, parseSpecial, nil, 0, &n)
        if r != WASMCHORD_BUFFER_TOO_SMALL { try WasmChordError.check(r) }
        var ids = [UInt32](repeating: 0, count: n)
        try WasmChordError.check(
            wasmchord_tokenize(handle, &utf8, utf8.count, addSpecial, parseSpecial, &ids, ids.count, &n))
        return Array(ids.prefix(n))
    }
}

/// One conversation's state; use from one thread at a time.
public final class Session {
    let handle: OpaquePointer
    let model: Model

    public init(model: Model, contextSize: UInt32 = 2048) throws {
        var params = wasmchord_session_params_default()
        params.n_ctx = contextSize
        var out: OpaquePointer?
        try WasmChordError.check(wasmchord_session_new(model.handle, &params, &out))
        handle = out!
        self.model = model
    }

    deinit { wasmchord_session_free(handle) }

    /// Stops a running `generate` from any thread.
    public func abort() { _ = wasmchord_session_abort(handle) }

    /// Generates from `prompt`, calling `onText` with each piece of text;
    /// `onText` returns false to stop. Returns the whole text.
    @discardableResult
    public func generate(
        prompt: String, maxTokens: UInt32 = 256, temperature: Float = 0.8, seed: UInt64 = 0xFFFF_FFFF,
        onText: @escaping (String) -> Bool = { _ in true }
    ) throws -> String {
        var ids = try model.tokenize(prompt)
        var params = wasmchord_generate_params_default()
        params.max_tokens = maxTokens
        params.temperature = temperature
        params.seed = seed
        final class Box {
            var text = ""
            let onText: (String) -> Bool
            init(_ f: @escaping (String) -> Bool) { onText = f }
        }
        let box = Box(onText)
        let ctx = Unmanaged.passUnretained(box).toOpaque()
        let r = wasmchord_generate(handle, &ids, ids.count, &params, { text, len, userData in
            let box = Unmanaged<Box>.fromOpaque(userData!).takeUnretainedValue()
            let bytes = UnsafeRawBufferPointer(start: text, count: len)
            let piece = String(decoding: bytes, as: UTF8.self)
            box.text += piece
            return box.onText(piece)
        }, ctx, nil)
        try withExtendedLifetime(box) { try WasmChordError.check(r) }
        return box.text
    }
}
