// The Python bindings of vistok's CPU kernels (one extension; tokenizers_vis/cpu_kernels.py).
#include <torch/extension.h>

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        double scale, const c10::optional<torch::Tensor>& visible);
void group_norm_silu(const torch::Tensor& x, int64_t groups,
                     const c10::optional<torch::Tensor>& weight,
                     const c10::optional<torch::Tensor>& bias, double eps, torch::Tensor& out);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("attention", &attention, "bf16 or fp32 attention, head size 64 (cpu_attention.cpp)",
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("scale"),
        py::arg("visible") = py::none());
  m.def("group_norm_silu", &group_norm_silu, "GroupNorm + SiLU, channels-last (cpu_group_norm.cpp)",
        py::arg("x"), py::arg("groups"), py::arg("weight"), py::arg("bias"), py::arg("eps"),
        py::arg("out"));
}
