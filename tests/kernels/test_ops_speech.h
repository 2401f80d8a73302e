/*
 * test_ops_speech.h: the speech ops' cases of test_ops.c (issue 15):
 * conv1d, attention_masked, ctc_loss. Included by test_ops.c after its
 * generic OpCase machinery (case_run, dev_from, ...), which every case
 * here goes through: forward vs an fp64 reference written here, backward
 * vs finite differences (fp32 and fp64), accumulation, determinism.
 *
 * The fp64 references are deliberately the plainest form of each
 * formula: conv1d as the sum in ops.def, masked attention as explicit
 * loops over the visible keys, and CTC by ENUMERATING every alignment
 * (V^T paths, collapsed: merge repeats, drop blanks) rather than by the
 * alpha recursion the op uses, so the reference shares no code or idea
 * with the implementation. That keeps T and V tiny (V^T <= 7776).
 */

/* ---- conv1d -------------------------------------------------------------- */

typedef struct {
  int B, T, Cin, Cout, K, S, P, bBias, To;
} ConvArg;

static void conv1d_run_fwd(OpCase *c, float *out) {
  ConvArg *a = c->pArg;
  float *dI = dev_from(c->aIn[0], c->anIn[0]);
  float *dW = dev_from(c->aIn[1], c->anIn[1]);
  float *dB = a->bBias ? dev_from(c->aIn[2], c->anIn[2]) : NULL;
  size_t nS = bt_op_conv1d_scratch_size(g_be, a->B, a->T, a->Cin, a->Cout,
                                        a->K, a->S, a->P);
  float *dS = bt_mem_alloc(g_be, nS, "scratch");
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  bt_op_conv1d_fwd(g_be, dOut, dS, dI, dW, dB, a->B, a->T, a->Cin, a->Cout,
                   a->K, a->S, a->P);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dS);
  bt_mem_free(g_be, dI);
  bt_mem_free(g_be, dW);
  bt_mem_free(g_be, dB);
}

static void conv1d_run_bwd(OpCase *c, float **g) {
  ConvArg *a = c->pArg;
  float *dI = dev_from(c->aIn[0], c->anIn[0]);
  float *dW = dev_from(c->aIn[1], c->anIn[1]);
  float *dR = dev_from(c->R, c->nOut);
  size_t nS = bt_op_conv1d_scratch_size(g_be, a->B, a->T, a->Cin, a->Cout,
                                        a->K, a->S, a->P);
  float *dS = bt_mem_alloc(g_be, nS, "scratch");
  float *gI = grad_up(g[0], c->anIn[0]);
  float *gW = grad_up(g[1], c->anIn[1]);
  float *gB = a->bBias ? grad_up(g[2], c->anIn[2]) : NULL;
  bt_op_conv1d_bwd(g_be, gI, gW, gB, dS, dR, dI, dW, a->B, a->T, a->Cin,
                   a->Cout, a->K, a->S, a->P);
  fetch_free(g[0], gI, c->anIn[0]);
  fetch_free(g[1], gW, c->anIn[1]);
  if (gB) fetch_free(g[2], gB, c->anIn[2]);
  bt_mem_free(g_be, dS);
  bt_mem_free(g_be, dR);
  bt_mem_free(g_be, dI);
  bt_mem_free(g_be, dW);
}

static void conv1d_ref(OpCase *c, double *out) {
  ConvArg *a = c->pArg;
  const float *x = c->aIn[0], *w = c->aIn[1];
  for (int b = 0; b < a->B; b++)
    for (int o = 0; o < a->To; o++)
      for (int co = 0; co < a->Cout; co++) {
        double s = a->bBias ? c->aIn[2][co] : 0.0;
        for (int ci = 0; ci < a->Cin; ci++)
          for (int k = 0; k < a->K; k++) {
            int t = o * a->S - a->P + k;
            if (t < 0 || t >= a->T) continue;
            s += (double)w[((size_t)co * a->Cin + ci) * a->K + k] *
                 x[((size_t)b * a->T + t) * a->Cin + ci];
          }
        out[((size_t)b * a->To + o) * a->Cout + co] = s;
      }
}

