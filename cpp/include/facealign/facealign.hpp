// facealign C++ API: face detector (YuNet) -> square crop -> heatmap network -> decoded landmarks.
//
// The same pipeline as the Python SDK's `Aligner` with its defaults (soft-argmax refinement on the
// blurred heatmaps): crop geometry as in facealign_sdk/geometry.py, decoder as in
// facealign_sdk/decode.py, settings read from the model folder's manifest.json. Networks run through one
// `Backend` interface: ONNX Runtime, OpenVINO or a TensorRT engine (what was compiled in: see
// `available_backends`).
//
//   facealign::Aligner aligner({"models/fabrec-scaf-w32", facealign::BackendKind::OnnxRuntime});
//   for (const facealign::Face& face : aligner.align(facealign::read_image("face.jpg")))
//     use(face.points);  // 68 points, image pixels (pixel centres, 0-based)
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace facealign {

/// Every error of the library; the message names the file or value and what to do about it.
class Error : public std::runtime_error {
 public:
  enum class Kind {
    InvalidArgument,  ///< a bad value passed by the caller
    NotFound,         ///< a missing or unreadable image, model, engine or runtime library
    Backend,          ///< an inference runtime that cannot load or run a model
    Incompatible,     ///< a TensorRT engine built for another GPU, TensorRT version or model
  };
  Error(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const noexcept { return kind_; }

 private:
  Kind kind_;
};

// ---------------------------------------------------------------------------------------------
// Geometry (facealign_sdk/geometry.py). Points are (x, y) pixel centres, 0-based, as cv::warpAffine.

/// A face box (x1, y1, x2, y2) in image pixels.
struct Box {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

/// A square window of an image: centre, side in image pixels, roll (radians, counter-clockwise).
struct CropFrame {
  double center_x = 0, center_y = 0, side = 0, roll = 0;
};

/// Similarity transform taking image pixels into a `crop_size` square crop of `frame`.
cv::Matx23d crop_matrix(const CropFrame& frame, int crop_size);
/// Exact inverse of a 2x3 affine matrix.
cv::Matx23d invert_matrix(const cv::Matx23d& matrix);
/// `matrix` applied to one point.
cv::Point2d apply_matrix(const cv::Matx23d& matrix, const cv::Point2d& point);
/// Crop window of a detector box: side `crop_scale` * sqrt(w h), centre `center_shift` box sizes below
/// the box centre (rotated with the roll).
CropFrame frame_from_box(const Box& box, double roll, double crop_scale, double center_shift);
/// Face roll (radians) from the two eye centres (image-left eye first).
double roll_from_eyes(const cv::Point2d& right_eye, const cv::Point2d& left_eye);
/// Heatmap pixel -> crop pixel (pixel-centre convention).
cv::Point2d heatmap_to_crop(const cv::Point2d& point, int heatmap_size, int crop_size);
/// `frame` cut out of `image` as a `crop_size` square (bilinear, black border).
cv::Mat warp_crop(const cv::Mat& image, const CropFrame& frame, int crop_size);

// ---------------------------------------------------------------------------------------------
// Decoder (facealign_sdk/decode.py with refine="soft", blur on: the Python Aligner's defaults).

struct DecoderSettings {
  double blur_sigma = 3.5;     ///< peaks are sought on maps blurred with this Gaussian (0: not blurred)
  int soft_window = 15;        ///< soft-argmax window around the peak (blurred maps, mirrored at borders)
  double soft_power = 8.0;     ///< the window is raised to this power before its centre of mass
  int confidence_window = 7;   ///< confidence: mass of the raw map in this window ...
  double target_sigma = 3.5;   ///< ... over that of a target Gaussian of this sigma (this map's pixels), clipped to [0, 1]
};

struct Peak {
  cv::Point2d point;  ///< heatmap pixels
  float confidence = 0;
};

/// Decode `count` row-major maps of `height` x `width` floats, one peak each.
std::vector<Peak> decode_heatmaps(const float* maps, int count, int height, int width,
                                  const DecoderSettings& settings = {});

// ---------------------------------------------------------------------------------------------
// Model folder.

/// What the runtime needs from a model folder's manifest.json.
/// AlignerOptions::convention naming the network's own points (no convention's offsets), as in Python.
inline const std::string kNetworkConvention = "none";

struct Manifest {
  std::filesystem::path dir;
  std::string name;
  int num_landmarks = 0;
  int input_size = 0;
  int heatmap_size = 0;
  double crop_scale = 0;
  double center_shift = 0;
  bool use_roll = false;
  DecoderSettings decoder;  ///< the manifest's "codec" section (facealign_sdk/codec.py); defaults when absent
  /// annotation conventions by name: per landmark the offset added to the network's point, in fractions of
  /// the crop side (facealign_sdk/training/conventions.py); empty in a manifest without them
  std::map<std::string, std::vector<cv::Point2d>> conventions;
  std::string default_convention;  ///< applied unless AlignerOptions::convention names another; empty: none
  /// the same conventions for flip averaging (AlignerOptions::flip): offsets fitted on flip-averaged points
  std::map<std::string, std::vector<cv::Point2d>> flip_conventions;
  bool mirror_symmetric = true;           ///< trained with mirror augmentation
  std::string landmark_scheme = "ibug68"; ///< the point order (mirror_permutation)
};

/// The landmark order of a horizontally mirrored face (facealign_sdk/schemes.py): point i of the mirrored face
/// is point result[i] of the face; empty for a scheme whose mirror order is not known.
std::vector<int> mirror_permutation(const std::string& scheme, int num_landmarks);

/// Read `model_dir`/manifest.json; Error(NotFound / InvalidArgument) when missing or incomplete.
Manifest load_manifest(const std::filesystem::path& model_dir);

// ---------------------------------------------------------------------------------------------
// Inference backends.

/// A dense float32 tensor.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

enum class BackendKind { OnnxRuntime, OpenVINO, TensorRT };

/// "ort", "openvino" or "tensorrt" -> kind; Error(InvalidArgument) otherwise.
BackendKind parse_backend(const std::string& name);
/// The command-line name of a kind ("ort", "openvino", "tensorrt").
std::string backend_name(BackendKind kind);
/// The kinds compiled into this build.
std::vector<BackendKind> available_backends();

struct BackendOptions {
  int threads = 0;             ///< CPU threads (0: the runtime's default)
  std::string device = "auto"; ///< ONNX Runtime: "auto", "cpu", "cuda" or "tensorrt" (execution providers)
};

/// One network loaded in one inference runtime.
class Backend {
 public:
  virtual ~Backend() = default;
  /// e.g. "ort:CPUExecutionProvider", "openvino:CPU", "tensorrt".
  virtual std::string name() const = 0;
  /// Run on one input; returns the named outputs in that order (all outputs when `outputs` is empty).
  virtual std::vector<Tensor> run(const Tensor& input, const std::vector<std::string>& outputs = {}) = 0;
};

/// Load `model_file` (ONNX for ort / openvino, a serialized engine for tensorrt).
std::unique_ptr<Backend> open_backend(BackendKind kind, const std::filesystem::path& model_file,
                                      const BackendOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Face detection.

struct Detection {
  Box box;
  float score = 1.0f;
  std::vector<cv::Point2d> keypoints;  ///< none, or 5: image-left eye, image-right eye, nose, mouth corners
};

struct YuNetSettings {
  float score_threshold = 0.6f;
  float nms_threshold = 0.3f;
  int top_k = 5000;
  int max_side = 640;  ///< images are resized so that their longer side lies in [min_side, max_side]
  int min_side = 320;
};

/// YuNet (2023) on any backend, with the post-processing of OpenCV's FaceDetectorYN.
class YuNetDetector {
 public:
  YuNetDetector(std::unique_ptr<Backend> network, const YuNetSettings& settings = {});
  /// Faces in a uint8 BGR image, best score first.
  std::vector<Detection> detect(const cv::Mat& image) const;

 private:
  std::unique_ptr<Backend> network_;
  YuNetSettings settings_;
};

/// The float YuNet shipped beside a model folder: <models>/yunet/face_detection_yunet_2023mar_float.onnx.
std::filesystem::path default_detector_model(const std::filesystem::path& model_dir);

// ---------------------------------------------------------------------------------------------
// The pipeline.

struct Face {
  Detection detection;
  std::vector<cv::Point2d> points;  ///< image pixels
  std::vector<float> confidence;    ///< per landmark, [0, 1]
};

struct AlignerOptions {
  std::filesystem::path model_dir;                    ///< folder with manifest.json and model.onnx
  BackendKind backend = BackendKind::OnnxRuntime;
  BackendOptions backend_options;
  std::filesystem::path engine;     ///< tensorrt: the engine (empty: the folder's only model_*.engine)
  bool detector = true;             ///< false: always pass boxes
  std::filesystem::path detector_model;  ///< empty: default_detector_model(model_dir)
  int batch_size = 32;              ///< crops per network run
  std::string convention;           ///< annotation convention (manifest "conventions"), "none" (the network's
                                    ///< own points) or empty (the manifest's default_convention)
  bool flip = false;                ///< also run the mirrored crop and average the heatmaps (twice the network
                                    ///< time); the convention's offsets fitted for it (flip_conventions) apply
};

/// The pipeline of the Python `Aligner` (soft refinement, blur on). Not thread-safe (an OpenVINO infer
/// request or a TensorRT context serves one run at a time): use one Aligner per thread.
class Aligner {
 public:
  explicit Aligner(const AlignerOptions& options);
  /// Landmarks of every face the detector finds (empty when there is none).
  std::vector<Face> align(const cv::Mat& image) const;
  /// Landmarks for given detections (a box and, for the crop's roll, optional eye keypoints).
  std::vector<Face> align(const cv::Mat& image, const std::vector<Detection>& faces) const;
  /// Landmarks for given boxes (no roll), as Python's `Aligner.align(image, boxes=...)`.
  std::vector<Face> align(const cv::Mat& image, const std::vector<Box>& boxes) const;

  const Manifest& manifest() const { return manifest_; }
  std::string backend_name() const { return network_->name(); }
  /// The annotation convention the points follow (empty: the network's own points).
  const std::string& convention() const { return convention_; }
  /// What the Python Aligner logs as warnings for these options (e.g. flip on a model without offsets fitted
  /// for it); empty when none.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  /// The network's heatmaps for a batch of crops, averaged with the mirrored crops' when flipping.
  Tensor heatmaps(const Tensor& batch) const;

  Manifest manifest_;
  std::unique_ptr<Backend> network_;
  std::unique_ptr<YuNetDetector> detector_;
  int batch_size_;
  std::string convention_;
  std::vector<cv::Point2d> crop_offsets_;  ///< the convention's offsets in crop pixels (empty: none)
  std::vector<int> mirror_;                ///< flip: the mirrored face's point order (empty: no flip)
  std::vector<std::string> warnings_;
};

/// Read an image file as uint8 BGR (greyscale, alpha and 16-bit are converted); Error(NotFound) when
/// the file is missing or not an image.
cv::Mat read_image(const std::filesystem::path& path);

}  // namespace facealign
