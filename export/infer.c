/*
 * infer.c: `baton infer DIR ...` on an export directory.
 *
 * GPT: byte-level prompt -> KV-cache generation (export_kv.c) with greedy
 * or temperature/top-k sampling. Sampling draws come from the counter-based
 * generator keyed by (seed, "sample", position), so a given seed always
 * gives the same text. --logits-out writes the logits of a full forward
 * (bt_model_forward, the trainer's own code) over the prompt: that is what
 * the bit-exactness test compares against the trainer.
 *
 * Tokens: when DIR carries a tokenizer (tokenizer.json, or vocab.json +
 * merges.txt, as `baton export` copies them from BPE data), --prompt is
 * encoded and the output decoded with it (data/tokenizer.h); with
 * --checkpoint the tokenizer comes from the run's data file. Without one,
 * the prompt's UTF-8 bytes are the tokens, and only a 256-token (byte)
 * model accepts --prompt: a BPE model never gets byte tokens silently.
 *
 * MLP: rows of features from CSV, .npy or HDF5 (data/features.h) ->
 * predicted class per row.
 *
 * Speech: --wav FILE [FILE ...] -> `path<TAB>transcript` per file
 * (infer_speech.c). Positional arguments after DIR are accepted only as
 * more WAV files, once --wav has been given.
 *
 * `--checkpoint` accepts a checkpoint (or run) directory instead of an
 * export, so tests can run the same code on the trainer's own weights.
 */
#include "base/cli.h"
#include "base/util.h"
#include "checkpoints/ckpt.h"
#include "data/features.h"
#include "data/tokenizer.h"
#include "export/export.h"
#include "trainer/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RNG_PURPOSE_SAMPLE 0x73616d70u /* "samp" */

typedef struct infer_opts {
  const char *zDir;
  int fromCkpt;
  const char *zPrompt;
  const char *zPromptIds;
  int maxNew;
  double temperature;
  int topK;
  uint64_t seed;
  const char *zLogitsOut;
  int printIds;
  const char *zInput;
  const char *zDataset;
  int threads;
  const char *zBackend;
  int noCache;
  const char **azWav; /* speech: --wav files and the positionals after DIR */
  int nWav, bWavOpt;
  const char *zExtra; /* the first positional after DIR */
} infer_opts;

static void usage(FILE *f) {
  fprintf(f,
          "usage: baton infer DIR [options]\n"
          "\n"
          "Runs an exported model (DIR holds config.json + "
          "model.safetensors from\n`baton export`).\n"
          "\n"
          "GPT (text generation):\n"
          "  --prompt TEXT         prompt, encoded with DIR's tokenizer.json "
          "(or vocab.json +\n"
          "                        merges.txt) when it has one, else its "
          "UTF-8 bytes are the\n"
          "                        tokens (256-token models only)\n"
          "  --prompt-ids LIST     prompt as comma-separated token ids "
          "instead\n"
          "  --max-new-tokens N    tokens to generate (default 64; stops at "
          "the context)\n"
          "  --temperature T       0 = greedy (default 0)\n"
          "  --top-k K             sample among the K most likely (0 = all)\n"
          "  --seed S              sampling seed (default 1); same seed, same "
          "text\n"
          "  --ids                 print generated token ids instead of "
          "text\n"
          "  --no-cache            recompute the full forward per token "
          "(slow; for checks)\n"
          "MLP (classification):\n"
          "  --input FILE          .csv (one row of features per line), .npy "
          "or .h5/.hdf5\n"
          "  --dataset NAME        HDF5 dataset (default /val/x, else "
          "/train/x)\n"
          "Speech (transcription; DIR from `baton export` of a speech run):\n"
          "  --wav FILE [FILE ...] 16 kHz mono audio files (as `prepare "
          "audio` takes them;\n"
          "                        --wav may repeat): one line "
          "`FILE<TAB>transcript` each,\n"
          "                        greedy CTC decoding\n"
          "All:\n"
          "  --logits-out FILE     write raw little-endian fp32 logits: GPT "
          "[prompt tokens,\n"
          "                        vocab] from a full forward of the prompt; "
          "MLP [rows, classes];\n"
          "                        speech [encoder frames, vocab] of each "
          "file, concatenated\n"
          "  --checkpoint          DIR is a checkpoint or run directory, not "
          "an export\n"
          "  --threads N           CPU threads (default: OMP_NUM_THREADS)\n"
          "  --backend cpu|cuda    backend of the full forward (the KV-cache "
          "decoder is CPU)\n"
          "\n"
          "Generated text goes to stdout (printable ASCII, newline, tab and "
          "valid UTF-8\nas they are, every other byte as \\xNN); "
          "throughput goes to stderr.\n");
}

