#include "ocellus/data/fashion_vqa.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <random>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/core/progress.h"
#include "ocellus/io/file.h"
#include "ocellus/io/image.h"

namespace ocellus::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The whole file, gunzipped when it is gzip (zlib reads plain files through too).
std::string read_maybe_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  OCELLUS_CHECK(f != nullptr, "fashion: cannot open ", path);
  std::string out;
  char buf[1 << 16];
  for (int n; (n = gzread(f, buf, sizeof(buf))) > 0;) out.append(buf, size_t(n));
  int err = 0;
  const char* msg = gzerror(f, &err);
  gzclose(f);
  OCELLUS_CHECK(err == Z_OK || err == Z_STREAM_END, "fashion: ", path, ": ", msg);
  return out;
}

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) | (uint32_t(uint8_t(s[at + 2])) << 8) |
         uint32_t(uint8_t(s[at + 3]));
}

// Word for a cell of a grid: "top left", "middle", ...
std::string cell_name(int cell, int grid) {
  const int r = cell / grid, c = cell % grid;
  static const char* const rows[2][3] = {{"top", "bottom"}, {"top", "middle", "bottom"}};  // of a grid of 2, of 3
  static const char* const cols[2][3] = {{"left", "right"}, {"left", "centre", "right"}};
  if (grid == 3 && r == 1 && c == 1) return "middle";
  return std::string(rows[grid - 2][r]) + " " + cols[grid - 2][c];
}

std::string article(const std::string& noun) {
  return (std::string("aeiou").find(noun[0]) != std::string::npos ? "an " : "a ") + noun;
}

std::string plural(const std::string& noun) { return noun + (noun.back() == 's' ? "es" : "s"); }

// Classes that look alike: the adversarial negatives of yes/no questions.
const std::vector<std::vector<int>>& look_alikes() {
  static const std::vector<std::vector<int>> g = {{0, 2, 4, 6},  // t-shirt, pullover, coat, shirt
                                                  {1, 3},        // trouser, dress
                                                  {5, 7, 9},     // sandal, sneaker, ankle boot
                                                  {8}};          // bag
  return g;
}

struct Scene {
  std::vector<int> item_of_cell;  // photo index per cell, -1 empty
  std::vector<int> class_of_cell;
};

}  // namespace

std::string fashion_caption(const std::vector<int>& class_of_cell, int grid) {
  OCELLUS_CHECK((grid == 2 || grid == 3) && class_of_cell.size() == size_t(grid * grid), "fashion: a caption of ",
                class_of_cell.size(), " cells on a grid of ", grid);
  std::vector<std::string> parts;
  for (size_t c = 0; c < class_of_cell.size(); ++c)
    if (class_of_cell[c] >= 0)
      parts.push_back(article(fashion_class_names().at(size_t(class_of_cell[c]))) + " in the " + cell_name(int(c), grid));
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : i + 1 == parts.size() ? " and " : ", ") + parts[i];
  return out;
}

std::optional<std::vector<int>> parse_fashion_caption(const std::string& caption, int grid) {
  OCELLUS_CHECK(grid == 2 || grid == 3, "fashion: grid must be 2 or 3");
  const auto& names = fashion_class_names();
  std::vector<int> cells(size_t(grid * grid), -1);
  // The items, split at ", " and " and " (neither occurs inside a class or cell name).
  for (size_t at = 0; at <= caption.size();) {
    const size_t comma = caption.find(", ", at), conj = caption.find(" and ", at);
    const size_t end = std::min(comma, conj);
    const std::string part = caption.substr(at, end == std::string::npos ? std::string::npos : end - at);
    at = end == std::string::npos ? caption.size() + 1 : end + (end == comma ? 2 : 5);
    // "a NOUN in the CELL" (the article checked by the round trip below).
    const size_t space = part.find(' '), in = part.find(" in the ");
    if (space == std::string::npos || in == std::string::npos || in < space) return std::nullopt;
    const auto noun = std::find(names.begin(), names.end(), part.substr(space + 1, in - space - 1));
    int cell = 0;
    while (cell < grid * grid && cell_name(cell, grid) != part.substr(in + 8)) ++cell;
    if (noun == names.end() || cell == grid * grid || cells[size_t(cell)] >= 0) return std::nullopt;
    cells[size_t(cell)] = int(noun - names.begin());
  }
  // Only what fashion_caption writes: its articles, cell order and joining words.
  if (fashion_caption(cells, grid) != caption) return std::nullopt;
  return cells;
}

