// Attention with head size 64 on x86 CPUs with AVX512 (inference only), for bf16 or fp32 q, k, v.
//
// bf16 numerics: q.k products of bf16 inputs summed in fp32 (vdpbf16ps, AVX512-BF16), softmax in
// fp32, the probabilities rounded to bf16 for the product with v, summed in fp32, normalised in
// fp32: the rounding PyTorch's own bf16 flash kernel does. fp32: everything in fp32 (FMA).
// Why a kernel of our own: on CPUs with AVX512-BF16 but no AMX, PyTorch's bf16 flash kernel
// runs its blocks through generic GEMM calls, slower than its fp32 kernel, and its fp32 kernel
// rescales its running softmax block by block; this one takes each row's softmax whole, keeps
// each head's packed keys and values in cache and its 8-query score and 4-query output blocks
// in registers (tokenizers_vis/cpu_attention.py has the measurements).
//
// Layout: q (B, N, H, 64), k and v (B, Nk, H, 64) as strided views (the last dimension
// contiguous; for bf16 every other stride and the offsets even), out (B, N, H, 64) fp32
// contiguous. An optional key mask `visible` (B, Nk) bool (the same keys for every query and
// head: padding, dropped tokens) leaves the masked keys out of the packed keys and values, so
// they cost nothing.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include "simd_math.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t kDim = 64;      // head size
constexpr int64_t kKeyBlock = 48; // keys per score block: 3 vectors of 16

// Lanes j .. j+16 that are real keys (< Nk, the visible ones), not padding.
inline __mmask16 real_keys(int64_t j, int64_t Nk) {
  if (j + 16 <= Nk) return __mmask16(0xFFFF);
  return j >= Nk ? __mmask16(0) : __mmask16((1u << (Nk - j)) - 1);
}

// 16 rows of 16 32-bit words -> their transpose: r[c] becomes word c of rows 0..15.
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {  // within 128-bit lanes: pairs of rows interleaved
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // lane m of r[4i+k]: word 4m+k of rows 4i..4i+3
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int k = 0; k < 4; ++k) {  // a 4x4 transpose of 128-bit lanes
    const __m512i u0 = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x44);
    const __m512i u1 = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xEE);
    const __m512i u2 = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x44);
    const __m512i u3 = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xEE);
    t[k] = _mm512_shuffle_i32x4(u0, u2, 0x88);
    t[4 + k] = _mm512_shuffle_i32x4(u0, u2, 0xDD);
    t[8 + k] = _mm512_shuffle_i32x4(u1, u3, 0x88);
    t[12 + k] = _mm512_shuffle_i32x4(u1, u3, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// Both formats pack keys as 32-bit words transposed: word p of key j at keys[p * padded + j]
// (zero past the Nv visible keys), `Words` per key row, `stride` in words; 16 keys at a time
// through registers (a scalar copy into the transposed layout cost 8 % of an fp32 call).
template <int64_t Words>
void pack_key_words(const uint32_t* K, int64_t stride, const int64_t* index, int64_t Nv,
                    int64_t padded, uint32_t* keys) {
  static_assert(Words % 16 == 0, "whole 16-word blocks");
  for (int64_t j0 = 0; j0 < padded; j0 += 16) {
    const uint32_t* rows[16];
    for (int i = 0; i < 16; ++i) rows[i] = j0 + i < Nv ? K + index[j0 + i] * stride : nullptr;
    for (int64_t p0 = 0; p0 < Words; p0 += 16) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = rows[i] ? _mm512_loadu_si512(rows[i] + p0) : _mm512_setzero_si512();
      transpose16(r);
      for (int i = 0; i < 16; ++i) _mm512_storeu_si512(keys + (p0 + i) * padded + j0, r[i]);
    }
  }
}

// A format says how keys, values and probabilities are stored and how one 32-bit word of a
// query or probability row (a bf16 pair, or one fp32 value) multiplies a vector of packed keys
// or values into fp32 sums; `score_block` and `output_block` below are written once for both.
//
// bf16: keys packed as 32-bit bf16 pairs (pair p of key j at keys[p * padded + j]), values per
// key pair (128 bf16: for d in 0..64, (v[2 j2][d], v[2 j2 + 1][d])), probabilities rounded to
// bf16; products by vdpbf16ps.
struct Bf16 {
  using Elem = uint16_t;
  using Word = uint32_t;  // a bf16 pair
  using Prob = uint16_t;
  using Vec = __m512bh;
  static constexpr int64_t kKeyRows = kDim / 2;  // words per query row
  static constexpr int64_t kKeysPerWord = 2;     // keys per value step

