#include "ocellus/io/gguf_convert.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "ocellus/core/error.h"
#include "ocellus/core/quant.h"
#include "ocellus/core/threads.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"

namespace ocellus::io {

namespace fs = std::filesystem;

namespace {

// llama.cpp's llama_ftype values.
const QuantTarget kTargets[] = {
    {"F32", 0, DType::F32},       {"F16", 1, DType::F16},       {"BF16", 32, DType::BF16},   {"Q8_0", 7, DType::Q8_0},
    {"Q4_0", 2, DType::Q4_0},     {"Q2_K", 10, DType::Q2_K},    {"Q3_K_M", 12, DType::Q3_K}, {"Q4_K_M", 15, DType::Q4_K},
    {"Q5_K_M", 17, DType::Q5_K},  {"Q6_K", 18, DType::Q6_K},
};

bool is(const QuantTarget& t, const char* name) { return std::string(t.name) == name; }

// What llama-quantize's rules read of a text model, and the counters they advance per layer.
struct MixState {
  int n_layer = 0, n_gqa = 0, n_attention_wv = 0;
  bool has_output = false, llama_70b = false;
  int i_attention_wv = 0, i_ffn_down = 0;
};

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third between.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// The type of one weight matrix of a text model under a quantized target (llama_tensor_get_type
// for dense models without an importance matrix).
DType mix_type(const QuantTarget& q, const std::string& name, int64_t row, MixState& s) {
  DType t = q.base;
  auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (name == "output.weight" || (!s.has_output && name == "token_embd.weight")) {
    // The output matrix (or the embedding it is tied to) keeps more bits: q6_K.
    if (row % kQK_K != 0) return DType::Q8_0;
    return q.base == DType::Q8_0 ? t : DType::Q6_K;
  }
  if (has("attn_v.weight")) {
    if (is(q, "Q2_K")) t = s.n_gqa >= 4 ? DType::Q4_K : DType::Q3_K;
    else if (is(q, "Q3_K_M")) t = s.i_attention_wv < 2 ? DType::Q5_K : DType::Q4_K;
    else if ((is(q, "Q4_K_M") || is(q, "Q5_K_M")) && use_more_bits(s.i_attention_wv, s.n_attention_wv)) t = DType::Q6_K;
    if (s.llama_70b && (t == DType::Q3_K || t == DType::Q4_K)) t = DType::Q5_K;
    ++s.i_attention_wv;
  } else if (has("ffn_down")) {
    const int i = s.i_ffn_down++, n = s.n_layer;
    if (is(q, "Q2_K")) t = DType::Q3_K;
    else if (is(q, "Q3_K_M")) t = i < n / 16 ? DType::Q5_K : DType::Q4_K;
    else if ((is(q, "Q4_K_M") || is(q, "Q5_K_M")) && use_more_bits(i, n)) t = DType::Q6_K;
  } else if (has("attn_output.weight")) {
    if (is(q, "Q2_K")) t = DType::Q3_K;
    else if (is(q, "Q3_K_M")) t = DType::Q4_K;
  } else if (has("attn_qkv.weight")) {
    if (is(q, "Q3_K_M")) t = DType::Q4_K;
    else if (is(q, "Q4_K_M")) t = DType::Q5_K;
    else if (is(q, "Q5_K_M")) t = DType::Q6_K;
  }
  return t;
}

// llama-quantize quantizes a tensor when it is a matrix whose name ends in "weight", and not a
// norm or one of the few matrices every model keeps exact.
bool quantizable(const GgufTensorInfo& t) {
  if (t.shape.ndim < 2 || !t.name.ends_with("weight") || t.name.find("_norm.weight") != std::string::npos) return false;
  for (const char* keep : {"ffn_gate_inp.weight", "ssm_conv1d.weight", "attn_rel_b.weight", "position_embd.weight", "token_types.weight"})
    if (t.name.find(keep) != std::string::npos) return false;
  return true;
}

// llama-quantize's tensor order: tensors outside layers by name, then layer by layer ("blk.N."),
// by name within a layer. The rules' per-layer counters follow it.
int layer_of(const std::string& name) {
  int n = -1;
  return std::sscanf(name.c_str(), "blk.%d.", &n) == 1 ? n : -1;
}

}  // namespace

const QuantTarget& quant_target_from_name(const std::string& name) {
  std::string upper = name, known;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return char(std::toupper(c)); });
  for (const QuantTarget& t : kTargets) {
    if (upper == t.name) return t;
    known += std::string(known.empty() ? "" : ", ") + t.name;
  }
  fail("quantize: type '", name, "' is not supported (supported: ", known, ")");
}