static int write_floats(const char *zPath, const float *p, size_t n) {
  return bt_file_write_atomic(zPath, p, n * sizeof(float));
}

/* Generated text, escaped as docs/export.md says: printable ASCII, newline,
 * tab and valid UTF-8 go out as they are; every other byte (control bytes,
 * and each byte of an invalid or unfinished UTF-8 sequence) as \xNN, so the
 * output is always valid UTF-8 and no terminal sees a raw control byte.
 * A byte-level model emits one byte per token, so a character arrives in
 * pieces: utf8_esc holds the bytes of a sequence until it is complete
 * (printed whole) or broken (printed escaped, and the breaking byte starts
 * afresh). "Valid" is RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF; the constraints all sit on the second byte. */
typedef struct utf8_esc {
  unsigned char a[4]; /* the sequence so far */
  int n, need;        /* bytes held, bytes the sequence needs in all */
} utf8_esc;

static void utf8_flush(FILE *f, utf8_esc *e) {
  for (int i = 0; i < e->n; i++) fprintf(f, "\\x%02x", e->a[i]);
  e->n = e->need = 0;
}

/* Continuation byte b valid as byte number e->n (1-based: 1 is the second)? */
static int utf8_cont_ok(const utf8_esc *e, unsigned char b) {
  unsigned char lo = 0x80, hi = 0xbf;
  if (e->n == 1) {
    switch (e->a[0]) {
    case 0xe0: lo = 0xa0; break; /* overlong below U+0800 */
    case 0xed: hi = 0x9f; break; /* surrogates U+D800..DFFF */
    case 0xf0: lo = 0x90; break; /* overlong below U+10000 */
    case 0xf4: hi = 0x8f; break; /* above U+10FFFF */
    }
  }
  return b >= lo && b <= hi;
}

static void utf8_put_byte(FILE *f, utf8_esc *e, unsigned char b) {
  if (e->n > 0) {
    if (utf8_cont_ok(e, b)) {
      e->a[e->n++] = b;
      if (e->n == e->need) {
        fwrite(e->a, 1, (size_t)e->n, f);
        e->n = e->need = 0;
      }
      return;
    }
    utf8_flush(f, e); /* broken: its bytes escaped, b starts afresh */
  }
  int need = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3
           : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
  if (need) {
    e->a[0] = b;
    e->n = 1;
    e->need = need;
  } else if (b == '\n' || b == '\t' || (b >= 0x20 && b < 0x7f)) {
    fputc(b, f);
  } else {
    fprintf(f, "\\x%02x", b);
  }
}

/* Prints a token's byte; tokens >= 256 print as <id>. */
static void put_token(FILE *f, utf8_esc *e, int tok) {
  if (tok >= 256) {
    utf8_flush(f, e);
    fprintf(f, "<%d>", tok);
  } else {
    utf8_put_byte(f, e, (unsigned char)tok);
  }
}

/* Prints the bytes a tokenizer decodes a token to, escaped like put_token:
 * a BPE token may hold part of a UTF-8 sequence, completed by the next. */
static void put_bytes(FILE *f, utf8_esc *e, const char *z, size_t n) {
  for (size_t i = 0; i < n; i++) utf8_put_byte(f, e, (unsigned char)z[i]);
}

/* Full forward of tokens[0, n) padded to the model's window: causal
 * attention makes positions < n independent of the padding. */
