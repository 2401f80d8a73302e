/*
 * test_gpu_speech.h: the speech ops' cases of test_gpu_ops.c (issue 15):
 * conv1d (cuDNN), attention_masked (the flash kernels with a mask),
 * ctc_loss, each against the CPU backend through run_case (NaN-filled
 * outputs, random starting gradients, two identical GPU runs). Included
 * by test_gpu_ops.c after run_case. Scratch sizes differ per backend
 * (im2col vs cuDNN's workspace; probabilities vs log-sum-exp), so each
 * side gets its own scratch buffer.
 *
 * Limits: conv1d TOL_GEMM (a K*Cin-term dot product per output, fp32 FMA
 * math forced, no TF32); attention_masked TOL_ATTN as attention; CTC
 * TOL_FP32: the recursions run in double on both sides, the log-softmax in
 * fp32 (the CPU sums it in double): a few ulps.
 */

typedef struct sp_scr {
  float *p[2];
} sp_scr;

static void scr_make(sp_scr *s, size_t n0, size_t n1) {
  s->p[0] = bt_mem_alloc(g_cpu, n0 ? n0 : 1, "scratch");
  s->p[1] = bt_mem_alloc(g_gpu, n1 ? n1 : 1, "scratch");
  BT_ASSERT(s->p[0] && s->p[1]);
}

static void scr_free(sp_scr *s) {
  bt_mem_free(g_cpu, s->p[0]);
  bt_mem_free(g_gpu, s->p[1]);
}

/* ---- conv1d ------------------------------------------------------------- */

typedef struct cv_ctx {
  tens inp, w, bias, out, dout, dinp, dw, dbias;
  sp_scr scr;
  int B, T, Cin, Cout, K, S, P;
} cv_ctx;

static void cv_fwd(bt_backend *be, int k, void *v) {
  cv_ctx *c = v;
  bt_op_conv1d_fwd(be, c->out.p[k], c->scr.p[k], c->inp.p[k], c->w.p[k],
                   c->bias.p[k], c->B, c->T, c->Cin, c->Cout, c->K, c->S,
                   c->P);
}
static void cv_bwd(bt_backend *be, int k, void *v) {
  cv_ctx *c = v;
  bt_op_conv1d_bwd(be, c->dinp.p[k], c->dw.p[k], c->dbias.p[k], c->scr.p[k],
                   c->dout.p[k], c->inp.p[k], c->w.p[k], c->B, c->T, c->Cin,
                   c->Cout, c->K, c->S, c->P);
}

static void test_conv1d(const int *a) {
  cv_ctx c;
  char z[96];
  memset(&c, 0, sizeof c);
  c.B = a[0], c.T = a[1], c.Cin = a[2], c.Cout = a[3], c.K = a[4];
  c.S = a[5] / 10, c.P = a[5] % 10;
  int To = (c.T + 2 * c.P - c.K) / c.S + 1;
  size_t nI = (size_t)c.B * c.T * c.Cin, nW = (size_t)c.Cout * c.Cin * c.K,
         nO = (size_t)c.B * To * c.Cout;
  t_rand(&c.inp, "inp", nI, -1, 1);
  t_rand(&c.w, "w", nW, -0.3f, 0.3f);
  t_rand(&c.bias, "bias", (size_t)c.Cout, -1, 1);
  t_make(&c.out, "out", nO, NULL, 0);
  t_rand(&c.dout, "dout", nO, -1, 1);
  t_rand(&c.dinp, "dinp", nI, -1, 1);
  t_rand(&c.dw, "dw", nW, -1, 1);
  t_rand(&c.dbias, "dbias", (size_t)c.Cout, -1, 1);
  scr_make(&c.scr,
           bt_op_conv1d_scratch_size(g_cpu, c.B, c.T, c.Cin, c.Cout, c.K, c.S,
                                     c.P),
           bt_op_conv1d_scratch_size(g_gpu, c.B, c.T, c.Cin, c.Cout, c.K, c.S,
                                     c.P));
  tens *fo[] = {&c.out};
  tens *bo[] = {&c.dinp, &c.dw, &c.dbias};
  bt_snprintf(z, sizeof z, "conv1d_fwd B=%d T=%d %d->%d K=%d S=%d P=%d", c.B,
              c.T, c.Cin, c.Cout, c.K, c.S, c.P);
  run_case(z, g_gpu, cv_fwd, &c, fo, 1, TOL_GEMM);
  bt_snprintf(z, sizeof z, "conv1d_bwd B=%d T=%d %d->%d K=%d S=%d P=%d", c.B,
              c.T, c.Cin, c.Cout, c.K, c.S, c.P);
  run_case(z, g_gpu, cv_bwd, &c, bo, 3, TOL_GEMM);
  tens *all[] = {&c.inp, &c.w, &c.bias, &c.out, &c.dout, &c.dinp, &c.dw,
                 &c.dbias};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) t_free(all[i]);
  scr_free(&c.scr);
}