/* p: B, T, Cin, Cout, K, then S*100 + P*10 + (1 if no bias). */
static void test_conv1d(const int *p) {
  ConvArg a = {p[0], p[1], p[2], p[3], p[4], p[5] / 100, p[5] / 10 % 10,
               p[5] % 10 == 0, 0};
  a.To = (a.T + 2 * a.P - a.K) / a.S + 1;
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "conv1d B%d T%d Cin%d Cout%d K%d S%d P%d%s",
           a.B, a.T, a.Cin, a.Cout, a.K, a.S, a.P, a.bBias ? "" : " nobias");
  c.nIn = a.bBias ? 3 : 2;
  c.azIn[0] = "inp";
  c.azIn[1] = "w";
  c.azIn[2] = "bias";
  c.anIn[0] = (size_t)a.B * a.T * a.Cin;
  c.anIn[1] = (size_t)a.Cout * a.Cin * a.K;
  c.anIn[2] = (size_t)a.Cout;
  for (int k = 0; k < c.nIn; k++) c.aIn[k] = rand_vec(c.anIn[k], -1, 1);
  c.nOut = (size_t)a.B * a.To * a.Cout;
  c.R = rand_vec(c.nOut, -1, 1);
  c.fwd = conv1d_run_fwd;
  c.bwd = conv1d_run_bwd;
  c.ref = conv1d_ref;
  c.pArg = &a;
  case_run(&c);
  case_free(&c);
}

/* ---- attention_masked ------------------------------------------------------ */

typedef struct {
  int B, T, C, NH, causal;
  const int32_t *keyLen; /* host; NULL = no lengths */
} MaskArg;

static int32_t *mask_len_dev(const MaskArg *a) {
  return a->keyLen ? dev_from_i32(a->keyLen, (size_t)a->B) : NULL;
}

static void att_masked_fwd(OpCase *c, float *out) {
  MaskArg *a = c->pArg;
  float *dQkv = dev_from(c->aIn[0], c->anIn[0]);
  int32_t *dLen = mask_len_dev(a);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  float *dAtt = bt_mem_alloc(
      g_be, bt_op_attention_att_size(g_be, a->B, a->T, a->NH), "att");
  bt_op_attention_masked_fwd(g_be, dOut, dAtt, dQkv, dLen, a->causal, a->B,
                             a->T, a->C, a->NH);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dAtt);
  bt_mem_free(g_be, dQkv);
  if (dLen) bt_mem_free_i32(g_be, dLen);
}

static void att_masked_bwd(OpCase *c, float **g) {
  MaskArg *a = c->pArg;
  float *dQkv = dev_from(c->aIn[0], c->anIn[0]);
  int32_t *dLen = mask_len_dev(a);
  float *dOut = bt_mem_alloc(g_be, c->nOut, "out");
  float *dAtt = bt_mem_alloc(
      g_be, bt_op_attention_att_size(g_be, a->B, a->T, a->NH), "att");
  float *dScr = bt_mem_alloc(
      g_be, bt_op_attention_scratch_size(g_be, a->B, a->T, a->NH), "scratch");
  bt_op_attention_masked_fwd(g_be, dOut, dAtt, dQkv, dLen, a->causal, a->B,
                             a->T, a->C, a->NH);
  float *dR = dev_from(c->R, c->nOut);
  float *gQ = grad_up(g[0], c->anIn[0]);
  bt_op_attention_masked_bwd(g_be, gQ, dScr, dR, dQkv, dOut, dAtt, dLen,
                             a->causal, a->B, a->T, a->C, a->NH);
  fetch_free(g[0], gQ, c->anIn[0]);
  bt_mem_free(g_be, dR);
  bt_mem_free(g_be, dOut);
  bt_mem_free(g_be, dAtt);
  bt_mem_free(g_be, dScr);
  bt_mem_free(g_be, dQkv);
  if (dLen) bt_mem_free_i32(g_be, dLen);
}

/* fp64: query t of utterance b sees keys t2 < n (n = keyLen[b] or T), and
 * t2 <= t if causal; rows t >= n are 0. */
