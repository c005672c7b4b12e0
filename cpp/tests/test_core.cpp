// Unit tests of the geometry and the decoder (no framework: each check prints what failed).
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
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

// YuNet outputs with chosen anchors set: (level, row, col) -> cls, obj, bbox (4), one keypoint offset.
struct Anchor {
  int level, row, col;
  float cls, obj, bbox[4], kp[2];
};

class FakeYuNet final : public facealign::Backend {
 public:
  explicit FakeYuNet(std::vector<Anchor> anchors) : anchors_(std::move(anchors)) {}
  std::string name() const override { return "fake"; }
  std::vector<facealign::Tensor> run(const facealign::Tensor& input, const std::vector<std::string>& names) override {
    const int strides[3] = {8, 16, 32}, widths[4] = {1, 1, 4, 10};
    std::vector<facealign::Tensor> out;
    for (size_t k = 0; k < names.size(); ++k) {  // names: cls_8..32, obj_8..32, bbox_8..32, kps_8..32
      const int level = static_cast<int>(k % 3), kind = static_cast<int>(k / 3), w = widths[kind];
      const int64_t rows = input.shape[2] / strides[level], cols = input.shape[3] / strides[level];
      facealign::Tensor t{{1, rows * cols, w}, std::vector<float>(rows * cols * w, 0.0f)};
      for (const Anchor& a : anchors_) {
        if (a.level != level) continue;
        float* v = t.data.data() + (a.row * cols + a.col) * w;
        if (kind == 0) v[0] = a.cls;
        if (kind == 1) v[0] = a.obj;
        if (kind == 2) std::copy(a.bbox, a.bbox + 4, v);
        if (kind == 3) for (int i = 0; i < 10; ++i) v[i] = a.kp[i % 2];
      }
      out.push_back(std::move(t));
    }
    return out;
  }

 private:
  std::vector<Anchor> anchors_;
};

void test_yunet_postprocessing() {
  // (as cv::FaceDetectorYN decodes) stride 8, row 10, col 20, bbox (0.5, 0.25, ln 4, ln 2):
  // centre (164, 82), size 32 x 16 -> box (148, 74, 180, 90); keypoints ((20 + 1) * 8, (10 + 2) * 8).
  const float ln4 = std::log(4.0f), ln2 = std::log(2.0f);
  std::vector<Anchor> anchors = {
      {0, 10, 20, 0.81f, 1.0f, {0.5f, 0.25f, ln4, ln2}, {1, 2}},  // score 0.9
      {0, 10, 21, 0.49f, 1.0f, {0.5f, 0.25f, ln4, ln2}, {0, 0}},  // score 0.7, IoU 0.6 with the first: suppressed
      {2, 2, 2, 0.4225f, 1.0f, {0.5f, 0.5f, 0.0f, 0.0f}, {0, 0}},  // score 0.65, stride 32, far away: kept
      {1, 5, 5, 0.3f, 1.0f, {0.5f, 0.5f, 0.0f, 0.0f}, {0, 0}},     // score 0.55: below the threshold
  };
  const facealign::YuNetDetector detector(std::make_unique<FakeYuNet>(anchors));
  const cv::Mat image(320, 320, CV_8UC3, cv::Scalar::all(0));  // 320: not resized
  const std::vector<facealign::Detection> faces = detector.detect(image);
  check(faces.size() == 2, "detections after NMS and threshold", static_cast<double>(faces.size()), 2);
  if (faces.size() != 2) return;
  near(faces[0].score, 0.9, 1e-6, "best score first");
  near(faces[0].box.x1, 148, 1e-4, "box x1");
  near(faces[0].box.y1, 74, 1e-4, "box y1");
  near(faces[0].box.x2, 180, 1e-4, "box x2");
  near(faces[0].box.y2, 90, 1e-4, "box y2");
  near(faces[0].keypoints.at(0).x, 168, 1e-4, "keypoint x");
  near(faces[0].keypoints.at(0).y, 96, 1e-4, "keypoint y");
  near(faces[1].score, 0.65, 1e-6, "second face");
  near(faces[1].box.x1, (2 + 0.5) * 32 - 16, 1e-4, "second box x1");
  // a 640 x 1280 image is halved for the network: boxes come back in its pixels
  const cv::Mat large(640, 1280, CV_8UC3, cv::Scalar::all(0));
  near(detector.detect(large).at(0).box.x2, 2 * 180, 1e-3, "box mapped back to the original image");
}

void test_mirror_permutation() {
  // mirroring twice gives the face back; the nose bridge stays; the outer eye corners swap
  const std::vector<int> order = facealign::mirror_permutation("ibug68", 68);
  check(order.size() == 68, "ibug68 mirror order has 68 points", static_cast<double>(order.size()), 68);
  if (order.size() != 68) return;
  int involution = 0;
  for (int i = 0; i < 68; ++i) involution += order.at(order.at(i)) == i;
  check(involution == 68, "mirror order is an involution", involution, 68);
  check(order[27] == 27 && order[36] == 45 && order[0] == 16, "mirror order pairs", order[36], 45);
  check(facealign::mirror_permutation("ibug68", 98).empty(), "unknown scheme: no mirror order", 0, 0);
}

}  // namespace

int main() {
  test_geometry();
  test_mirror_permutation();
  test_decoder();
  test_yunet_postprocessing();
  if (failures) return 1;
  std::printf("all unit tests passed\n");
  return 0;
}
