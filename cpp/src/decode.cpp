// Heatmap decoder: the C++ twin of facealign_sdk/decode.py (blur, argmax, soft-argmax on the blurred
// map, confidence from the raw map).
#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "facealign/facealign.hpp"

namespace facealign {
namespace {

// The 1-D Gaussian (sum 1, truncated at 3 sigma) of decode.blur_kernel.
cv::Mat blur_kernel(double sigma) {
  const int radius = std::max(1, static_cast<int>(std::ceil(3 * sigma)));
  std::vector<double> g(2 * radius + 1);
  double total = 0;
  for (int r = -radius; r <= radius; ++r) total += g[r + radius] = std::exp(-(r * r) / (2 * sigma * sigma));
  cv::Mat kernel(1, 2 * radius + 1, CV_32F);
  for (int i = 0; i < kernel.cols; ++i) kernel.at<float>(i) = static_cast<float>(g[i] / total);
  return kernel;
}

// Mass of a window of an ideal target Gaussian (decode._expected_mass).
double expected_mass(int window, double sigma) {
  double sum = 0;
  for (int i = 0; i < window; ++i) {
    const double r = i - window / 2;
    sum += std::exp(-(r * r) / (2 * sigma * sigma));
  }
  return sum * sum;
}

// Index reflected about the border pixel (decode._mirror), then clipped.
int mirror(int i, int n) {
  i = std::abs(i);
  if (i > n - 1) i = 2 * (n - 1) - i;
  return std::clamp(i, 0, n - 1);
}

// Centre of mass of the window around (ix, iy), raised to `power` after scaling by its peak.
cv::Point2d soft_offset(const cv::Mat& map, int ix, int iy, int radius, double power) {
  const int k = 2 * radius + 1;
  std::vector<double> patch(k * k);
  double peak = 1e-12;
  for (int dy = -radius; dy <= radius; ++dy) {
    const float* row = map.ptr<float>(mirror(iy + dy, map.rows));
    for (int dx = -radius; dx <= radius; ++dx) {
      const double v = row[mirror(ix + dx, map.cols)];
      patch[(dy + radius) * k + dx + radius] = v;
      peak = std::max(peak, v);
    }
  }
  double total = 0, sx = 0, sy = 0;
  for (int y = 0; y < k; ++y) {
    for (int x = 0; x < k; ++x) {
      const double w = std::pow(std::max(patch[y * k + x], 0.0) / peak, power);
      total += w;
      sx += w * (x - radius);
      sy += w * (y - radius);
    }
  }
  total = std::max(total, 1e-12);
  return {sx / total, sy / total};
}

// Sum of the window around (ix, iy); outside the map counts as 0.
double window_mass(const cv::Mat& map, int ix, int iy, int radius) {
  double sum = 0;
  for (int y = std::max(0, iy - radius); y <= std::min(map.rows - 1, iy + radius); ++y) {
    const float* row = map.ptr<float>(y);
    for (int x = std::max(0, ix - radius); x <= std::min(map.cols - 1, ix + radius); ++x) sum += row[x];
  }
  return sum;
}

}  // namespace

std::vector<Peak> decode_heatmaps(const float* maps, int count, int height, int width, const DecoderSettings& s) {
  if (count < 0 || height <= 0 || width <= 0 || (count > 0 && maps == nullptr)) {
    throw Error(Error::Kind::InvalidArgument, "decode_heatmaps: need a pointer to count x height x width floats");
  }
  const cv::Mat kernel = s.blur_sigma > 0 ? blur_kernel(s.blur_sigma) : cv::Mat();
  const double norm = expected_mass(s.confidence_window, s.target_sigma);
  std::vector<Peak> peaks(count);
  cv::Mat blurred;
  for (int i = 0; i < count; ++i) {
    const cv::Mat raw(height, width, CV_32F, const_cast<float*>(maps + static_cast<size_t>(i) * height * width));
    if (kernel.empty()) {
      blurred = raw;
    } else {
      cv::sepFilter2D(raw, blurred, CV_32F, kernel, kernel, cv::Point(-1, -1), 0, cv::BORDER_CONSTANT);
    }
    // first maximum in row-major order, as numpy's argmax
    int ix = 0, iy = 0;
    float best = -INFINITY;
    for (int y = 0; y < height; ++y) {
      const float* row = blurred.ptr<float>(y);
      for (int x = 0; x < width; ++x) {
        if (row[x] > best) best = row[x], ix = x, iy = y;
      }
    }
    const cv::Point2d offset = soft_offset(blurred, ix, iy, s.soft_window / 2, s.soft_power);
    const double mass = window_mass(raw, ix, iy, s.confidence_window / 2);
    peaks[i].point = {ix + offset.x, iy + offset.y};
    peaks[i].confidence = static_cast<float>(std::clamp(mass / norm, 0.0, 1.0));
  }
  return peaks;
}

}  // namespace facealign
