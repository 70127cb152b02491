// CUDA kernels of the wasm-chord candle backend's custom ops. Compiled to
// PTX by build.rs (nvcc --ptx) when the `cuda` feature is on, loaded through
// candle's CudaDevice::get_or_load_custom_func. Each kernel follows the CPU
// implementation in ops/cpu.rs (same rounding points), which the tests use as
// the reference.
#include <cuda_fp16.h>
#include <math_constants.h>

__device__ __forceinline__ float round_f16(float v) {
    return __half2float(__float2half_rn(v));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024). `red`
// holds 32 floats of shared memory. Every thread gets the result.
__device__ float block_sum(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    const int nw = blockDim.x >> 5;
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

__device__ float block_max(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    const int nw = blockDim.x >> 5;
    v = lane < nw ? red[lane] : -CUDART_INF_F;
    return warp_max(v);
}

// One block per row.
extern "C" __global__ void wc_rms_norm(const float* x, const float* w, float* out,
                                       int dim, float eps) {
    __shared__ float red[32];
    const float* xr = x + (size_t)blockIdx.x * dim;
    float* orow = out + (size_t)blockIdx.x * dim;
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += xr[i] * xr[i];
    s = block_sum(s, red);
    const float scale = rsqrtf(s / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = (xr[i] * scale) * w[i];
}

// A residual add and the RMSNorm after it, one block per row (the block
// size of wc_rms_norm, so the sums are those of the ops it replaces):
// x + (normed ? rms_norm(b)·bw : b) into out[0, n), its RMSNorm times w
// into out[n, 2n), n = n_rows·dim.
extern "C" __global__ void wc_add_rms_norm(const float* x, const float* b, const float* bw,
                                           const float* w, float* out, int n_rows, int dim,
                                           float eps, int normed) {
    __shared__ float red[32];
    const size_t base = (size_t)blockIdx.x * dim;
    const size_t n = (size_t)n_rows * dim;
    float bscale = 1.0f;
    if (normed) {
        float s = 0.0f;
        for (int i = threadIdx.x; i < dim; i += blockDim.x) s += b[base + i] * b[base + i];
        s = block_sum(s, red);
        bscale = rsqrtf(s / (float)dim + eps);
    }
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float h = normed ? (b[base + i] * bscale) * bw[i] : b[base + i];
        const float v = x[base + i] + h;
        out[base + i] = v;
        s += v * v;
    }
    s = block_sum(s, red);
    const float scale = rsqrtf(s / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        out[n + base + i] = (out[base + i] * scale) * w[i];
    }
}

// QK-norm (when normed), RoPE and q's scale in one launch: one block per
// (token, head) of q, then of k (same block size, norm and angles as
// wc_rms_norm and wc_rope). out holds q's heads, then k's.
extern "C" __global__ void wc_qk_rope(const float* q, const float* k, float* out,
                                      const unsigned* pos, const float* ff, const float* qw,
                                      const float* kw, int n_tok, int n_heads, int n_kv,
                                      int head_dim, int n_rot, int neox, float theta_scale,
                                      float freq_scale, float q_scale, float eps, int normed) {
    __shared__ float red[32];
    __shared__ float row[1024];
    const int per_tok = n_heads + n_kv;
    const int t = blockIdx.x / per_tok;
    const int hh = blockIdx.x % per_tok;
    const bool is_q = hh < n_heads;
    const size_t qn = (size_t)n_tok * n_heads * head_dim;
    const float* src = is_q ? q + ((size_t)t * n_heads + hh) * head_dim
                            : k + ((size_t)t * n_kv + (hh - n_heads)) * head_dim;
    float* dst = is_q ? out + ((size_t)t * n_heads + hh) * head_dim
                      : out + qn + ((size_t)t * n_kv + (hh - n_heads)) * head_dim;
    const float* nw = is_q ? qw : kw;
    float sc = 1.0f;
    if (normed) {
        float s = 0.0f;
        for (int i = threadIdx.x; i < head_dim; i += blockDim.x) s += src[i] * src[i];
        s = block_sum(s, red);
        sc = rsqrtf(s / (float)head_dim + eps);
    }
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        row[i] = normed ? (src[i] * sc) * nw[i] : src[i];
    }
    __syncthreads();
    const float qs = is_q ? q_scale : 1.0f;
    const int half_rot = n_rot / 2;
    for (int i = threadIdx.x; i < head_dim / 2; i += blockDim.x) {
        if (i < half_rot) {
            const float theta = freq_scale * ((float)pos[t] * powf(theta_scale, (float)i) / ff[i]);
            float s, c;
            sincosf(theta, &s, &c);
            const int a = neox ? i : 2 * i;
            const int b = neox ? i + half_rot : 2 * i + 1;
            const float x0 = row[a], x1 = row[b];
            const float ra = x0 * c - x1 * s;
            const float rb = x0 * s + x1 * c;
            dst[a] = ra * qs;
            dst[b] = rb * qs;
        } else {
            const int j = n_rot + 2 * (i - half_rot);
            dst[j] = row[j] * qs;
            dst[j + 1] = row[j + 1] * qs;
        }
    }
}