ConvertResult convert_gguf(const std::string& in, const std::string& out, const QuantTarget& target, bool force) {
  const GgufFile f = GgufFile::open(in);
  std::error_code ec;
  OCELLUS_CHECK(!fs::equivalent(in, out, ec), "quantize: ", out, " is the input file");
  OCELLUS_CHECK(force || !fs::exists(out), "quantize: ", out, " exists (--force to replace it)");
  for (const GgufTensorInfo& t : f.tensors())
    OCELLUS_CHECK(t.type->block_size == 1, "quantize: ", in, " is already quantized (tensor '", t.name, "' is ", t.type->name,
                  "): quantize the f32, f16 or bf16 file it was made from");
  const std::string arch = f.get_string(gguf::key::kArchitecture, "");
  const bool projector = arch == "clip";
  OCELLUS_CHECK(!projector || !dtype_info(target.base).quantized || target.base == DType::Q8_0, "quantize: ", in,
                " is a vision projector (mmproj): its weights take F32, F16, BF16 or Q8_0, not ", target.name);

  // The rules apply to text models at a quantized target, as llama-quantize applies them.
  const bool rules = !projector && dtype_info(target.base).quantized;
  MixState s;
  if (rules) {
    s.n_layer = int(f.get_int(arch + "." + gguf::key::kBlockCount, 0));
    const int64_t heads = f.get_int(arch + "." + gguf::key::kHeadCount, 0), kv = f.get_int(arch + "." + gguf::key::kHeadCountKv, heads);
    s.n_gqa = kv > 0 ? int(heads / kv) : 0;
    s.llama_70b = arch == "llama" && s.n_layer == 80 && heads != kv;
    for (const GgufTensorInfo& t : f.tensors()) {
      s.has_output |= t.name == "output.weight";
      s.n_attention_wv += t.name.find("attn_v.weight") != std::string::npos || t.name.find("attn_qkv.weight") != std::string::npos;
    }
  }
  std::vector<const GgufTensorInfo*> order;
  for (const GgufTensorInfo& t : f.tensors()) order.push_back(&t);
  if (!projector)
    std::stable_sort(order.begin(), order.end(), [](const GgufTensorInfo* a, const GgufTensorInfo* b) {
      const int la = layer_of(a->name), lb = layer_of(b->name);
      return la != lb ? la < lb : a->name < b->name;
    });

  GgufWriter w(f.version());
  for (const auto& [k, v] : f.metadata())
    if (k != gguf::key::kFileType && k != gguf::key::kQuantizationVersion && !k.starts_with("split.")) w.set(k, v);
  w.set(gguf::key::kQuantizationVersion, GgufValue::u32(2));
  w.set(gguf::key::kFileType, GgufValue::u32(target.file_type));
  ConvertResult r;
  for (const GgufTensorInfo* info : order) {
    const int64_t row = info->shape.last();
    r.in_bytes += info->nbytes;
    bool convert = false;  // integer tensors, norms and biases keep their bytes
    DType type = DType::F32;
    if (info->type->dtype && quantizable(*info)) {
      type = rules ? mix_type(target, info->name, row, s) : target.base;
      // Rows that are not whole blocks: llama-quantize falls back to a 32-block type (q4_0 for
      // q2_K / q3_K as it does since 2025; q8_0 where it writes q5_0 / q5_1, which ocellus lacks).
      if (row % dtype_info(type).block_size != 0 && is_k_quant(type)) {
        type = type == DType::Q2_K || type == DType::Q3_K ? DType::Q4_0 : DType::Q8_0;
        ++r.fallback;
      }
      convert = row % dtype_info(type).block_size == 0 && type != *info->type->dtype;
    }
    (convert ? r.converted : r.kept)++;
    if (!convert) {
      r.out_bytes += info->nbytes;
      const uint8_t* src = f.tensor_data(*info);
      w.add_tensor(info->name, info->type_id, info->shape, [src, n = info->nbytes](uint8_t* dst) { std::memcpy(dst, src, n); });
      continue;
    }
    const Tensor t = f.tensor(info->name);
    const int64_t rows = t.numel() / row;
    const size_t out_row = row_bytes(type, row);
    r.out_bytes += uint64_t(rows) * out_row;
    // Row by row while the file is written: nothing but one row of floats per thread is held.
    w.add_tensor(info->name, ggml_type_id(type), info->shape, [t, type, row, rows, out_row](uint8_t* dst) {
      parallel_for(rows, 1, [&](int64_t a, int64_t b) {
        std::vector<float> x(static_cast<size_t>(row));
        const size_t in_row = row_bytes(t.dtype(), row);
        for (int64_t i = a; i < b; ++i) {
          dequantize_row(t.dtype(), static_cast<const uint8_t*>(t.raw()) + size_t(i) * in_row, x.data(), row);
          quantize_row(type, x.data(), dst + size_t(i) * out_row, row);
        }
      });
    });
  }
  w.write(out);
  return r;
}

}  // namespace ocellus::io
