// Grouped 1x1 convolution as matrix products over the pixels, reading and writing each group's
// channel block in place (strided), so no copy of the input is split off and no outputs are
// concatenated, forward or backward. Built and loaded by grouped_kernel.py; float32, CPU.
//
//   MobileclsGroupedMatmul            y[:, g-th block of Cout]   = x[:, g-th block of Cin] k_g
//   MobileclsGroupedMatmulGradInput   dx[:, g-th block of Cin]   = dy[:, g-th block of Cout] k_g^T
//   MobileclsGroupedMatmulGradKernel  k_g's gradient             = x[:, g-th block]^T dy[:, g-th block]
//
// x is (pixels, Cin), dy and y (pixels, Cout), the kernel (Cin / g, Cout) as Conv2D(groups=g)
// holds it (k_g = its columns g * Cout / g ... (g + 1) * Cout / g - 1).
//
// And the training layer in one op with its BatchNorm (batch statistics) and ReLU:
//
//   MobileclsGroupedConvBatchNorm      z = the product above; mean, variance = z's per channel (biased);
//                                      y = relu(gamma (z - mean) / sqrt(variance + epsilon) + beta)
//   MobileclsGroupedConvBatchNormGrad  dx, dkernel, dgamma, dbeta from dy and z
//
// The statistics are summed while each chunk of rows the product just wrote is in cache, and the
// backward pass makes the BatchNorm and ReLU gradient (dz) 256 rows at a time into a small buffer,
// right before the two products read it: z, dy and x are each read once or twice and no
// BatchNorm or ReLU output is stored but y, where TensorFlow's FusedBatchNorm, Relu and their
// gradients are separate ops, each with its own pass and its own output tensor.
//
// All three are small products (ShuffleNetV1's blocks are 12 to 192 channels), done as register
// tiles of 4 rows by 24, 16, 8 or 4 columns over strided views, with no packing: packing a block
// (what a BLAS does) would be the copy this op avoids. Single-threaded on ShuffleNetV1 g=8's
// shapes they took 0.54x the CPU time of TensorFlow's split + MatMul + concat (docs/benchmarks.md).
#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace {

using tensorflow::int64;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;

absl::Status RequireMatrix(const Tensor& t, const char* name) {
  if (t.dims() != 2) return InvalidArgument(name, " must be a matrix (pixels, channels), got rank ", t.dims());
  return absl::OkStatus();
}

// Eight or four floats, in GCC's portable vector extension (AVX, NEON or scalar code, as the
// target has).
template <int W>
struct Vector {
  typedef float type __attribute__((vector_size(4 * W)));
};

