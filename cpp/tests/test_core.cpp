// Unit tests of the geometry and the decoder (no framework: each check prints what failed).
#include <cmath>
#include <cstdio>
#include <vector>

#include "facealign/facealign.hpp"

namespace {

int failures = 0;

void check(bool ok, const char* what, double got, double want) {
  if (!ok) {
    std::printf("FAIL %s: got %.6f, want %.6f\n", what, got, want);
    ++failures;
  }
}

void near(double got, double want, double tol, const char* what) { check(std::fabs(got - want) <= tol, what, got, want); }

// A target-like Gaussian (peak 1) centred at (cx, cy) on an h x w map.
std::vector<float> gaussian(int h, int w, double cx, double cy, double sigma) {
  std::vector<float> map(h * w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      map[y * w + x] = static_cast<float>(std::exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * sigma * sigma)));
  return map;
}

void test_geometry() {
  using namespace facealign;
  const CropFrame f = frame_from_box({10, 20, 110, 120}, 0.0, 1.4, 0.15);
  near(f.center_x, 60, 1e-12, "frame centre x");
  near(f.center_y, 85, 1e-12, "frame centre y (shifted 0.15 box sizes down)");
  near(f.side, 140, 1e-12, "frame side");
  const CropFrame rolled{50, 60, 100, 0.3};
  const cv::Matx23d m = crop_matrix(rolled, 256);
  const cv::Point2d centre = apply_matrix(m, {50, 60});
  near(centre.x, 127.5, 1e-9, "frame centre -> crop centre x");
  near(centre.y, 127.5, 1e-9, "frame centre -> crop centre y");
  const cv::Point2d p = apply_matrix(invert_matrix(m), apply_matrix(m, {13.25, -7.5}));
  near(p.x, 13.25, 1e-9, "inverse round trip x");
  near(p.y, -7.5, 1e-9, "inverse round trip y");
  near(roll_from_eyes({0, 0}, {1, 1}), M_PI / 4, 1e-12, "roll from eyes");
  const cv::Point2d c = heatmap_to_crop({0, 63.5}, 128, 256);
  near(c.x, 0.5, 1e-12, "heatmap -> crop x");
  near(c.y, 127.5, 1e-12, "heatmap -> crop y");
  // bilinear sampling is exact on a linear ramp: pixel (x, y) = 40 x + 10 y + 5
  cv::Mat ramp(4, 4, CV_8UC3);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) ramp.at<cv::Vec3b>(y, x) = cv::Vec3b::all(static_cast<uchar>(40 * x + 10 * y + 5));
  const cv::Mat crop = warp_crop(ramp, {1.5, 1.5, 2.0, 0.0}, 4);  // crop pixel c -> image (c - 1.5) / 2 + 1.5
  near(crop.at<cv::Vec3b>(1, 2)[0], std::nearbyint(40 * 1.75 + 10 * 1.25 + 5), 0, "bilinear sample");
  near(crop.at<cv::Vec3b>(0, 3)[1], std::nearbyint(40 * 2.25 + 10 * 0.75 + 5), 0, "bilinear sample");
  near(warp_crop(ramp, {10.0, 10.0, 2.0, 0.0}, 4).at<cv::Vec3b>(2, 2)[2], 0, 0, "black outside the image");
  bool threw = false;
  try {
    frame_from_box({5, 5, 5, 10}, 0, 1.4, 0.15);
  } catch (const Error& e) {
    threw = e.kind() == Error::Kind::InvalidArgument;
  }
  check(threw, "empty box rejected", threw, 1);
}

void test_decoder() {
  // centre -> what facealign_sdk.decode.decode_heatmaps(refine="soft") returns for it (Python, float64
  // printout): nearly unbiased inside; at a border the blurred peak is pulled inwards, in both.
  const double cases[][5] = {{40.3, 70.6, 40.29990845, 70.60012976, 0.99276006},
                             {64.0, 64.0, 64.0, 64.0, 1.0},
                             {100.45, 12.8, 100.44984895, 12.80006214, 0.99297625},
                             {1.2, 126.6, 0.32685863, 126.94821677, 0.7046203}};
  for (const auto& c : cases) {
    const std::vector<float> map = gaussian(128, 128, c[0], c[1], 3.5);
    const facealign::Peak p = facealign::decode_heatmaps(map.data(), 1, 128, 128).at(0);
    near(p.point.x, c[2], 1e-4, "decoded x");
    near(p.point.y, c[3], 1e-4, "decoded y");
    near(p.confidence, c[4], 1e-5, "confidence");
  }
  const std::vector<float> flat(128 * 128, 0.0f);
  near(facealign::decode_heatmaps(flat.data(), 1, 128, 128).at(0).confidence, 0.0, 0.0, "confidence of an empty map");
}

}  // namespace

int main() {
  test_geometry();
  test_decoder();
  if (failures) return 1;
  std::printf("all unit tests passed\n");
  return 0;
}