static void att_masked_ref(OpCase *c, double *out) {
  MaskArg *a = c->pArg;
  const float *qkv = c->aIn[0];
  int B = a->B, T = a->T, C = a->C, NH = a->NH, hs = C / NH;
  double *p = xmalloc(sizeof(double) * T);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        int n = a->keyLen ? a->keyLen[b] : T;
        int nk = t >= n ? 0 : (a->causal ? t + 1 : n);
        const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
        double mx = -INFINITY, sum = 0;
        for (int t2 = 0; t2 < nk; t2++) {
          const float *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
          double s = 0;
          for (int i = 0; i < hs; i++) s += (double)q[i] * k[i];
          p[t2] = s / sqrt((double)hs);
          if (p[t2] > mx) mx = p[t2];
        }
        for (int t2 = 0; t2 < nk; t2++) sum += (p[t2] = exp(p[t2] - mx));
        for (int i = 0; i < hs; i++) {
          double o = 0;
          for (int t2 = 0; t2 < nk; t2++)
            o += p[t2] / sum *
                 qkv[((size_t)b * T + t2) * 3 * C + 2 * C + h * hs + i];
          out[((size_t)b * T + t) * C + h * hs + i] = o;
        }
      }
  free(p);
}

/* p: B, T, C, NH, causal, then up to 3 key lengths packed in p[5] as
 * bytes (0 = no keyLen array). */
static void test_attention_masked(const int *p) {
  int32_t aLen[3];
  MaskArg a = {p[0], p[1], p[2], p[3], p[4], NULL};
  if (p[5]) {
    for (int b = 0; b < a.B; b++) aLen[b] = (p[5] >> (8 * b)) & 0xff;
    a.keyLen = aLen;
  }
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "attention_masked B%d T%d C%d NH%d %s%s",
           a.B, a.T, a.C, a.NH, a.causal ? "causal" : "full",
           a.keyLen ? " keyLen" : "");
  c.nIn = 1;
  c.azIn[0] = "qkv";
  c.anIn[0] = (size_t)a.B * a.T * 3 * a.C;
  c.aIn[0] = rand_vec(c.anIn[0], -2, 2);
  c.nOut = (size_t)a.B * a.T * a.C;
  c.R = rand_vec(c.nOut, -1, 1);
  c.bWrites = 1; /* dqkv is WRITTEN (ops.def) */
  c.fwd = att_masked_fwd;
  c.bwd = att_masked_bwd;
  c.ref = att_masked_ref;
  c.pArg = &a;
  case_run(&c);

  /* Padded query rows are exactly 0, and padded keys get exactly zero
   * gradient (not merely a small one, nor what was there before). */
  if (a.keyLen) {
    float *out = xmalloc(c.nOut * sizeof(float));
    float *g = xmalloc(c.anIn[0] * sizeof(float));
    /* junk first: the zeros must be written (dqkv is WRITTEN) */
    for (size_t i = 0; i < c.anIn[0]; i++) g[i] = 5.0f;
    att_masked_fwd(&c, out);
    att_masked_bwd(&c, &g);
    int nBad = 0;
    for (int b = 0; b < a.B; b++)
      for (int t = a.keyLen[b]; t < a.T; t++) {
        for (int i = 0; i < a.C; i++)
          nBad += out[((size_t)b * a.T + t) * a.C + i] != 0.0f;
        for (int i = 0; i < 3 * a.C; i++)
          nBad += g[((size_t)b * a.T + t) * 3 * a.C + i] != 0.0f;
      }
    CHECK(nBad == 0, "%s: %d padded outputs / gradients are not exactly 0",
          c.zName, nBad);
    free(out);
    free(g);
  }
  case_free(&c);
}

/* ---- ctc_loss ------------------------------------------------------------ */

typedef struct {
  int B, T, V, L;
  int32_t inLen[3], tgt[3 * 4], tgtLen[3];
} CtcArg;

static void ctc_upload(const CtcArg *a, int32_t **pIn, int32_t **pTg,
                       int32_t **pTl) {
  *pIn = dev_from_i32(a->inLen, (size_t)a->B);
  *pTg = dev_from_i32(a->tgt, (size_t)a->B * a->L);
  *pTl = dev_from_i32(a->tgtLen, (size_t)a->B);
}

static void ctc_free_i32(int32_t *a, int32_t *b, int32_t *c) {
  bt_mem_free_i32(g_be, a);
  bt_mem_free_i32(g_be, b);
  bt_mem_free_i32(g_be, c);
}

