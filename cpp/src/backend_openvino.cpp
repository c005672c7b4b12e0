// OpenVINO backend: reads the ONNX file directly (no conversion step) and runs it on the CPU plugin.
#include <openvino/openvino.hpp>

#include "backends.hpp"

namespace facealign::detail {
namespace {

ov::Core& core() {
  static ov::Core instance;
  return instance;
}

class OpenVinoBackend final : public Backend {
 public:
  OpenVinoBackend(const std::filesystem::path& model, const BackendOptions& options) {
    require_file(model, "ONNX model");
    try {
      // f32 everywhere: the CPU plugin would otherwise run in bf16 on CPUs that have it
      ov::AnyMap config{ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY),
                        ov::hint::inference_precision(ov::element::f32)};
      if (options.threads > 0) config.emplace(ov::inference_num_threads(options.threads));
      compiled_ = core().compile_model(core().read_model(model.string()), "CPU", config);
      request_ = compiled_.create_infer_request();
      for (const auto& output : compiled_.outputs()) output_names_.push_back(output.get_any_name());
    } catch (const ov::Exception& e) {
      throw Error(Error::Kind::Backend, model.string() + ": OpenVINO cannot load it (" + e.what() + ")");
    }
  }

  std::string name() const override { return "openvino:CPU"; }

  std::vector<Tensor> run(const Tensor& input, const std::vector<std::string>& outputs) override {
    try {
      const ov::Shape shape(input.shape.begin(), input.shape.end());
      request_.set_input_tensor(ov::Tensor(ov::element::f32, shape, const_cast<float*>(input.data.data())));
      request_.infer();
      std::vector<Tensor> out;
      for (const std::string& name : outputs.empty() ? output_names_ : outputs) {
        const ov::Tensor result = request_.get_tensor(name);
        Tensor t;
        for (size_t d : result.get_shape()) t.shape.push_back(static_cast<int64_t>(d));
        const float* data = result.data<const float>();
        t.data.assign(data, data + result.get_size());
        out.push_back(std::move(t));
      }
      return out;
    } catch (const ov::Exception& e) {
      throw Error(Error::Kind::Backend, std::string("OpenVINO run failed: ") + e.what());
    }
  }

 private:
  ov::CompiledModel compiled_;
  ov::InferRequest request_;
  std::vector<std::string> output_names_;
};

}  // namespace

std::unique_ptr<Backend> open_openvino(const std::filesystem::path& model, const BackendOptions& options) {
  return std::make_unique<OpenVinoBackend>(model, options);
}

}  // namespace facealign::detail