/* ---- attention_masked ----------------------------------------------------- */

typedef struct am_ctx {
  tens qkv, out, att, dout, dqkv;
  sp_scr scr, att2;
  itens len;
  int B, T, C, NH, causal;
} am_ctx;

static void am_fwd(bt_backend *be, int k, void *v) {
  am_ctx *c = v;
  bt_op_attention_masked_fwd(be, c->out.p[k], c->att2.p[k], c->qkv.p[k],
                             c->len.p[k], c->causal, c->B, c->T, c->C, c->NH);
}
static void am_bwd(bt_backend *be, int k, void *v) {
  am_ctx *c = v;
  am_fwd(be, k, v);
  bt_op_attention_masked_bwd(be, c->dqkv.p[k], c->scr.p[k], c->dout.p[k],
                             c->qkv.p[k], c->out.p[k], c->att2.p[k],
                             c->len.p[k], c->causal, c->B, c->T, c->C, c->NH);
}

static void test_attention_masked(const int *a) {
  am_ctx c;
  char z[96];
  memset(&c, 0, sizeof c);
  c.B = a[0], c.T = a[1], c.C = a[2], c.NH = a[3], c.causal = a[4];
  int32_t len[8];
  uint64_t key = bt_rng_key(2024, 10, g_salt++, 0);
  for (int b = 0; b < c.B; b++) /* 1..T, the first one full */
    len[b] = b == 0 ? c.T : 1 + (int32_t)(bt_rng_u64(key, b) % c.T);
  it_make(&c.len, len, (size_t)c.B);
  size_t nO = (size_t)c.B * c.T * c.C;
  t_rand(&c.qkv, "qkv", 3 * nO, -1.5f, 1.5f);
  t_make(&c.out, "out", nO, NULL, 0);
  t_rand(&c.dout, "dout", nO, -1, 1);
  t_make(&c.dqkv, "dqkv", 3 * nO, NULL, 0); /* WRITTEN: NaN-poisoned */
  scr_make(&c.att2, bt_op_attention_att_size(g_cpu, c.B, c.T, c.NH),
           bt_op_attention_att_size(g_gpu, c.B, c.T, c.NH));
  scr_make(&c.scr, bt_op_attention_scratch_size(g_cpu, c.B, c.T, c.NH),
           bt_op_attention_scratch_size(g_gpu, c.B, c.T, c.NH));
  tens *fo[] = {&c.out};
  tens *bo[] = {&c.dqkv};
  bt_snprintf(z, sizeof z, "attention_masked_fwd B=%d T=%d C=%d NH=%d %s",
              c.B, c.T, c.C, c.NH, c.causal ? "causal" : "full");
  run_case(z, g_gpu, am_fwd, &c, fo, 1, TOL_ATTN);
  bt_snprintf(z, sizeof z, "attention_masked_bwd B=%d T=%d C=%d NH=%d %s",
              c.B, c.T, c.C, c.NH, c.causal ? "causal" : "full");
  run_case(z, g_gpu, am_bwd, &c, bo, 1, TOL_ATTN);
  t_free(&c.qkv), t_free(&c.out), t_free(&c.dout), t_free(&c.dqkv);
  scr_free(&c.att2), scr_free(&c.scr);
  it_free(&c.len);
}

