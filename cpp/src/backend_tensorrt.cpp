// Native TensorRT backend (TensorRT 10 API): runs a serialized engine built by `facealign export --to trt`.
// Engines only run with the TensorRT version and on the GPU model they were built for: the JSON sidecar
// beside the engine (<engine>.json, see facealign_sdk/backends/trt.py) is checked against the running
// library and GPU before TensorRT is asked to deserialize it. Compiled only where CMake finds TensorRT
// and the CUDA toolkit.
#include <cuda_runtime_api.h>

#include <NvInfer.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "backends.hpp"

namespace facealign::detail {
namespace {

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "TensorRT: %s\n", msg);
  }
};

void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error(Error::Kind::Backend, std::string(what) + " failed: " + cudaGetErrorString(status));
  }
}

// "10.3.0" from the loaded library (TensorRT 10 encodes major * 10000 + minor * 100 + patch).
std::string runtime_version() {
  const int v = getInferLibVersion();
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

// The first three components of a version string ("10.3.0.26" -> "10.3.0").
std::string major_minor_patch(const std::string& version) {
  size_t pos = 0;
  for (int dots = 0; dots < 3 && pos != std::string::npos; ++dots) pos = version.find('.', pos + (dots ? 1 : 0));
  return pos == std::string::npos ? version : version.substr(0, pos);
}

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(Error::Kind::InvalidArgument, path.string() + ": invalid JSON (" + e.what() + ")");
  }
}

