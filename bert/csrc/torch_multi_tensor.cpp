// What `tch_kernels.rs` needs of libtorch that the tch crate's C API leaves out (it skips ops
// that return nothing or a list, and its backward pass seeds every output with ones):
// `_foreach_norm`, as `clip_grad_norm_` takes the global norm with `foreach=True`;
// `_fused_adamw_`, the step of `torch.optim.AdamW(fused=True)`; and `torch::autograd::grad` with
// the output's gradient given, for the ops torch's autograd records. Called with tch's tensor
// handles (`torch::Tensor*`); an error comes back as a malloc'd message (free it), success as null.
#include <ATen/core/Tensor.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/full.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>
#include <torch/csrc/autograd/autograd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

namespace {

std::vector<at::Tensor> list(at::Tensor *const *tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}

// A message the caller frees; out of memory for even that, nothing to report with: abort.
char *message(const char *what) {
  char *copy = strdup(what);
  if (!copy) std::abort();
  return copy;
}

// Runs `f`, turning any exception into a message (none may unwind into Rust).
template <typename F> char *guarded(F f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error &e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception &e) {
    return message(e.what());
  } catch (...) {
    return message("unknown C++ exception");
  }
}

} // namespace

extern "C" {

// The L2 norm of the `n` tensors together, `[1]`: `torch._foreach_norm` of each, then the norm of
// those (torch.nn.utils.clip_grad_norm_). Nothing is read back to the host.
char *bert_torch_global_norm(at::Tensor *const *tensors, size_t n, at::Tensor **out) {
  return guarded([&] {
    auto norms = at::_foreach_norm(list(tensors, n), 2);
    *out = new at::Tensor(at::linalg_vector_norm(at::stack(norms), 2).reshape({1}));
  });
}

// One AdamW step, in place, of `n` parameters with their gradients and moments (one device, one
// type): `torch._fused_adamw_` at Adam step `step`, every gradient first divided by `grad_scale`
// (a `[1]` tensor on the device, or null; torch reads it as f32, and writes each gradient back
// divided by it). The step count is a tensor on the device, as torch's optimizer keeps it,
// filled there (no copy from the host).
char *bert_torch_fused_adamw(at::Tensor *const *params, at::Tensor *const *grads,
                             at::Tensor *const *exp_avgs, at::Tensor *const *exp_avg_sqs, size_t n,
                             double step, double lr, double beta1, double beta2,
                             double weight_decay, double eps, const at::Tensor *grad_scale) {
  return guarded([&] {
    if (n == 0) return;
    auto count = at::full({}, step, params[0]->options().dtype(at::kFloat));
    std::vector<at::Tensor> steps(n, count);
    std::optional<at::Tensor> scale;
    if (grad_scale) scale = grad_scale->to(at::kFloat).reshape({});
    at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n),
                      {}, steps, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false, scale, std::nullopt);
  });
}

// The gradients of the `n` leaves `inputs` of a recorded graph for the gradient `grad` of its
// `output` (`torch.autograd.grad(output, inputs, grad)`), the graph freed after; a leaf the output
// does not depend on gets null.
char *bert_torch_grad(const at::Tensor *output, const at::Tensor *grad,
                      at::Tensor *const *inputs, size_t n, at::Tensor **grads) {
  return guarded([&] {
    auto g = grad->scalar_type() == output->scalar_type() ? *grad : grad->to(output->scalar_type());
    auto got = torch::autograd::grad({*output}, list(inputs, n), {g}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t i = 0; i < n; ++i)
      grads[i] = got[i].defined() ? new at::Tensor(std::move(got[i])) : nullptr;
  });
}
}
