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
#include <algorithm>
#include <vector>

#include "Eigen/Core"
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

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstBlock = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;
using Block = Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>>;

// Below this inner dimension a plain loop (one output row block += a scalar times a kernel row)
// beats Eigen's packed product, whose packing then costs more than the arithmetic.
constexpr int64 kSmallInner = 16;

absl::Status RequireMatrix(const Tensor& t, const char* name) {
  if (t.dims() != 2) return InvalidArgument(name, " must be a matrix (pixels, channels), got rank ", t.dims());
  return absl::OkStatus();
}

// out (rows, groups * N) = for each group: a (rows, groups * K)'s block g times right_g (K, N).
void GroupedRowProducts(OpKernelContext* ctx, const float* a, const std::vector<float>& right, float* out,
                        int64 rows, int groups, int64 K, int64 N) {
  const int64 a_cols = groups * K, out_cols = groups * N;
  const float* r = right.data();
  auto work = [&](int64 start, int64 limit) {
    if (K < kSmallInner) {
      for (int64 p = start; p < limit; ++p) {
        for (int g = 0; g < groups; ++g) {
          const float* __restrict a_g = a + p * a_cols + g * K;
          const float* __restrict r_g = r + g * K * N;
          float* __restrict o_g = out + p * out_cols + g * N;
          std::fill(o_g, o_g + N, 0.f);
          for (int64 i = 0; i < K; ++i) {
            const float s = a_g[i];
            const float* __restrict r_i = r_g + i * N;
            for (int64 j = 0; j < N; ++j) o_g[j] += s * r_i[j];
          }
        }
      }
      return;
    }
    const int64 n = limit - start;
    for (int g = 0; g < groups; ++g) {
      ConstBlock a_g(a + start * a_cols + g * K, n, K, Eigen::OuterStride<>(a_cols));
      Eigen::Map<const RowMatrix> r_g(r + g * K * N, K, N);
      Block o_g(out + start * out_cols + g * N, n, N, Eigen::OuterStride<>(out_cols));
      o_g.noalias() = a_g * r_g;
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
    std::vector<RowMatrix> partial(parts, RowMatrix::Zero(ci, cout));
    const float* xp = x.flat<float>().data();
    const float* dyp = dy.flat<float>().data();
    auto work = [&](int64 first, int64 last) {
      for (int64 part = first; part < last; ++part) {
        const int64 start = rows * part / parts, n = rows * (part + 1) / parts - start;
        for (int g = 0; g < groups_; ++g) {
          ConstBlock x_g(xp + start * cin + g * ci, n, ci, Eigen::OuterStride<>(cin));
          ConstBlock dy_g(dyp + start * cout + g * co, n, co, Eigen::OuterStride<>(cout));
          partial[part].middleCols(g * co, co).noalias() = x_g.transpose() * dy_g;
        }
      }
    };
    tensorflow::Shard(workers->num_threads, workers->workers, parts, std::max<int64>(1, rows / parts * cin * co), work);
    Eigen::Map<RowMatrix> result(out->flat<float>().data(), ci, cout);
    result = partial[0];
    for (int64 part = 1; part < parts; ++part) result += partial[part];
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
