#include "ocellus/train/trainer.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <nlohmann/json.hpp>

#include "ocellus/io/image.h"

namespace ocellus::train {

void draw_loss_curve(const std::string& metrics_path, const std::string& path) {
  std::vector<double> losses;
  for (const auto& [line, j] : read_metrics_log(metrics_path))
    if (j.contains("loss")) losses.push_back(j["loss"].get<double>());
  if (losses.empty()) return;
  io::ImageRgb8 img;
  img.width = 640, img.height = 320;
  img.rgb.assign(size_t(img.width * img.height * 3), 255);
  double lo = *std::min_element(losses.begin(), losses.end()), hi = *std::max_element(losses.begin(), losses.end());
  if (hi - lo < 1e-12) hi = lo + 1;
  const int x0 = 40, y0 = 20, w = img.width - 60, h = img.height - 50;
  auto put = [&](int x, int y, uint8_t r, uint8_t g, uint8_t b) {
    if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
    uint8_t* p = img.rgb.data() + (size_t(y) * size_t(img.width) + size_t(x)) * 3;
    p[0] = r, p[1] = g, p[2] = b;
  };
  for (int x = x0; x <= x0 + w; ++x) put(x, y0 + h, 0, 0, 0);
  for (int y = y0; y <= y0 + h; ++y) put(x0, y, 0, 0, 0);
  int px = -1, py = -1;
  for (size_t i = 0; i < losses.size(); ++i) {
    const int x = x0 + int(double(w) * double(i) / double(std::max<size_t>(1, losses.size() - 1)));
    const int y = y0 + int(double(h) * (hi - losses[i]) / (hi - lo));
    if (px >= 0) {
      const int n = std::max(std::abs(x - px), std::abs(y - py));
      for (int k = 0; k <= n; ++k) put(px + (x - px) * k / std::max(1, n), py + (y - py) * k / std::max(1, n), 200, 30, 30);
    } else {
      put(x, y, 200, 30, 30);
    }
    px = x, py = y;
  }
  io::save_png(path, img);
}

}  // namespace ocellus::train
