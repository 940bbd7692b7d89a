// The evaluation runner: VQAv2 answer normalization, POPE's yes/no reading and metrics,
// multiple choice, per-category accuracy on hand-checked predictions; and answering an
// evaluation file with the fixture VLM.
#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/eval/eval.h"
#include "ocellus/model/vlm.h"
#include "testutil.h"

using namespace ocellus;

TEST(Eval, NormalizesAsVqa) {
  EXPECT_EQ(eval::normalize_answer("Two"), "2");
  EXPECT_EQ(eval::normalize_answer("A sneaker."), "sneaker");
  EXPECT_EQ(eval::normalize_answer("  The   top-left  "), "top left");
  EXPECT_EQ(eval::normalize_answer("3.5"), "3.5");
  EXPECT_EQ(eval::normalize_answer("Yes!"), "yes");
  EXPECT_EQ(eval::normalize_answer("dont know"), "don't know");
  EXPECT_EQ(eval::normalize_answer("an ankle boot"), "ankle boot");
  EXPECT_EQ(eval::yes_no("No, there is not."), "no");
  EXPECT_EQ(eval::yes_no("Yes. No doubt."), "yes");  // the first sentence
  EXPECT_EQ(eval::yes_no("There is a bag"), "yes");
}

TEST(Eval, ScoresCategoriesPopeAndChoices) {
  std::vector<eval::Question> qs = {
      {"0", "a.png", "Is there a bag?", "yes", "yes/no", {}},  {"1", "a.png", "Is there a coat?", "no", "yes/no", {}},
      {"2", "a.png", "Is there a shirt?", "no", "yes/no", {}}, {"3", "a.png", "Is there a dress?", "yes", "yes/no", {}},
      {"4", "a.png", "How many?", "2", "counting", {}},       {"5", "a.png", "Where?", "top left", "position", {}},
      {"6", "a.png", "Which?", "B", "choice", {"red", "green", "blue"}},
      {"7", "a.png", "Which?", "blue", "choice", {"red", "green", "blue"}}};
  const std::vector<std::string> pred = {"Yes.", "yes", "No, it is not.", "no", "two", "The top left.", "(B) green", "A"};
  const eval::Report r = eval::score(qs, pred);
  // yes/no: tp 1 (0), fp 1 (1), tn 1 (2), fn 1 (3)
  EXPECT_EQ(r.yes_no.tp, 1);
  EXPECT_EQ(r.yes_no.fp, 1);
  EXPECT_EQ(r.yes_no.tn, 1);
  EXPECT_EQ(r.yes_no.fn, 1);
  EXPECT_DOUBLE_EQ(r.yes_no.accuracy(), 0.5);
  EXPECT_DOUBLE_EQ(r.yes_no.precision(), 0.5);
  EXPECT_DOUBLE_EQ(r.yes_no.recall(), 0.5);
  EXPECT_DOUBLE_EQ(r.yes_no.f1(), 0.5);
  EXPECT_DOUBLE_EQ(r.yes_no.yes_ratio(), 0.5);
  EXPECT_EQ(r.by_category.at("counting").correct, 1);
  EXPECT_EQ(r.by_category.at("position").correct, 1);
  EXPECT_EQ(r.multiple_choice.n, 2);
  EXPECT_EQ(r.multiple_choice.correct, 1);  // "(B) green" picks B; "A" is not blue
  EXPECT_EQ(r.overall.n, 8);
  EXPECT_EQ(r.overall.correct, 4);  // exact match: 0 ("Yes." is yes), counting, position, choice 6
  EXPECT_NE(eval::format_table(r).find("F1 0.5000"), std::string::npos) << eval::format_table(r);
  // The JSON's verdicts are the scored ones: "(B) green" is a correct multiple-choice answer.
  const nlohmann::json j = nlohmann::json::parse(eval::report_json(r, qs, pred));
  EXPECT_EQ(j["answers"][6]["prediction"], "(B) green");
  EXPECT_TRUE(j["answers"][6]["correct"].get<bool>());
  EXPECT_FALSE(j["answers"][7]["correct"].get<bool>());
  EXPECT_THROW(eval::score(qs, {"x"}), Error);
  EXPECT_THROW(eval::parse_questions(R"([{"question": "q"}])", "e.json"), Error);  // no image / answer
}

TEST(Eval, AnswersWithTheFixtureVlm) {
  const std::string peer = std::string(OCELLUS_FIXTURES) + "/peer/";
  const model::Vlm v = model::load_vlm(peer + "tiny-llama-f32.gguf", peer + "tiny-mmproj-clip-f32.gguf");
  const auto qs = eval::read_questions(std::string(OCELLUS_TESTS_DIR) + "/eval/eval_questions.json");
  ASSERT_EQ(qs.size(), 3u);
  EXPECT_EQ(qs[2].choices.size(), 3u);
  int64_t seen = 0;
  const auto answers = eval::answer_all(v, qs, std::string(OCELLUS_FIXTURES) + "/images", text::ChatTemplate::Vicuna, 4,
                                        [&](int64_t done, int64_t total) {
                                          seen = done;
                                          EXPECT_EQ(total, 3);
                                        });
  EXPECT_EQ(answers.size(), 3u);
  EXPECT_EQ(seen, 3);
  // Greedy: the same answers again.
  EXPECT_EQ(eval::answer_all(v, qs, std::string(OCELLUS_FIXTURES) + "/images", text::ChatTemplate::Vicuna, 4), answers);
  const std::string j = eval::report_json(eval::score(qs, answers), qs, answers);
  EXPECT_NE(j.find("\"q2\""), std::string::npos);
}
