// The pipeline of facealign_sdk.aligner.Aligner: boxes -> crop frames -> batched crops -> heatmaps ->
// decoded points mapped back to the image.
#include <algorithm>

#include <opencv2/imgproc.hpp>

#include "backends.hpp"

namespace facealign {
namespace {

// The folder's only model_*.engine (TensorRT engines are named by precision and batch profile).
std::filesystem::path find_engine(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> engines;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".engine" && name.rfind("model_", 0) == 0) engines.push_back(entry.path());
  }
  if (engines.empty()) {
    throw Error(Error::Kind::NotFound, "no TensorRT engine (model_*.engine) in " + dir.string() +
                                           ": build one on this machine with `facealign export --to trt`");
  }
  if (engines.size() > 1) {
    throw Error(Error::Kind::InvalidArgument, "several TensorRT engines in " + dir.string() + ": choose one");
  }
  return engines.front();
}

// Crops (N, 3, S, S) RGB in [0, 1], as Aligner.landmarks_in_frames builds them.
Tensor crop_batch(const cv::Mat& image, const std::vector<CropFrame>& frames, size_t first, size_t count, int size) {
  Tensor batch;
  batch.shape = {static_cast<int64_t>(count), 3, size, size};
  batch.data.resize(count * 3 * size * size);
  const size_t plane = static_cast<size_t>(size) * size;
  for (size_t n = 0; n < count; ++n) {
    const cv::Mat crop = warp_crop(image, frames[first + n], size);
    float* dst = batch.data.data() + n * 3 * plane;
    for (int y = 0; y < size; ++y) {
      const cv::Vec3b* row = crop.ptr<cv::Vec3b>(y);
      for (int x = 0; x < size; ++x) {
        for (int c = 0; c < 3; ++c) dst[(2 - c) * plane + y * size + x] = row[x][c] / 255.0f;  // BGR -> RGB
      }
    }
  }
  return batch;
}

// The crops mirrored left-right (each row of each plane reversed).
Tensor mirrored(const Tensor& batch) {
  Tensor out = batch;
  const int64_t width = batch.shape.back();
  for (size_t row = 0; row < out.data.size(); row += width) std::reverse(out.data.begin() + row, out.data.begin() + row + width);
  return out;
}

}  // namespace

Tensor Aligner::heatmaps(const Tensor& batch) const {
  Tensor heat = network_->run(batch).at(0);
  if (mirror_.empty()) return heat;
  const Tensor other = network_->run(mirrored(batch)).at(0);
  if (heat.shape.size() != 4 || other.shape != heat.shape || heat.shape[1] != static_cast<int64_t>(mirror_.size())) {
    return heat;  // align() names the unexpected shape
  }
  // as Python's Landmarker.heatmaps: map l of the face is map mirror[l] of the mirrored crop, read right to left
  const int64_t n = heat.shape[0], lm = heat.shape[1], h = heat.shape[2], w = heat.shape[3];
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t l = 0; l < lm; ++l) {
      float* dst = heat.data.data() + ((i * lm + l) * h) * w;
      const float* src = other.data.data() + ((i * lm + mirror_[l]) * h) * w;
      for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) dst[y * w + x] = (dst[y * w + x] + src[y * w + (w - 1 - x)]) / 2;
      }
    }
  }
  return heat;
}

