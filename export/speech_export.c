/*
 * speech_export.c: the config.json of a speech export (model.type =
 * speech, issue 15) and its characters, both ways (see export.h).
 *
 * An export directory must be self-contained: `baton infer` turns its
 * encoder's ids back into text with nothing but the directory, so the
 * character vocabulary of the training data (/audio/vocab of `prepare
 * audio`) is written into config.json, id i = "characters"[i - 1], id 0
 * the CTC blank. docs/export.md ("Speech models") lists every key.
 *
 * Invariants:
 *   1. Writing then reading config.json gives back the bt_config shape
 *      keys the model was built from (model.type, n_layer, n_head,
 *      n_embd, n_mel, conv_channels, max_utterance_frames, vocab_size),
 *      so the export rebuilds the same tensor table and the safetensors
 *      reader finds every tensor with its exact shape.
 *   2. The front end's fixed parts (kernel 3, stride 2, padding 1, two
 *      convolutions, GELU tanh, Whisper's sinusoids, the log-mel
 *      definition of data/audio_features.h) are written for readers
 *      outside baton, and checked when read: a config that asks for
 *      another front end is refused by key, never run as this one.
 *   3. "characters" has exactly vocab_size - 1 entries, each one Unicode
 *      code point, strictly increasing (as /audio/vocab): anything else is
 *      an error naming the index.
 */
#include "base/util.h"
#include "data/audio_features.h"
#include "data/audio_loader.h"
#include "export/export.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SPEECH_MODEL_TYPE "baton_speech"
#define CONV_K 3 /* speech_model.h: the front end's convolutions */
#define CONV_S 2
#define CONV_P 1

int bt_speech_export_vocab(bt_export_model *x, const char *zH5) {
  const char *zFile = zH5 ? zH5 : x->cfg.data_path;
  free(x->aVocab);
  x->aVocab = NULL;
  x->nVocab = 0;
  if (!zFile[0])
    return bt_err_set("%s: the run names no data.path to take the "
                      "characters from; give --vocab FILE.h5",
                      x->zSource);
  if (bt_audio_vocab_read(zFile, &x->aVocab, &x->nVocab) != BT_OK)
    return bt_err_prefix("the characters of the speech model (%s): ",
                         zH5 ? "--vocab" : "the run's data.path");
  if (x->nVocab + 1 != x->m.V)
    return bt_err_set("%s: %d characters + blank, but the model has %d "
                      "outputs (model.vocab_size)",
                      zFile, x->nVocab, x->m.V);
  return BT_OK;
}

