// YuNet 2023 face detector on any backend. Pre- and post-processing follow the Python detector
// (facealign_sdk/detectors/yunet.py: resize to [min_side, max_side]) and OpenCV's FaceDetectorYN
// (pad to a multiple of 32, raw BGR input, per-stride decoding, NMS on integer boxes).
#include <algorithm>
#include <array>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "facealign/facealign.hpp"

namespace facealign {
namespace {

constexpr int kDivisor = 32;
constexpr std::array<int, 3> kStrides{8, 16, 32};

struct Candidate {
  Detection detection;
  cv::Rect rect;  // what NMS compares: the box truncated to integers, as FaceDetectorYN does
};

double overlap(const cv::Rect& a, const cv::Rect& b) {
  const double inter = (a & b).area();
  const double uni = a.area() + b.area() - inter;
  return uni > 0 ? inter / uni : 0.0;
}

// Greedy NMS in descending score order (stable for ties), as cv::dnn::NMSBoxes with eta 1.
std::vector<Detection> suppress(std::vector<Candidate> candidates, float threshold, int top_k) {
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.detection.score > b.detection.score; });
  if (top_k > 0 && static_cast<int>(candidates.size()) > top_k) candidates.resize(top_k);
  std::vector<const Candidate*> kept;
  for (const Candidate& c : candidates) {
    const bool keep = std::none_of(kept.begin(), kept.end(),
                                   [&](const Candidate* k) { return overlap(c.rect, k->rect) > threshold; });
    if (keep) kept.push_back(&c);
  }
  std::vector<Detection> out;
  for (const Candidate* k : kept) out.push_back(k->detection);
  return out;
}

// uint8 BGR image, zero-padded at the bottom and right to a multiple of 32 -> (1, 3, H, W) float.
Tensor input_blob(const cv::Mat& image, int padded_w, int padded_h) {
  Tensor blob;
  blob.shape = {1, 3, padded_h, padded_w};
  blob.data.assign(static_cast<size_t>(3) * padded_h * padded_w, 0.0f);
  for (int y = 0; y < image.rows; ++y) {
    const cv::Vec3b* row = image.ptr<cv::Vec3b>(y);
    for (int x = 0; x < image.cols; ++x) {
      for (int c = 0; c < 3; ++c) blob.data[(static_cast<size_t>(c) * padded_h + y) * padded_w + x] = row[x][c];
    }
  }
  return blob;
}

}  // namespace

YuNetDetector::YuNetDetector(std::unique_ptr<Backend> network, const YuNetSettings& settings)
    : network_(std::move(network)), settings_(settings) {
  if (!network_) throw Error(Error::Kind::InvalidArgument, "YuNetDetector needs a backend");
}

std::vector<Detection> YuNetDetector::detect(const cv::Mat& image) const {
  if (image.empty() || image.type() != CV_8UC3) {
    throw Error(Error::Kind::InvalidArgument, "YuNetDetector::detect needs a non-empty uint8 BGR image");
  }
  const int w = image.cols, h = image.rows, longest = std::max(w, h);
  double scale = 1.0;
  if (longest > settings_.max_side) scale = static_cast<double>(settings_.max_side) / longest;
  else if (longest < settings_.min_side) scale = static_cast<double>(settings_.min_side) / longest;
  cv::Mat work = image;
  if (scale != 1.0) {
    // std::nearbyint rounds halves to even, as Python's round() in the Python detector
    const cv::Size size(std::max(1, static_cast<int>(std::nearbyint(w * scale))),
                        std::max(1, static_cast<int>(std::nearbyint(h * scale))));
    cv::resize(image, work, size, 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  }
  const int pad_w = ((work.cols - 1) / kDivisor + 1) * kDivisor, pad_h = ((work.rows - 1) / kDivisor + 1) * kDivisor;
  std::vector<std::string> names;
  for (const char* kind : {"cls", "obj", "bbox", "kps"}) {
    for (int s : kStrides) names.push_back(std::string(kind) + "_" + std::to_string(s));
  }
  const std::vector<Tensor> out = network_->run(input_blob(work, pad_w, pad_h), names);
  const double sx = static_cast<double>(w) / work.cols, sy = static_cast<double>(h) / work.rows;

  std::vector<Candidate> candidates;
  for (size_t level = 0; level < kStrides.size(); ++level) {
    const int stride = kStrides[level], cols = pad_w / stride, rows = pad_h / stride;
    const float* cls = out[level].data.data();
    const float* obj = out[level + 3].data.data();
    const float* bbox = out[level + 6].data.data();
    const float* kps = out[level + 9].data.data();
    if (out[level].data.size() < static_cast<size_t>(rows * cols) || out[level + 9].data.size() < static_cast<size_t>(rows * cols * 10)) {
      throw Error(Error::Kind::Backend, "YuNet output " + names[level] + " has an unexpected size: is this YuNet 2023?");
    }
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(r) * cols + c;
        const float score = std::sqrt(std::clamp(cls[i], 0.0f, 1.0f) * std::clamp(obj[i], 0.0f, 1.0f));
        if (score < settings_.score_threshold) continue;
        // float arithmetic as in FaceDetectorYN, so that the integer NMS boxes agree
        const float cx = (c + bbox[i * 4 + 0]) * stride, cy = (r + bbox[i * 4 + 1]) * stride;
        const float bw = std::exp(bbox[i * 4 + 2]) * stride, bh = std::exp(bbox[i * 4 + 3]) * stride;
        const float x1 = cx - bw / 2.f, y1 = cy - bh / 2.f;
        Candidate cand;
        cand.rect = cv::Rect(static_cast<int>(x1), static_cast<int>(y1), static_cast<int>(bw), static_cast<int>(bh));
        Detection& d = cand.detection;
        d.score = score;
        d.box = {x1 * sx, y1 * sy, (x1 + bw) * sx, (y1 + bh) * sy};
        for (int k = 0; k < 5; ++k) {
          const float kx = (kps[i * 10 + 2 * k] + c) * stride, ky = (kps[i * 10 + 2 * k + 1] + r) * stride;
          d.keypoints.emplace_back(kx * sx, ky * sy);
        }
        candidates.push_back(std::move(cand));
      }
    }
  }
  return suppress(std::move(candidates), settings_.nms_threshold, settings_.top_k);
}

std::filesystem::path default_detector_model(const std::filesystem::path& model_dir) {
  return std::filesystem::absolute(model_dir).lexically_normal().parent_path() / "yunet" /
         "face_detection_yunet_2023mar_float.onnx";
}

}  // namespace facealign
