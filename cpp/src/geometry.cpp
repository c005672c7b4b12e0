// Crop geometry: the C++ twin of facealign_sdk/geometry.py (same formulas, same conventions).
#include <cmath>
#include <string>

#include <opencv2/imgproc.hpp>

#include "facealign/facealign.hpp"

namespace facealign {

cv::Matx23d crop_matrix(const CropFrame& frame, int crop_size) {
  if (!(frame.side > 0)) {
    throw Error(Error::Kind::InvalidArgument, "crop side must be positive, got " + std::to_string(frame.side));
  }
  const double scale = crop_size / frame.side;
  const double c = std::cos(frame.roll) * scale, s = std::sin(frame.roll) * scale;
  const double half = (crop_size - 1) / 2.0;
  // rotate by -roll so that a rolled face comes out upright
  return {c, s, half - (c * frame.center_x + s * frame.center_y),
          -s, c, half - (-s * frame.center_x + c * frame.center_y)};
}

cv::Matx23d invert_matrix(const cv::Matx23d& m) {
  // multiplied by the reciprocal determinant, as cv::invertAffineTransform (and so cv::warpAffine), so
  // that warp_crop samples where OpenCV does to the last bit
  double det = m(0, 0) * m(1, 1) - m(0, 1) * m(1, 0);
  if (det == 0.0) throw Error(Error::Kind::InvalidArgument, "singular affine matrix");
  det = 1.0 / det;
  const double a = m(1, 1) * det, b = -m(0, 1) * det, c = -m(1, 0) * det, d = m(0, 0) * det;
  return {a, b, -a * m(0, 2) - b * m(1, 2), c, d, -c * m(0, 2) - d * m(1, 2)};
}

cv::Point2d apply_matrix(const cv::Matx23d& m, const cv::Point2d& p) {
  return {m(0, 0) * p.x + m(0, 1) * p.y + m(0, 2), m(1, 0) * p.x + m(1, 1) * p.y + m(1, 2)};
}

CropFrame frame_from_box(const Box& box, double roll, double crop_scale, double center_shift) {
  const double w = box.x2 - box.x1, h = box.y2 - box.y1;
  const bool finite = std::isfinite(box.x1) && std::isfinite(box.y1) && std::isfinite(box.x2) && std::isfinite(box.y2);
  if (!(w > 0 && h > 0) || !finite) {
    throw Error(Error::Kind::InvalidArgument,
                "invalid face box (" + std::to_string(box.x1) + ", " + std::to_string(box.y1) + ", " +
                    std::to_string(box.x2) + ", " + std::to_string(box.y2) + "): need x2 > x1 and y2 > y1");
  }
  const double size = std::sqrt(w * h);
  return {(box.x1 + box.x2) / 2.0 - std::sin(roll) * center_shift * size,
          (box.y1 + box.y2) / 2.0 + std::cos(roll) * center_shift * size, size * crop_scale, roll};
}

double roll_from_eyes(const cv::Point2d& right_eye, const cv::Point2d& left_eye) {
  return std::atan2(left_eye.y - right_eye.y, left_eye.x - right_eye.x);
}

cv::Point2d heatmap_to_crop(const cv::Point2d& p, int heatmap_size, int crop_size) {
  const double scale = static_cast<double>(crop_size) / heatmap_size;
  return {(p.x + 0.5) * scale - 0.5, (p.y + 0.5) * scale - 0.5};
}

cv::Mat warp_crop(const cv::Mat& image, const CropFrame& frame, int crop_size) {
  // Bilinear sampling written out rather than cv::warpAffine: OpenCV's Python wheel (>= 4.11) samples
  // at (nearly) exact coordinates, older releases (Debian 12 links 4.6) at coordinates rounded to 1/32 px,
  // which moved landmarks by up to 0.08 px. Sampling in double precision and rounding half to even gives
  // the wheel's crop to the bit but for ~1 value in 10^5 (those within 1e-4 of a .5).
  if (image.type() != CV_8UC3) throw Error(Error::Kind::InvalidArgument, "warp_crop needs a uint8 BGR image");
  const cv::Matx23d m = invert_matrix(crop_matrix(frame, crop_size));
  cv::Mat crop(crop_size, crop_size, CV_8UC3);
  const cv::Vec3b black(0, 0, 0);
  auto pixel = [&](int x, int y) -> const cv::Vec3b& {  // black outside the image
    return x >= 0 && y >= 0 && x < image.cols && y < image.rows ? image.ptr<cv::Vec3b>(y)[x] : black;
  };
  for (int y = 0; y < crop_size; ++y) {
    cv::Vec3b* out = crop.ptr<cv::Vec3b>(y);
    for (int x = 0; x < crop_size; ++x) {
      const double sx = m(0, 0) * x + m(0, 1) * y + m(0, 2), sy = m(1, 0) * x + m(1, 1) * y + m(1, 2);
      const int ix = static_cast<int>(std::floor(sx)), iy = static_cast<int>(std::floor(sy));
      const double ax = sx - ix, ay = sy - iy;
      const cv::Vec3b &p00 = pixel(ix, iy), &p01 = pixel(ix + 1, iy), &p10 = pixel(ix, iy + 1), &p11 = pixel(ix + 1, iy + 1);
      for (int c = 0; c < 3; ++c) {
        const double top = (1 - ax) * p00[c] + ax * p01[c], bottom = (1 - ax) * p10[c] + ax * p11[c];
        out[x][c] = cv::saturate_cast<uchar>(std::nearbyint((1 - ay) * top + ay * bottom));
      }
    }
  }
  return crop;
}

}  // namespace facealign