static int full_forward(bt_export_model *x, const int32_t *tok, int n,
                        float *out) {
  bt_model *m = &x->m;
  int32_t *in = bt_calloc((size_t)m->T, sizeof(int32_t), "forward tokens");
  float *lg = bt_malloc((size_t)m->T * m->Vp * sizeof(float), "logits");
  if (!in || !lg) {
    free(in);
    free(lg);
    return BT_ERR;
  }
  memcpy(in, tok, (size_t)n * sizeof(int32_t));
  int rc = bt_model_forward(m, 1, in, NULL, NULL, NULL, NULL);
  if (rc == BT_OK) {
    bt_act_to_host(m->be, lg, bt_model_logits(m), (size_t)m->T * m->Vp);
    for (int t = 0; t < n; t++)
      memcpy(out + (size_t)t * m->V, lg + (size_t)t * m->Vp,
             (size_t)m->V * sizeof(float));
  }
  free(in);
  free(lg);
  return rc;
}

static int sample(const float *logits, int V, const infer_opts *o, int pos,
                  double *scratch, float *sorted) {
  int best = 0;
  for (int i = 1; i < V; i++)
    if (logits[i] > logits[best]) best = i;
  if (o->temperature <= 0) return best;
  float thresh = -INFINITY;
  if (o->topK > 0 && o->topK < V) {
    /* k-th largest logit by quickselect on a copy: O(V) per token. */
    memcpy(sorted, logits, (size_t)V * sizeof(float));
    int lo = 0, hi = V - 1, k = o->topK - 1; /* index in descending order */
    while (lo < hi) {
      float piv = sorted[(lo + hi) / 2];
      int i = lo, j = hi;
      while (i <= j) {
        while (sorted[i] > piv) i++;
        while (sorted[j] < piv) j--;
        if (i <= j) {
          float tmp = sorted[i];
          sorted[i++] = sorted[j];
          sorted[j--] = tmp;
        }
      }
      if (k <= j) hi = j;
      else if (k >= i) lo = i;
      else break;
    }
    thresh = sorted[k];
  }
  double mx = logits[best], sum = 0;
  for (int i = 0; i < V; i++) {
    scratch[i] = logits[i] >= thresh
                     ? exp(((double)logits[i] - mx) / o->temperature)
                     : 0.0;
    sum += scratch[i];
  }
  uint64_t key = bt_rng_key(o->seed, RNG_PURPOSE_SAMPLE, 0, 0);
  double u = bt_rng_uniform(key, (uint64_t)pos) * sum, c = 0;
  for (int i = 0; i < V; i++) {
    c += scratch[i];
    if (scratch[i] > 0 && u < c) return i;
  }
  return best;
}

static int parse_ids(const char *z, int32_t **pa, int *pn) {
  int cap = 16, n = 0;
  int32_t *a = bt_malloc((size_t)cap * sizeof(int32_t), "prompt ids");
  if (!a) return BT_ERR;
  const char *p = z;
  while (*p) {
    char *e;
    errno = 0;
    long v = strtol(p, &e, 10);
    if (e == p || errno || v < 0 || v > INT32_MAX) {
      free(a);
      return bt_err_set("--prompt-ids: bad id near '%.16s'", p);
    }
    if (n == cap) {
      int32_t *b = realloc(a, (size_t)(cap *= 2) * sizeof(int32_t));
      if (!b) {
        free(a);
        return bt_err_set("out of memory");
      }
      a = b;
    }
    a[n++] = (int32_t)v;
    p = e;
    while (*p == ',' || *p == ' ') p++;
  }
  *pa = a;
  *pn = n;
  return BT_OK;
}