/* One code point as UTF-8 into z (room for 5); returns its byte count. */
static int utf8_put(uint32_t c, char *z) {
  int n = 0;
  if (c < 0x80) {
    z[n++] = (char)c;
  } else if (c < 0x800) {
    z[n++] = (char)(0xC0 | (c >> 6));
    z[n++] = (char)(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    z[n++] = (char)(0xE0 | (c >> 12));
    z[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
    z[n++] = (char)(0x80 | (c & 0x3F));
  } else {
    z[n++] = (char)(0xF0 | (c >> 18));
    z[n++] = (char)(0x80 | ((c >> 12) & 0x3F));
    z[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
    z[n++] = (char)(0x80 | (c & 0x3F));
  }
  z[n] = 0;
  return n;
}

/* The code point of a string holding exactly one UTF-8 encoded character,
 * or -1 (the shortest form only; no surrogates, nothing above U+10FFFF). */
static int32_t utf8_one(const char *z) {
  const unsigned char *u = (const unsigned char *)z;
  int n = u[0] < 0x80 ? 1 : u[0] >= 0xC2 && u[0] <= 0xDF ? 2
        : u[0] >= 0xE0 && u[0] <= 0xEF ? 3 : u[0] >= 0xF0 && u[0] <= 0xF4 ? 4
        : 0;
  if (n == 0 || (n == 1 && u[0] == 0)) return -1;
  uint32_t c = n == 1 ? u[0] : u[0] & (0x7F >> n);
  for (int i = 1; i < n; i++) {
    if ((u[i] & 0xC0) != 0x80) return -1;
    c = (c << 6) | (u[i] & 0x3F);
  }
  static const uint32_t aMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (u[n] || c < aMin[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    return -1;
  return (int32_t)c;
}

void bt_speech_ids_to_utf8(const int32_t *aId, int n, const int32_t *aVocab,
                           int nVocab, char *z) {
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    BT_ASSERT(aId[i] >= 1 && aId[i] <= nVocab);
    k += (size_t)utf8_put((uint32_t)aVocab[aId[i] - 1], z + k);
  }
  z[k] = 0;
}

/* ---- writing ------------------------------------------------------------ */

static void add_features(cJSON *o) {
  cJSON *f = cJSON_AddObjectToObject(o, "features");
  if (!f) return;
  cJSON_AddStringToObject(f, "type", "log_mel");
  cJSON_AddNumberToObject(f, "sample_rate", BT_AUDIO_SAMPLE_RATE);
  cJSON_AddNumberToObject(f, "n_mel", BT_AUDIO_N_MEL);
  cJSON_AddNumberToObject(f, "win_length", BT_AUDIO_WINDOW);
  cJSON_AddNumberToObject(f, "hop_length", BT_AUDIO_HOP);
  cJSON_AddNumberToObject(f, "n_fft", BT_AUDIO_N_FFT);
  cJSON_AddStringToObject(f, "window", "hann_periodic");
  cJSON_AddStringToObject(f, "mel_scale", BT_AUDIO_MEL_SCALE);
  cJSON_AddStringToObject(f, "mel_norm", "slaney");
  cJSON_AddNumberToObject(f, "f_min", 0);
  cJSON_AddNumberToObject(f, "f_max", BT_AUDIO_SAMPLE_RATE / 2);
  cJSON_AddStringToObject(f, "power", "magnitude_squared");
  cJSON_AddStringToObject(f, "log", "natural");
  cJSON_AddNumberToObject(f, "log_floor", BT_AUDIO_LOG_FLOOR);
  cJSON_AddBoolToObject(f, "center", 0);
  cJSON_AddStringToObject(f, "definition", "docs/data.md, Audio data");
}

int bt_speech_config_to_json(const bt_export_model *x, cJSON *o) {
  const bt_model *m = &x->m;
  BT_ASSERT(m->eKind == BT_MODEL_SPEECH && x->aVocab);
  cJSON *pA = cJSON_AddArrayToObject(o, "architectures");
  cJSON_AddItemToArray(pA, cJSON_CreateString("BatonSpeechCTC"));
  cJSON_AddStringToObject(o, "model_type", SPEECH_MODEL_TYPE);
  cJSON_AddNumberToObject(o, "n_mel", m->nMel);
  cJSON_AddNumberToObject(o, "conv_channels", m->nConv);
  cJSON_AddNumberToObject(o, "conv_layers", 2);
  cJSON_AddNumberToObject(o, "conv_kernel", CONV_K);
  cJSON_AddNumberToObject(o, "conv_stride", CONV_S);
  cJSON_AddNumberToObject(o, "conv_padding", CONV_P);
  cJSON_AddNumberToObject(o, "n_layer", m->L);
  cJSON_AddNumberToObject(o, "n_head", m->NH);
  cJSON_AddNumberToObject(o, "n_embd", m->C);
  cJSON_AddNumberToObject(o, "max_utterance_frames", m->maxFrames);
  cJSON_AddStringToObject(o, "activation_function", "gelu_new");
  cJSON_AddStringToObject(o, "positions", "sinusoidal_whisper");
  cJSON_AddNumberToObject(o, "layer_norm_epsilon", 1e-5);
  cJSON_AddStringToObject(o, "block_weight_layout",
                          "Conv1D [in, out] (GPT-2)");
  cJSON_AddNumberToObject(o, "vocab_size", m->V);
  cJSON_AddNumberToObject(o, "blank_id", 0);
  cJSON *pC = cJSON_AddArrayToObject(o, "characters");
  for (int i = 0; pC && i < x->nVocab; i++) {
    char z[8];
    utf8_put((uint32_t)x->aVocab[i], z);
    cJSON_AddItemToArray(pC, cJSON_CreateString(z));
  }
  add_features(o);
  return pA && pC ? BT_OK : bt_err_set("out of memory building config.json");
}

/* ---- reading ------------------------------------------------------------ */

int bt_speech_config_is(const cJSON *o) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "model_type");
  return cJSON_IsString(p) && !strcmp(p->valuestring, SPEECH_MODEL_TYPE);
}

static int get_int(const cJSON *o, const char *zKey, int lo, int hi, int *pv,
                   const char *zFile) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, zKey);
  if (!cJSON_IsNumber(p))
    return bt_err_set("%s: missing or non-numeric \"%s\"", zFile, zKey);
  double d = p->valuedouble;
  if (d != (double)(int)d || d < lo || d > hi)
    return bt_err_set("%s: \"%s\" = %g is not an integer in [%d, %d]", zFile,
                      zKey, d, lo, hi);
  *pv = (int)d;
  return BT_OK;
}

/* Invariant 2: keys describing the fixed front end must say what baton
 * computes (absent is accepted: baton's own value is meant). */
