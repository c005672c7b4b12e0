// facealign-cpp: landmarks for one image with the facealign C++ library.
//
//   facealign-cpp IMAGE [--model DIR] [--backend ort|openvino|tensorrt] [--box x1,y1,x2,y2] [--json]
//                       [--engine FILE] [--device auto|cpu|cuda|tensorrt] [--threads N] [--draw OUT.png]
//                       [--repeat N] [--convention NAME] [--flip]
//
// Exit codes as the Python CLI: 0 ok, 2 bad input (every facealign::Error: a missing image, model or
// engine, an engine built for another GPU, a runtime that cannot load the model, a bad option), 1 any
// other failure.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "facealign/facealign.hpp"

namespace {

constexpr int kExitFailure = 1, kExitBadInput = 2;

struct Args {
  std::string image;
  facealign::AlignerOptions options;
  std::vector<facealign::Box> boxes;
  bool json = false;
  std::string draw;
  int repeat = 0;
};

std::string usage() {
  std::string backends;
  for (auto k : facealign::available_backends()) backends += (backends.empty() ? "" : "|") + facealign::backend_name(k);
  return "usage: facealign-cpp IMAGE [--model DIR] [--backend " + backends +
         "] [--box x1,y1,x2,y2] [--json] [--engine FILE]\n"
         "                     [--device auto|cpu|cuda|tensorrt] [--threads N] [--draw OUT.png] [--repeat N]\n"
         "                     [--convention NAME] [--flip]\n"
         "  --box may be repeated; without it the YuNet detector finds the faces.\n"
         "  --device: ONNX Runtime's execution providers (cuda / tensorrt need onnxruntime-gpu).\n"
         "  --repeat N: align N more times and print the mean time per face (a benchmark).\n"
         "  --convention: the annotation convention of the points (the model's manifest lists them).\n"
         "  --flip: also run the mirrored crop and average (twice the network time).\n";
}

facealign::Box parse_box(const std::string& text) {
  std::istringstream in(text);
  double v[4];
  char comma;
  if (!(in >> v[0] >> comma >> v[1] >> comma >> v[2] >> comma >> v[3]) || !in.eof()) {
    // eof check: "1,2,3,4,5" is as wrong as "1,2,3"
    throw facealign::Error(facealign::Error::Kind::InvalidArgument, "--box must be x1,y1,x2,y2; got '" + text + "'");
  }
  return {v[0], v[1], v[2], v[3]};
}

int parse_int(const std::string& option, const std::string& text) {
  try {
    size_t used = 0;
    const int value = std::stoi(text, &used);
    if (used == text.size() && value >= 0) return value;
  } catch (const std::exception&) {
  }
  throw facealign::Error(facealign::Error::Kind::InvalidArgument, option + " needs a non-negative integer, got '" + text + "'");
}

// --convention "" is bad input, as in Python (no model has a convention of that name); AlignerOptions::convention
// would read "" as the manifest's default
std::string convention_name(const std::string& text) {
  if (text.empty()) {
    throw facealign::Error(facealign::Error::Kind::InvalidArgument, "--convention needs a convention name or none, got ''");
  }
  return text;
}

Args parse(int argc, char** argv) {
  Args a;
  a.options.model_dir = std::filesystem::is_directory(FACEALIGN_SOURCE_MODEL_DIR) ? FACEALIGN_SOURCE_MODEL_DIR
                                                                                  : FACEALIGN_INSTALLED_MODEL_DIR;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw facealign::Error(facealign::Error::Kind::InvalidArgument, std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--model") a.options.model_dir = value(i);
    else if (arg == "--backend") a.options.backend = facealign::parse_backend(value(i));
    else if (arg == "--box") a.boxes.push_back(parse_box(value(i)));
    else if (arg == "--json") a.json = true;
    else if (arg == "--engine") a.options.engine = value(i);
    else if (arg == "--device") a.options.backend_options.device = value(i);
    else if (arg == "--threads") a.options.backend_options.threads = parse_int(arg, value(i));
    else if (arg == "--draw") a.draw = value(i);
    else if (arg == "--repeat") a.repeat = parse_int(arg, value(i));
    else if (arg == "--convention") a.options.convention = convention_name(value(i));
    else if (arg == "--flip") a.options.flip = true;
    else if (!arg.empty() && arg[0] == '-') throw facealign::Error(facealign::Error::Kind::InvalidArgument, "unknown option " + arg);
    else if (a.image.empty()) a.image = arg;
    else throw facealign::Error(facealign::Error::Kind::InvalidArgument, "one image only, got '" + a.image + "' and '" + arg + "'");
  }
  if (a.image.empty()) throw facealign::Error(facealign::Error::Kind::InvalidArgument, "no image given");
  a.options.detector = a.boxes.empty();
  return a;
}

// as facealign image's JSON: "convention" null for the network's own points
void print_json(const std::vector<facealign::Face>& faces, const std::string& convention) {
  nlohmann::json out = {{"convention", convention.empty() ? nlohmann::json(nullptr) : nlohmann::json(convention)},
                        {"faces", nlohmann::json::array()}};
  for (const auto& f : faces) {
    const auto& b = f.detection.box;
    nlohmann::json points = nlohmann::json::array();
    for (const auto& p : f.points) points.push_back({p.x, p.y});
    out["faces"].push_back({{"box", {b.x1, b.y1, b.x2, b.y2}},
                            {"score", f.detection.score},
                            {"points", points},
                            {"confidence", f.confidence}});
  }
  std::cout << out.dump() << "\n";
}

void print_summary(const std::vector<facealign::Face>& faces, const std::string& image, const std::string& backend) {
  std::printf("%s: %zu face(s) [%s]\n", image.c_str(), faces.size(), backend.c_str());
  for (size_t i = 0; i < faces.size(); ++i) {
    const auto& f = faces[i];
    double mean = 0;
    for (float c : f.confidence) mean += c;
    mean /= std::max<size_t>(1, f.confidence.size());
    std::printf("  face %zu: box (%.1f, %.1f, %.1f, %.1f) score %.3f, %zu points, mean confidence %.3f\n", i,
                f.detection.box.x1, f.detection.box.y1, f.detection.box.x2, f.detection.box.y2, f.detection.score,
                f.points.size(), mean);
  }
}

void draw(cv::Mat image, const std::vector<facealign::Face>& faces, const std::string& path) {
  for (const auto& f : faces) {
    const auto& b = f.detection.box;
    cv::rectangle(image, cv::Point2d(b.x1, b.y1), cv::Point2d(b.x2, b.y2), cv::Scalar(0, 200, 0), 1);
    for (const auto& p : f.points) cv::circle(image, p, 2, cv::Scalar(0, 0, 255), cv::FILLED);
  }
  if (!cv::imwrite(path, image)) {
    throw facealign::Error(facealign::Error::Kind::InvalidArgument, path + ": cannot write the drawing");
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc > 1 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
      std::cout << usage();
      return 0;
    }
    const Args args = parse(argc, argv);
    const cv::Mat image = facealign::read_image(args.image);
    const facealign::Aligner aligner(args.options);
    for (const std::string& warning : aligner.warnings()) std::cerr << "facealign-cpp: warning: " << warning << "\n";
    auto run = [&] { return args.boxes.empty() ? aligner.align(image) : aligner.align(image, args.boxes); };
    const std::vector<facealign::Face> faces = run();
    if (args.repeat > 0 && !faces.empty()) {
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < args.repeat; ++i) run();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "benchmark: %s, %s, %.2f ms per face (%d runs, %zu face(s), %s)\n",
                   aligner.backend_name().c_str(), args.boxes.empty() ? "detector + landmarks" : "landmarks",
                   ms / (args.repeat * faces.size()), args.repeat, faces.size(), args.image.c_str());
    }
    if (args.json) print_json(faces, aligner.convention());
    else print_summary(faces, args.image, aligner.backend_name());
    if (!args.draw.empty()) draw(image.clone(), faces, args.draw);
    return 0;
  } catch (const facealign::Error& e) {
    std::cerr << "facealign-cpp: error: " << e.what() << "\n";
    if (e.kind() == facealign::Error::Kind::InvalidArgument && argc < 2) std::cerr << usage();
    return kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << "facealign-cpp: error: " << e.what() << "\n";
    return kExitFailure;
  }
}