static int infer_gpt(bt_export_model *x, const infer_opts *o, bt_tok *pTok) {
  bt_model *m = &x->m;
  int32_t *tok = NULL;
  int nPrompt = 0;
  if (o->zPromptIds) {
    if (parse_ids(o->zPromptIds, &tok, &nPrompt) != BT_OK) return BT_ERR;
  } else if (pTok) {
    const char *z = o->zPrompt ? o->zPrompt : "";
    bt_tok_ids ids = {0};
    if (bt_tok_encode(pTok, z, strlen(z), 1, &ids, NULL) != BT_OK) {
      bt_tok_ids_free(&ids);
      return BT_ERR;
    }
    nPrompt = (int)ids.n;
    tok = bt_malloc((size_t)(nPrompt + 1) * sizeof(int32_t), "prompt");
    for (int i = 0; tok && i < nPrompt; i++) tok[i] = (int32_t)ids.a[i];
    bt_tok_ids_free(&ids);
    if (!tok) return BT_ERR;
  } else if (m->V != 256 && o->zPrompt) {
    return bt_err_set("%s: the model's vocabulary has %d tokens, not 256 "
                      "bytes, and no tokenizer came with it (tokenizer.json "
                      "or vocab.json + merges.txt in the export directory): "
                      "refusing to feed the prompt as bytes; give "
                      "--prompt-ids, or copy the tokenizer the training data "
                      "was prepared with into the directory",
                      o->zDir, m->V);
  } else {
    const char *z = o->zPrompt ? o->zPrompt : "";
    nPrompt = (int)strlen(z);
    tok = bt_malloc((size_t)(nPrompt + 1) * sizeof(int32_t), "prompt");
    if (!tok) return BT_ERR;
    for (int i = 0; i < nPrompt; i++) tok[i] = (unsigned char)z[i];
  }
  int rc = BT_ERR;
  float *logits = NULL, *sorted = NULL, *full = NULL;
  double *scratch = NULL;
  int32_t *seq = NULL;
  bt_kv_decoder *d = NULL;
  if (nPrompt < 1) {
    bt_err_set("the prompt is empty (give --prompt TEXT or --prompt-ids)");
    goto done;
  }
  if (nPrompt > m->T) {
    bt_err_set("the prompt has %d tokens; the model's context is %d",
               nPrompt, m->T);
    goto done;
  }
  for (int i = 0; i < nPrompt; i++)
    if (tok[i] >= m->V) {
      bt_err_set("prompt token %d at position %d is outside the vocabulary "
                 "[0, %d)",
                 tok[i], i, m->V);
      goto done;
    }
  if (o->zLogitsOut) {
    full = bt_malloc((size_t)nPrompt * m->V * sizeof(float), "logits out");
    if (!full || full_forward(x, tok, nPrompt, full) != BT_OK) goto done;
    if (write_floats(o->zLogitsOut, full, (size_t)nPrompt * m->V) != BT_OK)
      goto done;
  }
  logits = bt_malloc((size_t)m->V * sizeof(float), "logits");
  sorted = bt_malloc((size_t)m->V * sizeof(float), "top-k");
  scratch = bt_malloc((size_t)m->V * sizeof(double), "probabilities");
  seq = bt_malloc((size_t)m->T * sizeof(int32_t), "sequence");
  if (!logits || !sorted || !scratch || !seq) goto done;
  memcpy(seq, tok, (size_t)nPrompt * sizeof(int32_t));
  int nNew = o->maxNew;
  if (nPrompt + nNew > m->T) {
    bt_log_warn("context %d reached: generating %d tokens, not %d", m->T,
                m->T - nPrompt, nNew);
    nNew = m->T - nPrompt;
  }
  if (!o->noCache && bt_kv_create(&d, m, x->hostParams) != BT_OK) goto done;
  double t0 = bt_time_now();
  if (d) {
    for (int i = 0; i < nPrompt; i++)
      if (bt_kv_step(d, seq[i], logits) != BT_OK) goto done;
  }
  double t1 = bt_time_now();
  int n = nPrompt;
  utf8_esc esc = {{0}, 0, 0};
  for (int g = 0; g < nNew; g++) {
    if (!d) {
      /* Without a cache: a full forward over the whole sequence per token;
       * only its last row is used. */
      float *all = bt_malloc((size_t)n * m->V * sizeof(float), "logits");
      if (!all) goto done;
      int r = full_forward(x, seq, n, all);
      if (r == BT_OK)
        memcpy(logits, all + (size_t)(n - 1) * m->V,
               (size_t)m->V * sizeof(float));
      free(all);
      if (r != BT_OK) goto done;
    }
    int next = sample(logits, m->V, o, n, scratch, sorted);
    seq[n++] = next;
    size_t nB = 0;
    const char *zB = pTok ? bt_tok_bytes(pTok, (uint32_t)next, &nB) : NULL;
    if (o->printIds) printf("%s%d", g ? " " : "", next);
    else if (zB) put_bytes(stdout, &esc, zB, nB);
    else put_token(stdout, &esc, next);
    fflush(stdout);
    if (d && g + 1 < nNew && bt_kv_step(d, next, logits) != BT_OK) goto done;
  }
  utf8_flush(stdout, &esc); /* an unfinished sequence at the end */
  printf("\n");
  double t2 = bt_time_now();
  double tps = nNew > 0 && t2 > t1 ? nNew / (t2 - t1) : 0;
  fprintf(stderr,
          "prompt %d tokens in %.3f s; generated %d tokens in %.3f s: %.1f "
          "tokens/s (%s)\n",
          nPrompt, t1 - t0, nNew, t2 - t1, tps,
          d ? "KV cache, CPU" : "full recompute per token");
  rc = BT_OK;
done:
  bt_kv_free(d);
  free(tok);
  free(logits);
  free(sorted);
  free(scratch);
  free(seq);
  free(full);
  return rc;
}

