// Reading an encoder block's weights, for either forward context (see vision/encoder_block.h).
#include "ocellus/vision/encoder_block.h"

#include "ocellus/io/gguf_names.h"

namespace ocellus::vision {

template <class F>
EncoderBlock<F> load_encoder_block(const nn::Maker<F>& mk, const EncoderBlockNames& n, int64_t i, int64_t d, int64_t ff) {
  auto at = [&](const std::string& pattern) {
    return pattern.find("%d") == std::string::npos ? pattern : io::gguf::name(pattern.c_str(), int(i));
  };
  auto vec = [&](const std::string& name, int64_t len, bool required) { return mk.tensor(at(name), {len}, required); };
  EncoderBlock<F> b;
  b.ln1_w = vec(n.ln1_w, d, true), b.ln1_b = vec(n.ln1_b, d, false);
  b.ln2_w = vec(n.ln2_w, d, true), b.ln2_b = vec(n.ln2_b, d, false);
  b.q = mk.matrix(at(n.q), {d, d}), b.q_b = vec(n.q_b, d, false);
  b.k = mk.matrix(at(n.k), {d, d}), b.k_b = vec(n.k_b, d, false);
  b.v = mk.matrix(at(n.v), {d, d}), b.v_b = vec(n.v_b, d, false);
  b.o = mk.matrix(at(n.o), {d, d}), b.o_b = vec(n.o_b, d, false);
  b.fc1 = mk.matrix(at(n.fc1), {ff, d}), b.fc1_b = vec(n.fc1_b, ff, false);
  b.fc2 = mk.matrix(at(n.fc2), {d, ff}), b.fc2_b = vec(n.fc2_b, d, false);
  return b;
}

template EncoderBlock<nn::Infer> load_encoder_block(const nn::Maker<nn::Infer>&, const EncoderBlockNames&, int64_t, int64_t, int64_t);
template EncoderBlock<nn::Train> load_encoder_block(const nn::Maker<nn::Train>&, const EncoderBlockNames&, int64_t, int64_t, int64_t);

}  // namespace ocellus::vision
