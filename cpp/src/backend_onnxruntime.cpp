// ONNX Runtime backend. The library is loaded at run time (dlopen + ORT_API_MANUAL_INIT) rather than
// linked: the onnxruntime wheel's library carries versioned symbols, so a binary linked against one
// wheel breaks when pip upgrades it, while the C API table asked for by version keeps working.
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include "backends.hpp"

namespace facealign::detail {
namespace {

// Where to find libonnxruntime.so*: $FACEALIGN_ORT_LIBRARY (a file), else the folder found at configure
// time (the onnxruntime wheel's capi/ folder), searched for any libonnxruntime.so* so that a pip upgrade
// that renames the file is followed.
std::filesystem::path find_library() {
  if (const char* env = std::getenv("FACEALIGN_ORT_LIBRARY"); env && *env) return env;
  const std::filesystem::path dir = FACEALIGN_ORT_LIBRARY_DIR;
  std::vector<std::filesystem::path> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("libonnxruntime.so", 0) == 0) found.push_back(entry.path());
  }
  if (found.empty()) {
    throw Error(Error::Kind::NotFound, "no libonnxruntime.so* in " + dir.string() +
                                           ": pip install onnxruntime there, or set FACEALIGN_ORT_LIBRARY to the library");
  }
  std::sort(found.begin(), found.end());
  return found.back();
}

void init_api() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    try {
      const std::filesystem::path lib = find_library();
      void* handle = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);  // kept for the process's lifetime
      if (!handle) throw Error(Error::Kind::NotFound, "cannot load " + lib.string() + ": " + dlerror());
      using GetApiBase = const OrtApiBase* (*)();
      auto get_api_base = reinterpret_cast<GetApiBase>(dlsym(handle, "OrtGetApiBase"));
      if (!get_api_base) throw Error(Error::Kind::Backend, lib.string() + " is not ONNX Runtime (no OrtGetApiBase)");
      const OrtApiBase* base = get_api_base();
      const OrtApi* api = base->GetApi(ORT_API_VERSION);
      if (!api) {
        throw Error(Error::Kind::Backend, lib.string() + " (ONNX Runtime " + base->GetVersionString() +
                                              ") is older than the headers this was built with (API " +
                                              std::to_string(ORT_API_VERSION) + ")");
      }
      Ort::InitApi(api);
    } catch (const Error& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throw Error(Error::Kind::Backend, failure);
}

Ort::Env& environment() {
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "facealign");
  return env;
}

bool has_provider(const std::vector<std::string>& available, const std::string& name) {
  return std::find(available.begin(), available.end(), name) != available.end();
}

// Execution providers as the Python backend chooses them (backends/ort.py: TensorRT, CUDA, CPU);
// returns the name of the first one.
std::string add_providers(Ort::SessionOptions& so, const std::string& device) {
  if (device != "auto" && device != "cpu" && device != "cuda" && device != "tensorrt") {
    throw Error(Error::Kind::InvalidArgument, "unknown device '" + device + "' for ort (auto, cpu, cuda, tensorrt)");
  }
  const std::vector<std::string> available = Ort::GetAvailableProviders();
  const bool trt = (device == "auto" || device == "tensorrt") && has_provider(available, "TensorrtExecutionProvider");
  const bool cuda = device != "cpu" && has_provider(available, "CUDAExecutionProvider");
  if ((device == "tensorrt" && !trt) || (device == "cuda" && !cuda)) {
    throw Error(Error::Kind::Backend, "this onnxruntime library has no " + device +
                                          " execution provider: install onnxruntime-gpu instead of onnxruntime");
  }
  const OrtApi& api = Ort::GetApi();
  if (trt) {
    OrtTensorRTProviderOptionsV2* options = nullptr;
    Ort::ThrowOnError(api.CreateTensorRTProviderOptions(&options));
    so.AppendExecutionProvider_TensorRT_V2(*options);
    api.ReleaseTensorRTProviderOptions(options);
  }
  if (cuda) {
    OrtCUDAProviderOptionsV2* options = nullptr;
    Ort::ThrowOnError(api.CreateCUDAProviderOptions(&options));
    so.AppendExecutionProvider_CUDA_V2(*options);
    api.ReleaseCUDAProviderOptions(options);
  }
  return trt ? "TensorrtExecutionProvider" : cuda ? "CUDAExecutionProvider" : "CPUExecutionProvider";
}

class OrtBackend final : public Backend {
 public:
  OrtBackend(const std::filesystem::path& model, const BackendOptions& options) {
    require_file(model, "ONNX model");
    init_api();
    try {
      Ort::SessionOptions so;
      so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
      if (options.threads > 0) so.SetIntraOpNumThreads(options.threads);
      // no spinning after a run: the next work (crop, decode) needs the same cores (see backends/ort.py)
      so.AddConfigEntry("session.intra_op.allow_spinning", "0");
      provider_ = add_providers(so, options.device);
      session_ = std::make_unique<Ort::Session>(environment(), model.c_str(), so);
      Ort::AllocatorWithDefaultOptions allocator;
      input_name_ = session_->GetInputNameAllocated(0, allocator).get();
      if (session_->GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetElementType() !=
          ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        throw Error(Error::Kind::Backend, model.string() + ": input is not float32 (use model.onnx, not the fp16 graph)");
      }
      for (size_t i = 0; i < session_->GetOutputCount(); ++i) {
        output_names_.push_back(session_->GetOutputNameAllocated(i, allocator).get());
      }
    } catch (const Ort::Exception& e) {
      throw Error(Error::Kind::Backend, model.string() + ": ONNX Runtime cannot load it (" + e.what() + ")");
    }
  }

  std::string name() const override { return "ort:" + provider_; }

  std::vector<Tensor> run(const Tensor& input, const std::vector<std::string>& outputs) override {
    const std::vector<std::string>& wanted = outputs.empty() ? output_names_ : outputs;
    std::vector<const char*> names;
    for (const auto& n : wanted) names.push_back(n.c_str());
    const char* input_name = input_name_.c_str();
    try {
      const auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
      Ort::Value value = Ort::Value::CreateTensor<float>(memory, const_cast<float*>(input.data.data()),
                                                         input.data.size(), input.shape.data(), input.shape.size());
      std::vector<Ort::Value> results =
          session_->Run(Ort::RunOptions{nullptr}, &input_name, &value, 1, names.data(), names.size());
      std::vector<Tensor> out;
      for (Ort::Value& r : results) {
        Tensor t;
        t.shape = r.GetTensorTypeAndShapeInfo().GetShape();
        const float* data = r.GetTensorData<float>();
        t.data.assign(data, data + element_count(t.shape));
        out.push_back(std::move(t));
      }
      return out;
    } catch (const Ort::Exception& e) {
      throw Error(Error::Kind::Backend, std::string("ONNX Runtime run failed: ") + e.what());
    }
  }

 private:
  std::unique_ptr<Ort::Session> session_;
  std::string provider_;
  std::string input_name_;
  std::vector<std::string> output_names_;
};

}  // namespace

std::unique_ptr<Backend> open_onnxruntime(const std::filesystem::path& model, const BackendOptions& options) {
  return std::make_unique<OrtBackend>(model, options);
}

}  // namespace facealign::detail
