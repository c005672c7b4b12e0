// Internal: the constructors of the compiled-in backends (each in its own file, built only with its runtime).
#pragma once

#include "facealign/facealign.hpp"

namespace facealign::detail {

std::unique_ptr<Backend> open_onnxruntime(const std::filesystem::path& model, const BackendOptions& options);
std::unique_ptr<Backend> open_openvino(const std::filesystem::path& model, const BackendOptions& options);
std::unique_ptr<Backend> open_tensorrt(const std::filesystem::path& engine, const BackendOptions& options);

/// Error(NotFound) unless `path` is a regular file; `what` names it in the message.
void require_file(const std::filesystem::path& path, const std::string& what);

/// Error(InvalidArgument) unless `kind` was compiled in.
void require_backend(BackendKind kind);

/// The product of a shape's dimensions (0 for a negative one).
size_t element_count(const std::vector<int64_t>& shape);

}  // namespace facealign::detail
