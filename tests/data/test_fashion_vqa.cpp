// The Fashion-MNIST VQA builder on small IDX files written here (gzipped, as Debian ships
// them): training scenes use only training photos and test scenes only test photos, the
// captions name what the pictures show, answers agree with the scenes, the JSON reads as LLaVA
// records, and the same seed gives the same files.
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/image.h"
#include "ocellus/data/llava_json.h"
#include "ocellus/data/fashion_vqa.h"
#include "testutil.h"

using namespace ocellus;
namespace fs = std::filesystem;

namespace {

void be32(std::string& s, uint32_t v) {
  for (int k = 3; k >= 0; --k) s.push_back(char((v >> (8 * k)) & 0xff));
}

// n photos (n < 255), photo i of class i % 10, every pixel `value` (train and test differ) but the
// top left one, i + 1 (which photo a scene shows).
void write_split(const std::string& dir, const std::string& prefix, int n, uint8_t value) {
  std::string im, lb;
  be32(im, 0x803), be32(im, uint32_t(n)), be32(im, 28), be32(im, 28);
  be32(lb, 0x801), be32(lb, uint32_t(n));
  for (int i = 0; i < n; ++i) {
    im.push_back(char(i + 1));
    im.append(783, char(value));
    lb.push_back(char(i % 10));
  }
  for (const auto& [name, bytes] : {std::pair{prefix + "-images-idx3-ubyte.gz", im}, std::pair{prefix + "-labels-idx1-ubyte.gz", lb}}) {
    gzFile f = gzopen((dir + "/" + name).c_str(), "wb");
    ASSERT_TRUE(f != nullptr);
    ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
    gzclose(f);
  }
}

// A fresh temporary folder whose src/ holds n_train training photos (value 100) and 20 test
// photos (value 200).
std::string source_folder(const std::string& name, int n_train) {
  const std::string root = test::temp_path(name);
  fs::remove_all(root);
  fs::create_directories(root + "/src");
  write_split(root + "/src", "train", n_train, 100);
  write_split(root + "/src", "t10k", 20, 200);
  return root;
}

// The generator's plural of a kind ("dress" -> "dresses"), restated.
std::string plural(const std::string& n) { return n + (n.back() == 's' ? "es" : "s"); }

}  // namespace