/* ---- MLP classification ------------------------------------------------ */

/* Rows of features (data/features.h: CSV, .npy or HDF5) -> one predicted
 * class per row on stdout, read and run maxB rows at a time. */
static int infer_mlp(bt_export_model *x, const infer_opts *o) {
  bt_model *m = &x->m;
  int D = m->aWidth[0], K = m->aWidth[m->nLayer];
  if (!o->zInput)
    return bt_err_set("an MLP model needs --input FILE.csv or FILE.h5");
  bt_features *f = NULL;
  if (bt_features_open(&f, o->zInput, BT_FEATURES_AUTO, o->zDataset) != BT_OK)
    return BT_ERR;
  int64_t N = bt_features_rows(f);
  if (bt_features_cols(f) != D) {
    bt_err_set("%s: %lld features per row; the model takes %d", o->zInput,
               (long long)bt_features_cols(f), D);
    bt_features_close(f);
    return BT_ERR;
  }
  float *X = bt_malloc((size_t)m->maxB * D * sizeof(float), "feature rows");
  float *L = bt_malloc((size_t)N * K * sizeof(float), "logits");
  int rc = X && L ? BT_OK : BT_ERR;
  for (int64_t i = 0; rc == BT_OK && i < N; i += m->maxB) {
    int b = N - i < m->maxB ? (int)(N - i) : m->maxB;
    rc = bt_features_read(f, i, b, X);
    if (rc == BT_OK) rc = bt_model_forward(m, b, NULL, X, NULL, NULL, NULL);
    if (rc == BT_OK)
      bt_act_to_host(m->be, L + (size_t)i * K, bt_model_logits(m),
                     (size_t)b * K);
  }
  if (rc == BT_OK) {
    for (int64_t i = 0; i < N; i++) {
      int best = 0;
      for (int k = 1; k < K; k++)
        if (L[(size_t)i * K + k] > L[(size_t)i * K + best]) best = k;
      printf("%d\n", best);
    }
    if (o->zLogitsOut) rc = write_floats(o->zLogitsOut, L, (size_t)N * K);
  }
  bt_features_close(f);
  free(X);
  free(L);
  return rc;
}

/* The tokenizer of an export directory (bt_tok_open's rules), or with
 * --checkpoint the one stored in the run's data file; *pp = NULL when
 * there is none. A tokenizer file that is there but broken is an error. */
static int load_tokenizer(const bt_export_model *x, const infer_opts *o,
                          bt_tok **pp) {
  *pp = NULL;
  if (!o->fromCkpt) {
    char zJ[4200], zT[4200], zM[4200];
    snprintf(zJ, sizeof zJ, "%s/tokenizer.json", o->zDir);
    snprintf(zT, sizeof zT, "%s/vocab.json", o->zDir);
    snprintf(zM, sizeof zM, "%s/merges.txt", o->zDir);
    if (!bt_path_exists(zJ) && !(bt_path_exists(zT) && bt_path_exists(zM)))
      return BT_OK;
    return bt_tok_open(pp, o->zDir);
  }
  const char *zData = x->cfg.data_path;
  if (!zData[0] || !strncmp(zData, "synthetic:", 10)) return BT_OK;
  bt_tok_file aFile[2];
  int nFile = 0;
  if (bt_tok_h5_read(zData, aFile, &nFile) != BT_OK) {
    bt_log_warn("infer: no tokenizer: %s", bt_err_msg());
    return BT_OK;
  }
  int rc = nFile ? bt_tok_from_files(pp, aFile, nFile, zData) : BT_OK;
  bt_tok_files_free(aFile, nFile);
  return rc;
}

