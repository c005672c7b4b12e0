// Model folder: manifest.json (written by facealign_sdk.training.release) and image files.
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "facealign/facealign.hpp"

namespace facealign {
namespace {

// A manifest's offsets by convention name (`section`: "conventions" or "flip_conventions"), checked as the
// Python Manifest checks them.
std::map<std::string, std::vector<cv::Point2d>> read_conventions(const nlohmann::json& j, const std::string& section,
                                                                 const std::filesystem::path& path) {
  std::map<std::string, std::vector<cv::Point2d>> result;
  const std::string what = section == "conventions" ? "convention " : "flip convention ";
  const nlohmann::json conventions = j.value(section, nlohmann::json::object());  // items() must not outlive it
  for (const auto& [name, offsets] : conventions.items()) {
    if (name == kNetworkConvention) {
      throw Error(Error::Kind::InvalidArgument, path.string() + ": convention name none is reserved for the network's points");
    }
    std::vector<cv::Point2d>& out = result[name];
    for (const auto& xy : offsets) {
      // a (dx, dy) pair, each within half the crop side
      if (!xy.is_array() || xy.size() != 2) {
        throw Error(Error::Kind::InvalidArgument, path.string() + ": " + what + name + ": offsets are (dx, dy) pairs");
      }
      const cv::Point2d offset(xy.at(0).get<double>(), xy.at(1).get<double>());
      if (!(std::abs(offset.x) <= 0.5 && std::abs(offset.y) <= 0.5)) {
        throw Error(Error::Kind::InvalidArgument, path.string() + ": " + what + name +
                                                      ": a convention moves points by less than half of the crop side");
      }
      out.push_back(offset);
    }
    if (static_cast<int>(out.size()) != j.at("num_landmarks").get<int>()) {
      throw Error(Error::Kind::InvalidArgument, path.string() + ": " + what + name + " needs one offset per landmark");
    }
  }
  return result;
}

}  // namespace

std::vector<int> mirror_permutation(const std::string& scheme, int num_landmarks) {
  if (scheme != "ibug68" || num_landmarks != 68) return {};
  std::vector<int> order;
  for (int i = 16; i >= 0; --i) order.push_back(i);   // jaw
  for (int i = 26; i >= 17; --i) order.push_back(i);  // brows
  for (int i : {27, 28, 29, 30, 35, 34, 33, 32, 31, 45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,  // nose, eyes
                54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65}) {  // lips
    order.push_back(i);
  }
  return order;
}

Manifest load_manifest(const std::filesystem::path& model_dir) {
  const std::filesystem::path path = model_dir / "manifest.json";
  if (!std::filesystem::is_directory(model_dir)) {
    throw Error(Error::Kind::NotFound, model_dir.string() + ": no such model folder");
  }
  std::ifstream in(path);
  if (!in) throw Error(Error::Kind::NotFound, path.string() + ": no manifest (is this a model folder?)");
  nlohmann::json j;
  try {
    in >> j;
    Manifest m;
    m.dir = model_dir;
    m.name = j.value("name", model_dir.filename().string());
    m.num_landmarks = j.at("num_landmarks").get<int>();
    m.input_size = j.at("input_size").get<int>();
    m.heatmap_size = j.at("heatmap_size").get<int>();
    const auto& crop = j.at("crop");
    m.crop_scale = crop.at("crop_scale").get<double>();
    m.center_shift = crop.at("center_shift").get<double>();
    m.use_roll = crop.value("use_roll", false);
    if (j.contains("codec")) {  // facealign_sdk.codec.CodecSpec; a manifest without it has the defaults
      const auto& codec = j.at("codec");
      m.decoder.target_sigma = codec.value("sigma", m.decoder.target_sigma);
      m.decoder.blur_sigma = codec.value("blur_sigma", m.decoder.blur_sigma);
      m.decoder.soft_window = codec.value("soft_window", m.decoder.soft_window);
      m.decoder.soft_power = codec.value("soft_power", m.decoder.soft_power);
      m.decoder.confidence_window = codec.value("confidence_window", m.decoder.confidence_window);
    }
    m.conventions = read_conventions(j, "conventions", path);
    m.flip_conventions = read_conventions(j, "flip_conventions", path);
    for (const auto& entry : m.flip_conventions) {
      if (!m.conventions.count(entry.first)) {
        throw Error(Error::Kind::InvalidArgument, path.string() + ": flip convention " + entry.first +
                                                      " is not one of its conventions");
      }
    }
    m.mirror_symmetric = j.value("mirror_symmetric", true);
    m.landmark_scheme = j.value("landmark_scheme", m.landmark_scheme);
    if (j.contains("default_convention") && !j.at("default_convention").is_null()) {
      m.default_convention = j.at("default_convention").get<std::string>();
      if (!m.conventions.count(m.default_convention)) {
        throw Error(Error::Kind::InvalidArgument, path.string() + ": default_convention " + m.default_convention +
                                                      " is not one of its conventions");
      }
    }
    if (m.num_landmarks <= 0 || m.input_size <= 0 || m.heatmap_size <= 0 || !(m.crop_scale > 0)) {
      throw Error(Error::Kind::InvalidArgument, path.string() + ": sizes and crop_scale must be positive");
    }
    // codec.sigma is given for a 128-px map; the targets (and so the confidence's reference) scale with the map
    m.decoder.target_sigma *= m.heatmap_size / 128.0;
    return m;
  } catch (const nlohmann::json::exception& e) {
    throw Error(Error::Kind::InvalidArgument, path.string() + ": invalid manifest (" + e.what() + ")");
  }
}

cv::Mat read_image(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw Error(Error::Kind::NotFound, path.string() + ": no such file");
  if (!std::filesystem::is_regular_file(path)) throw Error(Error::Kind::NotFound, path.string() + ": not a file");
  cv::Mat image = cv::imread(path.string(), cv::IMREAD_UNCHANGED);
  if (image.empty()) throw Error(Error::Kind::NotFound, path.string() + ": not a readable image");
  // the conversions of facealign_sdk.imageio.to_bgr8
  if (image.depth() == CV_16U) {
    image.convertTo(image, CV_8U, 1.0 / 257.0);
  } else if (image.depth() != CV_8U) {
    throw Error(Error::Kind::InvalidArgument, path.string() + ": unsupported pixel type (need 8 or 16 bit)");
  }
  if (image.channels() == 1) cv::cvtColor(image, image, cv::COLOR_GRAY2BGR);
  else if (image.channels() == 4) cv::cvtColor(image, image, cv::COLOR_BGRA2BGR);
  else if (image.channels() != 3) throw Error(Error::Kind::InvalidArgument, path.string() + ": expected 1, 3 or 4 channels");
  return image;
}

}  // namespace facealign