static void ctc_run_fwd(OpCase *c, float *out) {
  CtcArg *a = c->pArg;
  int32_t *dIn, *dTg, *dTl;
  ctc_upload(a, &dIn, &dTg, &dTl);
  float *dX = dev_from(c->aIn[0], c->anIn[0]);
  float *dS = bt_mem_alloc(
      g_be, bt_op_ctc_scratch_size(g_be, a->B, a->T, a->V, a->L), "scratch");
  float *dOut = bt_mem_alloc(g_be, c->nOut, "losses");
  bt_op_ctc_loss_fwd(g_be, dOut, dS, dX, dIn, dTg, dTl, a->B, a->T, a->V,
                     a->L);
  fetch_free(out, dOut, c->nOut);
  bt_mem_free(g_be, dS);
  bt_mem_free(g_be, dX);
  ctc_free_i32(dIn, dTg, dTl);
}

static void ctc_run_bwd(OpCase *c, float **g) {
  CtcArg *a = c->pArg;
  int32_t *dIn, *dTg, *dTl;
  ctc_upload(a, &dIn, &dTg, &dTl);
  float *dX = dev_from(c->aIn[0], c->anIn[0]);
  float *dS = bt_mem_alloc(
      g_be, bt_op_ctc_scratch_size(g_be, a->B, a->T, a->V, a->L), "scratch");
  float *dOut = bt_mem_alloc(g_be, c->nOut, "losses");
  float *dR = dev_from(c->R, c->nOut);
  float *gX = grad_up(g[0], c->anIn[0]);
  bt_op_ctc_loss_fwd(g_be, dOut, dS, dX, dIn, dTg, dTl, a->B, a->T, a->V,
                     a->L);
  bt_op_ctc_loss_bwd(g_be, gX, dS, dR, dIn, dTg, dTl, a->B, a->T, a->V,
                     a->L);
  fetch_free(g[0], gX, c->anIn[0]);
  bt_mem_free(g_be, dR);
  bt_mem_free(g_be, dOut);
  bt_mem_free(g_be, dS);
  bt_mem_free(g_be, dX);
  ctc_free_i32(dIn, dTg, dTl);
}

/* 1 if the frame labels path[0..n) collapse (merge repeats, drop blanks)
 * to tgt[0..tl). */
static int ctc_collapses_to(const int *path, int n, const int32_t *tgt,
                            int tl) {
  int j = 0, prev = -1;
  for (int t = 0; t < n; t++) {
    if (path[t] != 0 && path[t] != prev) {
      if (j >= tl || path[t] != tgt[j]) return 0;
      j++;
    }
    prev = path[t];
  }
  return j == tl;
}

/* fp64 by enumeration: p = sum over all V^n label paths that collapse to
 * the target of prod_t softmax(x_t)[path_t]; loss = -log p, 0 if p = 0. */
static void ctc_ref(OpCase *c, double *out) {
  CtcArg *a = c->pArg;
  int V = a->V, T = a->T;
  for (int b = 0; b < a->B; b++) {
    int n = a->inLen[b];
    double lp[8][8]; /* T, V <= 8 */
    for (int t = 0; t < n; t++) {
      const float *x = c->aIn[0] + ((size_t)b * T + t) * V;
      double z = 0;
      for (int v = 0; v < V; v++) z += exp((double)x[v]);
      for (int v = 0; v < V; v++) lp[t][v] = (double)x[v] - log(z);
    }
    long nPath = 1;
    for (int t = 0; t < n; t++) nPath *= V;
    double p = 0;
    for (long i = 0; i < nPath; i++) {
      int path[8];
      long r = i;
      double lpath = 0;
      for (int t = 0; t < n; t++, r /= V) {
        path[t] = (int)(r % V);
        lpath += lp[t][path[t]];
      }
      if (ctc_collapses_to(path, n, a->tgt + (size_t)b * a->L, a->tgtLen[b]))
        p += exp(lpath);
    }
    out[b] = p > 0 ? -log(p) : 0.0;
  }
}