Aligner::Aligner(const AlignerOptions& options) : manifest_(load_manifest(options.model_dir)), batch_size_(options.batch_size) {
  if (batch_size_ < 1) throw Error(Error::Kind::InvalidArgument, "batch_size must be >= 1");
  convention_ = options.convention.empty() ? manifest_.default_convention : options.convention;
  if (convention_ == kNetworkConvention) convention_.clear();
  if (!convention_.empty()) {
    const auto found = manifest_.conventions.find(convention_);
    if (found == manifest_.conventions.end()) {
      std::string have;
      for (const auto& entry : manifest_.conventions) have += (have.empty() ? "" : ", ") + entry.first;
      throw Error(Error::Kind::InvalidArgument, "model " + manifest_.name + " has no annotation convention " +
                                                    convention_ + " (it has: " + (have.empty() ? "none" : have) + ")");
    }
    const auto fitted_for_flip = manifest_.flip_conventions.find(convention_);
    const bool flip_offsets = options.flip && fitted_for_flip != manifest_.flip_conventions.end();
    for (const cv::Point2d& offset : flip_offsets ? fitted_for_flip->second : found->second) {
      crop_offsets_.push_back(offset * manifest_.input_size);
    }
  }
  if (options.flip) {
    mirror_ = mirror_permutation(manifest_.landmark_scheme, manifest_.num_landmarks);
    if (mirror_.empty()) {
      throw Error(Error::Kind::InvalidArgument, "flip needs the mirror order of the landmark scheme " +
                                                    manifest_.landmark_scheme + " (" + std::to_string(manifest_.num_landmarks) +
                                                    " points), which is not known");
    }
    if (!manifest_.mirror_symmetric && !manifest_.flip_conventions.count(convention_)) {
      warnings_.push_back(manifest_.dir.string() + " was trained without mirror augmentation" +
                          (convention_.empty() ? std::string() : " and has no offsets of convention " + convention_ +
                                                                     " fitted for flip averaging (facealign train conventions --flip)") +
                          ": flip averages in the mirrored convention and usually costs accuracy");
    }
  }
  detail::require_backend(options.backend);  // before looking for an engine
  const bool trt = options.backend == BackendKind::TensorRT;
  const std::filesystem::path network =
      trt ? (options.engine.empty() ? find_engine(options.model_dir) : options.engine) : options.model_dir / "model.onnx";
  network_ = open_backend(options.backend, network, options.backend_options);
  if (options.detector) {
    const std::filesystem::path yunet =
        options.detector_model.empty() ? default_detector_model(options.model_dir) : options.detector_model;
    // an engine exists for the landmark network only: with TensorRT the detector runs in ONNX Runtime
    const BackendKind detector_kind = trt ? BackendKind::OnnxRuntime : options.backend;
    detector_ = std::make_unique<YuNetDetector>(open_backend(detector_kind, yunet, options.backend_options));
  }
}

std::vector<Face> Aligner::align(const cv::Mat& image) const {
  if (!detector_) throw Error(Error::Kind::InvalidArgument, "this Aligner has no detector: pass boxes");
  return align(image, detector_->detect(image));
}

std::vector<Face> Aligner::align(const cv::Mat& image, const std::vector<Box>& boxes) const {
  std::vector<Detection> faces;
  for (const Box& b : boxes) faces.push_back({b, 1.0f, {}});
  return align(image, faces);
}

std::vector<Face> Aligner::align(const cv::Mat& image, const std::vector<Detection>& faces) const {
  if (image.empty() || image.type() != CV_8UC3) {
    throw Error(Error::Kind::InvalidArgument, "align needs a non-empty uint8 BGR image (see read_image)");
  }
  const Manifest& m = manifest_;
  std::vector<CropFrame> frames;
  for (const Detection& d : faces) {
    const double roll = m.use_roll && d.keypoints.size() >= 2 ? roll_from_eyes(d.keypoints[0], d.keypoints[1]) : 0.0;
    frames.push_back(frame_from_box(d.box, roll, m.crop_scale, m.center_shift));
  }
  std::vector<Face> out;
  for (size_t first = 0; first < faces.size(); first += batch_size_) {
    const size_t count = std::min(faces.size() - first, static_cast<size_t>(batch_size_));
    const Tensor hm = heatmaps(crop_batch(image, frames, first, count, m.input_size));
    if (hm.shape.size() != 4 || hm.shape[0] != static_cast<int64_t>(count) || hm.shape[1] != m.num_landmarks) {
      throw Error(Error::Kind::Backend, "the network's output is not (N, " + std::to_string(m.num_landmarks) +
                                            ", H, W) heatmaps: does the model match " + (m.dir / "manifest.json").string() + "?");
    }
    const int lm = m.num_landmarks, h = static_cast<int>(hm.shape[2]), w = static_cast<int>(hm.shape[3]);
    for (size_t n = 0; n < count; ++n) {
      const std::vector<Peak> peaks = decode_heatmaps(hm.data.data() + n * lm * h * w, lm, h, w, m.decoder);
      const cv::Matx23d to_image = invert_matrix(crop_matrix(frames[first + n], m.input_size));
      Face face{faces[first + n], {}, {}};
      for (size_t i = 0; i < peaks.size(); ++i) {
        const Peak& p = peaks[i];
        cv::Point2d crop = heatmap_to_crop(p.point, m.heatmap_size, m.input_size);
        if (!crop_offsets_.empty()) crop += crop_offsets_[i];
        face.points.push_back(apply_matrix(to_image, crop));
        face.confidence.push_back(p.confidence);
      }
      out.push_back(std::move(face));
    }
  }
  return out;
}

}  // namespace facealign