const std::vector<std::string>& fashion_class_names() {
  static const std::vector<std::string> n = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                             "sandal", "shirt", "sneaker", "bag", "ankle boot"};
  return n;
}

FashionSplit read_fashion_split(const std::string& images_idx, const std::string& labels_idx) {
  const std::string im = read_maybe_gz(images_idx), lb = read_maybe_gz(labels_idx);
  OCELLUS_CHECK(im.size() >= 16 && be32(im, 0) == 0x803, "fashion: ", images_idx, ": not an IDX image file (magic 0x803)");
  OCELLUS_CHECK(lb.size() >= 8 && be32(lb, 0) == 0x801, "fashion: ", labels_idx, ": not an IDX label file (magic 0x801)");
  FashionSplit s;
  s.n = be32(im, 4);
  OCELLUS_CHECK(be32(im, 8) == 28 && be32(im, 12) == 28, "fashion: ", images_idx, ": images are not 28x28");
  OCELLUS_CHECK(int64_t(be32(lb, 4)) == s.n, "fashion: ", s.n, " images but ", be32(lb, 4), " labels");
  OCELLUS_CHECK(im.size() == 16 + size_t(s.n) * 784 && lb.size() == 8 + size_t(s.n), "fashion: ", images_idx,
                ": truncated (", im.size(), " bytes for ", s.n, " images)");
  s.pixels.assign(im.begin() + 16, im.end());
  s.labels.assign(lb.begin() + 8, lb.end());
  for (uint8_t l : s.labels) OCELLUS_CHECK(l < 10, "fashion: ", labels_idx, ": label ", int(l), " outside 0..9");
  return s;
}

namespace {
// The photos 0..n-1 in a shuffled order, dealt one at a time; reshuffled when all are dealt.
class PhotoDeck {
 public:
  PhotoDeck(int n, uint64_t seed) : rng_(seed), cards_(size_t(n)) {
    for (int i = 0; i < n; ++i) cards_[size_t(i)] = i;
  }
  int next() {
    if (at_ == 0 || at_ == cards_.size()) {
      for (size_t i = cards_.size() - 1; i > 0; --i) std::swap(cards_[i], cards_[size_t(rng_() % (i + 1))]);
      at_ = 0;
    }
    return cards_[at_++];
  }

 private:
  std::mt19937_64 rng_;
  std::vector<int> cards_;
  size_t at_ = 0;
};
}  // namespace