// One thread per (token, head, pair index i < head_dim / 2). Pairs below
// n_rot / 2 are rotated; the rest copy the non-rotated tail.
extern "C" __global__ void wc_rope(const float* x, float* out, const unsigned* pos,
                                   const float* ff, int n_tok, int n_heads, int head_dim,
                                   int n_rot, int neox, float theta_scale, float freq_scale) {
    const int half_hd = head_dim / 2;
    const long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
    const long total = (long)n_tok * n_heads * half_hd;
    if (idx >= total) return;
    const int i = idx % half_hd;
    const long th = idx / half_hd;  // token * n_heads + head
    const int t = th / n_heads;
    const float* v = x + th * head_dim;
    float* o = out + th * head_dim;
    const int half_rot = n_rot / 2;
    if (i < half_rot) {
        const float theta = freq_scale * ((float)pos[t] * powf(theta_scale, (float)i) / ff[i]);
        float s, c;
        sincosf(theta, &s, &c);
        const int a = neox ? i : 2 * i;
        const int b = neox ? i + half_rot : 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        o[a] = x0 * c - x1 * s;
        o[b] = x0 * s + x1 * c;
    } else {
        const int j = n_rot + 2 * (i - half_rot);
        o[j] = v[j];
        o[j + 1] = v[j + 1];
    }
}

// Attention: one block per (token, head). Scores go to a scratch row of
// n_slots floats (masked rows hold -inf, then 0 after the softmax).
extern "C" __global__ void wc_attention(const float* q, const float* k, const float* v,
                                        float* out, float* scores, const unsigned* qpos,
                                        const int* kpos, int n_heads, int n_kv_heads,
                                        int head_dim, int n_slots, float scale, float softcap,
                                        int window) {
    extern __shared__ float sq[];  // head_dim floats
    __shared__ float red[32];
    const int t = blockIdx.x / n_heads, h = blockIdx.x % n_heads;
    const int kvh = h / (n_heads / n_kv_heads);
    const int q_width = n_heads * head_dim, kv_width = n_kv_heads * head_dim;
    const float* qr = q + (size_t)t * q_width + (size_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) sq[d] = round_f16(qr[d]);
    __syncthreads();
    float* sc = scores + (size_t)blockIdx.x * n_slots;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const long qp = qpos[t];
    for (int j = warp; j < n_slots; j += nw) {
        const long kp = kpos[j];
        const bool visible = kp >= 0 && kp <= qp && (window <= 0 || qp - kp < window);
        if (!visible) {
            if (lane == 0) sc[j] = -CUDART_INF_F;
            continue;
        }
        const float* kr = k + (size_t)j * kv_width + (size_t)kvh * head_dim;
        float s = 0.0f;
        for (int d = lane; d < head_dim; d += 32) s += sq[d] * kr[d];
        s = warp_sum(s) * scale;
        if (softcap > 0.0f) s = softcap * tanhf(s * (1.0f / softcap));
        if (lane == 0) sc[j] = s;
    }
    __syncthreads();
    float m = -CUDART_INF_F;
    for (int j = threadIdx.x; j < n_slots; j += blockDim.x) m = fmaxf(m, sc[j]);
    m = block_max(m, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n_slots; j += blockDim.x) {
        const float s = sc[j];
        const float e = s == -CUDART_INF_F ? 0.0f : __expf(s - m);
        sc[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    __syncthreads();
    float* o = out + (size_t)t * q_width + (size_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        const float* vc = v + (size_t)kvh * head_dim + d;
        for (int j = 0; j < n_slots; ++j) {
            const float e = sc[j];
            if (e != 0.0f) acc += round_f16(e * inv) * vc[(size_t)j * kv_width];
        }
        o[d] = acc;
    }
}

__device__ __forceinline__ float gelu_f16(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    x = round_f16(x);
    const float y = 0.5f * x * (1.0f + tanhf(0.7978845608f * x * (1.0f + 0.044715f * x * x)));
    return round_f16(y);
}

// kind 0: SiLU, 1: GELU (tanh).
extern "C" __global__ void wc_glu(const float* g, const float* u, float* out, int n, int kind) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float gv = g[i];
    const float a = kind == 0 ? gv / (1.0f + expf(-gv)) : gelu_f16(gv);
    out[i] = a * u[i];
}

extern "C" __global__ void wc_write_rows(float* dst, const float* src, const unsigned* rows,
                                         int n_rows, int width) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)n_rows * width) return;
    const int r = i / width, c = i % width;
    dst[(size_t)rows[r] * width + c] = round_f16(src[i]);
}

