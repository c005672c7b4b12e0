// Backend selection: names, what this build has, and dispatch to the runtime-specific files.
#include <algorithm>

#include "backends.hpp"

namespace facealign {

namespace detail {

void require_file(const std::filesystem::path& path, const std::string& what) {
  if (!std::filesystem::is_regular_file(path)) throw Error(Error::Kind::NotFound, what + " not found: " + path.string());
}

void require_backend(BackendKind kind) {
  const std::vector<BackendKind> built = available_backends();
  if (std::find(built.begin(), built.end(), kind) == built.end()) {
    throw Error(Error::Kind::InvalidArgument, "this build of facealign has no " + backend_name(kind) +
                                                  " backend (not found when the library was configured: see the CMake "
                                                  "messages)");
  }
}

size_t element_count(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= d > 0 ? static_cast<size_t>(d) : 0;
  return n;
}

}  // namespace detail

BackendKind parse_backend(const std::string& name) {
  if (name == "ort" || name == "onnxruntime") return BackendKind::OnnxRuntime;
  if (name == "openvino") return BackendKind::OpenVINO;
  if (name == "tensorrt" || name == "trt") return BackendKind::TensorRT;
  throw Error(Error::Kind::InvalidArgument, "unknown backend '" + name + "': use ort, openvino or tensorrt");
}

std::string backend_name(BackendKind kind) {
  switch (kind) {
    case BackendKind::OnnxRuntime: return "ort";
    case BackendKind::OpenVINO: return "openvino";
    case BackendKind::TensorRT: return "tensorrt";
  }
  return "?";
}

std::vector<BackendKind> available_backends() {
  std::vector<BackendKind> kinds;
#ifdef FACEALIGN_WITH_ONNXRUNTIME
  kinds.push_back(BackendKind::OnnxRuntime);
#endif
#ifdef FACEALIGN_WITH_OPENVINO
  kinds.push_back(BackendKind::OpenVINO);
#endif
#ifdef FACEALIGN_WITH_TENSORRT
  kinds.push_back(BackendKind::TensorRT);
#endif
  return kinds;
}

std::unique_ptr<Backend> open_backend(BackendKind kind, const std::filesystem::path& model_file,
                                      const BackendOptions& options) {
  switch (kind) {
#ifdef FACEALIGN_WITH_ONNXRUNTIME
    case BackendKind::OnnxRuntime: return detail::open_onnxruntime(model_file, options);
#endif
#ifdef FACEALIGN_WITH_OPENVINO
    case BackendKind::OpenVINO: return detail::open_openvino(model_file, options);
#endif
#ifdef FACEALIGN_WITH_TENSORRT
    case BackendKind::TensorRT: return detail::open_tensorrt(model_file, options);
#endif
    default: break;
  }
  detail::require_backend(kind);  // throws: the kind is not built
  return nullptr;
}

}  // namespace facealign