  static Vec load(const void* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static Vec broadcast(Word w) { return (__m512bh)_mm512_set1_epi32(static_cast<int>(w)); }
  static __m512 mac(__m512 acc, Vec a, Vec b) { return _mm512_dpbf16_ps(acc, a, b); }
  static void store_probs(Prob* p, __m512 e) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(e));
  }

  static void pack_values(const Elem* V, int64_t stride, const int64_t* index, int64_t Nv,
                          int64_t padded, Elem* values) {
    // Pair indices for interleaving two value rows (a: 0..31, b: 32..63 of permutex2var).
    const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40,
                                         8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i hi = _mm512_set_epi16(63, 31, 62, 30, 61, 29, 60, 28, 59, 27, 58, 26, 57, 25,
                                         56, 24, 55, 23, 54, 22, 53, 21, 52, 20, 51, 19, 50, 18,
                                         49, 17, 48, 16);
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t j2 = 0; j2 < padded / 2; ++j2) {  // two keys' rows interleaved
      const int64_t j0 = 2 * j2, j1 = j0 + 1;
      const Elem* r0 = j0 < Nv ? V + index[j0] * stride : nullptr;
      const Elem* r1 = j1 < Nv ? V + index[j1] * stride : nullptr;
      const __m512i a0 = r0 ? _mm512_loadu_si512(r0) : zero;
      const __m512i a1 = r0 ? _mm512_loadu_si512(r0 + 32) : zero;
      const __m512i b0 = r1 ? _mm512_loadu_si512(r1) : zero;
      const __m512i b1 = r1 ? _mm512_loadu_si512(r1 + 32) : zero;
      Elem* dst = values + j2 * 2 * kDim;
      _mm512_storeu_si512(dst, _mm512_permutex2var_epi16(a0, lo, b0));
      _mm512_storeu_si512(dst + 32, _mm512_permutex2var_epi16(a0, hi, b0));
      _mm512_storeu_si512(dst + 64, _mm512_permutex2var_epi16(a1, lo, b1));
      _mm512_storeu_si512(dst + 96, _mm512_permutex2var_epi16(a1, hi, b1));
    }
  }

};

// fp32: keys transposed (element d of key j at keys[d * padded + j]), values as rows of the
// visible keys, probabilities in fp32; products by FMA.
struct Fp32 {
  using Elem = float;
  using Word = float;
  using Prob = float;
  using Vec = __m512;
  static constexpr int64_t kKeyRows = kDim;
  static constexpr int64_t kKeysPerWord = 1;

  static Vec load(const void* p) { return _mm512_loadu_ps(p); }
  static Vec broadcast(Word w) { return _mm512_set1_ps(w); }
  static __m512 mac(__m512 acc, Vec a, Vec b) { return _mm512_fmadd_ps(a, b, acc); }
  static void store_probs(Prob* p, __m512 e) { _mm512_storeu_ps(p, e); }

  static void pack_values(const Elem* V, int64_t stride, const int64_t* index, int64_t Nv,
                          int64_t padded, Elem* values) {
    for (int64_t j = 0; j < padded; ++j) {
      if (j < Nv)
        std::copy_n(V + index[j] * stride, kDim, values + j * kDim);
      else
        std::fill_n(values + j * kDim, kDim, 0.0f);
    }
  }

};

// scores[r][0..48) = q_r . keys[j0 .. j0+48) for R query rows; keys as F packs them.
template <class F, int R>
inline void score_block(const typename F::Elem* q, int64_t q_stride, const typename F::Word* keys,
                        int64_t padded, float* scores, int64_t score_stride) {
  using Word = typename F::Word;
  __m512 acc[R][3];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < 3; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t p = 0; p < F::kKeyRows; ++p) {
    const Word* kp = keys + p * padded;
    const auto k0 = F::load(kp), k1 = F::load(kp + 16), k2 = F::load(kp + 32);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const auto qb = F::broadcast(reinterpret_cast<const Word*>(q + r * q_stride)[p]);
      acc[r][0] = F::mac(acc[r][0], qb, k0);
      acc[r][1] = F::mac(acc[r][1], qb, k1);
      acc[r][2] = F::mac(acc[r][2], qb, k2);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < 3; ++c) _mm512_storeu_ps(scores + r * score_stride + 16 * c, acc[r][c]);
}