template <int W>
inline typename Vector<W>::type Load(const float* p) {
  typename Vector<W>::type v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

// The strided views a tile reads: element (i, k) of a is a[i * row + k * step]; row k of r
// starts at r + k * step_r.
struct Operands {
  const float* a;
  int64 row, step;
  const float* r;
  int64 step_r;
};

// out[MR, W * NV] (row stride ldo) = a[MR, K] r[K, W * NV], or += when accumulating; the sums are
// held in vector registers for the whole inner dimension.
template <int MR, int NV, int W = 8>
inline void Tile(const Operands& m, float* __restrict out, int64 ldo, int64 K, bool accumulate) {
  typedef typename Vector<W>::type Vec;
  Vec sums[MR][NV] = {};
  if (accumulate)
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) sums[i][v] = Load<W>(out + i * ldo + W * v);
  const float* __restrict a = m.a;
  const float* __restrict r = m.r;
  for (int64 k = 0; k < K; ++k) {
    Vec r_k[NV];
    for (int v = 0; v < NV; ++v) r_k[v] = Load<W>(r + k * m.step_r + W * v);
    for (int i = 0; i < MR; ++i) {
      const float s = a[i * m.row + k * m.step];
      for (int v = 0; v < NV; ++v) sums[i][v] += s * r_k[v];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) __builtin_memcpy(out + i * ldo + W * v, &sums[i][v], sizeof(Vec));
}

// The columns left over (fewer than 4), one at a time.
template <int MR>
inline void Column(const Operands& m, float* out, int64 ldo, int64 K, bool accumulate) {
  float sums[MR] = {};
  for (int i = 0; i < MR; ++i) sums[i] = accumulate ? out[i * ldo] : 0.f;
  for (int64 k = 0; k < K; ++k)
    for (int i = 0; i < MR; ++i) sums[i] += m.a[i * m.row + k * m.step] * m.r[k * m.step_r];
  for (int i = 0; i < MR; ++i) out[i * ldo] = sums[i];
}

// MR rows of out (N columns): 24 columns at a time, then 16, 8, 4, then single columns.
template <int MR>
inline void RowTiles(Operands m, float* out, int64 ldo, int64 K, int64 N, bool accumulate) {
  const float* r = m.r;
  int64 j = 0;
  for (; j + 24 <= N; j += 24) m.r = r + j, Tile<MR, 3>(m, out + j, ldo, K, accumulate);
  for (; j + 16 <= N; j += 16) m.r = r + j, Tile<MR, 2>(m, out + j, ldo, K, accumulate);
  for (; j + 8 <= N; j += 8) m.r = r + j, Tile<MR, 1>(m, out + j, ldo, K, accumulate);
  for (; j + 4 <= N; j += 4) m.r = r + j, Tile<MR, 1, 4>(m, out + j, ldo, K, accumulate);
  for (; j < N; ++j) m.r = r + j, Column<MR>(m, out + j, ldo, K, accumulate);
}

// Rows [first, limit) of out (N columns, row stride ldo), four at a time.
inline void Rows(Operands m, int64 first, int64 limit, float* out, int64 ldo, int64 K, int64 N, bool accumulate) {
  const float* a = m.a;
  int64 i = first;
  for (; i + 4 <= limit; i += 4) m.a = a + i * m.row, RowTiles<4>(m, out + i * ldo, ldo, K, N, accumulate);
  for (; i < limit; ++i) m.a = a + i * m.row, RowTiles<1>(m, out + i * ldo, ldo, K, N, accumulate);
}

// out (rows, groups * N) = for each group: a (rows, groups * K)'s block g times right_g (K, N).
// No packing: each group's block of a is read in place.
void GroupedRowProducts(OpKernelContext* ctx, const float* a, const std::vector<float>& right, float* out,
                        int64 rows, int groups, int64 K, int64 N) {
  const int64 a_cols = groups * K, out_cols = groups * N;
  auto work = [&](int64 start, int64 limit) {
    // 32 rows at a time through every group: their channels are read from memory once.
    for (int64 chunk = start; chunk < limit; chunk += 32)
      for (int g = 0; g < groups; ++g) {
        const Operands m{a + g * K, a_cols, 1, right.data() + g * K * N, N};
        Rows(m, chunk, std::min<int64>(chunk + 32, limit), out + g * N, out_cols, K, N, false);
      }
  };
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  tensorflow::Shard(workers->num_threads, workers->workers, rows, 2 * a_cols * N, work);
}

// Each group's right-hand matrix, contiguous: k_g (Cin / g, Cout / g), or k_g^T for the input gradient.
std::vector<float> RightMatrices(const Tensor& kernel, int groups, bool transposed) {
  const int64 ci = kernel.dim_size(0), cout = kernel.dim_size(1), co = cout / groups;
  const int64 K = transposed ? co : ci, N = transposed ? ci : co;
  const float* k = kernel.flat<float>().data();
  std::vector<float> right(groups * K * N);
  for (int g = 0; g < groups; ++g)
    for (int64 i = 0; i < K; ++i)
      for (int64 j = 0; j < N; ++j)
        right[(g * K + i) * N + j] = transposed ? k[j * cout + g * co + i] : k[i * cout + g * co + j];
  return right;
}

// The forward product (kTransposed false) or the input gradient (true, multiplies by k_g^T).
template <bool kTransposed>
class RowProductsOp : public OpKernel {
 public:
  explicit RowProductsOp(OpKernelConstruction* c) : OpKernel(c) { OP_REQUIRES_OK(c, c->GetAttr("groups", &groups_)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& a = ctx->input(0);
    const Tensor& kernel = ctx->input(1);
    OP_REQUIRES_OK(ctx, RequireMatrix(a, kTransposed ? "dy" : "x"));
    OP_REQUIRES_OK(ctx, RequireMatrix(kernel, "kernel"));
    const int64 rows = a.dim_size(0), ci = kernel.dim_size(0), cout = kernel.dim_size(1);
    OP_REQUIRES(ctx, cout % groups_ == 0,
                InvalidArgument("the kernel's ", cout, " output channels are not divisible by ", groups_, " groups"));
    const int64 co = cout / groups_;
    const int64 K = kTransposed ? co : ci, N = kTransposed ? ci : co;
    OP_REQUIRES(ctx, a.dim_size(1) == groups_ * K,
                InvalidArgument("input has ", a.dim_size(1), " channels, the kernel expects ", groups_ * K));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({rows, groups_ * N}), &out));
    GroupedRowProducts(ctx, a.flat<float>().data(), RightMatrices(kernel, groups_, kTransposed),
                       out->flat<float>().data(), rows, groups_, K, N);
  }

 private:
  int groups_;
};

