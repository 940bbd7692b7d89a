#include "ocellus/io/json.h"
#include "ocellus/eval/eval.h"

#include <cctype>
#include <cstdio>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/image.h"
#include "ocellus/lm/generate.h"
#include "ocellus/model/answer.h"
#include "ocellus/model/vlm.h"
#include "ocellus/text/chat.h"

namespace ocellus::eval {

using nlohmann::json;

std::vector<Question> parse_questions(const std::string& text, const std::string& name) {
  const json j = io::parse_json(text, name, "eval");
  OCELLUS_CHECK(j.is_array(), "eval: ", name, ": expected a JSON array of questions");
  std::vector<Question> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& q = j[i];
    auto str = [&](const char* k, bool required) {
      if (!q.is_object() || !q.contains(k) || q[k].is_null()) {
        OCELLUS_CHECK(!required, "eval: ", name, ": question ", i, " has no '", k, "'");
        return std::string();
      }
      if (q[k].is_number_integer()) return std::to_string(q[k].get<int64_t>());
      OCELLUS_CHECK(q[k].is_string(), "eval: ", name, ": question ", i, ": '", k, "' is not a string");
      return q[k].get<std::string>();
    };
    Question x;
    x.id = str("question_id", false);
    if (x.id.empty()) x.id = std::to_string(i);
    x.image = str("image", true), x.answer = str("answer", true), x.category = str("category", false);
    x.question = q.contains("question") ? str("question", true) : str("text", true);
    if (x.category.empty()) x.category = "all";
    if (q.contains("choices")) {
      OCELLUS_CHECK(q["choices"].is_array(), "eval: ", name, ": question ", i, ": 'choices' is not a list");
      for (const json& c : q["choices"]) {
        OCELLUS_CHECK(c.is_string(), "eval: ", name, ": question ", i, ": a choice is not a string");
        x.choices.push_back(c.get<std::string>());
      }
    }
    out.push_back(std::move(x));
  }
  return out;
}

std::vector<Question> read_questions(const std::string& path) { return parse_questions(io::read_text_file(path), path); }