/* Strict numeric options: the whole argument must parse. 1 on error. */
static int parse_int(const char *zOpt, const char *z, int *pv) {
  char *e;
  errno = 0;
  long v = strtol(z, &e, 10);
  if (e == z || *e || errno || v < INT32_MIN || v > INT32_MAX) {
    fprintf(stderr, "baton infer: %s expects an integer, got '%s'\n", zOpt, z);
    return 1;
  }
  *pv = (int)v;
  return 0;
}

static int parse_u64(const char *zOpt, const char *z, uint64_t *pv) {
  char *e;
  errno = 0;
  unsigned long long v = strtoull(z, &e, 10);
  if (e == z || *e || errno || z[0] == '-') {
    fprintf(stderr, "baton infer: %s expects a non-negative integer, got "
                    "'%s'\n", zOpt, z);
    return 1;
  }
  *pv = (uint64_t)v;
  return 0;
}

static int parse_double(const char *zOpt, const char *z, double *pv) {
  char *e;
  errno = 0;
  double v = strtod(z, &e);
  if (e == z || *e || errno || !isfinite(v)) {
    fprintf(stderr, "baton infer: %s expects a number, got '%s'\n", zOpt, z);
    return 1;
  }
  *pv = v;
  return 0;
}

/* A malformed --prompt-ids list is a usage error (exit 2), found before
 * the model is loaded. */
static int check_ids(const char *z) {
  int32_t *a = NULL;
  int n = 0;
  if (parse_ids(z, &a, &n) != BT_OK) {
    fprintf(stderr, "baton infer: %s\n", bt_err_msg());
    return 1;
  }
  free(a);
  return 0;
}

/* The model kind decides which inputs make sense; anything else is an
 * error naming DIR and what to give instead. */
static int check_inputs(const bt_export_model *x, const infer_opts *o) {
  const char *zDir = o->zDir;
  bt_model_kind e = x->m.eKind;
  int text = o->zPrompt || o->zPromptIds, rows = o->zInput || o->zDataset;
  if (e == BT_MODEL_SPEECH)
    return bt_err_set("%s is a speech model: give --wav FILE.wav (16 kHz "
                      "mono)%s",
                      zDir, text ? ", not --prompt" : rows ? ", not --input"
                                                           : "");
  if (e == BT_MODEL_GPT && rows)
    return bt_err_set("%s is a GPT model: give --prompt, not --input", zDir);
  if (e == BT_MODEL_MLP && text)
    return bt_err_set("%s is an MLP classifier: give --input FILE, not "
                      "--prompt",
                      zDir);
  return BT_OK;
}

/* Loads DIR on a backend of kind eKind and runs what the options ask. */
static int infer_run(const infer_opts *o, bt_backend_kind eKind) {
  bt_backend *be = bt_backend_create(eKind, o->threads, 0);
  if (!be) return BT_ERR;
  if (o->nWav)
    return bt_infer_speech(o->zDir, o->fromCkpt, be, o->azWav, o->nWav,
                           o->zLogitsOut);
  bt_export_model x;
  bt_tok *pTok = NULL;
  /* maxB 0: one sample for GPT, 256-row batches for MLP classification */
  int rc = o->fromCkpt ? bt_export_load_ckpt(&x, o->zDir, 0, be)
                       : bt_export_load_dir(&x, o->zDir, 0, be);
  if (rc == BT_OK) {
    int gpt = x.m.eKind == BT_MODEL_GPT;
    if (check_inputs(&x, o) != BT_OK)
      rc = BT_ERR;
    else if (gpt && load_tokenizer(&x, o, &pTok) != BT_OK)
      rc = BT_ERR;
    else rc = gpt ? infer_gpt(&x, o, pTok) : infer_mlp(&x, o);
  }
  bt_tok_free(pTok);
  bt_export_model_free(&x);
  return rc;
}