// result = the sum of the threads' partial kernel gradients.
void AddParts(const std::vector<std::vector<float>>& partial, float* result) {
  std::copy(partial[0].begin(), partial[0].end(), result);
  for (size_t part = 1; part < partial.size(); ++part)
    for (size_t e = 0; e < partial[part].size(); ++e) result[e] += partial[part][e];
}

// The kernel's gradient: a sum over the pixels, so each thread sums its own rows, then the parts are added.
class KernelGradientOp : public OpKernel {
 public:
  explicit KernelGradientOp(OpKernelConstruction* c) : OpKernel(c) { OP_REQUIRES_OK(c, c->GetAttr("groups", &groups_)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    OP_REQUIRES_OK(ctx, RequireMatrix(x, "x"));
    OP_REQUIRES_OK(ctx, RequireMatrix(dy, "dy"));
    const int64 rows = x.dim_size(0), cin = x.dim_size(1), cout = dy.dim_size(1);
    OP_REQUIRES(ctx, dy.dim_size(0) == rows, InvalidArgument("x has ", rows, " rows, dy ", dy.dim_size(0)));
    OP_REQUIRES(ctx, cin % groups_ == 0 && cout % groups_ == 0,
                InvalidArgument(cin, " input or ", cout, " output channels are not divisible by ", groups_, " groups"));
    const int64 ci = cin / groups_, co = cout / groups_;
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({ci, cout}), &out));
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    const int64 parts = std::max<int64>(1, std::min<int64>(workers->num_threads, rows / 256));
    // Each part sums its own rows into its own (ci, cout) matrix, 256 rows at a time (the rows of
    // a tile's inputs then stay in cache while every tile of the kernel is summed over them).
    std::vector<std::vector<float>> partial(parts, std::vector<float>(ci * cout, 0.f));
    const float* xp = x.flat<float>().data();
    const float* dyp = dy.flat<float>().data();
    auto work = [&](int64 first, int64 last) {
      for (int64 part = first; part < last; ++part) {
        const int64 start = rows * part / parts, limit = rows * (part + 1) / parts;
        for (int64 chunk = start; chunk < limit; chunk += 256) {
          const int64 n = std::min<int64>(256, limit - chunk);
          for (int g = 0; g < groups_; ++g) {
            // out = x_g^T dy_g: element (i, p) of x_g^T is x[p, g * ci + i]
            const Operands m{xp + chunk * cin + g * ci, 1, cin, dyp + chunk * cout + g * co, cout};
            Rows(m, 0, ci, partial[part].data() + g * co, cout, n, co, true);
          }
        }
      }
    };
    tensorflow::Shard(workers->num_threads, workers->workers, parts, std::max<int64>(1, rows / parts * cin * co), work);
    AddParts(partial, out->flat<float>().data());
  }

 private:
  int groups_;
};

// Row kernels of the fused ops: one row of `channels` values, vectorised across the channels
// (restrict pointers and the ReLU as a template argument, so that the loops have no aliasing and
// no branch).
inline void AddRowMoments(const float* __restrict z, float* __restrict sum, float* __restrict squares,
                          int64 channels) {
  for (int64 c = 0; c < channels; ++c) sum[c] += z[c], squares[c] += z[c] * z[c];
}

template <bool kRelu>
inline float Activated(float v) {
  return kRelu ? (v > 0.f ? v : 0.f) : v;
}

template <bool kRelu>
inline void NormaliseRow(const float* __restrict z, const float* __restrict scale, const float* __restrict shift,
                         float* __restrict y, int64 channels) {
  for (int64 c = 0; c < channels; ++c) y[c] = Activated<kRelu>(z[c] * scale[c] + shift[c]);
}

