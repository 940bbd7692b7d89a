// Helpers several `ocellus` verbs share.
#include "cli.h"

#include <sys/resource.h>

namespace ocellus::cli {

Globals& globals() {
  static Globals g;
  return g;
}

// An image file, or a preprocessed float32 HWC image of the tower's size (--pixels), as the
// tower's [3, S, S] input.
ocellus::Tensor image_input(const ocellus::model::VisionModel& vm, const std::string& image, const std::string& pixels) {
  const int64_t S = vm.config().image_size;
  if (!pixels.empty()) {
    const std::vector<float> v = read_raw<float>(pixels, "float32 values");
    if (v.size() != size_t(S * S * 3))
      throw std::runtime_error(pixels + ": " + std::to_string(v.size() * 4) + " bytes, expected a float32 " + std::to_string(S) +
                               "x" + std::to_string(S) + "x3 HWC image (" + std::to_string(S * S * 3 * 4) + " bytes)");
    return ocellus::vision::hwc_to_chw(ocellus::Tensor::from_vector({S, S, 3}, v));
  }
  return ocellus::vision::preprocess(ocellus::io::load_image(image), vm.config().preprocess);
}

// Image rows for each input, with a progress line and the encode time on stderr.
std::vector<ocellus::Tensor> encode_images(const ocellus::model::VisionModel& vm, const std::vector<std::string>& images,
                                           const std::string& pixels, double* ms) {
  std::vector<ocellus::Tensor> in;
  if (!pixels.empty()) in.push_back(image_input(vm, "", pixels));
  for (const std::string& img : images) in.push_back(image_input(vm, img, ""));
  std::fprintf(stderr, "encoding %zu image(s) (%lld tokens each)...", in.size(), (long long)vm.n_tokens_per_image());
  std::fflush(stderr);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<ocellus::Tensor> rows = vm.embed(in);
  *ms = ms_since(t0);
  std::fprintf(stderr, " %.1f ms\n", *ms);
  return rows;
}

void require_text(const std::string& text, const char* what) {
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) throw std::runtime_error(std::string(what) + " is empty");
}

void write_f32(const std::string& path, const ocellus::Tensor& t) {
  const ocellus::Tensor c = t.contiguous();
  ocellus::io::write_file_atomically(path, [&](std::FILE* f) { ocellus::io::write_bytes(f, c.raw(), c.nbytes(), path); });
}

// Streams generated text to stdout as it comes.
void print_piece(const std::string& piece) {
  std::printf("%s", piece.c_str());
  std::fflush(stdout);
}

// A model that ships with ocellus (models/NAME holding `files`): under $OCELLUS_DEFAULT_MODEL's
// folder's parent when set (the only place looked at: the VLM is that folder, its siblings the
// others), else the first of: an installed copy (PREFIX/share/ocellus/models beside PREFIX/bin),
// models/ beside the build folder of this executable or in it, the source tree's models/ (its
// path compiled in, so a build folder anywhere finds it), ./models.
std::string bundled_dir(const std::string& name, const std::vector<std::string>& files) {
  std::vector<std::filesystem::path> tried;
  if (const char* env = std::getenv("OCELLUS_DEFAULT_MODEL")) {
    tried.push_back(name == "fashion-vlm" ? std::filesystem::path(env) : std::filesystem::path(env).parent_path() / name);
  } else {
    std::error_code ec;
    const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
      const std::filesystem::path bin = exe.parent_path();
      tried.push_back(bin.parent_path() / "share/ocellus/models" / name);
      tried.push_back(bin.parent_path() / "models" / name), tried.push_back(bin / "models" / name);
    }
    tried.push_back(std::filesystem::path(OCELLUS_SOURCE_MODELS) / name);
    tried.push_back("models/" + name);
  }
  std::string list, want;
  for (const std::string& f : files) want += (want.empty() ? "" : " + ") + f;
  for (const auto& d : tried) {
    bool all = true;
    for (const std::string& f : files) all = all && std::filesystem::is_regular_file(d / f);
    if (all) return d.string();
    list += (list.empty() ? "" : ", ") + d.string();
  }
  ocellus::fail("no -m given and no bundled model (", want, ") in ", list);
}

ocellus::model::Vlm VlmOptions::load() {
  if (model.empty()) {
    OCELLUS_CHECK(mmproj.empty(), "--mmproj given without -m");
    const std::string dir = bundled_dir("fashion-vlm", {"model.gguf", "mmproj.gguf"});
    model = dir + "/model.gguf", mmproj = dir + "/mmproj.gguf";
  }
  return ocellus::model::load_vlm(model, mmproj);
}

double peak_memory_mib() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

double ms_since(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

void print_stats(const ocellus::lm::GenerateResult& r, double load_ms, double image_ms) {
  std::fprintf(stderr, "load: %.1f ms; ", load_ms);
  if (image_ms >= 0) std::fprintf(stderr, "image encode: %.1f ms; ", image_ms);
  std::fprintf(stderr, "prefill: %lld tokens in %.1f ms (%.1f tokens/s); decode: %zu tokens in %.1f ms (%.1f tokens/s); stop: %s; peak memory: %.0f MiB\n",
               (long long)r.n_prompt, r.prefill_seconds * 1e3, double(r.n_prompt) / r.prefill_seconds, r.tokens.size(),
               r.decode_seconds * 1e3, r.tokens.empty() ? 0.0 : double(r.tokens.size()) / r.decode_seconds, r.stop_reason.c_str(),
               peak_memory_mib());
}

}  // namespace ocellus::cli
