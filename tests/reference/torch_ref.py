#!/usr/bin/env python3
"""PyTorch re-statements of ocellus' vision towers and connectors, run by the C++ tests.

Written from the Hugging Face modelling code's structure (SiglipVisionModel, CLIPVisionModel) and
the papers, using only Debian's python3-torch: no transformers, no safetensors package (the file
format is read here). Usage:

    torch_ref.py vit DIR PIXELS OUT [FEATURE_LAYER]   DIR holds config.json + model.safetensors;
                                                      PIXELS float32 [B, 3, S, S]; OUT float32
    torch_ref.py connector DIR FEATURES OUT           DIR: config.json {type, d_in, d_out, n_head}
                                                      + model.safetensors; FEATURES float32 [n, d_in]
    torch_ref.py connector_grad DIR FEATURES R OUT   as connector; R float32 [n_tokens, d_out];
                                                      OUT: the gradients of sum(out * R) with respect
                                                      to the features, then to each of config.json's
                                                      "names" in order (in float64 where config.json
                                                      says "float64": true)
    torch_ref.py vlm_train DIR BATCH OUT              DIR: a LLaVA config.json (llama / qwen2 text,
                                                      mlp2x_gelu or linear projector) + model.safetensors;
                                                      BATCH: JSON {ids, mask, features, n_features,
                                                      trainable, lr, weight_decay, steps, clip};
                                                      OUT: loss, the trainable parameters' gradients
                                                      (in BATCH's order), then the loss before each
                                                      of `steps` AdamW steps
    torch_ref.py siglip DIR BATCH OUT                 DIR: a LLaVA config.json (SigLIP tower) +
                                                      model.safetensors with the tower and the
                                                      siglip.* text tower / heads; BATCH: JSON
                                                      {pixels, ids, text_heads, max_text_len, names};
                                                      OUT: the sigmoid loss, then the gradients of
                                                      `names` in order
    torch_ref.py causal_lm DIR IDS OUT                DIR: a Hugging Face phi / stablelm folder
                                                      (config.json + *.safetensors shards); IDS
                                                      int32; OUT: logits float32 [n, n_vocab]
    torch_ref.py vae DIR IMAGES NOISE KL_WEIGHT OUT   DIR: config.json (ocellus's AutoencoderKL layout)
                                                      + model.safetensors (kernels [O, k, k, C]);
                                                      IMAGES [B, S, S, C], NOISE [B, h, h, latent]
                                                      float32; OUT: the loss (reconstruction MSE +
                                                      KL_WEIGHT · KL), then every tensor's gradient
                                                      in the file's order (float64)
    torch_ref.py unet DIR LATENTS TARGET OUT          DIR: config.json {latent_channels, latent_size,
                                                      block_out_channels, norm_num_groups, d_model,
                                                      timesteps} + model.safetensors (gen/unet.h's
                                                      names, no prefix); OUT: the MSE of the
                                                      up-sampler's noise, fed SiLU of the down-
                                                      sampler's positions, against TARGET, then
                                                      every tensor's gradient in the file's order
    torch_ref.py cnn_classifier DIR IMAGES LABELS OUT DIR: config.json {in_channels, image_size,
                                                      widths, n_features, norm_num_groups} +
                                                      model.safetensors (vision/cnn_classifier.h);
                                                      IMAGES [B, S, S, C] float32, LABELS int32;
                                                      OUT: the mean cross-entropy, then every
                                                      tensor's gradient in the file's order
    torch_ref.py fid A B D OUT                        A, B float32 [n, D] / [m, D] features; OUT: their
                                                      Fréchet distance (float64 math: tr (Σ₁Σ₂)^½ as
                                                      the sum of the square roots of the eigenvalues
                                                      of the non-symmetric Σ₁Σ₂, as pytorch-fid's
                                                      scipy sqrtm would give)
    torch_ref.py feature_map_chain DIR OUT            DIR/model.safetensors: x [B, H, W, C] and the
                                                      chain's weights (channels last, as ocellus keeps
                                                      them); OUT: the MSE loss, then the gradients of
                                                      every tensor in the file's order (float64)
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

torch.set_grad_enabled(False)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        out[name] = t.to(torch.float32)
    return out


def act(name):
    return {
        "gelu": F.gelu,
        "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    }[name]


def vit(cfg, w, pixels, feature_layer):
    """hidden_states as the HF towers produce them; feature_layer 0 = last_hidden_state."""
    siglip = cfg["model_type"].startswith("siglip")
    p = next(k[: -len("embeddings.patch_embedding.weight")] for k in w if k.endswith("embeddings.patch_embedding.weight"))
    d, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    eps = cfg.get("layer_norm_eps", 1e-6 if siglip else 1e-5)
    f = act(cfg.get("hidden_act", "gelu_pytorch_tanh" if siglip else "quick_gelu"))
    x = F.conv2d(pixels, w[p + "embeddings.patch_embedding.weight"], w.get(p + "embeddings.patch_embedding.bias"),
                 stride=cfg["patch_size"])
    x = x.flatten(2).transpose(1, 2)  # [B, n_patch, d]
    if not siglip:
        cls = w[p + "embeddings.class_embedding"].expand(x.shape[0], 1, d)
        x = torch.cat([cls, x], dim=1)
    x = x + w[p + "embeddings.position_embedding.weight"][None]
    if not siglip:
        x = F.layer_norm(x, (d,), w[p + "pre_layrnorm.weight"], w[p + "pre_layrnorm.bias"], eps)
    hidden = [x]
    for i in range(cfg["num_hidden_layers"]):
        l = f"{p}encoder.layers.{i}."
        lin = lambda t, n: F.linear(t, w[l + n + ".weight"], w[l + n + ".bias"])
        h = F.layer_norm(x, (d,), w[l + "layer_norm1.weight"], w[l + "layer_norm1.bias"], eps)
        B, T, _ = h.shape
        q, k, v = (lin(h, "self_attn." + n).view(B, T, nh, d // nh).transpose(1, 2) for n in ("q_proj", "k_proj", "v_proj"))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // nh), dim=-1) @ v
        x = x + lin(a.transpose(1, 2).reshape(B, T, d), "self_attn.out_proj")
        h = F.layer_norm(x, (d,), w[l + "layer_norm2.weight"], w[l + "layer_norm2.bias"], eps)
        x = x + lin(f(lin(h, "mlp.fc1")), "mlp.fc2")
        hidden.append(x)
    if feature_layer == 0:
        out = x
        if siglip:
            out = F.layer_norm(x, (d,), w[p + "post_layernorm.weight"], w[p + "post_layernorm.bias"], eps)
    else:
        out = hidden[feature_layer]
    return out if siglip else out[:, 1:]  # LLaVA's "patch" features drop the class token


def layer_norm(x, w, p, eps=1e-5):
    return F.layer_norm(x, (x.shape[-1],), w[p + "weight"], w.get(p + "bias"), eps)


def linear(x, w, p):
    return F.linear(x, w[p + "weight"], w.get(p + "bias"))


def mha(xq, xkv, w, p, n_head):
    d = w[p + "q.weight"].shape[0]
    hd = d // n_head
    q = linear(xq, w, p + "q.").view(-1, n_head, hd).transpose(0, 1)
    k = linear(xkv, w, p + "k.").view(-1, n_head, hd).transpose(0, 1)
    v = linear(xkv, w, p + "v.").view(-1, n_head, hd).transpose(0, 1)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1) @ v
    return linear(a.transpose(0, 1).reshape(-1, d), w, p + "out.")


def connector(cfg, w, x):
    """x [n, d_in] -> [n_tokens, d_out]; weights under LLaVA's model.mm_projector. prefix."""
    p = "model.mm_projector."
    kind, gelu = cfg["type"], F.gelu  # nn.GELU(): the erf form
    n_head = cfg.get("n_head", 0)
    heads = lambda d: n_head if n_head > 0 else max(1, d // 64)
    m = cfg.get("merge", 1)
    if m > 1:  # spatial merge: each m x m block of the patch grid, its rows side by side
        n, d = x.shape
        g = int(math.isqrt(n))
        x = x.reshape(g // m, m, g // m, m, d).permute(0, 2, 1, 3, 4).reshape(n // (m * m), m * m * d)
    if kind == "linear":
        return linear(x, w, p)
    if kind == "mlp2x_gelu":
        return linear(gelu(linear(x, w, p + "0.")), w, p + "2.")
    if kind == "mlp_norm":
        h = gelu(layer_norm(linear(x, w, p + "0."), w, p + "1."))
        return layer_norm(linear(h, w, p + "3."), w, p + "4.")
    if kind == "ldpv2":  # MobileVLM V2: mlp, AdaptiveAvgPool2d to half the grid, x + depthwise conv(x)
        h = linear(gelu(linear(x, w, p + "mlp.0.")), w, p + "mlp.2.")
        n, c = h.shape
        g = int(math.isqrt(n))
        h = h.t().reshape(1, c, g, g)
        h = F.adaptive_avg_pool2d(h, (g // 2, g // 2))
        h = F.conv2d(h, w[p + "peg.peg.0.weight"].reshape(c, 1, 3, 3), w[p + "peg.peg.0.bias"], padding=1, groups=c) + h
        return h.flatten(2)[0].t()
    if kind == "attn_blocks":  # pre-LN transformer blocks, then a projection
        i = 0
        while f"{p}blocks.{i}.ln1.weight" in w:
            b = f"{p}blocks.{i}."
            h = layer_norm(x, w, b + "ln1.")
            x = x + mha(h, h, w, b + "attn.", heads(x.shape[-1]))
            x = x + linear(gelu(linear(layer_norm(x, w, b + "ln2."), w, b + "ffn_up.")), w, b + "ffn_down.")
            i += 1
        return linear(x, w, p + "proj.")
    if kind == "resampler":  # learned queries cross-attend to the projected features
        kv = layer_norm(F.linear(x, w[p + "kv_proj.weight"]), w, p + "ln_kv.")
        q = layer_norm(w[p + "query"], w, p + "ln_q.")
        out = mha(q, kv, w, p + "attn.", heads(q.shape[-1]))
        return linear(layer_norm(out, w, p + "ln_post."), w, p + "proj.")
    raise SystemExit("unknown connector " + kind)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def vit_upper(cfg, P, x, start):
    """The tower from block `start` to its feature layer over a hidden state x [n_pos, d]."""
    v = cfg["vision_config"]
    siglip = v["model_type"].startswith("siglip")
    L, fl = v["num_hidden_layers"], cfg.get("vision_feature_layer", -2)
    run = L if fl == 0 else (L + 1 + fl if fl < 0 else fl)
    d, nh = v["hidden_size"], v["num_attention_heads"]
    eps = v.get("layer_norm_eps", 1e-6 if siglip else 1e-5)
    f = act(v.get("hidden_act", "gelu_pytorch_tanh" if siglip else "quick_gelu"))
    p = "vision_tower.vision_model."
    for i in range(start, run):
        l = f"{p}encoder.layers.{i}."
        lin = lambda t, n: F.linear(t, P[l + n + ".weight"], P.get(l + n + ".bias"))
        h = F.layer_norm(x, (d,), P[l + "layer_norm1.weight"], P.get(l + "layer_norm1.bias"), eps)
        T = h.shape[0]
        q, k, vv = (lin(h, "self_attn." + n).view(T, nh, d // nh).transpose(0, 1) for n in ("q_proj", "k_proj", "v_proj"))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // nh), dim=-1) @ vv
        x = x + lin(a.transpose(0, 1).reshape(T, d), "self_attn.out_proj")
        h = F.layer_norm(x, (d,), P[l + "layer_norm2.weight"], P.get(l + "layer_norm2.bias"), eps)
        x = x + lin(f(lin(h, "mlp.fc1")), "mlp.fc2")
    if fl == 0 and siglip:
        x = F.layer_norm(x, (d,), P[p + "post_layernorm.weight"], P.get(p + "post_layernorm.bias"), eps)
    return x if siglip else x[1:]


def projector_rows(cfg, P, f):
    """The connector of a HF LLaVA checkpoint (multi_modal_projector.*) over features f [n, d_v]:
    the names mapped to connector()'s (LLaVA's model.mm_projector.*)."""
    kind = cfg.get("mm_projector_type", "mlp2x_gelu")
    W = {}
    for k, v in P.items():
        if not k.startswith("multi_modal_projector."):
            continue
        local = k[len("multi_modal_projector."):]
        if kind in ("linear", "mlp2x_gelu") and local.startswith("linear_"):
            local = ("" if kind == "linear" else ("0." if local[7] == "1" else "2.")) + local[9:]
        W["model.mm_projector." + local] = v
    return connector({"type": kind, "merge": cfg.get("spatial_merge_size", 1)}, W, f)


def llava_logits(cfg, P, ids, feats, lora_scale=1.0, tower_from=-1):
    """LlavaForConditionalGeneration's forward on one sequence: image rows at the -1 runs."""
    if tower_from >= 0:
        feats = [vit_upper(cfg, P, f, tower_from) for f in feats]
    rows = [projector_rows(cfg, P, f) for f in feats]
    parts, i, img, n = [], 0, 0, len(ids)
    while i < n:
        j = i
        while j < n and (ids[j] < 0) == (ids[i] < 0):
            j += 1
        if ids[i] >= 0:
            parts.append(F.embedding(torch.tensor(ids[i:j]), P["model.embed_tokens.weight"]))
        else:
            need = j - i
            while need > 0:
                parts.append(rows[img])
                need -= rows[img].shape[0]
                img += 1
        i = j
    return text_logits(cfg["text_config"], P, torch.cat(parts), lora_scale)


def read_hf_folder(d):
    """Every *.safetensors shard of a Hugging Face folder, as one name -> tensor map."""
    import glob
    P = {}
    for f in sorted(glob.glob(d + "/*.safetensors")):
        P.update(read_safetensors(f))
    return P


def causal_lm_logits(cfg, P, ids):
    """A Hugging Face text model's logits over one sequence of ids."""
    return text_logits(cfg, P, F.embedding(torch.tensor(ids), P["model.embed_tokens.weight"]))


def text_logits(t, P, x, lora_scale=1.0):
    """LlamaForCausalLM / Qwen2ForCausalLM / PhiForCausalLM / StableLmForCausalLM over embedded
    rows x [n, d] at positions 0..n-1 (transformers' modeling_*.py), HF tensor names. llama /
    qwen2: RMSNorm, full rotary, SwiGLU, q/k/v biases when present (qwen2); phi: LayerNorm with
    bias, partial rotary (rotate-half on the first partial_rotary_factor of each head), one norm
    feeding attention and MLP in parallel, dense with bias, gelu_new MLP (fc1, fc2),
    final_layernorm, lm_head with bias; stablelm: LayerNorm, partial rotary, sequential residuals,
    SwiGLU. LoRA adapters (NAME.lora_A / lora_B beside a weight) add lora_scale * B A x."""
    mt = t["model_type"]
    if mt not in ("llama", "qwen2", "phi", "stablelm"):
        raise SystemExit("text_logits: model_type " + mt + " is not restated here")
    if t.get("qk_layernorm") or t.get("use_parallel_residual"):
        raise SystemExit("text_logits: qk_layernorm / use_parallel_residual are not restated here")
    phi, rms_family = mt == "phi", mt in ("llama", "qwen2")
    d, H = t["hidden_size"], t["num_attention_heads"]
    Hkv = t.get("num_key_value_heads") or H
    hd = d // H
    rot = int(hd * t.get("partial_rotary_factor", {"phi": 0.5, "stablelm": 0.25}.get(mt, 1.0)))
    eps = t.get("rms_norm_eps", 1e-6) if rms_family else t.get("layer_norm_eps", 1e-5)
    theta = t.get("rope_theta", 10000.0)
    n = x.shape[0]
    fdt = x.dtype  # the angles in the precision of the run
    inv = 1.0 / (theta ** (torch.arange(0, rot, 2, dtype=torch.int64).to(fdt) / rot))
    freqs = torch.arange(n).to(fdt)[:, None] * inv[None]
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # [n, 1, rot]
    rope = lambda v: torch.cat([v[..., :rot] * cos + rotate_half(v[..., :rot]) * sin, v[..., rot:]], dim=-1)
    if rms_family:
        norm = lambda v, name: P[name + ".weight"] * (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps))
    else:
        norm = lambda v, name: F.layer_norm(v, (d,), P[name + ".weight"], P[name + ".bias"], eps)
    mask = torch.full((n, n), float("-inf"), dtype=x.dtype).triu(1)
    act_fn = (lambda v: F.gelu(v, approximate="tanh")) if t.get("hidden_act", "gelu_new" if phi else "silu") == "gelu_new" else F.silu
    for L in range(t["num_hidden_layers"]):
        p = f"model.layers.{L}."

        def lin(v, name):
            y = F.linear(v, P[p + name + ".weight"], P.get(p + name + ".bias"))
            if p + name + ".lora_A" in P:
                y = y + lora_scale * F.linear(F.linear(v, P[p + name + ".lora_A"]), P[p + name + ".lora_B"])
            return y
        h = norm(x, p + "input_layernorm")
        q = rope(lin(h, "self_attn.q_proj").view(n, H, hd))
        k = rope(lin(h, "self_attn.k_proj").view(n, Hkv, hd))
        v = lin(h, "self_attn.v_proj").view(n, Hkv, hd)
        k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        att = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1) @ v).transpose(0, 1).reshape(n, H * hd)
        if phi:
            x = x + lin(att, "self_attn.dense") + lin(act_fn(lin(h, "mlp.fc1")), "mlp.fc2")
        else:
            x = x + lin(att, "self_attn.o_proj")
            h = norm(x, p + "post_attention_layernorm")
            x = x + lin(act_fn(lin(h, "mlp.gate_proj")) * lin(h, "mlp.up_proj"), "mlp.down_proj")
    x = norm(x, "model.final_layernorm" if phi else "model.norm")
    return F.linear(x, P.get("lm_head.weight", P["model.embed_tokens.weight"]), P.get("lm_head.bias"))


def vlm_train(cfg, w, batch):
    torch.set_grad_enabled(True)
    w = {k[len("language_model."):] if k.startswith("language_model.") else k: v for k, v in w.items()}
    dt = torch.float64 if batch.get("float64") else torch.float32  # float64: the exact values, to the last f32 bit
    P = {k: v.detach().to(dt).requires_grad_(k in batch["trainable"]) for k, v in w.items()}
    for k in batch["trainable"]:
        if k not in P:
            sys.exit(f"torch_ref: trainable parameter {k} is not in {cfg.get('model_type', 'the model')}'s file")
    ids, mask = batch["ids"], batch["mask"]
    nf, dv = batch["n_features"], cfg["vision_config"]["hidden_size"]
    raw = torch.frombuffer(bytearray(open(batch["features"], "rb").read()), dtype=torch.float32)
    feats = list(raw.reshape(-1, batch.get("n_rows", nf), dv).to(dt))
    targets = torch.tensor([ids[i + 1] if mask[i + 1] and ids[i + 1] >= 0 else -100 for i in range(len(ids) - 1)] + [-100])
    params = [P[k] for k in batch["trainable"]]
    groups = [{"params": params, "lr": batch["lr"], "weight_decay": batch["weight_decay"]}]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    out, losses = [], []
    for step in range(batch["steps"] + 1):
        opt.zero_grad()
        loss = F.cross_entropy(llava_logits(cfg, P, ids, feats, batch.get("lora_scale", 1.0), batch.get("tower_from", -1)),
                               targets, ignore_index=-100)
        loss.backward()
        if step == 0:
            for k, p in zip(batch["trainable"], params):
                if p.grad is None:  # the model does not use it: a test expecting it to train is wrong
                    sys.exit(f"torch_ref: trainable parameter {k} got no gradient")
            out.append(loss.detach().reshape(1).float())
            out += [p.grad.reshape(-1).float() for p in params]
        if step == batch["steps"]:
            break
        losses.append(loss.detach().reshape(1).float())
        if batch.get("clip", 0) > 0:
            torch.nn.utils.clip_grad_norm_(params, batch["clip"])
        opt.step()
    return torch.cat(out + losses)


def lm_batched(cfg, P, x):
    """The text model over a batch of equal-length sequences x [B, n, d] (rows already embedded)."""
    t = cfg["text_config"]
    d, H, Hkv = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"]
    hd, eps, theta = d // H, t.get("rms_norm_eps", 1e-6), t.get("rope_theta", 10000.0)
    B, n, _ = x.shape
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    emb = torch.cat([torch.arange(n).float()[:, None] * inv[None]] * 2, dim=-1)
    cos, sin = emb.cos()[None, None], emb.sin()[None, None]  # [1, 1, n, hd]
    rms = lambda x, w: w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    mask = torch.full((n, n), float("-inf")).triu(1)
    for L in range(t["num_hidden_layers"]):
        p = f"model.layers.{L}."
        lin = lambda x, name: F.linear(x, P[p + name + ".weight"], P.get(p + name + ".bias"))
        h = rms(x, P[p + "input_layernorm.weight"])
        q = lin(h, "self_attn.q_proj").view(B, n, H, hd).transpose(1, 2)
        k = lin(h, "self_attn.k_proj").view(B, n, Hkv, hd).transpose(1, 2)
        v = lin(h, "self_attn.v_proj").view(B, n, Hkv, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1) @ v
        x = x + lin(att.transpose(1, 2).reshape(B, n, H * hd), "self_attn.o_proj")
        h = rms(x, P[p + "post_attention_layernorm.weight"])
        x = x + lin(F.silu(lin(h, "mlp.gate_proj")) * lin(h, "mlp.up_proj"), "mlp.down_proj")
    out = P.get("lm_head.weight", P["model.embed_tokens.weight"])
    return F.linear(rms(x, P["model.norm.weight"]), out)


def vlm_train_bench(cfg, w, b):
    """Seconds per training step (forward, backward, clipping, AdamW), two ways: the batch as
    one [B, n] tensor (equal-length sequences), and one sequence at a time with gradients
    accumulated. Returns both best step times."""
    import time
    torch.set_num_threads(b["threads"])
    torch.set_grad_enabled(True)
    w = {k[len("language_model."):] if k.startswith("language_model.") else k: v for k, v in w.items()}
    P = {k: v.clone().requires_grad_(not k.startswith("vision_tower.")) for k, v in w.items()}
    ids, mask, nf, dv, B = b["ids"], b["mask"], b["n_features"], cfg["vision_config"]["hidden_size"], b["batch"]
    feats = torch.randn(B, nf, dv)
    n_img = sum(1 for i in ids if i < 0)
    text = torch.tensor([i for i in ids if i >= 0])
    first_img = next(i for i, t in enumerate(ids) if t < 0)
    targets = torch.tensor([ids[i + 1] if mask[i + 1] and ids[i + 1] >= 0 else -100 for i in range(len(ids) - 1)] + [-100])
    params = [v for v in P.values() if v.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    a = act(cfg.get("projector_hidden_act", "gelu"))
    times, loop_times = [], []
    feats1 = [feats[0]]
    for step in range(b["warmup"] + b["steps"]):  # one sequence at a time
        t0 = time.perf_counter()
        opt.zero_grad()
        for _ in range(B):
            loss = F.cross_entropy(llava_logits(cfg, P, ids, feats1), targets) / B
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loop_times.append(time.perf_counter() - t0)
    for step in range(b["warmup"] + b["steps"]):  # the batch as one tensor
        t0 = time.perf_counter()
        opt.zero_grad()
        rows = F.linear(a(F.linear(feats, P["multi_modal_projector.linear_1.weight"], P["multi_modal_projector.linear_1.bias"])),
                        P["multi_modal_projector.linear_2.weight"], P["multi_modal_projector.linear_2.bias"])
        emb = F.embedding(text, P["model.embed_tokens.weight"])[None].expand(B, -1, -1)
        x = torch.cat([emb[:, :first_img], rows, emb[:, first_img:]], dim=1)
        logits = lm_batched(cfg, P, x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.repeat(B))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    assert n_img == nf
    return torch.tensor([min(times[b["warmup"]:]), min(loop_times[b["warmup"]:])])


def siglip(cfg, w, b):
    """SigLIP's pairwise sigmoid loss over a batch, the towers mean-pooled and projected."""
    torch.set_grad_enabled(True)
    P = {k: v.clone().requires_grad_(True) for k, v in w.items()}
    vc = cfg["vision_config"]
    S = vc["image_size"]
    pixels = torch.frombuffer(bytearray(open(b["pixels"], "rb").read()), dtype=torch.float32).reshape(-1, 3, S, S)
    img = F.linear(vit(vc, P, pixels, 0).mean(1), P["siglip.vision_head.weight"], P["siglip.vision_head.bias"])
    f = act(vc.get("hidden_act", "gelu_pytorch_tanh"))
    nh, eps = b["text_heads"], 1e-6
    pooled = []
    for ids in b["ids"]:
        ids = ids[: b["max_text_len"]]
        x = (P["siglip.text.token_embedding.weight"][ids] + P["siglip.text.position_embedding.weight"][: len(ids)])[None]
        i = 0
        while f"siglip.text.layers.{i}.fc1.weight" in P:
            l = f"siglip.text.layers.{i}."
            lin = lambda t, n: F.linear(t, P[l + n + ".weight"], P[l + n + ".bias"])
            d = x.shape[-1]
            h = F.layer_norm(x, (d,), P[l + "layer_norm1.weight"], P[l + "layer_norm1.bias"], eps)
            B, T, _ = h.shape
            q, k, v = (lin(h, n).view(B, T, nh, d // nh).transpose(1, 2) for n in ("q_proj", "k_proj", "v_proj"))
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // nh), dim=-1) @ v
            x = x + lin(a.transpose(1, 2).reshape(B, T, d), "out_proj")
            h = F.layer_norm(x, (d,), P[l + "layer_norm2.weight"], P[l + "layer_norm2.bias"], eps)
            x = x + lin(f(lin(h, "fc1")), "fc2")
            i += 1
        x = F.layer_norm(x, (x.shape[-1],), P["siglip.text.final_layer_norm.weight"], P["siglip.text.final_layer_norm.bias"], eps)
        pooled.append(x[0].mean(0))
    txt = F.linear(torch.stack(pooled), P["siglip.text_head.weight"], P["siglip.text_head.bias"])
    logits = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T * P["siglip.logit_scale"].exp() + P["siglip.logit_bias"]
    n = logits.shape[0]
    labels = 2 * torch.eye(n) - 1
    loss = -F.logsigmoid(labels * logits).sum() / n
    loss.backward()
    return torch.cat([loss.detach().reshape(1)] + [P[k].grad.reshape(-1) for k in b["names"]])


def feature_map_chain(P):
    """conv 3x3 -> GroupNorm(4) -> SiLU -> conv 3x3 stride 2 -> nearest x2 -> conv 1x1 -> MSE, on
    NHWC maps and [O, k, k, C] kernels (permuted to PyTorch's NCHW / [O, C, k, k] here)."""
    nchw = lambda t: t.permute(0, 3, 1, 2)
    h = F.conv2d(nchw(P["x"]), nchw(P["w1"]), P["b1"], stride=1, padding=1)
    h = F.silu(F.group_norm(h, 4, P["gw"], P["gb"], eps=1e-5))
    h = F.conv2d(h, nchw(P["w2"]), P["b2"], stride=2, padding=1)
    h = F.interpolate(h, scale_factor=2, mode="nearest")
    h = F.conv2d(h, nchw(P["w3"]), P["b3"])
    return F.mse_loss(h.permute(0, 2, 3, 1), P["target"])


def vae_loss(cfg, P, x, noise, kl_weight):
    """ocellus's VAE (gen/vae.h) on NHWC tensors: the posterior sample decoded, MSE + KL."""
    nchw = lambda t: t.permute(0, 3, 1, 2)
    G, z, ch = cfg["norm_num_groups"], cfg["latent_channels"], cfg["block_out_channels"]
    L = len(ch)

    def conv(h, name, stride=1, pad=1):
        return F.conv2d(h, nchw(P[name + ".weight"]), P[name + ".bias"], stride=stride, padding=pad)

    def norm_act(h, name):
        return F.silu(F.group_norm(h, G, P[name + ".weight"], P[name + ".bias"], eps=1e-6))

    def res(h, p):
        r = conv(norm_act(conv(norm_act(h, p + "norm1"), p + "conv1"), p + "norm2"), p + "conv2")
        return (conv(h, p + "conv_shortcut", pad=0) if p + "conv_shortcut.weight" in P else h) + r

    h = conv(nchw(x), "encoder.conv_in")
    for i in range(L):
        h = res(h, "encoder.down_blocks.%d.resnets.0." % i)
        if i + 1 < L:
            h = conv(h, "encoder.down_blocks.%d.downsamplers.0.conv" % i, stride=2)
    m = conv(norm_act(res(h, "encoder.mid_block.resnets.0."), "encoder.conv_norm_out"), "encoder.conv_out")
    mean, logvar = m[:, :z], torch.clamp(m[:, z:], -30.0, 20.0)
    h = res(conv(mean + torch.exp(0.5 * logvar) * nchw(noise), "decoder.conv_in"), "decoder.mid_block.resnets.0.")
    for i in range(L):
        h = res(h, "decoder.up_blocks.%d.resnets.0." % i)
        if i + 1 < L:
            h = conv(F.interpolate(h, scale_factor=2, mode="nearest"), "decoder.up_blocks.%d.upsamplers.0.conv" % i)
    y = conv(norm_act(h, "decoder.conv_norm_out"), "decoder.conv_out")
    kl = 0.5 * (mean * mean + torch.exp(logvar) - 1.0 - logvar).mean()
    return F.mse_loss(y, nchw(x)) + kl_weight * kl


def unet_parts(cfg, P):
    """gen/unet.h's two ends over tensors P named as diffusers' UNet2DModel: down(lat, timesteps)
    -> (positions [B * g * g, d], temb, skips); up(positions, temb, skips) -> noise NHWC."""
    nchw = lambda t: t.permute(0, 3, 1, 2)
    G, ch = cfg["norm_num_groups"], cfg["block_out_channels"]
    L = len(ch)

    def conv(h, name, stride=1, pad=1):
        return F.conv2d(h, nchw(P[name + ".weight"]), P[name + ".bias"], stride=stride, padding=pad)

    def lin(h, name):
        return F.linear(h, P[name + ".weight"], P[name + ".bias"])

    def norm_act(h, name):
        return F.silu(F.group_norm(h, G, P[name + ".weight"], P[name + ".bias"], eps=1e-5))

    def res(h, p, temb):
        r = conv(norm_act(h, p + "norm1"), p + "conv1") + lin(F.silu(temb), p + "time_emb_proj")[:, :, None, None]
        r = conv(norm_act(r, p + "norm2"), p + "conv2")
        return (conv(h, p + "conv_shortcut", pad=0) if p + "conv_shortcut.weight" in P else h) + r

    def down(lat, timesteps):
        half = ch[0] // 2
        freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        a = torch.tensor(timesteps, dtype=torch.float32)[:, None] * freq[None, :]
        te = torch.cat([torch.cos(a), torch.sin(a)], dim=1).to(lat.dtype)
        temb = lin(F.silu(lin(te, "time_embedding.linear_1")), "time_embedding.linear_2")
        h = conv(nchw(lat), "conv_in")
        skips = []
        for i in range(L):
            h = res(h, "down_blocks.%d.resnets.0." % i, temb)
            skips.append(h)
            if i + 1 < L:
                h = conv(h, "down_blocks.%d.downsamplers.0.conv" % i, stride=2)
        B, C, g, _ = h.shape
        return lin(h.permute(0, 2, 3, 1).reshape(B * g * g, C), "proj_in"), temb, skips

    def up(pos, temb, skips):
        B, C, g = skips[-1].shape[0], ch[-1], skips[-1].shape[2]
        h = lin(pos, "proj_out").reshape(B, g, g, C).permute(0, 3, 1, 2)
        for i in range(L):
            lvl = L - 1 - i
            h = res(torch.cat([h, skips[lvl]], dim=1), "up_blocks.%d.resnets.0." % i, temb)
            if lvl > 0:
                h = conv(F.interpolate(h, scale_factor=2, mode="nearest"), "up_blocks.%d.upsamplers.0.conv" % i)
        return conv(norm_act(h, "conv_norm_out"), "conv_out").permute(0, 2, 3, 1)

    return down, up


def unet_noise(cfg, P, lat, timesteps):
    """gen/unet.h: the down-sampler, SiLU standing in for the language model, the up-sampler."""
    down, up = unet_parts(cfg, P)
    pos, temb, skips = down(lat, timesteps)
    return up(F.silu(pos), temb, skips)


def fusion_loss(cfg, P, lat, noise):
    """gen/fusion_model.h's training loss over GGUF-named llama weights (text: blk.N..., image
    modules: image.blk.N...), adjacent-pair rope (llama.cpp's GGUF row order): per sequence
    [before] BOI [image positions] EOI [after], each row through its modality's norms,
    projections and MLP, one attention causal over text and bidirectional within the image; the
    mean over sequences of the text's next-token cross-entropy + image_weight * the MSE of the
    diffused images' predicted noise."""
    H, Hkv, hd, eps, theta = cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"], cfg["eps"], cfg["theta"]
    U = cfg["unet"]
    down, up = unet_parts(U, {k[len("image.unet."):]: v for k, v in P.items() if k.startswith("image.unet.")})
    samples = cfg["samples"]
    pos_all, temb, skips = down(lat, [s["timestep"] for s in samples])
    n_img = pos_all.shape[0] // len(samples)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))

    def rope(v, n):  # [n, h, hd], pairs (2i, 2i+1)
        a = torch.arange(n, dtype=torch.float64)[:, None] * inv[None]
        c, s_ = a.cos()[:, None], a.sin()[:, None]
        x0, x1 = v[..., 0::2], v[..., 1::2]
        return torch.stack([x0 * c - x1 * s_, x0 * s_ + x1 * c], dim=-1).reshape(v.shape)

    rms = lambda v, w: w * (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps))
    emb = P["token_embd.weight"]
    total = 0.0
    for b, s in enumerate(samples):
        before, after = s["before"], s["after"]
        nb = len(before)
        x = torch.cat([emb[before], P["image.boi"][None], pos_all[b * n_img:(b + 1) * n_img], P["image.eoi"][None], emb[after]])
        n = x.shape[0]
        img = torch.zeros(n, dtype=torch.bool)
        img[nb + 1:nb + 1 + n_img] = True
        sees = torch.ones(n, n, dtype=torch.bool).tril() | (img[:, None] & img[None, :])
        mask = torch.zeros(n, n, dtype=x.dtype).masked_fill(~sees, float("-inf"))
        pick = lambda t_text, t_img: torch.where(img[:, None], t_img, t_text)
        for L in range(cfg["n_layer"]):
            def both(f):  # the row's modality's result of f(prefix)
                return pick(f("blk.%d." % L), f("image.blk.%d." % L))
            lin = lambda v, p, name: F.linear(v, P[p + name + ".weight"])
            h = both(lambda p: rms(x, P[p + "attn_norm.weight"]))
            q = rope(both(lambda p: lin(h, p, "attn_q")).view(n, H, hd), n)
            k = rope(both(lambda p: lin(h, p, "attn_k")).view(n, Hkv, hd), n)
            v = both(lambda p: lin(h, p, "attn_v")).view(n, Hkv, hd)
            k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
            att = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1) @ v).transpose(0, 1).reshape(n, H * hd)
            x = x + both(lambda p: lin(att, p, "attn_output"))
            h = both(lambda p: rms(x, P[p + "ffn_norm.weight"]))
            x = x + both(lambda p: lin(F.silu(lin(h, p, "ffn_gate")) * lin(h, p, "ffn_up"), p, "ffn_down"))
        rows, targets = [], []
        for k_ in range(1, nb):
            rows.append(k_ - 1), targets.append(before[k_])
        for k_ in range(len(after)):
            rows.append(nb + n_img + 1 + k_), targets.append(after[k_])
        if rows:
            logits = F.linear(rms(x[rows], P["output_norm.weight"]), P.get("output.weight", emb))
            total = total + F.cross_entropy(logits, torch.tensor(targets)) / len(samples)
        if s["diffused"]:
            hi = rms(x[img], P["image.output_norm.weight"])
            pred = up(hi, temb[b:b + 1], [t[b:b + 1] for t in skips])
            total = total + cfg["image_weight"] * F.mse_loss(pred, noise[b:b + 1]) / len(samples)
    return total


def cnn_logits(cfg, P, x):
    """vision/cnn_classifier.h on NHWC images."""
    nchw = lambda t: t.permute(0, 3, 1, 2)
    h = F.silu(F.conv2d(nchw(x), nchw(P["conv_in.weight"]), P["conv_in.bias"], padding=1))
    for i in range(len(cfg["widths"]) - 1):
        p = "down.%d." % i
        h = F.conv2d(h, nchw(P[p + "conv.weight"]), P[p + "conv.bias"], stride=2, padding=1)
        h = F.silu(F.group_norm(h, cfg["norm_num_groups"], P[p + "norm.weight"], P[p + "norm.bias"], eps=1e-5))
    h = F.silu(F.conv2d(h, nchw(P["head.conv.weight"]), P["head.conv.bias"]))
    return F.linear(h.reshape(h.shape[0], -1), P["classifier.weight"], P["classifier.bias"])


def f32_file(path, *shape):
    """A raw float32 file as a float64 tensor of this shape."""
    return torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.float32).reshape(*shape).double()


def step_grads(d, loss_of, out):
    """One step in float64 over DIR/model.safetensors: OUT gets loss_of(cfg, P), then every
    tensor's gradient in the file's order (cfg: DIR/config.json, or {} without one)."""
    torch.set_grad_enabled(True)
    cfg = json.load(open(d + "/config.json")) if os.path.exists(d + "/config.json") else {}
    w = read_safetensors(d + "/model.safetensors")
    P = {k: v.double().requires_grad_(True) for k, v in w.items()}
    loss = loss_of(cfg, P)
    loss.backward()
    parts = [loss.reshape(1)] + [P[k].grad.reshape(-1) for k in w]
    torch.cat(parts).detach().float().contiguous().numpy().tofile(out)


def main():
    mode = sys.argv[1]
    if mode == "vit":
        d, pix, out = sys.argv[2:5]
        layer = int(sys.argv[5]) if len(sys.argv) > 5 else 0
        cfg = json.load(open(d + "/config.json"))
        w = read_safetensors(d + "/model.safetensors")
        S = cfg["image_size"]
        pixels = torch.frombuffer(bytearray(open(pix, "rb").read()), dtype=torch.float32)
        pixels = pixels.reshape(-1, 3, S, S)
        vit(cfg, w, pixels, layer).contiguous().numpy().tofile(out)
    elif mode == "connector":
        d, feats, out = sys.argv[2:5]
        cfg = json.load(open(d + "/config.json"))
        w = read_safetensors(d + "/model.safetensors")
        x = torch.frombuffer(bytearray(open(feats, "rb").read()), dtype=torch.float32).reshape(-1, cfg["d_in"])
        connector(cfg, w, x).contiguous().numpy().tofile(out)
    elif mode == "connector_grad":
        d, feats, r, out = sys.argv[2:6]
        cfg = json.load(open(d + "/config.json"))
        dt = torch.float64 if cfg.get("float64") else torch.float32  # float64: the exact values, to the last f32 bit
        torch.set_grad_enabled(True)
        P = {k: v.to(dt).requires_grad_(True) for k, v in read_safetensors(d + "/model.safetensors").items()}
        x = torch.frombuffer(bytearray(open(feats, "rb").read()), dtype=torch.float32).reshape(-1, cfg["d_in"]).to(dt)
        x.requires_grad_(True)
        y = connector(cfg, P, x)
        R = torch.frombuffer(bytearray(open(r, "rb").read()), dtype=torch.float32).reshape(y.shape).to(dt)
        (y * R).sum().backward()
        grads = [x.grad.reshape(-1)] + [P[n].grad.reshape(-1) for n in cfg["names"]]
        torch.cat(grads).detach().float().contiguous().numpy().tofile(out)
    elif mode == "vlm_train":
        d, batch, out = sys.argv[2:5]
        cfg = json.load(open(d + "/config.json"))
        w = read_safetensors(d + "/model.safetensors")
        vlm_train(cfg, w, json.load(open(batch))).detach().contiguous().numpy().tofile(out)
    elif mode == "vlm_train_bench":
        d, batch, out = sys.argv[2:5]
        cfg = json.load(open(d + "/config.json"))
        w = read_safetensors(d + "/model.safetensors")
        vlm_train_bench(cfg, w, json.load(open(batch))).numpy().tofile(out)
    elif mode == "siglip":
        d, batch, out = sys.argv[2:5]
        cfg = json.load(open(d + "/config.json"))
        w = read_safetensors(d + "/model.safetensors")
        siglip(cfg, w, json.load(open(batch))).detach().contiguous().numpy().tofile(out)
    elif mode == "causal_lm":
        d, ids, out = sys.argv[2:5]
        cfg = json.load(open(d + "/config.json"))
        ids = torch.frombuffer(bytearray(open(ids, "rb").read()), dtype=torch.int32).tolist()
        causal_lm_logits(cfg, read_hf_folder(d), ids).contiguous().numpy().tofile(out)
    elif mode == "vae":
        d, images, noise, klw, out = sys.argv[2:7]

        def loss(cfg, P):
            S, C, z = cfg["sample_size"], cfg["in_channels"], cfg["latent_channels"]
            h = S >> (len(cfg["block_out_channels"]) - 1)
            return vae_loss(cfg, P, f32_file(images, -1, S, S, C), f32_file(noise, -1, h, h, z), float(klw))
        step_grads(d, loss, out)
    elif mode == "unet":
        d, latents, target, out = sys.argv[2:6]

        def loss(cfg, P):
            S, z = cfg["latent_size"], cfg["latent_channels"]
            noise = unet_noise(cfg, P, f32_file(latents, -1, S, S, z), cfg["timesteps"])
            return F.mse_loss(noise, f32_file(target, -1, S, S, z))
        step_grads(d, loss, out)
    elif mode == "fusion":
        d, latents, noises, out = sys.argv[2:6]

        def loss(cfg, P):
            P.update({k: v.double() for k, v in read_safetensors(d + "/text.safetensors").items()})
            S, z = cfg["unet"]["latent_size"], cfg["unet"]["latent_channels"]
            return fusion_loss(cfg, P, f32_file(latents, -1, S, S, z), f32_file(noises, -1, S, S, z))
        step_grads(d, loss, out)
    elif mode == "cnn_classifier":
        d, images, labels, out = sys.argv[2:6]
        y = torch.frombuffer(bytearray(open(labels, "rb").read()), dtype=torch.int32).long()
        step_grads(d, lambda cfg, P: F.cross_entropy(
            cnn_logits(cfg, P, f32_file(images, -1, cfg["image_size"], cfg["image_size"], cfg["in_channels"])), y), out)
    elif mode == "fid":
        fa, fb, d, out = sys.argv[2:6]
        d = int(d)
        A, B = f32_file(fa, -1, d), f32_file(fb, -1, d)
        m1, m2 = A.mean(0), B.mean(0)
        c1, c2 = torch.cov(A.T), torch.cov(B.T)
        ev = torch.linalg.eigvals(c1 @ c2)
        tr = ev.real.clamp(min=0).sqrt().sum()
        fid = ((m1 - m2) ** 2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * tr
        torch.tensor([fid.item()], dtype=torch.float32).numpy().tofile(out)
    elif mode == "feature_map_chain":
        d, out = sys.argv[2:4]
        step_grads(d, lambda cfg, P: feature_map_chain(P), out)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