// The gradient reaching the BatchNorm's output: dy where the ReLU passed it (the forward's test).
template <bool kRelu>
inline float Passed(float dy, float z, float scale, float shift) {
  return !kRelu || z * scale + shift > 0.f ? dy : 0.f;
}

template <bool kRelu>
inline void AddRowGradientSums(const float* __restrict dy, const float* __restrict z, const float* __restrict scale,
                               const float* __restrict shift, const float* __restrict mean, float* __restrict sum,
                               float* __restrict products, int64 channels) {
  for (int64 c = 0; c < channels; ++c) {
    const float g = Passed<kRelu>(dy[c], z[c], scale[c], shift[c]);
    sum[c] += g, products[c] += g * (z[c] - mean[c]);
  }
}

// dz = a g + b z + offset per channel: BatchNorm's gradient with batch statistics.
template <bool kRelu>
inline void InputGradientRow(const float* __restrict dy, const float* __restrict z, const float* __restrict scale,
                             const float* __restrict shift, const float* __restrict a, const float* __restrict b,
                             const float* __restrict offset, float* __restrict dz, int64 channels) {
  for (int64 c = 0; c < channels; ++c) dz[c] = a[c] * Passed<kRelu>(dy[c], z[c], scale[c], shift[c]) + b[c] * z[c] + offset[c];
}

// Per-channel sums in double, to which each thread adds what it summed over its rows.
class ChannelSums {
 public:
  explicit ChannelSums(int64 channels) : first_(channels, 0.0), second_(channels, 0.0) {}

  void Add(const std::vector<double>& first, const std::vector<double>& second) {
    std::lock_guard<std::mutex> hold(lock_);
    for (size_t c = 0; c < first_.size(); ++c) first_[c] += first[c], second_[c] += second[c];
  }
  const std::vector<double>& first() const { return first_; }
  const std::vector<double>& second() const { return second_; }

 private:
  std::vector<double> first_, second_;
  std::mutex lock_;
};

// A thread's sums over its rows: 32 rows at a time in float (vectorised across the channels),
// then added to doubles, so that the variance (mean of squares minus squared mean) keeps its digits.
class RowSums {
 public:
  explicit RowSums(int64 channels) : first(channels), second(channels), total_first(channels), total_second(channels) {}

  void StartChunk() {
    std::fill(first.begin(), first.end(), 0.f);
    std::fill(second.begin(), second.end(), 0.f);
  }
  void EndChunk() {
    for (size_t c = 0; c < first.size(); ++c) total_first[c] += first[c], total_second[c] += second[c];
  }

  std::vector<float> first, second;
  std::vector<double> total_first, total_second;
};

// BatchNorm as y = z * scale + shift per channel.
struct Affine {
  std::vector<float> scale, shift, inverse_std;
};

Affine BatchNormAffine(const float* gamma, const float* beta, const float* mean, const float* variance,
                       int64 channels, float epsilon) {
  Affine affine{std::vector<float>(channels), std::vector<float>(channels), std::vector<float>(channels)};
  for (int64 c = 0; c < channels; ++c) {
    affine.inverse_std[c] = 1.f / std::sqrt(variance[c] + epsilon);
    affine.scale[c] = gamma[c] * affine.inverse_std[c];
    affine.shift[c] = beta[c] - mean[c] * affine.scale[c];
  }
  return affine;
}

absl::Status RequireVector(const Tensor& t, const char* name, int64 channels) {
  if (t.dims() != 1 || t.dim_size(0) != channels)
    return InvalidArgument(name, " must be a vector of the ", channels, " output channels, got shape ",
                           t.shape().DebugString());
  return absl::OkStatus();
}

// The checks both fused ops make; sets the sizes.
absl::Status CheckConvBatchNorm(const Tensor& x, const Tensor& kernel, const Tensor& gamma, const Tensor& beta,
                                int groups, int64* rows, int64* ci, int64* cout) {
  TF_RETURN_IF_ERROR(RequireMatrix(x, "x"));
  TF_RETURN_IF_ERROR(RequireMatrix(kernel, "kernel"));
  *rows = x.dim_size(0), *ci = kernel.dim_size(0), *cout = kernel.dim_size(1);
  if (*cout % groups) return InvalidArgument("the kernel's ", *cout, " output channels are not divisible by ", groups, " groups");
  if (x.dim_size(1) != groups * *ci)
    return InvalidArgument("input has ", x.dim_size(1), " channels, the kernel expects ", groups * *ci);
  TF_RETURN_IF_ERROR(RequireVector(gamma, "gamma", *cout));
  return RequireVector(beta, "beta", *cout);
}