/* Three utterances, T = 5, V = 4, L = 3; case k picks the lengths and
 * targets (labels past tgtLen are -1, as the speech batch pads them):
 *   0: unequal input lengths, a repeated label (needs a blank between),
 *      an empty target;
 *   1: every frame used, an impossible utterance (target 1 1 2 needs 4
 *      frames, it gets 3: zero_infinity, loss and gradient 0). */
static void test_ctc(const int *p) {
  static const CtcArg aArg[2] = {
      {3, 5, 4, 3, {5, 3, 4}, {2, 2, -1, 3, -1, -1, 0, 0, 0}, {2, 1, 0}},
      {3, 5, 4, 3, {5, 3, 5}, {1, 3, 2, 1, 1, 2, 3, 1, -1}, {3, 3, 2}},
  };
  CtcArg a = aArg[p[0]];
  for (int i = 0; i < a.B * a.L; i++)
    if (a.tgt[i] == 0) a.tgt[i] = -1;
  OpCase c = {0};
  snprintf(c.zName, sizeof c.zName, "ctc_loss B%d T%d V%d L%d set %d", a.B,
           a.T, a.V, a.L, p[0]);
  c.nIn = 1;
  c.azIn[0] = "logits";
  c.anIn[0] = (size_t)a.B * a.T * a.V;
  c.aIn[0] = rand_vec(c.anIn[0], -2, 2);
  c.nOut = (size_t)a.B;
  c.R = rand_vec(c.nOut, 0.5f, 1.5f);
  c.fwd = ctc_run_fwd;
  c.bwd = ctc_run_bwd;
  c.ref = ctc_ref;
  c.pArg = &a;
  case_run(&c);

  /* Frames past inLen get exactly no gradient; an impossible utterance
   * has loss 0 and no gradient at all. */
  float *loss = xmalloc(c.nOut * sizeof(float));
  float *g = xmalloc(c.anIn[0] * sizeof(float));
  ctc_run_fwd(&c, loss);
  ctc_run_bwd(&c, &g);
  int nBad = 0;
  for (int b = 0; b < a.B; b++) {
    int bImpossible = p[0] == 1 && b == 1;
    for (int t = bImpossible ? 0 : a.inLen[b]; t < a.T; t++)
      for (int v = 0; v < a.V; v++)
        nBad += g[((size_t)b * a.T + t) * a.V + v] != 0.0f;
    if (bImpossible) nBad += loss[b] != 0.0f;
    else nBad += !(loss[b] > 0.0f);
  }
  CHECK(nBad == 0, "%s: %d padded-frame gradients / losses wrong", c.zName,
        nBad);
  free(loss);
  free(g);
  case_free(&c);
}

/* ---- thread-count independence of the speech ops (CPU) --------------------
 * Shapes past every OpenMP threshold of cpu_speech.c (conv rows x Cin K x
 * Cout, B T T C, B T V all >= BT_CPU_PAR_MIN); outputs and gradients of
 * 1, 2 and 3 threads must be the same bits. */
enum { SP_NOUT = 9 };