// One block of 1024 threads: the largest value, lowest index on ties; NaN
// never wins.
extern "C" __global__ void wc_argmax(const float* x, int n, unsigned* out) {
    __shared__ float sv[1024];
    __shared__ int si[1024];
    float best = -CUDART_INF_F;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = x[i];
        if (v > best) {
            best = v;
            bi = i;
        }
    }
    sv[threadIdx.x] = best;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const float ov = sv[threadIdx.x + s];
            const int oi = si[threadIdx.x + s];
            if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) {
                sv[threadIdx.x] = ov;
                si[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = si[0] == 0x7fffffff ? 0u : (unsigned)si[0];
}

// Attention, second version: the same arithmetic as wc_attention with more
// parallelism for small heads. Scores: `lps` lanes per cache row (head_dim/8
// rounded to a power of two, 4 to 32), so a warp scores 32/lps rows at once.
// p·v: the block's threads form blockDim/head_dim groups (when head_dim
// divides blockDim) that take every groups-th row, then add their partial
// sums through shared memory. Dynamic shared memory: head_dim floats for q,
// then blockDim floats for the partial sums.
extern "C" __global__ void wc_attention2(const float* q, const float* k, const float* v,
                                         float* out, float* scores, const unsigned* qpos,
                                         const int* kpos, int n_heads, int n_kv_heads,
                                         int head_dim, int n_slots, float scale, float softcap,
                                         int window) {
    extern __shared__ float smem[];
    float* sq = smem;
    float* part = smem + head_dim;
    __shared__ float red[32];
    const int t = blockIdx.x / n_heads, h = blockIdx.x % n_heads;
    const int kvh = h / (n_heads / n_kv_heads);
    const int q_width = n_heads * head_dim, kv_width = n_kv_heads * head_dim;
    const float* qr = q + (size_t)t * q_width + (size_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) sq[d] = round_f16(qr[d]);
    __syncthreads();
    float* sc = scores + (size_t)blockIdx.x * n_slots;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int lps = 32;
    while (lps > 4 && lps * 8 > head_dim) lps >>= 1;
    const int rpw = 32 / lps;  // rows per warp step
    const int sub = lane / lps, sl = lane % lps;
    const long qp = qpos[t];
    for (int jb = warp * rpw; jb < n_slots; jb += nw * rpw) {
        const int j = jb + sub;
        bool visible = false;
        if (j < n_slots) {
            const long kp = kpos[j];
            visible = kp >= 0 && kp <= qp && (window <= 0 || qp - kp < window);
        }
        float s = 0.0f;
        if (visible) {
            const float* kr = k + (size_t)j * kv_width + (size_t)kvh * head_dim;
            for (int d = sl; d < head_dim; d += lps) s += sq[d] * kr[d];
        }
        // Rows the whole warp cannot see (most of the cache early in a
        // generation) skip the reduction.
        if (!__any_sync(0xffffffff, visible)) {
            if (j < n_slots && sl == 0) sc[j] = -CUDART_INF_F;
            continue;
        }
        for (int o = lps / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
        if (j < n_slots && sl == 0) {
            s *= scale;
            if (softcap > 0.0f) s = softcap * tanhf(s * (1.0f / softcap));
            sc[j] = visible ? s : -CUDART_INF_F;
        }
    }
    __syncthreads();
    float m = -CUDART_INF_F;
    for (int j = threadIdx.x; j < n_slots; j += blockDim.x) m = fmaxf(m, sc[j]);
    m = block_max(m, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n_slots; j += blockDim.x) {
        const float s = sc[j];
        const float e = s == -CUDART_INF_F ? 0.0f : __expf(s - m);
        sc[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    __syncthreads();
    float* o = out + (size_t)t * q_width + (size_t)h * head_dim;
    const int groups = (head_dim <= (int)blockDim.x && blockDim.x % head_dim == 0)
                           ? blockDim.x / head_dim : 1;
    if (groups > 1) {
        const int g = threadIdx.x / head_dim, d = threadIdx.x % head_dim;
        const float* vc = v + (size_t)kvh * head_dim + d;
        float acc = 0.0f;
        for (int j = g; j < n_slots; j += groups) {
            const float e = sc[j];
            if (e != 0.0f) acc += round_f16(e * inv) * vc[(size_t)j * kv_width];
        }
        part[threadIdx.x] = acc;
        __syncthreads();
        if (g == 0) {
            float total = 0.0f;
            for (int gg = 0; gg < groups; ++gg) total += part[gg * head_dim + d];
            o[d] = total;
        }
    } else {
        for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
            float acc = 0.0f;
            const float* vc = v + (size_t)kvh * head_dim + d;
            for (int j = 0; j < n_slots; ++j) {
                const float e = sc[j];
                if (e != 0.0f) acc += round_f16(e * inv) * vc[(size_t)j * kv_width];
            }
            o[d] = acc;
        }
    }
}

// Split attention for few (token, head) pairs (decode): two kernels with
// the same arithmetic as wc_attention2, spread over many more blocks.
// wc_attn_scores: grid (tokens·heads, ceil(n_slots / 64)); each block
// scores 64 cache rows into the scratch (-inf where masked).
extern "C" __global__ void wc_attn_scores(const float* q, const float* k, float* scores,
                                          const unsigned* qpos, const int* kpos, int n_heads,
                                          int n_kv_heads, int head_dim, int n_slots,
                                          float scale, float softcap, int window) {
    extern __shared__ float sq[];
    const int t = blockIdx.x / n_heads, h = blockIdx.x % n_heads;
    const int kvh = h / (n_heads / n_kv_heads);
    const int q_width = n_heads * head_dim, kv_width = n_kv_heads * head_dim;
    const float* qr = q + (size_t)t * q_width + (size_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) sq[d] = round_f16(qr[d]);
    __syncthreads();
    float* sc = scores + (size_t)blockIdx.x * n_slots;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int lps = 32;
    while (lps > 4 && lps * 8 > head_dim) lps >>= 1;
    const int rpw = 32 / lps;
    const int sub = lane / lps, sl = lane % lps;
    const long qp = qpos[t];
    const int j0 = blockIdx.y * 64;
    const int j1 = min(n_slots, j0 + 64);
    for (int jb = j0 + warp * rpw; jb < j1; jb += nw * rpw) {
        const int j = jb + sub;
        bool visible = false;
        if (j < j1) {
            const long kp = kpos[j];
            visible = kp >= 0 && kp <= qp && (window <= 0 || qp - kp < window);
        }
        float s = 0.0f;
        if (visible) {
            const float* kr = k + (size_t)j * kv_width + (size_t)kvh * head_dim;
            for (int d = sl; d < head_dim; d += lps) s += sq[d] * kr[d];
        }
        if (!__any_sync(0xffffffff, visible)) {
            if (j < j1 && sl == 0) sc[j] = -CUDART_INF_F;
            continue;
        }
        for (int o = lps / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
        if (j < j1 && sl == 0) {
            s *= scale;
            if (softcap > 0.0f) s = softcap * tanhf(s * (1.0f / softcap));
            sc[j] = visible ? s : -CUDART_INF_F;
        }
    }
}

// wc_attn_pv: grid (tokens·heads, ceil(head_dim / 32)), 256 threads. Each
// block finds the row's max and sum itself (scores are only read), then
// its 8 warps take every 8th cache row for a 32-column stripe of p·v.
extern "C" __global__ void wc_attn_pv(const float* v, const float* scores, float* out,
                                      int n_heads, int n_kv_heads, int head_dim, int n_slots) {
    __shared__ float red[32];
    __shared__ float part[32][33];
    const int t = blockIdx.x / n_heads, h = blockIdx.x % n_heads;
    const int kvh = h / (n_heads / n_kv_heads);
    const int q_width = n_heads * head_dim, kv_width = n_kv_heads * head_dim;
    const float* sc = scores + (size_t)blockIdx.x * n_slots;
    float m = -CUDART_INF_F;
    for (int j = threadIdx.x; j < n_slots; j += blockDim.x) m = fmaxf(m, sc[j]);
    m = block_max(m, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n_slots; j += blockDim.x) {
        const float s = sc[j];
        sum += s == -CUDART_INF_F ? 0.0f : __expf(s - m);
    }
    sum = block_sum(sum, red);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int d = blockIdx.y * 32 + lane;
    float acc = 0.0f;
    if (d < head_dim) {
        const float* vc = v + (size_t)kvh * head_dim + d;
        for (int j = warp; j < n_slots; j += nw) {
            const float s = sc[j];
            if (s != -CUDART_INF_F) {
                const float e = __expf(s - m);
                acc += round_f16(e * inv) * vc[(size_t)j * kv_width];
            }
        }
    }
    part[warp][lane] = acc;
    __syncthreads();
    if (warp == 0 && d < head_dim) {
        float total = 0.0f;
        for (int w = 0; w < nw; ++w) total += part[w][lane];
        out[(size_t)t * q_width + (size_t)h * head_dim + d] = total;
    }
}
