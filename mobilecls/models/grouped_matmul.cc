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
// All three are small products (ShuffleNetV1's blocks are 12 to 192 channels), done as register
// tiles of 4 rows by 24, 16, 8 or 4 columns over strided views, with no packing: packing a block
// (what a BLAS does) would be the copy this op avoids. Single-threaded on ShuffleNetV1 g=8's
// shapes they took 0.54x the CPU time of TensorFlow's split + MatMul + concat (docs/benchmarks.md).
#include <algorithm>
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
    // Each group's right-hand matrix (K, N), contiguous: k_g, or k_g^T for the input gradient.
    const float* k = kernel.flat<float>().data();
    std::vector<float> right(groups_ * K * N);
    for (int g = 0; g < groups_; ++g)
      for (int64 i = 0; i < K; ++i)
        for (int64 j = 0; j < N; ++j)
          right[(g * K + i) * N + j] = kTransposed ? k[j * cout + g * co + i] : k[i * cout + g * co + j];
    GroupedRowProducts(ctx, a.flat<float>().data(), right, out->flat<float>().data(), rows, groups_, K, N);
  }

 private:
  int groups_;
};

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
    float* result = out->flat<float>().data();
    std::copy(partial[0].begin(), partial[0].end(), result);
    for (int64 part = 1; part < parts; ++part)
      for (int64 e = 0; e < ci * cout; ++e) result[e] += partial[part][e];
  }

 private:
  int groups_;
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
