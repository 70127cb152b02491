//! ggml quantization blocks with scalar reference `dequantize` and `quantize`.