// The attributes both fused ops take.
class ConvBatchNormKernel : public OpKernel {
 public:
  explicit ConvBatchNormKernel(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("groups", &groups_));
    OP_REQUIRES_OK(c, c->GetAttr("epsilon", &epsilon_));
    OP_REQUIRES_OK(c, c->GetAttr("relu", &relu_));
  }

 protected:
  int groups_;
  float epsilon_;
  bool relu_;
};

class ConvBatchNormOp : public ConvBatchNormKernel {
 public:
  using ConvBatchNormKernel::ConvBatchNormKernel;

  void Compute(OpKernelContext* ctx) override {
    const Tensor &x = ctx->input(0), &kernel = ctx->input(1), &gamma = ctx->input(2), &beta = ctx->input(3);
    int64 rows, ci, cout;
    OP_REQUIRES_OK(ctx, CheckConvBatchNorm(x, kernel, gamma, beta, groups_, &rows, &ci, &cout));
    const int64 cin = groups_ * ci, co = cout / groups_;
    Tensor *y = nullptr, *z = nullptr, *mean = nullptr, *variance = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({rows, cout}), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({rows, cout}), &z));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({cout}), &mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({cout}), &variance));
    const std::vector<float> right = RightMatrices(kernel, groups_, false);
    const float* xp = x.flat<float>().data();
    float* zp = z->flat<float>().data();
    ChannelSums sums(cout);
    auto products = [&](int64 start, int64 limit) {
      RowSums own(cout);
      for (int64 chunk = start; chunk < limit; chunk += 32) {
        const int64 end = std::min<int64>(chunk + 32, limit);
        for (int g = 0; g < groups_; ++g)
          Rows(Operands{xp + g * ci, cin, 1, right.data() + g * ci * co, co}, chunk, end, zp + g * co, cout, ci, co,
               false);
        own.StartChunk();  // the chunk's products are still in cache
        for (int64 r = chunk; r < end; ++r) AddRowMoments(zp + r * cout, own.first.data(), own.second.data(), cout);
        own.EndChunk();
      }
      sums.Add(own.total_first, own.total_second);
    };
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(workers->num_threads, workers->workers, rows, 2 * cin * co + 3 * cout, products);
    float* meanp = mean->flat<float>().data();
    float* variancep = variance->flat<float>().data();
    for (int64 c = 0; c < cout; ++c) {
      const double m = rows ? sums.first()[c] / rows : 0.0;
      meanp[c] = static_cast<float>(m);
      variancep[c] = static_cast<float>(rows ? std::max(sums.second()[c] / rows - m * m, 0.0) : 0.0);
    }
    const Affine affine = BatchNormAffine(gamma.flat<float>().data(), beta.flat<float>().data(), meanp, variancep,
                                          cout, epsilon_);
    float* yp = y->flat<float>().data();
    auto normalise = [&](int64 start, int64 limit) {
      const float *scale = affine.scale.data(), *shift = affine.shift.data();
      for (int64 r = start; r < limit; ++r)
        (relu_ ? NormaliseRow<true> : NormaliseRow<false>)(zp + r * cout, scale, shift, yp + r * cout, cout);
    };
    tensorflow::Shard(workers->num_threads, workers->workers, rows, 3 * cout, normalise);
  }
};

class ConvBatchNormGradOp : public ConvBatchNormKernel {
 public:
  using ConvBatchNormKernel::ConvBatchNormKernel;

