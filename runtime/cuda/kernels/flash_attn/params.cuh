// The flash attention kernels' parameter block, shared verbatim by the device code (NVRTC) and
// the host launcher (runtime/cuda/attention.cpp): plain C types only, no includes. Passed by
// value as the kernels' one parameter.
//
// Rows of a thread block: r = tt · heads_per_block + g for tt < toks_per_block tokens and g <
// heads_per_block query heads of one KV head's group (query head h = kvh · group + hc ·
// heads_per_block + g, hc = the block's head chunk). A query row is [q1 part (D1 floats), q2
// part (D2 floats)], a key row [k1 part (D1 halves), k2 part (D2 halves)], a value row DV
// halves (or the key row's first DV halves for MLA, whose values are the latents).
#pragma once

struct KtxFlashParams {
  const float* q1;             // query part 1 of token t, head h: q1 + t·q1_tok + h·q1_head
  long long q1_tok, q1_head;
  const float* q2;             // query part 2 (MLA: q_pe); unused when D2 = 0
  long long q2_tok, q2_head;
  const unsigned short* k1;    // f16 key part 1 of cache row j, KV head kvh: k1 + j·k1_row + kvh·k1_head
  long long k1_row, k1_head;
  const unsigned short* k2;    // f16 key part 2 (MLA: k_pe); unused when D2 = 0
  long long k2_row, k2_head;
  const unsigned short* v;     // f16 values: v + j·v_row + kvh·v_head (GQA only)
  long long v_row, v_head;
  float* out;                  // normalized output of token t, head h: out + t·out_tok + h·out_head
  long long out_tok, out_head; //   (written when n_split == 1)
  float* part_o;               // [n_split][n_tok][n_head][DV] unnormalized sums (n_split > 1)
  float* part_ml;              // [n_split][n_tok][n_head][2] running max, sum of exps (n_split > 1)
  const int* d_pos;            // device: position of token 0 of the call
  int t_base;                  // token 0 of this launch is token t_base of the call
  int n_tok;                   // tokens of this launch
  int n_head;                  // query heads
  int group;                   // query heads per KV head
  int heads_per_block;         // g range of a block (<= rows)
  int toks_per_block;          // tt range of a block (heads_per_block · toks_per_block <= rows)
  int n_split;                 // key splits (gridDim.x); each covers a KT-aligned key range
  int n_ctx;                   // cache rows (no key at or past it is read)
  float scale;                 // multiplies q·k before the softmax
};
