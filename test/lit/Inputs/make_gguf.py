#!/usr/bin/env python3
"""Write a tiny deepseek2 GGUF (all tensors F32 zeros) in variants the shipped models lack.

  make_gguf.py OUT [--q-lora N] [--layout kv_b|split|both] [--yarn] [--arch NAME]

--q-lora 0 drops q_lora (attn_q projects directly); --layout picks which MLA up-projections
are stored; --yarn adds YaRN rope-scaling keys; --arch writes another architecture name with
the same keys (for the unsupported-architecture error). Shapes follow the GGUF conventions
(ne order, ne[0] = row length), so ktc sees a file like a converter's.
"""
import argparse
import struct

N_EMBD, N_HEAD, NOPE, ROPE, V_HEAD, KV_LORA = 64, 2, 16, 8, 16, 32
N_LAYER, N_FF, N_EXPERT, N_USED, N_FF_EXP, N_VOCAB = 2, 64, 4, 2, 32, 32
ALIGN = 32


def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    fmt = {4: "<I", 5: "<i", 6: "<f", 7: "<?"}
    body = s(value) if vtype == 8 else struct.pack(fmt[vtype], value)
    return s(key) + struct.pack("<I", vtype) + body


def tensors(args):
    t = {"token_embd.weight": [N_EMBD, N_VOCAB], "output_norm.weight": [N_EMBD],
         "output.weight": [N_EMBD, N_VOCAB]}
    q = N_HEAD * (NOPE + ROPE)
    for il in range(N_LAYER):
        p = f"blk.{il}."
        t[p + "attn_norm.weight"] = [N_EMBD]
        t[p + "ffn_norm.weight"] = [N_EMBD]
        if args.q_lora:
            t[p + "attn_q_a.weight"] = [N_EMBD, args.q_lora]
            t[p + "attn_q_a_norm.weight"] = [args.q_lora]
            t[p + "attn_q_b.weight"] = [args.q_lora, q]
        else:
            t[p + "attn_q.weight"] = [N_EMBD, q]
        t[p + "attn_kv_a_mqa.weight"] = [N_EMBD, KV_LORA + ROPE]
        t[p + "attn_kv_a_norm.weight"] = [KV_LORA]
        if args.layout in ("kv_b", "both"):
            t[p + "attn_kv_b.weight"] = [KV_LORA, N_HEAD * (NOPE + V_HEAD)]
        if args.layout in ("split", "both"):
            t[p + "attn_k_b.weight"] = [NOPE, KV_LORA, N_HEAD]
            t[p + "attn_v_b.weight"] = [KV_LORA, V_HEAD, N_HEAD]
        t[p + "attn_output.weight"] = [N_HEAD * V_HEAD, N_EMBD]
        if il == 0:
            t[p + "ffn_gate.weight"] = [N_EMBD, N_FF]
            t[p + "ffn_up.weight"] = [N_EMBD, N_FF]
            t[p + "ffn_down.weight"] = [N_FF, N_EMBD]
            continue
        t[p + "ffn_gate_inp.weight"] = [N_EMBD, N_EXPERT]
        t[p + "exp_probs_b.bias"] = [N_EXPERT]
        t[p + "ffn_gate_exps.weight"] = [N_EMBD, N_FF_EXP, N_EXPERT]
        t[p + "ffn_up_exps.weight"] = [N_EMBD, N_FF_EXP, N_EXPERT]
        t[p + "ffn_down_exps.weight"] = [N_FF_EXP, N_EMBD, N_EXPERT]
        t[p + "ffn_gate_shexp.weight"] = [N_EMBD, N_FF_EXP]
        t[p + "ffn_up_shexp.weight"] = [N_EMBD, N_FF_EXP]
        t[p + "ffn_down_shexp.weight"] = [N_FF_EXP, N_EMBD]
    return t


def metadata(args):
    a = args.arch
    kvs = [kv("general.architecture", 8, a), kv("general.name", 8, "tiny-" + args.layout),
           kv(f"{a}.context_length", 4, 4096), kv(f"{a}.embedding_length", 4, N_EMBD),
           kv(f"{a}.block_count", 4, N_LAYER), kv(f"{a}.feed_forward_length", 4, N_FF),
           kv(f"{a}.attention.head_count", 4, N_HEAD), kv(f"{a}.attention.head_count_kv", 4, N_HEAD),
           kv(f"{a}.attention.key_length", 4, NOPE + ROPE), kv(f"{a}.attention.value_length", 4, V_HEAD),
           kv(f"{a}.attention.layer_norm_rms_epsilon", 6, 1e-6), kv(f"{a}.rope.freq_base", 6, 10000.0),
           kv(f"{a}.rope.dimension_count", 4, ROPE), kv(f"{a}.expert_count", 4, N_EXPERT),
           kv(f"{a}.expert_used_count", 4, N_USED), kv(f"{a}.expert_shared_count", 4, 1),
           kv(f"{a}.expert_feed_forward_length", 4, N_FF_EXP),
           kv(f"{a}.leading_dense_block_count", 4, 1), kv(f"{a}.expert_weights_scale", 6, 2.5),
           kv(f"{a}.expert_weights_norm", 7, True), kv(f"{a}.expert_gating_func", 4, 2),
           kv(f"{a}.expert_group_count", 4, 2), kv(f"{a}.expert_group_used_count", 4, 1),
           kv(f"{a}.attention.kv_lora_rank", 4, KV_LORA), kv(f"{a}.vocab_size", 4, N_VOCAB)]
    if args.q_lora:
        kvs.append(kv(f"{a}.attention.q_lora_rank", 4, args.q_lora))
    if args.yarn:
        kvs += [kv(f"{a}.rope.scaling.type", 8, "yarn"), kv(f"{a}.rope.scaling.factor", 6, 4.0),
                kv(f"{a}.rope.scaling.original_context_length", 4, 1024),
                kv(f"{a}.rope.scaling.yarn_log_multiplier", 6, 0.1)]
    return kvs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--q-lora", type=int, default=32)
    ap.add_argument("--layout", choices=["kv_b", "split", "both"], default="kv_b")
    ap.add_argument("--yarn", action="store_true")
    ap.add_argument("--arch", default="deepseek2")
    args = ap.parse_args()

    kvs, ts = metadata(args), tensors(args)
    infos, offset = b"", 0
    for name, ne in ts.items():
        infos += s(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}q", *ne)
        infos += struct.pack("<iQ", 0, offset)  # F32
        n_bytes = 4
        for d in ne:
            n_bytes *= d
        offset += (n_bytes + ALIGN - 1) // ALIGN * ALIGN
    head = b"GGUF" + struct.pack("<Iqq", 3, len(ts), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(args.out, "wb") as f:
        f.write(head + b"\0" * offset)


if __name__ == "__main__":
    main()
