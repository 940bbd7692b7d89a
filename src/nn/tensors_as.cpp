// Renaming a model's tensors between file layouts by replaying its loader (see nn::tensors_as).
#include <utility>

#include "ocellus/core/error.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/nn/forward.h"

namespace ocellus::nn {
namespace {

// One question a loader asked its maker, and the answer.
struct Call {
  enum Kind { Has, ShapeOf, Vector, Matrix } kind;
  bool found = false;
  Shape shape;
  Tensor value;  // Vector / Matrix: as read (undefined: an optional tensor that is absent)
};

// The loader's model is never run: matrices are not prepared.
Maker<Infer> recording_maker(const io::TensorSource& s, const std::string& what, std::vector<Call>* calls) {
  const Maker<Infer> file = file_maker(s, what);
  Maker<Infer> m;
  m.has = [file, calls](const std::string& n) {
    const bool r = file.has(n);
    calls->push_back({Call::Has, r, {}, {}});
    return r;
  };
  m.shape = [file, calls](const std::string& n) {
    const Shape r = file.shape(n);
    calls->push_back({Call::ShapeOf, true, r, {}});
    return r;
  };
  m.tensor = [file, calls](const std::string& n, const Shape& shape, bool required) {
    const Tensor t = file.tensor(n, shape, required);
    calls->push_back({Call::Vector, t.defined(), shape, t});
    return t;
  };
  m.matrix = [file, calls](const std::string& n, const Shape& shape) {
    calls->push_back({Call::Matrix, true, shape, file.tensor(n, shape, true)});
    return ops::PreparedWeight();
  };
  return m;
}

// Answers call i as the recording did; each tensor asked for goes to `out` under the name asked,
// in the shape asked (the same elements: layouts differ only in dimensions of 1).
Maker<Infer> replaying_maker(const std::vector<Call>& calls, size_t* next, const std::string& what,
                                     std::vector<std::pair<std::string, Tensor>>* out) {
  auto take = [&calls, next, what](Call::Kind kind, const std::string& n) -> const Call& {
    OCELLUS_CHECK(*next < calls.size() && calls[*next].kind == kind, what, ": the loader reads the layouts differently (at '", n, "')");
    return calls[(*next)++];
  };
  Maker<Infer> m;
  m.has = [take](const std::string& n) { return take(Call::Has, n).found; };
  m.shape = [take](const std::string& n) { return take(Call::ShapeOf, n).shape; };
  auto put = [out, what](const Call& c, const std::string& n, const Shape& shape) {
    if (!c.found) return Tensor();
    OCELLUS_CHECK(c.value.numel() == shape.numel(), what, ": '", n, "' is ", shape.str(), ", read as ", c.value.shape().str());
    Tensor t = c.value.shape() == shape ? c.value : c.value.contiguous().reshape(shape);
    out->push_back({n, t});
    return t;
  };
  m.tensor = [take, put](const std::string& n, const Shape& shape, bool) { return put(take(Call::Vector, n), n, shape); };
  m.matrix = [take, put](const std::string& n, const Shape& shape) {
    put(take(Call::Matrix, n), n, shape);
    return ops::PreparedWeight();
  };
  return m;
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> tensors_as(const io::TensorSource& s, const std::string& what,
                                                       const std::function<void(const Maker<Infer>&, bool second)>& load) {
  std::vector<Call> calls;
  load(recording_maker(s, what, &calls), false);
  std::vector<std::pair<std::string, Tensor>> out;
  size_t next = 0;
  load(replaying_maker(calls, &next, what, &out), true);
  OCELLUS_CHECK(next == calls.size(), what, ": the loader reads the layouts differently (", calls.size() - next, " reads left)");
  return out;
}

}  // namespace ocellus::nn