// out[r][0..64) = inv[r] * sum_j probs[r][j] v[j] for R rows, over `padded` keys; values as F
// packs them (each step: one probability word times four 64-byte vectors).
template <class F, int R>
inline void output_block(const typename F::Prob* probs, int64_t prob_stride,
                         const typename F::Elem* values, int64_t padded, float* out,
                         int64_t out_stride, const float* inv) {
  using Word = typename F::Word;
  constexpr int64_t lanes = 64 / sizeof(typename F::Elem);  // elements per vector
  __m512 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t step = 0; step < padded / F::kKeysPerWord; ++step) {
    const auto* vp = values + step * 4 * lanes;
    const auto v0 = F::load(vp), v1 = F::load(vp + lanes);
    const auto v2 = F::load(vp + 2 * lanes), v3 = F::load(vp + 3 * lanes);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const auto pb = F::broadcast(reinterpret_cast<const Word*>(probs + r * prob_stride)[step]);
      acc[r][0] = F::mac(acc[r][0], pb, v0);
      acc[r][1] = F::mac(acc[r][1], pb, v1);
      acc[r][2] = F::mac(acc[r][2], pb, v2);
      acc[r][3] = F::mac(acc[r][3], pb, v3);
    }
  }
  for (int r = 0; r < R; ++r) {
    const __m512 scale = _mm512_set1_ps(inv[r]);
    for (int c = 0; c < 4; ++c)
      _mm512_storeu_ps(out + r * out_stride + 16 * c, _mm512_mul_ps(acc[r][c], scale));
  }
}

