// GroupNorm followed by SiLU on a channels-last (NHWC) bf16 or fp32 tensor, for inference on x86
// CPUs with AVX512: one pass for the statistics, one that normalises, applies the affine and the
// SiLU and writes the result, optionally over its own input (no new full-size tensor).
//
// Numerics: per-channel sums of x - x[first pixel] in fp32 over blocks of 64 pixels, added in
// double; group mean and variance combined from them in double (the shift keeps E[x^2] - mean^2
// from cancelling when the mean is large against the spread). Normalise, affine and SiLU in fp32,
// one rounding to the output dtype.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include "simd_math.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kPixelBlock = 64;  // pixels summed in fp32 before the double accumulators

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}
inline void store16(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
inline void store16(uint16_t* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(v));
}
inline float scalar(const float* p) { return *p; }
inline float scalar(const uint16_t* p) {
  const uint32_t bits = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// y * sigmoid(y) from e = exp(-|y|), which never overflows: sigmoid = 1 / (1 + e) for y >= 0,
// e / (1 + e) below.
inline __m512 silu(__m512 y) {
  const __m512 minus_abs = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(y));
  const __m512 e = vistok::exp_nonpositive(minus_abs);
  const __m512 denom = _mm512_add_ps(_mm512_set1_ps(1.0f), e);
  const __mmask16 negative = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 top = _mm512_mask_mov_ps(_mm512_set1_ps(1.0f), negative, e);
  return _mm512_mul_ps(y, _mm512_div_ps(top, denom));
}

template <typename T>
void run(const T* X, T* Y, const float* gamma, const float* beta, int64_t B, int64_t P,
         int64_t C, int64_t G, double eps) {
  const int64_t blocks = (P + kPixelBlock - 1) / kPixelBlock;
  // sums[b][block][c]: fp32 sums of x - shift and (x - shift)^2 of one pixel block.
  std::vector<float> shift(B * C), s1(B * blocks * C), s2(B * blocks * C);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) shift[b * C + c] = scalar(X + b * P * C + c);
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<__m512> a1(C / 16), a2(C / 16);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / blocks, p0 = (i % blocks) * kPixelBlock;
      const int64_t p1 = std::min(P, p0 + kPixelBlock);
      for (int64_t v = 0; v < C / 16; ++v) a1[v] = a2[v] = _mm512_setzero_ps();
      const float* k = shift.data() + b * C;
      for (int64_t p = p0; p < p1; ++p) {
        const T* row = X + (b * P + p) * C;
        for (int64_t v = 0; v < C / 16; ++v) {
          const __m512 d = _mm512_sub_ps(load16(row + 16 * v), _mm512_loadu_ps(k + 16 * v));
          a1[v] = _mm512_add_ps(a1[v], d);
          a2[v] = _mm512_fmadd_ps(d, d, a2[v]);
        }
      }
      for (int64_t v = 0; v < C / 16; ++v) {
        _mm512_storeu_ps(s1.data() + i * C + 16 * v, a1[v]);
        _mm512_storeu_ps(s2.data() + i * C + 16 * v, a2[v]);
      }
    }
  });
  // Per (b, c): y = x * scale + offset, from the group's mean and variance.
  std::vector<float> scale(B * C), offset(B * C);
  const int64_t per_group = C / G;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> t1(C, 0.0), t2(C, 0.0);
    for (int64_t blk = 0; blk < blocks; ++blk)
      for (int64_t c = 0; c < C; ++c) {
        t1[c] += s1[(b * blocks + blk) * C + c];
        t2[c] += s2[(b * blocks + blk) * C + c];
      }
    for (int64_t g = 0; g < G; ++g) {
      const int64_t c0 = g * per_group;
      const double n = static_cast<double>(P) * per_group;
      double total = 0.0;
      for (int64_t c = c0; c < c0 + per_group; ++c) total += t1[c] + P * shift[b * C + c];
      const double mean = total / n;
      double squares = 0.0;  // sum over the group of (x - mean)^2, channel by channel
      for (int64_t c = c0; c < c0 + per_group; ++c) {
        const double d = mean - shift[b * C + c];
        squares += t2[c] - 2.0 * d * t1[c] + P * d * d;
      }
      const double rstd = 1.0 / std::sqrt(std::max(squares / n, 0.0) + eps);
      for (int64_t c = c0; c < c0 + per_group; ++c) {
        const double w = gamma ? gamma[c] : 1.0, o = beta ? beta[c] : 0.0;
        scale[b * C + c] = static_cast<float>(rstd * w);
        offset[b * C + c] = static_cast<float>(o - mean * rstd * w);
      }
    }
  }
  at::parallel_for(0, B * P, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / P;
      const T* row = X + i * C;
      T* out = Y + i * C;
      const float* w = scale.data() + b * C;
      const float* o = offset.data() + b * C;
      for (int64_t v = 0; v < C / 16; ++v) {
        const __m512 y = _mm512_fmadd_ps(load16(row + 16 * v), _mm512_loadu_ps(w + 16 * v),
                                         _mm512_loadu_ps(o + 16 * v));
        store16(out + 16 * v, silu(y));
      }
    }
  });
}

}  // namespace

// x (B, C, H, W) channels-last contiguous, bf16 or fp32; weight and bias (C) fp32 or undefined;
// out: x's shape, dtype and strides (x itself for in place).
void group_norm_silu(const torch::Tensor& x, int64_t groups,
                     const c10::optional<torch::Tensor>& weight,
                     const c10::optional<torch::Tensor>& bias, double eps, torch::Tensor& out) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4, "x: a 4-D CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kFloat,
              "x: bf16 or fp32");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), "x: channels-last contiguous");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  TORCH_CHECK(C % 16 == 0 && groups > 0 && C % groups == 0 && P > 0,
              "channels a multiple of 16 and of the groups, at least one pixel");
  TORCH_CHECK(out.sizes() == x.sizes() && out.strides() == x.strides() &&
                  out.scalar_type() == x.scalar_type() && out.device().is_cpu(),
              "out: x's shape, strides and dtype");
  const float* gamma = nullptr;
  const float* beta = nullptr;
  for (const auto* t : {&weight, &bias}) {
    if (t->has_value())
      TORCH_CHECK((*t)->scalar_type() == at::kFloat && (*t)->is_contiguous() &&
                      (*t)->dim() == 1 && (*t)->size(0) == C,
                  "weight and bias: contiguous fp32 (C)");
  }
  if (weight.has_value()) gamma = weight->data_ptr<float>();
  if (bias.has_value()) beta = bias->data_ptr<float>();
  if (x.scalar_type() == at::kFloat) {
    run<float>(x.data_ptr<float>(), out.data_ptr<float>(), gamma, beta, B, P, C, groups, eps);
  } else {
    run<uint16_t>(reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>()),
                  reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()), gamma, beta, B, P, C,
                  groups, eps);
  }
}
