#include "ocellus/model/export.h"

#include <filesystem>
#include <utility>
#include <vector>

#include "ocellus/connect/connector.h"
#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/lm/lm.h"
#include "ocellus/model/vlm.h"
#include "ocellus/text/chat.h"

namespace ocellus::model {

namespace fs = std::filesystem;

void export_hf_folder(const std::string& base_dir, const std::map<std::string, Tensor>& trained, const std::string& dir) {
  const io::SafetensorsModel base = io::SafetensorsModel::open(base_dir);
  fs::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> out;
  size_t replaced = 0;
  for (const std::string& n : base.names()) {
    const auto it = trained.find(n);
    if (it != trained.end()) out.push_back({n, it->second}), ++replaced;
    else out.push_back({n, base.tensor(n)});
  }
  OCELLUS_CHECK(replaced == trained.size(), "train: export placed ", replaced, " of ", trained.size(), " trained tensors");
  io::write_safetensors(dir + "/model.safetensors", out);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"}) {
    const std::string src = base_dir + "/" + f;
    if (io::is_file(src)) fs::copy_file(src, dir + "/" + f, fs::copy_options::overwrite_existing);
  }
}

void export_trained_vlm(const TrainableVlm& vlm, const std::string& base_dir, const text::Tokenizer& tok, const std::string& model_dir,
                        const std::string& gguf_model, const std::string& gguf_mmproj) {
  {
    // Each trained tensor goes back under the name it was read from.
    std::map<std::string, Tensor> trained;
    for (const auto& [n, t] : vlm.merged_tensors()) trained[vlm.file_name(n)] = t;
    export_hf_folder(base_dir, trained, model_dir);
  }
  for (const fs::path f : {gguf_model, gguf_mmproj})
    if (f.has_parent_path()) fs::create_directories(f.parent_path());
  // The folder's chat template travels into the GGUF, so runners pick it up.
  lm::write_gguf(*lm::load_hf(model_dir), tok, gguf_model, text::hf_chat_template_text(base_dir));
  // The tower and the projector under llama.cpp's mmproj names: their loaders know both layouts' names.
  const std::vector<std::pair<std::string, Tensor>> proj = connect::connector_tensors_as(
      vlm.config().connector, vlm.config().connector_config(vlm.lm_config().n_embd), vlm.tensors(), connect::Layout::HfLlava,
      connect::Layout::Gguf);
  const io::SafetensorsModel folder = io::SafetensorsModel::open(model_dir);
  const io::TensorSource src = io::safetensors_source(folder, model_dir);
  const vision::VitConfig vc = load_hf_vision(model_dir)->config();
  const vision::VitNames names = vision::hf_vit_names(vision::find_hf_vit_prefix(src));
  write_mmproj(vc, vision::vit_tensors_as(vc, src, names, vision::gguf_vit_names()), vlm.config().connector, proj,
               vlm.lm_config().n_embd, gguf_mmproj, vlm.config().merge);
}

}  // namespace ocellus::model