std::string normalize_answer(const std::string& in) {
  std::string s;
  for (char c : in) s += char(std::tolower(static_cast<unsigned char>(c)));
  for (char& c : s)
    if (c == '\n' || c == '\t') c = ' ';
  // Punctuation (VQAv2's list): dropped next to a space or an end, else a space.
  static const std::string punct = ";/[]\"{}()=+\\_-><@`,?!";
  std::string t;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (punct.find(c) != std::string::npos) {
      const bool edge = i == 0 || i + 1 == s.size() || s[i - 1] == ' ' || s[i + 1] == ' ';
      if (!edge) t += ' ';
      continue;
    }
    if (c == '.') {  // a period between digits stays (3.5)
      const bool num = i > 0 && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i - 1])) &&
                       std::isdigit(static_cast<unsigned char>(s[i + 1]));
      if (num) t += c;
      continue;
    }
    t += c;
  }
  static const std::map<std::string, std::string> numbers = {
      {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"},   {"three", "3"}, {"four", "4"},
      {"five", "5"}, {"six", "6"},  {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"}};
  static const std::map<std::string, std::string> contractions = {
      {"dont", "don't"}, {"doesnt", "doesn't"}, {"isnt", "isn't"}, {"arent", "aren't"}, {"cant", "can't"},
      {"wont", "won't"}, {"didnt", "didn't"}, {"wasnt", "wasn't"}, {"werent", "weren't"}, {"hasnt", "hasn't"},
      {"havent", "haven't"}, {"couldnt", "couldn't"}, {"shouldnt", "shouldn't"}, {"wouldnt", "wouldn't"},
      {"its", "it's"}, {"thats", "that's"}, {"theres", "there's"}, {"whats", "what's"}, {"im", "i'm"}};
  std::istringstream words(t);
  std::string w, out;
  while (words >> w) {
    if (w == "a" || w == "an" || w == "the") continue;
    if (auto it = numbers.find(w); it != numbers.end()) w = it->second;
    if (auto it = contractions.find(w); it != contractions.end()) w = it->second;
    out += (out.empty() ? "" : " ") + w;
  }
  return out;
}

std::string yes_no(const std::string& s) {
  // POPE: the first sentence; "no" if it says no or not, else "yes".
  std::string first = s.substr(0, s.find('.'));
  std::string low;
  for (char c : first) low += std::isalpha(static_cast<unsigned char>(c)) ? char(std::tolower(static_cast<unsigned char>(c))) : ' ';
  std::istringstream words(low);
  for (std::string w; words >> w;)
    if (w == "no" || w == "not") return "no";
  return "yes";
}

double YesNoScore::f1() const {
  const double p = precision(), r = recall();
  return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
}

namespace {

// The choice a multiple-choice answer picks: its letter ("B", "B.", "(B)") or its text; -1 if none.
int picked_choice(const Question& q, const std::string& a) {
  const std::string n = normalize_answer(a);
  for (size_t i = 0; i < q.choices.size(); ++i)
    if (n == normalize_answer(q.choices[i])) return int(i);
  std::string letters;
  for (char c : a)
    if (std::isalpha(static_cast<unsigned char>(c))) letters += char(std::toupper(static_cast<unsigned char>(c)));
    else if (!letters.empty()) break;
  if (letters.size() == 1 && letters[0] >= 'A' && size_t(letters[0] - 'A') < q.choices.size()) return letters[0] - 'A';
  return -1;
}

}  // namespace

Report score(const std::vector<Question>& qs, const std::vector<std::string>& pred) {
  OCELLUS_CHECK(qs.size() == pred.size(), "eval: ", pred.size(), " answers for ", qs.size(), " questions");
  Report r;
  for (size_t i = 0; i < qs.size(); ++i) {
    const Question& q = qs[i];
    bool ok;
    if (!q.choices.empty()) {
      ok = picked_choice(q, pred[i]) == picked_choice(q, q.answer) && picked_choice(q, q.answer) >= 0;
      ++r.multiple_choice.n, r.multiple_choice.correct += ok;
    } else {
      ok = normalize_answer(pred[i]) == normalize_answer(q.answer);
    }
    r.correct.push_back(ok);
    CategoryScore& c = r.by_category[q.category];
    ++c.n, c.correct += ok;
    ++r.overall.n, r.overall.correct += ok;
    const std::string ref = normalize_answer(q.answer);
    if (q.choices.empty() && (ref == "yes" || ref == "no")) {
      const bool said_yes = yes_no(pred[i]) == "yes", is_yes = ref == "yes";
      if (said_yes && is_yes) ++r.yes_no.tp;
      else if (said_yes) ++r.yes_no.fp;
      else if (is_yes) ++r.yes_no.fn;
      else ++r.yes_no.tn;
    }
  }
  return r;
}

std::string format_table(const Report& r) {
  std::string out;
  char line[160];
  std::snprintf(line, sizeof(line), "%-16s %8s %8s %9s\n", "category", "n", "correct", "accuracy");
  out += line;
  auto row = [&](const std::string& name, const CategoryScore& c) {
    std::snprintf(line, sizeof(line), "%-16s %8lld %8lld %8.2f%%\n", name.c_str(), (long long)c.n, (long long)c.correct, 100 * c.accuracy());
    out += line;
  };
  for (const auto& [name, c] : r.by_category) row(name, c);
  row("overall", r.overall);
  if (r.multiple_choice.n) row("multiple choice", r.multiple_choice);
  const YesNoScore& y = r.yes_no;
  if (y.n()) {
    std::snprintf(line, sizeof(line), "yes/no (POPE): accuracy %.2f%%  precision %.2f%%  recall %.2f%%  F1 %.4f  yes-ratio %.2f%%\n",
                  100 * y.accuracy(), 100 * y.precision(), 100 * y.recall(), y.f1(), 100 * y.yes_ratio());
    out += line;
  }
  return out;
}

std::string report_json(const Report& r, const std::vector<Question>& qs, const std::vector<std::string>& pred) {
  json j;
  auto counts = [](const CategoryScore& c) { return json{{"n", c.n}, {"correct", c.correct}, {"accuracy", c.accuracy()}}; };
  for (const auto& [name, c] : r.by_category) j["categories"][name] = counts(c);
  j["overall"] = counts(r.overall);
  if (r.multiple_choice.n) j["multiple_choice"] = counts(r.multiple_choice);
  const YesNoScore& y = r.yes_no;
  j["yes_no"] = {{"tp", y.tp}, {"fp", y.fp}, {"tn", y.tn}, {"fn", y.fn}, {"accuracy", y.accuracy()}, {"precision", y.precision()},
                 {"recall", y.recall()}, {"f1", y.f1()}, {"yes_ratio", y.yes_ratio()}};
  json answers = json::array();
  OCELLUS_CHECK(qs.size() == pred.size() && r.correct.size() == qs.size(), "eval: the report is not of these answers");
  for (size_t i = 0; i < qs.size(); ++i)
    answers.push_back({{"question_id", qs[i].id}, {"category", qs[i].category}, {"answer", qs[i].answer}, {"prediction", pred[i]},
                       {"correct", bool(r.correct[i])}});
  j["answers"] = answers;
  return j.dump(1) + "\n";
}

std::vector<std::string> answer_all(const model::Vlm& v, const std::vector<Question>& qs, const std::string& image_dir,
                                    text::ChatTemplate t, int32_t max_tokens,
                                    const std::function<void(int64_t, int64_t)>& progress) {
  lm::GenerateParams g;
  g.n_predict = max_tokens;
  g.sampling.temperature = 0;  // greedy
  std::map<std::string, Tensor> rows_of;  // each picture encoded once
  std::vector<std::string> out;
  for (size_t i = 0; i < qs.size(); ++i) {
    const Question& q = qs[i];
    const std::string path = image_dir.empty() ? q.image : image_dir + "/" + q.image;
    auto it = rows_of.find(path);
    if (it == rows_of.end()) it = rows_of.emplace(path, v.vision->embed(io::load_image(path))).first;
    std::string user = model::image_placeholders(1) + q.question;
    for (size_t c = 0; c < q.choices.size(); ++c) user += "\n" + std::string(1, char('A' + c)) + ". " + q.choices[c];
    std::string a = model::answer(v, t, {{"user", user}}, {it->second}, g).text;
    while (!a.empty() && std::isspace(static_cast<unsigned char>(a.back()))) a.pop_back();
    while (!a.empty() && std::isspace(static_cast<unsigned char>(a.front()))) a.erase(a.begin());
    out.push_back(a);
    if (progress) progress(int64_t(i + 1), int64_t(qs.size()));
  }
  return out;
}

}  // namespace ocellus::eval