static int infer_main(int argc, char **argv, infer_opts *pO) {
  infer_opts o = *pO;
  int bad = 0;
  static const struct option aOpt[] = {
      {"prompt", required_argument, 0, 'p'},
      {"prompt-ids", required_argument, 0, 'P'},
      {"max-new-tokens", required_argument, 0, 'n'},
      {"temperature", required_argument, 0, 't'},
      {"top-k", required_argument, 0, 'k'},
      {"seed", required_argument, 0, 's'},
      {"logits-out", required_argument, 0, 'l'},
      {"input", required_argument, 0, 'i'},
      {"dataset", required_argument, 0, 'd'},
      {"threads", required_argument, 0, 'T'},
      {"backend", required_argument, 0, 'b'},
      {"ids", no_argument, 0, 'I'},
      {"no-cache", no_argument, 0, 'N'},
      {"checkpoint", no_argument, 0, 'c'},
      {"wav", required_argument, 0, 'w'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  bt_cli c;
  bt_cli_init(&c, "infer", argc, argv, "h", aOpt, usage);
  for (int ch; (ch = bt_cli_next(&c)) != -1;) {
    switch (ch) {
    case 'h': usage(stdout); return BT_EXIT_OK;
    case 'p': o.zPrompt = c.zArg; break;
    case 'P':
      o.zPromptIds = c.zArg;
      bad |= check_ids(c.zArg);
      break;
    case 'n': bad |= parse_int("--max-new-tokens", c.zArg, &o.maxNew); break;
    case 't':
      bad |= parse_double("--temperature", c.zArg, &o.temperature);
      break;
    case 'k': bad |= parse_int("--top-k", c.zArg, &o.topK); break;
    case 's': bad |= parse_u64("--seed", c.zArg, &o.seed); break;
    case 'l': o.zLogitsOut = c.zArg; break;
    case 'i': o.zInput = c.zArg; break;
    case 'd': o.zDataset = c.zArg; break;
    case 'T': bad |= parse_int("--threads", c.zArg, &o.threads); break;
    case 'b': o.zBackend = c.zArg; break;
    case 'I': o.printIds = 1; break;
    case 'N': o.noCache = 1; break;
    case 'c': o.fromCkpt = 1; break;
    case 'w':
      o.azWav[o.nWav++] = c.zArg;
      o.bWavOpt = 1;
      break;
    case BT_CLI_ARG:
      if (o.zDir) {
        if (!o.zExtra) o.zExtra = c.zArg;
        o.azWav[o.nWav++] = c.zArg; /* WAV files, if --wav comes */
      } else {
        o.zDir = c.zArg;
      }
      break;
    default: return BT_EXIT_USAGE; /* bt_cli_next said why */
    }
  }
  if (bad) return BT_EXIT_USAGE;
  if (!o.zDir) return bt_cli_fail(&c, "DIR is required");
  if (o.zExtra && !o.bWavOpt)
    return bt_cli_fail(&c, "unexpected argument '%s'", o.zExtra);
  if (o.maxNew < 0 || o.topK < 0 || o.temperature < 0 || o.threads < 0) {
    fprintf(stderr, "baton infer: --max-new-tokens, --top-k, --temperature "
                    "and --threads must not be negative\n");
    return BT_EXIT_USAGE;
  }
  bt_backend_kind eKind = BT_BACKEND_CPU;
  if (o.zBackend && !strcmp(o.zBackend, "cuda")) eKind = BT_BACKEND_CUDA;
  else if (o.zBackend && strcmp(o.zBackend, "cpu")) {
    fprintf(stderr, "baton infer: unknown backend '%s' (cpu, cuda)\n",
            o.zBackend);
    return BT_EXIT_USAGE;
  }
  int rc = infer_run(&o, eKind);
  if (rc != BT_OK) fprintf(stderr, "baton infer: %s\n", bt_err_msg());
  return rc == BT_OK ? BT_EXIT_OK : BT_EXIT_ERROR;
}

int bt_infer_main(int argc, char **argv) {
  infer_opts o = {.maxNew = 64, .seed = 1, .temperature = 0};
  /* at most one WAV path per argument; freed here whatever the exit */
  o.azWav = bt_calloc((size_t)(argc > 0 ? argc : 1), sizeof *o.azWav,
                      "WAV paths");
  if (!o.azWav) {
    fprintf(stderr, "baton infer: %s\n", bt_err_msg());
    return BT_EXIT_ERROR;
  }
  int rc = infer_main(argc, argv, &o);
  free(o.azWav);
  return rc;
}