FashionVqaStats build_fashion_vqa(const FashionVqaOptions& o) {
  OCELLUS_CHECK(o.grid == 2 || o.grid == 3, "fashion: grid must be 2 or 3");
  OCELLUS_CHECK(o.max_items >= 1 && o.max_items <= o.grid * o.grid, "fashion: max_items must lie in 1..", o.grid * o.grid);
  OCELLUS_CHECK(!o.out.empty(), "fashion: no output folder");
  OCELLUS_CHECK(o.train_scenes >= 1 && o.test_scenes >= 0 && o.val_scenes >= 0, "fashion: scene counts must be >= 0 (training scenes >= 1)");
  if (!fs::is_directory(o.source))
    fail("fashion: ", o.source, " is not a folder: Fashion-MNIST comes from Debian's package (sudo apt-get install ",
         "dataset-fashion-mnist puts it in ", FashionVqaOptions{}.source, "); --source names another folder of its four IDX files");
  const FashionSplit train = read_fashion_split(o.source + "/train-images-idx3-ubyte.gz", o.source + "/train-labels-idx1-ubyte.gz");
  const FashionSplit test = read_fashion_split(o.source + "/t10k-images-idx3-ubyte.gz", o.source + "/t10k-labels-idx1-ubyte.gz");
  const auto& names = fashion_class_names();
  const int cells = o.grid * o.grid, side = 28 * o.grid;
  FashionVqaStats st;
  std::vector<char> used_by_training(size_t(train.n), 0);  // the training photos some training scene shows
  std::vector<int> held_out;                                // the others: validation scenes' photos
  // Three passes: training, test, validation (held-out training photos, built as the test
  // split; its own generator, so the other files are the same with or without it).
  struct Pass {
    std::string tag;
    const FashionSplit& split;
    int64_t n_scenes;
    int64_t& scenes_written;
    int64_t& questions_written;  // evaluation questions (none for training)
  };
  int64_t no_questions = 0;
  const Pass passes[] = {{"train", train, o.train_scenes, st.train_scenes, no_questions},
                         {"test", test, o.test_scenes, st.test_scenes, st.eval_questions},
                         {"val", train, o.val_scenes, st.val_scenes, st.val_questions}};
  for (int pass = 0; pass < 3; ++pass) {
    const bool is_train = pass == 0, is_val = pass == 2;
    if (is_val && o.val_scenes == 0) break;
    const auto& [tag, split, n_scenes, scenes_written, questions_written] = passes[pass];
    if (is_val) {
      for (int64_t p = 0; p < train.n; ++p)
        if (!used_by_training[size_t(p)]) held_out.push_back(int(p));
      OCELLUS_CHECK(!held_out.empty(), "fashion: every training photo is in a training scene; none is left for validation scenes");
      st.val_photos = int64_t(held_out.size());
    }
    fs::create_directories(o.out + "/images/" + tag);
    std::mt19937_64 rng(o.seed * 1000003ull + uint64_t(pass + 1));
    PhotoDeck deck(int(split.n), o.seed * 0x2545F4914F6CDD1Dull + 7);
    auto uniform = [&](uint64_t n) { return int(rng() % n); };
    json captions = json::array(), instruct = json::array(), contrast = json::array(), eval = json::array(),
         reading = json::array();
    std::string corpus;
    ProgressLine progress;
    for (int64_t k = 0; k < n_scenes; ++k) {
      progress.update(k + 1, n_scenes, ocellus::detail::concat("data: ", tag, " scenes ", k + 1, "/", n_scenes));
      Scene s{std::vector<int>(size_t(cells), -1), std::vector<int>(size_t(cells), -1)};
      const int n_items = 1 + uniform(uint64_t(o.max_items));
      std::vector<int> order(static_cast<size_t>(cells));
      for (int c = 0; c < cells; ++c) order[size_t(c)] = c;
      for (int i = cells - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(uniform(uint64_t(i + 1)))]);
      for (int i = 0; i < n_items; ++i) {
        int photo = is_val ? held_out[size_t(uniform(held_out.size()))] : uniform(uint64_t(split.n));
        if (is_train && o.photo_deck) photo = deck.next();  // the uniform draw above still runs: same layouts
        if (is_train) used_by_training[size_t(photo)] = 1;
        s.item_of_cell[size_t(order[size_t(i)])] = photo;
        s.class_of_cell[size_t(order[size_t(i)])] = split.labels[size_t(photo)];
      }
      // The picture: photos in their cells on black, as RGB.
      io::ImageRgb8 img;
      img.width = img.height = side;
      img.rgb.assign(size_t(side * side * 3), 0);
      for (int c = 0; c < cells; ++c) {
        const int p = s.item_of_cell[size_t(c)];
        if (p < 0) continue;
        const int y0 = (c / o.grid) * 28, x0 = (c % o.grid) * 28;
        for (int y = 0; y < 28; ++y)
          for (int x = 0; x < 28; ++x)
            for (int ch = 0; ch < 3; ++ch)
              img.rgb[size_t(((y0 + y) * side + x0 + x) * 3 + ch)] = split.pixels[size_t(p) * 784 + size_t(y * 28 + x)];
      }
      char file[64];
      std::snprintf(file, sizeof(file), "images/%s/%06lld.png", tag.c_str(), static_cast<long long>(k));
      io::save_png(o.out + "/" + file, img);
      const std::string id = tag + "-" + std::to_string(k), cap = fashion_caption(s.class_of_cell, o.grid);
      // A record of one question about the picture and its answer.
      auto one_turn = [&](const std::string& rec_id, const std::string& q, const std::string& a) {
        return json{{"id", rec_id}, {"image", file},
                    {"conversations", {{{"from", "human"}, {"value", "<image>\n" + q}}, {{"from", "gpt"}, {"value", a}}}}};
      };
      captions.push_back(one_turn(id, "Describe the picture briefly.", cap));
      // Questions of each kind, with their answers.
      std::vector<std::pair<std::string, std::string>> qa;
      std::vector<std::string> cats;
      auto ask = [&](const std::string& q, const std::string& a, const char* cat) { qa.push_back({q, a}), cats.push_back(cat); };
      const int cell = uniform(uint64_t(cells));
      ask("What is in the " + cell_name(cell, o.grid) + " cell?",
          s.class_of_cell[size_t(cell)] < 0 ? "nothing" : names[size_t(s.class_of_cell[size_t(cell)])], "identity");
      std::vector<int> counts(10, 0);
      for (int c : s.class_of_cell)
        if (c >= 0) ++counts[size_t(c)];
      std::vector<int> unique;
      for (int c = 0; c < 10; ++c)
        if (counts[size_t(c)] == 1) unique.push_back(c);
      if (!unique.empty()) {
        const int c = unique[size_t(uniform(unique.size()))];
        const auto where = std::find(s.class_of_cell.begin(), s.class_of_cell.end(), c) - s.class_of_cell.begin();
        ask("Where is the " + names[size_t(c)] + "?", cell_name(int(where), o.grid), "position");
      }
      const int counted = uniform(2) == 0 ? s.class_of_cell[size_t(order[0])] : uniform(10);
      ask("How many " + plural(names[size_t(counted)]) + " are there?", std::to_string(counts[size_t(counted)]), "counting");
      // POPE: a present class, and an absent one (adversarial: a look-alike of a present one when possible).
      const int present = s.class_of_cell[size_t(order[size_t(uniform(uint64_t(n_items)))])];
      std::vector<int> absent_alike, absent_any;
      for (const auto& group : look_alikes())
        if (std::find(group.begin(), group.end(), present) != group.end())
          for (int c : group)
            if (counts[size_t(c)] == 0) absent_alike.push_back(c);
      for (int c = 0; c < 10; ++c)
        if (counts[size_t(c)] == 0) absent_any.push_back(c);
      const std::vector<int>& pool = !absent_alike.empty() ? absent_alike : absent_any;
      std::vector<std::pair<std::string, std::string>> yn = {{names[size_t(present)], "yes"}};
      if (!pool.empty()) yn.push_back({names[size_t(pool[size_t(uniform(pool.size()))])], "no"});
      if (uniform(2) == 1 && yn.size() == 2) std::swap(yn[0], yn[1]);
      for (const auto& [noun, a] : yn) ask("Is there " + article(noun) + " in the picture?", a, "yes/no");
      ask("Describe the picture.", cap, "description");
      // Training: one multi-turn conversation, its short questions in a shuffled order (evaluation
      // asks each kind right after the picture, so training must too) and the description last
      // (asked earlier, it would answer every later question from the text instead of the
      // picture); evaluation: one record per question. The order comes from its own generator,
      // so the scenes do not depend on it.
      std::vector<size_t> turn_order(qa.size());
      for (size_t i = 0; i < turn_order.size(); ++i) turn_order[i] = i;
      if (is_train) {
        std::mt19937_64 turn_order_rng(o.seed * 0x9E3779B97F4A7C15ull + uint64_t(k));
        for (size_t i = turn_order.size() - 2; i > 0; --i) std::swap(turn_order[i], turn_order[size_t(turn_order_rng() % (i + 1))]);
      }
      // A second instruction file (train_instruct_contrast.json) adds, where a scene allows, a
      // contrastive pair of counts: a present kind and an absent look-alike of it (answer 0), the
      // adversarial negative that yes/no already has. Without it a count names a kind together
      // with its look-alikes: a model trained without it counted an absent kind above 0 in 46% of
      // cases with a look-alike present, though the counts implied by its own answers for the
      // cells were right 92% of the time. The present kind's count keeps the answers' balance (0
      // is not learned as the answer to an extra question). Its own generator, and in no other
      // file, so everything else stays as it was.
      const size_t n_base = qa.size();
      std::vector<size_t> contrast_order = turn_order;
      if (is_train) {
        std::mt19937_64 extra_rng(o.seed * 0xD1B54A32D192ED03ull + uint64_t(k));
        std::vector<std::pair<int, int>> pairs;  // (present kind, absent look-alike)
        for (const auto& group : look_alikes())
          for (int p : group)
            if (counts[size_t(p)] > 0)
              for (int a : group)
                if (counts[size_t(a)] == 0) pairs.push_back({p, a});
        if (!pairs.empty()) {
          const auto [p, a] = pairs[size_t(extra_rng() % pairs.size())];
          std::vector<int> kinds = {p, a};
          if (extra_rng() % 2) std::swap(kinds[0], kinds[1]);
          for (int c : kinds) {
            const size_t extra = qa.size();
            ask("How many " + plural(names[size_t(c)]) + " are there?", std::to_string(counts[size_t(c)]), "counting");
            // Anywhere before the description, which stays last.
            contrast_order.insert(contrast_order.begin() + std::ptrdiff_t(extra_rng() % contrast_order.size()), extra);
          }
        }
      }
      // A question as asked: the short kinds ask for a brief answer.
      auto asked = [&](size_t i) { return qa[i].first + (cats[i] == "description" ? "" : " Answer briefly."); };
      // The conversation (`first` before its first question), and the same conversation as reading
      // comprehension for the language model's own pretraining: the description in words where the
      // picture would be, so every answer can be found in the text (a lookup the model can later
      // apply to the picture's tokens), not guessed.
      auto conversation = [&](const std::vector<size_t>& order, const std::string& first = "<image>\n") {
        json conv = json::array();
        for (size_t n = 0; n < order.size(); ++n) {
          conv.push_back({{"from", "human"}, {"value", (n == 0 ? first : "") + asked(order[n])}});
          conv.push_back({{"from", "gpt"}, {"value", qa[order[n]].second}});
        }
        return conv;
      };
      instruct.push_back({{"id", id}, {"image", file}, {"conversations", conversation(turn_order)}});
      if (is_train) contrast.push_back({{"id", id}, {"image", file}, {"conversations", conversation(contrast_order)}});
      if (is_train) reading.push_back({{"id", id + "-read"}, {"conversations", conversation(turn_order, cap + "\n")}});
      // Each question also on its own, as evaluation asks it (a small model trained only on
      // long conversations learns where in them each kind comes, not to read the picture for it).
      if (is_train)
        for (size_t i = 0; i < qa.size(); ++i) {
          const json single = one_turn(id + "-q" + std::to_string(i), asked(i), qa[i].second);
          if (i < n_base) instruct.push_back(single);
          contrast.push_back(single);
        }
      if (is_train) {
        corpus += cap + "\n";
        for (size_t i = 0; i < n_base; ++i) corpus += qa[i].first + " Answer briefly. " + qa[i].second + "\n";
      }
      if (!is_train)
        for (size_t i = 0; i < qa.size(); ++i, ++questions_written)
          eval.push_back({{"question_id", id + "-" + std::to_string(i)}, {"image", file}, {"question", asked(i)},
                          {"answer", qa[i].second}, {"category", cats[i]}});
    }
    auto write = [&](const std::string& name, const json& j) { io::write_text_file_atomically(o.out + "/" + name, j.dump(1) + "\n"); };
    write(tag + "_captions.json", captions);
    write(tag + "_instruct.json", instruct);
    if (is_train) write("train_instruct_contrast.json", contrast);
    if (!is_train) write(tag + "_eval.json", eval);
    if (is_train) write("train_read.json", reading);
    // The training text (captions, questions, answers, the chat roles) for learning a vocabulary.
    if (is_train) io::write_text_file_atomically(o.out + "/train_text.txt", "system\nuser\nassistant\n" + corpus);
    scenes_written = n_scenes;
    if (is_train) st.train_photos = int64_t(std::count(used_by_training.begin(), used_by_training.end(), 1));
  }
  return st;
}

}  // namespace ocellus::data