TEST(FashionVqa, ScenesQuestionsAndSplits) {
  const std::string root = source_folder("fashion", 80);
  data::FashionVqaOptions o;
  o.source = root + "/src", o.out = root + "/a", o.train_scenes = 40, o.test_scenes = 12, o.val_scenes = 10, o.seed = 7;
  const data::FashionVqaStats st = data::build_fashion_vqa(o);
  EXPECT_EQ(st.train_scenes, 40);
  EXPECT_EQ(st.test_scenes, 12);
  EXPECT_EQ(st.val_scenes, 10);
  EXPECT_GE(st.val_questions, 10 * 4);
  const auto& names = data::fashion_class_names();
  std::set<std::string> first_kinds;
  for (const auto& [tag, file] : {std::pair{"train", "train_instruct.json"}, std::pair{"train", "train_instruct_contrast.json"},
                                  std::pair{"test", "test_instruct.json"}, std::pair{"val", "val_instruct.json"}}) {
    const uint8_t value = std::string(tag) == "test" ? 200 : 100;  // validation scenes show training photos
    const bool contrast = std::string(file) == "train_instruct_contrast.json";
    std::vector<std::string> skipped;
    const auto all = data::read_llava_json(root + "/a/" + file, data::OnBad::Fail, &skipped);
    const auto caps = data::read_llava_json(root + "/a/" + tag + "_captions.json", data::OnBad::Fail, &skipped);
    // One conversation per scene; in training, each of its questions also as a single-turn
    // record "<id>-q<i>" with the same picture and the same answer.
    std::vector<data::Record> recs;
    std::map<std::string, data::Record> by_id;
    for (const data::Record& r : all)
      if (r.id.find("-q") == std::string::npos) recs.push_back(r), by_id[r.id] = r;
    size_t singles = 0;
    for (const data::Record& r : all) {
      if (r.id.find("-q") == std::string::npos) continue;
      ++singles;
      ASSERT_EQ(r.messages.size(), 2u) << r.id;
      const auto it = by_id.find(r.id.substr(0, r.id.find("-q")));
      ASSERT_TRUE(it != by_id.end()) << r.id << " has no conversation";
      EXPECT_EQ(r.image, it->second.image);
      bool found = false;
      const auto& m = it->second.messages;
      const std::string q = r.messages[0].content.substr(8);  // without "<image>\n"
      for (size_t i = 0; i + 1 < m.size(); i += 2)
        found = found || ((m[i].content == q || m[i].content == "<image>\n" + q) && m[i + 1].content == r.messages[1].content);
      EXPECT_TRUE(found) << r.id << ": " << q;
    }
    EXPECT_EQ(singles == 0, std::string(tag) != "train");
    ASSERT_EQ(recs.size(), std::string(tag) == "train" ? 40u : std::string(tag) == "test" ? 12u : 10u);
    for (size_t k = 0; k < recs.size(); ++k) {
      // The picture: 56x56, each 28-px cell all `value` (an item) or all 0 (empty).
      const io::ImageRgb8 img = io::load_image(root + "/a/" + recs[k].image);
      ASSERT_EQ(img.width, 56);
      std::set<std::string> filled;
      const char* cellnames[] = {"top left", "top right", "bottom left", "bottom right"};
      for (int c = 0; c < 4; ++c) {
        const uint8_t v = img.at((c / 2) * 28 + 14, (c % 2) * 28 + 14, 0);
        EXPECT_TRUE(v == 0 || v == value) << tag << " scene " << k << ": a photo of the other split";
        if (v) filled.insert(cellnames[c]);
      }
      // The caption names exactly the filled cells.
      const std::string cap = caps[k].messages.back().content;
      for (const char* cn : cellnames)
        EXPECT_EQ(cap.find(std::string("in the ") + cn) != std::string::npos, filled.count(cn) == 1) << cap;
      // Counting answers agree with the caption.
      const auto& m = recs[k].messages;
      for (size_t i = 0; i + 1 < m.size(); i += 2) {
        const std::string& q = m[i].content;
        if (q.find("How many ") == std::string::npos) continue;
        int want = 0;
        for (const auto& n : names) {
          if (q.find("How many " + plural(n) + " ") == std::string::npos) continue;
          for (size_t at = 0; (at = cap.find(" " + n + " in the", at)) != std::string::npos; ++at) ++want;
        }
        EXPECT_EQ(m[i + 1].content, std::to_string(want)) << q << " / " << cap;
      }
      // Yes/no answers agree with the caption too; one or two yes/no questions (a present kind, an
      // absent one) per scene, and one counting question (three in the contrast file, below).
      std::set<std::string> present;
      for (const auto& n : names)
        if (cap.find(" " + n + " in the") != std::string::npos) present.insert(n);
      int n_counting = 0, n_yes_no = 0;
      for (size_t i = 0; i + 1 < m.size(); i += 2) {
        const std::string& q = m[i].content;
        n_counting += q.find("How many ") != std::string::npos;
        for (const auto& n : names) {
          if (q.find("Is there " + std::string(std::string("aeiou").find(n[0]) != std::string::npos ? "an " : "a ") + n + " in") ==
              std::string::npos)
            continue;
          ++n_yes_no;
          EXPECT_EQ(m[i + 1].content, present.count(n) ? "yes" : "no") << q << " / " << cap;
        }
      }
      // The contrast file's conversations also count a contrastive pair when the scene allows
      // one: a present kind and an absent look-alike of it (t-shirt / pullover / coat / shirt,
      // trouser / dress, sandal / sneaker / ankle boot).
      const std::vector<std::set<std::string>> alike = {
          {"t-shirt", "pullover", "coat", "shirt"}, {"trouser", "dress"}, {"sandal", "sneaker", "ankle boot"}};
      bool pair_possible = false;
      for (const auto& g : alike) {
        const size_t in = size_t(std::count_if(g.begin(), g.end(), [&](const std::string& n) { return present.count(n) > 0; }));
        pair_possible = pair_possible || (in > 0 && in < g.size());
      }
      EXPECT_EQ(n_counting, contrast && pair_possible ? 3 : 1) << cap;
      if (contrast && pair_possible) {
        std::set<std::string> counted;
        for (size_t i = 0; i + 1 < m.size(); i += 2)
          for (const auto& n : names)
            if (m[i].content.find("How many " + plural(n) + " ") != std::string::npos) counted.insert(n);
        bool pair = false;
        for (const auto& g : alike)
          for (const auto& a : counted)
            for (const auto& b : counted)
              pair = pair || (g.count(a) && g.count(b) && present.count(a) && !present.count(b));
        EXPECT_TRUE(pair) << cap;
      }
      EXPECT_LE(n_yes_no, 2) << cap;
      EXPECT_GE(n_yes_no, 1) << cap;
      // The description, the caption, comes last (earlier it would give later answers away).
      EXPECT_NE(m[m.size() - 2].content.find("Describe the picture."), std::string::npos);
      EXPECT_EQ(m.back().content, cap);
      // The picture comes with the first question, whichever it is.
      EXPECT_EQ(m[0].content.rfind("<image>\n", 0), 0u);
      if (std::string(tag) == "train") first_kinds.insert(m[0].content.substr(7, 10));
    }
  }
  // Training conversations ask their questions in varied orders (evaluation asks each kind right
  // after the picture): several kinds come first.
  EXPECT_GE(first_kinds.size(), 4u);
  // The training text for a vocabulary: the chat roles, captions, questions and answers.
  const std::string text = test::read_file(root + "/a/train_text.txt");
  EXPECT_EQ(text.rfind("system\nuser\nassistant\n", 0), 0u);
  EXPECT_NE(text.find("Answer briefly."), std::string::npos);
  EXPECT_NE(text.find(" in the "), std::string::npos);
  // Evaluation questions, test and validation: every category present.
  for (const char* file : {"test_eval.json", "val_eval.json"}) {
    std::ifstream ev(root + "/a/" + file);
    const nlohmann::json e = nlohmann::json::parse(ev);
    std::map<std::string, int> cats;
    for (const auto& q : e) ++cats[q["category"].get<std::string>()];
    for (const char* c : {"identity", "position", "counting", "yes/no", "description"}) EXPECT_GT(cats[c], 0) << file << ": " << c;
    EXPECT_EQ(e.size(), std::string(file) == "val_eval.json" ? size_t(st.val_questions) : size_t(st.eval_questions));
  }
  // Validation scenes show only training photos that no training scene shows.
  {
    auto photos = [&](const std::string& tag, int64_t n) {
      std::set<int> seen;
      for (int64_t k = 0; k < n; ++k) {
        char f[64];
        std::snprintf(f, sizeof(f), "/a/images/%s/%06lld.png", tag.c_str(), (long long)k);
        const io::ImageRgb8 img = io::load_image(root + f);
        for (int c = 0; c < 4; ++c)
          if (const int v = img.at((c / 2) * 28, (c % 2) * 28, 0)) seen.insert(v - 1);
      }
      return seen;
    };
    const std::set<int> in_training = photos("train", 40), in_val = photos("val", 10);
    EXPECT_FALSE(in_val.empty());
    for (int p : in_val) EXPECT_EQ(in_training.count(p), 0u) << "photo " << p << " is in a training scene and a validation scene";
    EXPECT_LT(in_training.size(), 80u);
  }
  // Reading comprehension for the language model: each conversation of train_instruct.json once,
  // as text, the picture replaced by its caption in words; the same questions and answers. The
  // contrast file's conversations are the same with two counts put in, or none.
  {
    std::vector<std::string> skipped;
    const auto reading = data::read_llava_json(root + "/a/train_read.json", data::OnBad::Fail, &skipped);
    const auto caps = data::read_llava_json(root + "/a/train_captions.json", data::OnBad::Fail, &skipped);
    std::map<std::string, data::Record> conv, with_counts;
    for (const auto& [file, into] : {std::pair{"train_instruct.json", &conv}, std::pair{"train_instruct_contrast.json", &with_counts}})
      for (const data::Record& r : data::read_llava_json(root + "/a/" + file, data::OnBad::Fail, &skipped))
        if (r.id.find("-q") == std::string::npos) (*into)[r.id] = r;
    ASSERT_EQ(reading.size(), conv.size());
    ASSERT_EQ(with_counts.size(), conv.size());
    size_t n_with_pair = 0;
    for (size_t k = 0; k < reading.size(); ++k) {
      const data::Record& r = reading[k];
      EXPECT_TRUE(r.image.empty()) << r.id;
      const std::string id = r.id.substr(0, r.id.size() - std::string("-read").size());
      ASSERT_EQ(r.id, id + "-read");
      ASSERT_TRUE(conv.count(id)) << r.id;
      const auto& m = conv[id].messages;
      ASSERT_EQ(r.messages.size(), m.size()) << r.id;
      const std::string cap = caps[k].messages.back().content;
      ASSERT_EQ(caps[k].id, id);
      EXPECT_EQ(r.messages[0].content, cap + "\n" + m[0].content.substr(std::string("<image>\n").size())) << r.id;
      for (size_t i = 1; i < m.size(); ++i) EXPECT_EQ(r.messages[i].content, m[i].content) << r.id << " turn " << i;
      // (question, answer) turns without the picture.
      auto turns = [](const std::vector<text::Message>& ms) {
        std::vector<std::pair<std::string, std::string>> t;
        for (size_t i = 0; i + 1 < ms.size(); i += 2)
          t.push_back({ms[i].content.substr(i == 0 ? std::string("<image>\n").size() : 0), ms[i + 1].content});
        return t;
      };
      const auto base = turns(m), more = turns(with_counts[id].messages);
      size_t j = 0, extra = 0;
      for (const auto& t : more) {
        if (j < base.size() && t == base[j]) {
          ++j;
        } else {
          EXPECT_EQ(t.first.rfind("How many ", 0), 0u) << id << ": " << t.first << " is not in train_instruct.json";
          ++extra;
        }
      }
      EXPECT_EQ(j, base.size()) << id;
      EXPECT_TRUE(extra == 0 || extra == 2) << id;
      n_with_pair += extra == 2;
    }
    EXPECT_GT(n_with_pair, 0u);
  }
  // Deterministic in the seed.
  o.out = root + "/b";
  data::build_fashion_vqa(o);
  EXPECT_EQ(test::read_file(root + "/a/train_instruct.json"), test::read_file(root + "/b/train_instruct.json"));
  EXPECT_EQ(test::read_file(root + "/a/train_instruct_contrast.json"), test::read_file(root + "/b/train_instruct_contrast.json"));
  EXPECT_EQ(test::read_file(root + "/a/train_read.json"), test::read_file(root + "/b/train_read.json"));
  EXPECT_EQ(test::read_file(root + "/a/images/test/000003.png"), test::read_file(root + "/b/images/test/000003.png"));
  EXPECT_EQ(test::read_file(root + "/a/val_eval.json"), test::read_file(root + "/b/val_eval.json"));
  // Without validation scenes every other file is the same, and there are no validation files.
  o.out = root + "/c", o.val_scenes = 0;
  data::build_fashion_vqa(o);
  for (const char* f : {"train_instruct.json", "train_instruct_contrast.json", "train_read.json", "train_text.txt", "train_captions.json",
                        "test_eval.json", "test_instruct.json", "images/test/000003.png", "images/train/000005.png"})
    EXPECT_EQ(test::read_file(root + "/a/" + f), test::read_file(root + "/c/" + f)) << f;
  EXPECT_FALSE(fs::exists(root + "/c/val_eval.json"));
  EXPECT_FALSE(fs::exists(root + "/c/images/val"));
  // A damaged source is a clear error.
  std::ofstream(root + "/src/t10k-labels-idx1-ubyte.gz") << "garbage";
  EXPECT_THROW(data::build_fashion_vqa(o), Error);
  fs::remove_all(root);
}