static int check_fixed(const cJSON *o, const char *zFile) {
  static const struct {
    const char *zKey;
    int v;
  } aInt[] = {{"conv_layers", 2}, {"conv_kernel", CONV_K},
              {"conv_stride", CONV_S}, {"conv_padding", CONV_P},
              {"blank_id", 0}};
  for (size_t i = 0; i < sizeof aInt / sizeof aInt[0]; i++) {
    int v = 0;
    if (!cJSON_GetObjectItemCaseSensitive(o, aInt[i].zKey)) continue;
    if (get_int(o, aInt[i].zKey, -1000000, 1000000, &v, zFile) != BT_OK)
      return BT_ERR;
    if (v != aInt[i].v)
      return bt_err_set("%s: \"%s\" = %d is not supported (baton's speech "
                        "model has %d)",
                        zFile, aInt[i].zKey, v, aInt[i].v);
  }
  static const struct {
    const char *zKey, *zWant;
  } aStr[] = {{"activation_function", "gelu_new"},
              {"positions", "sinusoidal_whisper"}};
  for (size_t i = 0; i < sizeof aStr / sizeof aStr[0]; i++) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, aStr[i].zKey);
    if (p && (!cJSON_IsString(p) || strcmp(p->valuestring, aStr[i].zWant)))
      return bt_err_set("%s: \"%s\" must be \"%s\"", zFile, aStr[i].zKey,
                        aStr[i].zWant);
  }
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "features");
  int nMel = BT_AUDIO_N_MEL, sr = BT_AUDIO_SAMPLE_RATE;
  if (f && ((cJSON_GetObjectItemCaseSensitive(f, "n_mel") &&
             get_int(f, "n_mel", 1, 1 << 20, &nMel, zFile)) ||
            (cJSON_GetObjectItemCaseSensitive(f, "sample_rate") &&
             get_int(f, "sample_rate", 1, 1 << 30, &sr, zFile))))
    return BT_ERR;
  if (nMel != BT_AUDIO_N_MEL || sr != BT_AUDIO_SAMPLE_RATE)
    return bt_err_set("%s: features of %d mel bins at %d Hz: baton computes "
                      "%d at %d Hz (data/audio_features.h)",
                      zFile, nMel, sr, BT_AUDIO_N_MEL, BT_AUDIO_SAMPLE_RATE);
  return BT_OK;
}

/* Invariant 3: "characters" -> code points, V - 1 of them, increasing. */
static int read_characters(const cJSON *o, int V, const char *zFile,
                           int32_t **paVocab, int *pn) {
  const cJSON *pC = cJSON_GetObjectItemCaseSensitive(o, "characters");
  if (!cJSON_IsArray(pC))
    return bt_err_set("%s: missing \"characters\" (the vocabulary, ids "
                      "1..vocab_size-1)",
                      zFile);
  int n = cJSON_GetArraySize(pC);
  if (n != V - 1)
    return bt_err_set("%s: \"characters\" has %d entries, vocab_size %d "
                      "needs %d (id 0 is the blank)",
                      zFile, n, V, V - 1);
  int32_t *a = bt_malloc((size_t)n * sizeof *a, "characters");
  if (!a) return BT_ERR;
  for (int i = 0; i < n; i++) {
    const cJSON *e = cJSON_GetArrayItem(pC, i);
    a[i] = cJSON_IsString(e) ? utf8_one(e->valuestring) : -1;
    if (a[i] < 0 || (i > 0 && a[i] <= a[i - 1])) {
      free(a);
      return bt_err_set("%s: \"characters\"[%d] is not one Unicode "
                        "character above the one before it",
                        zFile, i);
    }
  }
  *paVocab = a;
  *pn = n;
  return BT_OK;
}

static int set_key(bt_config *c, const char *zFile, const char *zFmt, ...)
    BT_PRINTF(3, 4);
static int set_key(bt_config *c, const char *zFile, const char *zFmt, ...) {
  char z[256];
  va_list ap;
  va_start(ap, zFmt);
  vsnprintf(z, sizeof z, zFmt, ap);
  va_end(ap);
  return bt_config_set(c, z, zFile);
}

int bt_speech_config_from_json(bt_config *c, const cJSON *o,
                               const char *zFile, int32_t **paVocab,
                               int *pnVocab) {
  int L = 0, NH = 1, C = 0, M = 0, Cc = 0, F = 0, V = 0;
  *paVocab = NULL;
  *pnVocab = 0;
  bt_config_defaults(c);
  if (get_int(o, "n_layer", 1, 1024, &L, zFile) ||
      get_int(o, "n_head", 1, 256, &NH, zFile) ||
      get_int(o, "n_embd", 4, 65536, &C, zFile) ||
      get_int(o, "n_mel", 1, 1024, &M, zFile) ||
      get_int(o, "conv_channels", 1, 65536, &Cc, zFile) ||
      get_int(o, "max_utterance_frames", 4, 1 << 24, &F, zFile) ||
      get_int(o, "vocab_size", 2, 1 << 21, &V, zFile) ||
      check_fixed(o, zFile))
    return BT_ERR;
  if (C % NH)
    return bt_err_set("%s: n_head %d does not divide n_embd %d", zFile, NH,
                      C);
  if (set_key(c, zFile, "model.type=speech") ||
      set_key(c, zFile, "model.n_layer=%d", L) ||
      set_key(c, zFile, "model.n_head=%d", NH) ||
      set_key(c, zFile, "model.n_embd=%d", C) ||
      set_key(c, zFile, "model.n_mel=%d", M) ||
      set_key(c, zFile, "model.conv_channels=%d", Cc) ||
      set_key(c, zFile, "model.max_utterance_frames=%d", F) ||
      set_key(c, zFile, "model.vocab_size=%d", V))
    return BT_ERR;
  return read_characters(o, V, zFile, paVocab, pnVocab);
}