// Refuse an engine built for another TensorRT version, GPU or model (as check_sidecar in Python).
nlohmann::json check_sidecar(const std::filesystem::path& engine) {
  std::filesystem::path sidecar = engine;
  sidecar.replace_extension(".json");
  if (!std::filesystem::is_regular_file(sidecar)) {
    throw Error(Error::Kind::NotFound, engine.string() + ": no sidecar " + sidecar.filename().string() +
                                           " beside it (it records the TensorRT version and GPU the engine was built "
                                           "for); rebuild the engine with `facealign export --to trt`");
  }
  const nlohmann::json built = read_json(sidecar);
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  const std::string here_cc = std::to_string(prop.major) + "." + std::to_string(prop.minor);
  std::vector<std::string> problems;
  auto compare = [&](const std::string& what, const std::string& was, const std::string& is) {
    if (was != is) problems.push_back(what + ": engine built with " + (was.empty() ? "unknown" : was) + ", running with " + is);
  };
  compare("TensorRT version", major_minor_patch(built.value("tensorrt_version", "")), runtime_version());
  compare("GPU compute capability", built.value("compute_capability", ""), here_cc);
  compare("GPU", built.value("gpu_name", ""), prop.name);
  const std::filesystem::path manifest_path = engine.parent_path() / "manifest.json";
  if (built.contains("manifest") && std::filesystem::is_regular_file(manifest_path)) {
    const nlohmann::json manifest = read_json(manifest_path);
    for (const char* key : {"weights_sha256", "num_landmarks", "input_size", "heatmap_size"}) {
      if (built["manifest"].contains(key) && manifest.contains(key) && built["manifest"][key] != manifest[key]) {
        problems.push_back(std::string(key) + ": engine built for " + built["manifest"][key].dump() +
                           ", model folder has " + manifest[key].dump());
      }
    }
  }
  if (!problems.empty()) {
    std::string message = "TensorRT engine " + engine.string() + " does not match this machine or model (engines are not portable):";
    for (const auto& p : problems) message += " " + p + ";";
    throw Error(Error::Kind::Incompatible, message + " rebuild it here with `facealign export --to trt` or use --backend ort");
  }
  return built;
}

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void reserve(size_t n) {
    if (n <= bytes) return;
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    cuda_check(cudaMalloc(&ptr, n), "cudaMalloc");
    bytes = n;
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

size_t element_size(nvinfer1::DataType type) { return type == nvinfer1::DataType::kHALF ? 2 : 4; }

class TensorRtBackend final : public Backend {
 public:
  TensorRtBackend(const std::filesystem::path& engine_path, const BackendOptions&) {
    require_file(engine_path, "TensorRT engine");
    const nlohmann::json sidecar = check_sidecar(engine_path);
    std::ifstream in(engine_path, std::ios::binary);
    const std::vector<char> blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error(Error::Kind::Backend, "cannot create the TensorRT runtime");
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) {
      throw Error(Error::Kind::Incompatible, engine_path.string() + ": TensorRT cannot deserialize it (corrupt, or built by another version)");
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(Error::Kind::Backend, engine_path.string() + ": no execution context (out of GPU memory?)");
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      const auto type = engine_->getTensorDataType(name);
      if (type != nvinfer1::DataType::kFLOAT && type != nvinfer1::DataType::kHALF) {
        throw Error(Error::Kind::Backend, engine_path.string() + ": tensor " + name + " is neither float32 nor float16");
      }
      (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputs_ : outputs_).push_back(name);
    }
    if (inputs_.size() != 1 || outputs_.empty()) {
      throw Error(Error::Kind::Backend, engine_path.string() + ": expected one input and at least one output");
    }
    const std::string expected_input = sidecar.value("input_name", inputs_[0]);
    if (expected_input != inputs_[0]) {
      throw Error(Error::Kind::Backend, engine_path.string() + ": input is " + inputs_[0] + ", the sidecar says " + expected_input);
    }
    max_batch_ = static_cast<int64_t>(
        engine_->getProfileShape(inputs_[0].c_str(), 0, nvinfer1::OptProfileSelector::kMAX).d[0]);
    cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate");
  }

  ~TensorRtBackend() override {
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "tensorrt"; }

  std::vector<Tensor> run(const Tensor& input, const std::vector<std::string>& wanted) override {
    const std::vector<std::string>& names = wanted.empty() ? outputs_ : wanted;
    if (input.shape.empty() || input.shape[0] < 1) throw Error(Error::Kind::InvalidArgument, "empty input batch");
    std::vector<Tensor> out(names.size());
    const int64_t total = input.shape[0];
    const size_t per_item = element_count(input.shape) / total;
    // batches larger than the engine's profile are run in pieces
    for (int64_t first = 0; first < total; first += max_batch_) {
      const int64_t count = std::min(max_batch_, total - first);
      std::vector<int64_t> shape = input.shape;
      shape[0] = count;
      run_piece(input.data.data() + first * per_item, shape, names, out);
    }
    return out;
  }

 private:
  void run_piece(const float* data, const std::vector<int64_t>& shape, const std::vector<std::string>& names,
                 std::vector<Tensor>& out) {
    const std::string& in_name = inputs_[0];
    nvinfer1::Dims dims{};
    dims.nbDims = static_cast<int32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) dims.d[i] = shape[i];
    if (!context_->setInputShape(in_name.c_str(), dims)) {
      throw Error(Error::Kind::InvalidArgument, "input shape outside the engine's optimisation profile");
    }
    const size_t n = element_count(shape);
    const cv::Mat host = in_engine_type(cv::Mat(1, static_cast<int>(n), CV_32F, const_cast<float*>(data)), in_name);
    buffers_[in_name].reserve(host.total() * host.elemSize());
    cuda_check(cudaMemcpyAsync(buffers_[in_name].ptr, host.data, host.total() * host.elemSize(), cudaMemcpyHostToDevice, stream_),
               "cudaMemcpyAsync (input)");
    context_->setTensorAddress(in_name.c_str(), buffers_[in_name].ptr);
    for (const std::string& name : outputs_) {  // every output needs an address, wanted or not
      const nvinfer1::Dims od = context_->getTensorShape(name.c_str());
      std::vector<int64_t> oshape(od.d, od.d + od.nbDims);
      buffers_[name].reserve(element_count(oshape) * element_size(engine_->getTensorDataType(name.c_str())));
      context_->setTensorAddress(name.c_str(), buffers_[name].ptr);
    }
    if (!context_->enqueueV3(stream_)) throw Error(Error::Kind::Backend, "TensorRT enqueueV3 failed");
    for (size_t k = 0; k < names.size(); ++k) {
      if (!buffers_.count(names[k]) || names[k] == in_name) {
        throw Error(Error::Kind::InvalidArgument, "the engine has no output named " + names[k]);
      }
      const nvinfer1::Dims od = context_->getTensorShape(names[k].c_str());
      std::vector<int64_t> oshape(od.d, od.d + od.nbDims);
      const bool half = engine_->getTensorDataType(names[k].c_str()) == nvinfer1::DataType::kHALF;
      cv::Mat host_out(1, static_cast<int>(element_count(oshape)), half ? CV_16F : CV_32F);
      cuda_check(cudaMemcpyAsync(host_out.data, buffers_[names[k]].ptr, host_out.total() * host_out.elemSize(),
                                 cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync (output)");
      cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
      if (half) host_out.convertTo(host_out, CV_32F);
      Tensor& t = out[k];
      if (t.shape.empty()) t.shape = oshape;
      else t.shape[0] += oshape[0];
      t.data.insert(t.data.end(), host_out.ptr<float>(), host_out.ptr<float>() + host_out.total());
    }
  }

  // `m` (CV_32F) in the engine's type for tensor `name` (float16 for a strongly typed fp16 engine).
  cv::Mat in_engine_type(const cv::Mat& m, const std::string& name) const {
    if (engine_->getTensorDataType(name.c_str()) != nvinfer1::DataType::kHALF) return m;
    cv::Mat half;
    m.convertTo(half, CV_16F);
    return half;
  }

  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  std::vector<std::string> inputs_, outputs_;
  std::map<std::string, DeviceBuffer> buffers_;
  int64_t max_batch_ = 1;
};

}  // namespace

std::unique_ptr<Backend> open_tensorrt(const std::filesystem::path& engine, const BackendOptions& options) {
  return std::make_unique<TensorRtBackend>(engine, options);
}

}  // namespace facealign::detail
