#pragma once
// `ocellus eval`: a benchmark runner over LLaVA-style evaluation files ([{question_id, image,
// question, answer, category, choices?}]): greedy answers from a VLM, answers normalized as the
// VQAv2 / LLaVA evaluators do, and the metrics of the field: exact-match accuracy per category,
// yes/no accuracy, precision, recall, F1 and yes-ratio (as POPE reports them), and
// multiple-choice accuracy (the answer's letter or text against the right choice).
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ocellus/text/chat.h"

namespace ocellus::model {
struct Vlm;
}

namespace ocellus::eval {

struct Question {
  std::string id, image, question, answer, category;
  std::vector<std::string> choices;  // multiple choice: shown as "A. ...", answer a letter or text
};

// Reads an evaluation file; a malformed entry is an error naming its index.
std::vector<Question> read_questions(const std::string& path);
std::vector<Question> parse_questions(const std::string& json_text, const std::string& name);

// VQAv2's normalization: lower case, punctuation removed (a period between digits kept), number
// words to digits, articles dropped, common contractions restored, whitespace collapsed.
std::string normalize_answer(const std::string& s);
// The yes/no reading of an answer as POPE takes it: "no" if its first sentence has the word no
// or not, else "yes".
std::string yes_no(const std::string& s);

struct CategoryScore {
  int64_t n = 0, correct = 0;
  double accuracy() const { return n ? double(correct) / double(n) : 0.0; }
};
struct YesNoScore {
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
  int64_t n() const { return tp + fp + tn + fn; }
  double accuracy() const { return n() ? double(tp + tn) / double(n()) : 0.0; }
  double precision() const { return tp + fp ? double(tp) / double(tp + fp) : 0.0; }
  double recall() const { return tp + fn ? double(tp) / double(tp + fn) : 0.0; }
  double f1() const;
  double yes_ratio() const { return n() ? double(tp + fp) / double(n()) : 0.0; }
};
struct Report {
  std::map<std::string, CategoryScore> by_category;  // exact match after normalization
  CategoryScore overall, multiple_choice;
  YesNoScore yes_no;                                 // over questions whose reference is yes / no
  std::vector<bool> correct;                         // per question, as scored
};

// Scores predictions (one per question, same order).
Report score(const std::vector<Question>& qs, const std::vector<std::string>& predictions);
std::string format_table(const Report& r);
// The report and every answer with its verdict (the one score() gave).
std::string report_json(const Report& r, const std::vector<Question>& qs, const std::vector<std::string>& predictions);

// Greedy answers of `vlm` (at most max_tokens each) to every question, its image read from
// image_dir; progress through the callback (done, total).
std::vector<std::string> answer_all(const model::Vlm& vlm, const std::vector<Question>& qs, const std::string& image_dir,
                                    text::ChatTemplate chat_template, int32_t max_tokens,
                                    const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace ocellus::eval