/* ---- ctc_loss ------------------------------------------------------------- */

typedef struct ctc_ctx {
  tens logits, losses, dloss, dlogits;
  sp_scr scr;
  itens inLen, tgt, tgtLen;
  int B, T, V, L;
} ctc_ctx;

static void ctc_fwd(bt_backend *be, int k, void *v) {
  ctc_ctx *c = v;
  bt_op_ctc_loss_fwd(be, c->losses.p[k], c->scr.p[k], c->logits.p[k],
                     c->inLen.p[k], c->tgt.p[k], c->tgtLen.p[k], c->B, c->T,
                     c->V, c->L);
}
static void ctc_bwd(bt_backend *be, int k, void *v) {
  ctc_ctx *c = v;
  ctc_fwd(be, k, v);
  bt_op_ctc_loss_bwd(be, c->dlogits.p[k], c->scr.p[k], c->dloss.p[k],
                     c->inLen.p[k], c->tgt.p[k], c->tgtLen.p[k], c->B, c->T,
                     c->V, c->L);
}

/* Random lengths and labels; utterance 0 uses every frame, the last one
 * gets more labels than frames (impossible: loss 0, no gradient). */
static void test_ctc(const int *a) {
  ctc_ctx c;
  char z[96];
  memset(&c, 0, sizeof c);
  c.B = a[0], c.T = a[1], c.V = a[2], c.L = a[3];
  int32_t *in = xmalloc(sizeof(int32_t) * c.B);
  int32_t *tl = xmalloc(sizeof(int32_t) * c.B);
  int32_t *tg = xmalloc(sizeof(int32_t) * c.B * c.L);
  uint64_t key = bt_rng_key(2024, 11, g_salt++, 0);
  for (int b = 0; b < c.B; b++) {
    in[b] = b == 0 ? c.T : c.T / 2 + (int32_t)(bt_rng_u64(key, 3 * b) % (c.T / 2 + 1));
    tl[b] = (int32_t)(bt_rng_u64(key, 3 * b + 1) % (c.L + 1));
    if (b == c.B - 1) in[b] = 1, tl[b] = c.L;
    for (int j = 0; j < c.L; j++)
      tg[b * c.L + j] = j < tl[b] ? 1 + (int32_t)(bt_rng_u64(key, 1000 + b * c.L + j) % (c.V - 1)) : -1;
  }
  it_make(&c.inLen, in, (size_t)c.B);
  it_make(&c.tgtLen, tl, (size_t)c.B);
  it_make(&c.tgt, tg, (size_t)c.B * c.L);
  free(in), free(tl), free(tg);
  size_t n = (size_t)c.B * c.T * c.V;
  t_rand(&c.logits, "logits", n, -3, 3);
  t_make(&c.losses, "losses", (size_t)c.B, NULL, 0);
  t_rand(&c.dloss, "dloss", (size_t)c.B, 0.5f, 1.5f);
  t_rand(&c.dlogits, "dlogits", n, -1, 1);
  size_t nS = bt_op_ctc_scratch_size(g_cpu, c.B, c.T, c.V, c.L);
  scr_make(&c.scr, nS, bt_op_ctc_scratch_size(g_gpu, c.B, c.T, c.V, c.L));
  tens *fo[] = {&c.losses};
  tens *bo[] = {&c.dlogits};
  bt_snprintf(z, sizeof z, "ctc_loss_fwd B=%d T=%d V=%d L=%d", c.B, c.T, c.V,
              c.L);
  run_case(z, g_gpu, ctc_fwd, &c, fo, 1, TOL_FP32);
  bt_snprintf(z, sizeof z, "ctc_loss_bwd B=%d T=%d V=%d L=%d", c.B, c.T, c.V,
              c.L);
  run_case(z, g_gpu, ctc_bwd, &c, bo, 1, TOL_FP32);
  t_free(&c.logits), t_free(&c.losses), t_free(&c.dloss), t_free(&c.dlogits);
  scr_free(&c.scr);
  it_free(&c.inLen), it_free(&c.tgt), it_free(&c.tgtLen);
}