  void Compute(OpKernelContext* ctx) override {
    const Tensor &dy = ctx->input(0), &z = ctx->input(1), &x = ctx->input(2), &kernel = ctx->input(3);
    const Tensor &gamma = ctx->input(4), &beta = ctx->input(5), &mean = ctx->input(6), &variance = ctx->input(7);
    int64 rows, ci, cout;
    OP_REQUIRES_OK(ctx, CheckConvBatchNorm(x, kernel, gamma, beta, groups_, &rows, &ci, &cout));
    OP_REQUIRES_OK(ctx, RequireVector(mean, "mean", cout));
    OP_REQUIRES_OK(ctx, RequireVector(variance, "variance", cout));
    for (const Tensor* t : {&dy, &z})
      OP_REQUIRES(ctx, t->dims() == 2 && t->dim_size(0) == rows && t->dim_size(1) == cout,
                  InvalidArgument("dy and z must be (", rows, ", ", cout, "), got ", t->shape().DebugString()));
    const int64 cin = groups_ * ci, co = cout / groups_;
    Tensor *dx = nullptr, *dkernel = nullptr, *dgamma = nullptr, *dbeta = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, kernel.shape(), &dkernel));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, gamma.shape(), &dgamma));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, beta.shape(), &dbeta));
    const float* meanp = mean.flat<float>().data();
    const Affine affine = BatchNormAffine(gamma.flat<float>().data(), beta.flat<float>().data(), meanp,
                                          variance.flat<float>().data(), cout, epsilon_);
    const float* dyp = dy.flat<float>().data();
    const float* zp = z.flat<float>().data();
    const float *scale = affine.scale.data(), *shift = affine.shift.data();
    // 1. Per channel: the sum of that gradient (dbeta) and of it times z - mean.
    ChannelSums sums(cout);
    auto sum_rows = [&](int64 start, int64 limit) {
      RowSums own(cout);
      for (int64 chunk = start; chunk < limit; chunk += 32) {
        own.StartChunk();
        for (int64 r = chunk; r < std::min<int64>(chunk + 32, limit); ++r)
          (relu_ ? AddRowGradientSums<true> : AddRowGradientSums<false>)(
              dyp + r * cout, zp + r * cout, scale, shift, meanp, own.first.data(), own.second.data(), cout);
        own.EndChunk();
      }
      sums.Add(own.total_first, own.total_second);
    };
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(workers->num_threads, workers->workers, rows, 8 * cout, sum_rows);
    // 2. dz = a g + b z + offset per channel (BatchNorm's gradient with batch statistics).
    std::vector<float> a(cout), b(cout), offset(cout);
    float* dgammap = dgamma->flat<float>().data();
    float* dbetap = dbeta->flat<float>().data();
    for (int64 c = 0; c < cout; ++c) {
      const double inverse_std = affine.inverse_std[c], count = std::max<int64>(rows, 1);
      dbetap[c] = static_cast<float>(sums.first()[c]);
      dgammap[c] = static_cast<float>(sums.second()[c] * inverse_std);
      a[c] = affine.scale[c];
      b[c] = static_cast<float>(-affine.scale[c] * inverse_std * inverse_std * sums.second()[c] / count);
      offset[c] = static_cast<float>(-affine.scale[c] * sums.first()[c] / count - b[c] * meanp[c]);
    }
    // 3. dz 256 rows at a time into a buffer, right away multiplied by k_g^T (dx) and summed
    // against x into each part's own kernel gradient.
    const std::vector<float> right = RightMatrices(kernel, groups_, true);
    const float* xp = x.flat<float>().data();
    float* dxp = dx->flat<float>().data();
    const int64 parts = std::max<int64>(1, std::min<int64>(4 * workers->num_threads, rows / 256));
    std::vector<std::vector<float>> partial(parts, std::vector<float>(ci * cout, 0.f));
    auto backward = [&](int64 first, int64 last) {
      std::vector<float> dz(256 * cout);
      for (int64 part = first; part < last; ++part) {
        const int64 start = rows * part / parts, limit = rows * (part + 1) / parts;
        for (int64 chunk = start; chunk < limit; chunk += 256) {
          const int64 n = std::min<int64>(256, limit - chunk);
          for (int64 r = 0; r < n; ++r)
            (relu_ ? InputGradientRow<true> : InputGradientRow<false>)(dyp + (chunk + r) * cout, zp + (chunk + r) * cout,
                                                                      scale, shift, a.data(), b.data(), offset.data(),
                                                                      dz.data() + r * cout, cout);
          for (int g = 0; g < groups_; ++g) {
            Rows(Operands{dz.data() + g * co, cout, 1, right.data() + g * co * ci, ci}, 0, n, dxp + chunk * cin + g * ci,
                 cin, co, ci, false);
            Rows(Operands{xp + chunk * cin + g * ci, 1, cin, dz.data() + g * co, cout}, 0, ci, partial[part].data() + g * co,
                 cout, n, co, true);
          }
        }
      }
    };
    tensorflow::Shard(workers->num_threads, workers->workers, parts,
                      std::max<int64>(1, rows / parts * (4 * cin * co + 8 * cout)), backward);
    AddParts(partial, dkernel->flat<float>().data());
  }
};

}  // namespace