static void speech_run_all(float **aOut, size_t *anOut) {
  enum { B = 4, T = 201, CI = 40, CO = 48, K = 3, TA = 61, C = 128, NH = 4,
         TC = 120, V = 80, L = 20 };
  const int To = (T + 2 - K) / 2 + 1;
  static const int32_t aLen[B] = {61, 40, 1, 59}, aIn[B] = {120, 90, 70, 31};
  static const int32_t aTl[B] = {20, 7, 0, 20};
  int32_t tg[B * L];
  for (int i = 0; i < B * L; i++) tg[i] = 1 + (i * 7) % (V - 1);
  g_salt = 7000;
  size_t n[SP_NOUT] = {(size_t)B * To * CO, (size_t)B * T * CI,
                       (size_t)CO * CI * K, CO, (size_t)B * TA * C,
                       (size_t)B * TA * 3 * C, B, (size_t)B * TC * V, 0};
  float *x = rand_vec(n[1], -1, 1), *w = rand_vec(n[2], -1, 1);
  float *r = rand_vec(n[0], -1, 1), *q = rand_vec(n[5], -2, 2);
  float *ra = rand_vec(n[4], -1, 1), *lg = rand_vec(n[7], -3, 3);
  float *rl = rand_vec(B, 0.5f, 1.5f);
  float *d[SP_NOUT];
  for (int i = 0; i < SP_NOUT - 1; i++) d[i] = bt_mem_alloc(g_be, n[i], "o");
  float *dx = dev_from(x, n[1]), *dw = dev_from(w, n[2]), *dr = dev_from(r, n[0]);
  float *dq = dev_from(q, n[5]), *dra = dev_from(ra, n[4]);
  float *dlg = dev_from(lg, n[7]), *drl = dev_from(rl, B);
  int32_t *dLen = dev_from_i32(aLen, B), *dIn = dev_from_i32(aIn, B);
  int32_t *dTl = dev_from_i32(aTl, B), *dTg = dev_from_i32(tg, B * L);
  size_t nS = bt_op_conv1d_scratch_size(g_be, B, T, CI, CO, K, 2, 1);
  size_t nA = bt_op_attention_att_size(g_be, B, TA, NH);
  size_t nC = bt_op_ctc_scratch_size(g_be, B, TC, V, L);
  float *scr = bt_mem_alloc(g_be, nS > nA ? (nS > nC ? nS : nC) : (nA > nC ? nA : nC), "s");
  float *att = bt_mem_alloc(g_be, nA, "att");
  bt_op_conv1d_fwd(g_be, d[0], scr, dx, dw, dw, B, T, CI, CO, K, 2, 1);
  bt_op_conv1d_bwd(g_be, d[1], d[2], d[3], scr, dr, dx, dw, B, T, CI, CO, K,
                   2, 1);
  bt_op_attention_masked_fwd(g_be, d[4], att, dq, dLen, 0, B, TA, C, NH);
  bt_op_attention_masked_bwd(g_be, d[5], scr, dra, dq, d[4], att, dLen, 0, B,
                             TA, C, NH);
  bt_op_ctc_loss_fwd(g_be, d[6], scr, dlg, dIn, dTg, dTl, B, TC, V, L);
  bt_op_ctc_loss_bwd(g_be, d[7], scr, drl, dIn, dTg, dTl, B, TC, V, L);
  for (int i = 0; i < SP_NOUT - 1; i++) {
    aOut[i] = xmalloc(n[i] * sizeof(float));
    anOut[i] = n[i];
    fetch_free(aOut[i], d[i], n[i]);
  }
  float *all[] = {dx, dw, dr, dq, dra, dlg, drl, scr, att};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    bt_mem_free(g_be, all[i]);
  bt_mem_free_i32(g_be, dLen), bt_mem_free_i32(g_be, dIn);
  bt_mem_free_i32(g_be, dTl), bt_mem_free_i32(g_be, dTg);
  free(x), free(w), free(r), free(q), free(ra), free(lg), free(rl);
}

static void test_speech_threads(const int *a) {
  (void)a;
  static const char *azName[SP_NOUT - 1] = {
      "conv out", "conv dinp", "conv dw", "conv dbias", "att out",
      "att dqkv", "ctc losses", "ctc dlogits"};
  float *aRef[SP_NOUT], *aGot[SP_NOUT];
  size_t an[SP_NOUT];
  bt_backend *saved = g_be;
  int nDiff = 0;
  for (int nt = 1; nt <= 3; nt++) {
    g_be = bt_backend_create(BT_BACKEND_CPU, nt, 0);
    CHECK(g_be != NULL, "cpu backend: %s", bt_err_msg());
    if (!g_be) break;
    speech_run_all(nt == 1 ? aRef : aGot, an);
    bt_backend_free(g_be);
    if (nt == 1) continue;
    for (int i = 0; i < SP_NOUT - 1; i++) {
      int dif = memcmp(aRef[i], aGot[i], an[i] * sizeof(float)) != 0;
      if (dif) printf("  1 vs %d threads differ: %s\n", nt, azName[i]);
      nDiff += dif;
      free(aGot[i]);
    }
  }
  g_be = saved;
  for (int i = 0; i < SP_NOUT - 1; i++) free(aRef[i]);
  printf("  speech ops, 1 vs 2 vs 3 threads: %d buffers differ\n", nDiff);
  CHECK(nDiff == 0, "%d speech op outputs depend on the thread count", nDiff);
}