// --photo-deck: training scenes deal their photos from a shuffled deck, so no photo repeats
// before all have been shown; the layouts (which cells are filled), the test files and the
// validation pool's rule stay as without it.
TEST(FashionVqa, PhotoDeckShowsEachPhotoOnceBeforeRepeats) {
  const std::string root = source_folder("fashion_deck", 120);
  data::FashionVqaOptions o;
  o.source = root + "/src", o.train_scenes = 30, o.test_scenes = 6, o.val_scenes = 4, o.seed = 3;
  // The photo index (pixel (0,0) - 1) in each cell of each training scene, -1 where empty.
  auto cells_of = [&](const std::string& dir, int64_t n) {
    std::vector<std::vector<int>> out;
    for (int64_t k = 0; k < n; ++k) {
      char f[64];
      std::snprintf(f, sizeof(f), "/images/train/%06lld.png", (long long)k);
      const io::ImageRgb8 img = io::load_image(dir + f);
      std::vector<int> c;
      for (int y : {0, 28})
        for (int x : {0, 28}) {
          const int v = img.rgb[size_t((y * 56 + x) * 3)];
          c.push_back(v == 0 ? -1 : v - 1);
        }
      out.push_back(c);
    }
    return out;
  };
  o.out = root + "/plain", o.photo_deck = false;
  const data::FashionVqaStats plain = data::build_fashion_vqa(o);
  o.out = root + "/deck", o.photo_deck = true;
  const data::FashionVqaStats deck = data::build_fashion_vqa(o);
  const auto a = cells_of(root + "/plain", 30), b = cells_of(root + "/deck", 30);
  std::set<int> dealt;
  int64_t filled = 0;
  for (size_t k = 0; k < a.size(); ++k)
    for (size_t c = 0; c < 4; ++c) {
      EXPECT_EQ(a[k][c] < 0, b[k][c] < 0) << "scene " << k << " cell " << c << ": the layout changed";
      if (b[k][c] < 0) continue;
      ++filled;
      EXPECT_TRUE(dealt.insert(b[k][c]).second) << "photo " << b[k][c] << " dealt twice before the deck ran out";
    }
  ASSERT_LT(filled, 120) << "the test needs fewer items than photos";
  EXPECT_EQ(deck.train_photos, filled);
  EXPECT_LT(plain.train_photos, filled);  // uniform draws repeat (about 45 of ~75 here would be distinct)
  EXPECT_EQ(deck.val_photos, 120 - filled);
  for (const char* f : {"test_eval.json", "test_instruct.json", "images/test/000003.png"})
    EXPECT_EQ(test::read_file(root + "/plain/" + f), test::read_file(root + "/deck/" + f)) << f;
  // Past the deck's end it is reshuffled: 150 scenes of up to 4 items over 120 photos show them all.
  o.out = root + "/many", o.train_scenes = 150, o.val_scenes = 0;
  EXPECT_EQ(data::build_fashion_vqa(o).train_photos, 120);
  fs::remove_all(root);
}