// softmax(scale q k^T) v for one format: q, k, v as the checked (B, N|Nk, H, 64) views.
template <class F>
void run(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, float sc,
         const bool* keep, float* O) {
  using Elem = typename F::Elem;
  const int64_t B = q.size(0), N = q.size(1), H = q.size(2), Nk = k.size(1);
  const int64_t capacity = (Nk + kKeyBlock - 1) / kKeyBlock * kKeyBlock;  // even, too
  const auto* Q = reinterpret_cast<const Elem*>(q.data_ptr());
  const auto* K = reinterpret_cast<const Elem*>(k.data_ptr());
  const auto* V = reinterpret_cast<const Elem*>(v.data_ptr());
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<typename F::Word> keys(F::kKeyRows * capacity);
    std::vector<Elem> values(capacity * kDim);
    std::vector<float> scores(8 * capacity);
    std::vector<typename F::Prob> probs(8 * capacity);
    std::vector<int64_t> index(Nk);  // the visible keys of this batch entry, in order
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const Elem* Qb = Q + b * q.stride(0) + h * q.stride(2);
      int64_t Nv = 0;
      for (int64_t j = 0; j < Nk; ++j)
        if (keep == nullptr || keep[b * Nk + j]) index[Nv++] = j;
      float* o_bh = O + (b * N * H + h) * kDim;
      if (Nv == 0) {  // every key masked: zeros, as PyTorch's CPU kernels return
        for (int64_t n = 0; n < N; ++n) std::fill_n(o_bh + n * H * kDim, kDim, 0.0f);
        continue;
      }
      const int64_t padded = (Nv + kKeyBlock - 1) / kKeyBlock * kKeyBlock;
      constexpr int64_t per_word = sizeof(uint32_t) / sizeof(Elem);  // strides are even for bf16
      pack_key_words<F::kKeyRows>(
          reinterpret_cast<const uint32_t*>(K + b * k.stride(0) + h * k.stride(2)),
          k.stride(1) / per_word, index.data(), Nv, padded,
          reinterpret_cast<uint32_t*>(keys.data()));
      F::pack_values(V + b * v.stride(0) + h * v.stride(2), v.stride(1), index.data(), Nv,
                     padded, values.data());
      for (int64_t q0 = 0; q0 < N; q0 += 8) {
        const int rows = static_cast<int>(std::min<int64_t>(8, N - q0));
        for (int64_t j0 = 0; j0 < padded; j0 += kKeyBlock) {
          if (rows == 8) {
            score_block<F, 8>(Qb + q0 * q.stride(1), q.stride(1), keys.data() + j0, padded,
                              scores.data() + j0, padded);
          } else {
            for (int r = 0; r < rows; ++r)
              score_block<F, 1>(Qb + (q0 + r) * q.stride(1), q.stride(1), keys.data() + j0,
                                padded, scores.data() + r * padded + j0, padded);
          }
        }
        float inv[8];
        for (int r = 0; r < rows; ++r) {  // softmax of scale * scores over the Nv visible keys
          const float* s = scores.data() + r * padded;
          __m512 running = _mm512_set1_ps(-INFINITY);
          for (int64_t j = 0; j < padded; j += 16) {
            const __m512 block = _mm512_loadu_ps(s + j);
            running = _mm512_mask_max_ps(running, real_keys(j, Nv), running, block);
          }
          const float top = _mm512_reduce_max_ps(running);
          const __m512 shift = _mm512_set1_ps(top * sc), factor = _mm512_set1_ps(sc);
          __m512 sum = _mm512_setzero_ps();
          for (int64_t j = 0; j < padded; j += 16) {
            const __mmask16 real = real_keys(j, Nv);
            const __m512 x = _mm512_fmsub_ps(_mm512_loadu_ps(s + j), factor, shift);
            const __m512 e = _mm512_maskz_mov_ps(real, vistok::exp_nonpositive(x));
            sum = _mm512_add_ps(sum, e);
            F::store_probs(probs.data() + r * padded + j, e);
          }
          inv[r] = 1.0f / _mm512_reduce_add_ps(sum);
        }
        int r0 = 0;
        float* o = o_bh + q0 * H * kDim;
        for (; r0 + 4 <= rows; r0 += 4)  // 4 + 4: 6-row blocks left 2 of 8 rows to 1-row ones
          output_block<F, 4>(probs.data() + r0 * padded, padded, values.data(), padded,
                             o + r0 * H * kDim, H * kDim, inv + r0);
        for (; r0 < rows; ++r0)
          output_block<F, 1>(probs.data() + r0 * padded, padded, values.data(), padded,
                             o + r0 * H * kDim, H * kDim, inv + r0);
      }
    }
  });
}

}  // namespace

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        double scale, const c10::optional<torch::Tensor>& visible) {
  const auto dtype = q.scalar_type();
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kFloat, "q, k, v: bf16 or fp32");
  for (const auto* t : {&q, &k, &v}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == dtype && t->dim() == 4,
                "q, k, v: 4-D CPU tensors of one dtype");
    TORCH_CHECK(t->size(3) == kDim && t->stride(3) == 1, "head size 64, contiguous");
    TORCH_CHECK(dtype == at::kFloat || (t->stride(0) % 2 == 0 && t->stride(1) % 2 == 0 &&
                                        t->stride(2) % 2 == 0 && t->storage_offset() % 2 == 0),
                "even strides and offset (bf16 pairs are read as 32-bit words)");
  }
  const int64_t B = q.size(0), N = q.size(1), H = q.size(2), Nk = k.size(1);
  TORCH_CHECK(k.size(0) == B && v.size(0) == B && k.size(2) == H && v.size(2) == H &&
                  v.size(1) == Nk && Nk > 0,
              "k and v: (B, Nk, H, 64) with q's B and H");
  const bool* keep = nullptr;  // (B, Nk) key mask: a masked key is left out of the packed keys
  if (visible.has_value()) {
    TORCH_CHECK(visible->scalar_type() == at::kBool && visible->is_contiguous() &&
                    visible->dim() == 2 && visible->size(0) == B && visible->size(1) == Nk,
                "visible: contiguous (B, Nk) bool");
    keep = visible->data_ptr<bool>();
  }
  auto out = torch::empty({B, N, H, kDim}, q.options().dtype(at::kFloat));
  const float sc = static_cast<float>(scale);
  if (dtype == at::kFloat)
    run<Fp32>(q, k, v, sc, keep, out.data_ptr<float>());
  else
    run<Bf16>(q, k, v, sc, keep, out.data_ptr<float>());
  return out;
}