REGISTER_OP("MobileclsGroupedMatmul")
    .Input("x: float")
    .Input("kernel: float")
    .Output("y: float")
    .Attr("groups: int >= 1")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->Matrix(c->Dim(c->input(0), 0), c->Dim(c->input(1), 1)));
      return absl::OkStatus();
    });

REGISTER_OP("MobileclsGroupedMatmulGradInput")
    .Input("dy: float")
    .Input("kernel: float")
    .Output("dx: float")
    .Attr("groups: int >= 1")
    .SetShapeFn([](InferenceContext* c) {
      int groups;
      TF_RETURN_IF_ERROR(c->GetAttr("groups", &groups));
      DimensionHandle cin;
      TF_RETURN_IF_ERROR(c->Multiply(c->Dim(c->input(1), 0), groups, &cin));
      c->set_output(0, c->Matrix(c->Dim(c->input(0), 0), cin));
      return absl::OkStatus();
    });

REGISTER_OP("MobileclsGroupedMatmulGradKernel")
    .Input("x: float")
    .Input("dy: float")
    .Output("dkernel: float")
    .Attr("groups: int >= 1")
    .SetShapeFn([](InferenceContext* c) {
      int groups;
      TF_RETURN_IF_ERROR(c->GetAttr("groups", &groups));
      DimensionHandle ci;
      TF_RETURN_IF_ERROR(c->Divide(c->Dim(c->input(0), 1), groups, true, &ci));
      c->set_output(0, c->Matrix(ci, c->Dim(c->input(1), 1)));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("MobileclsGroupedMatmul").Device(tensorflow::DEVICE_CPU), RowProductsOp<false>);
REGISTER_KERNEL_BUILDER(Name("MobileclsGroupedMatmulGradInput").Device(tensorflow::DEVICE_CPU), RowProductsOp<true>);
REGISTER_KERNEL_BUILDER(Name("MobileclsGroupedMatmulGradKernel").Device(tensorflow::DEVICE_CPU), KernelGradientOp);

REGISTER_OP("MobileclsGroupedConvBatchNorm")
    .Input("x: float")
    .Input("kernel: float")
    .Input("gamma: float")
    .Input("beta: float")
    .Output("y: float")
    .Output("z: float")
    .Output("mean: float")
    .Output("variance: float")
    .Attr("groups: int >= 1")
    .Attr("epsilon: float")
    .Attr("relu: bool")
    .SetShapeFn([](InferenceContext* c) {
      const DimensionHandle cout = c->Dim(c->input(1), 1);
      c->set_output(0, c->Matrix(c->Dim(c->input(0), 0), cout));
      c->set_output(1, c->Matrix(c->Dim(c->input(0), 0), cout));
      c->set_output(2, c->Vector(cout));
      c->set_output(3, c->Vector(cout));
      return absl::OkStatus();
    });

REGISTER_OP("MobileclsGroupedConvBatchNormGrad")
    .Input("dy: float")
    .Input("z: float")
    .Input("x: float")
    .Input("kernel: float")
    .Input("gamma: float")
    .Input("beta: float")
    .Input("mean: float")
    .Input("variance: float")
    .Output("dx: float")
    .Output("dkernel: float")
    .Output("dgamma: float")
    .Output("dbeta: float")
    .Attr("groups: int >= 1")
    .Attr("epsilon: float")
    .Attr("relu: bool")
    .SetShapeFn([](InferenceContext* c) {
      for (int i = 0; i < 4; ++i) c->set_output(i, c->input(i + 2));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("MobileclsGroupedConvBatchNorm").Device(tensorflow::DEVICE_CPU), ConvBatchNormOp);
REGISTER_KERNEL_BUILDER(Name("MobileclsGroupedConvBatchNormGrad").Device(tensorflow::DEVICE_CPU), ConvBatchNormGradOp);
