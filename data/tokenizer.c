/*
 * tokenizer.c: byte-level BPE (data/tokenizer.h) compatible id for id with
 * the Hugging Face `tokenizers` package.
 *
 * Invariants of a loaded bt_tok:
 *   1. Every id in [0, nVocab) either is a token (aLen[id] >= 0, its bytes
 *      at zBlob + aOff[id]) or is a gap (aLen[id] = -1) that encode never
 *      produces and decode refuses.
 *   2. aByteId[b] is the token of the single byte b, for all 256 bytes
 *      (loading refuses a vocabulary that lacks one), so every piece can
 *      start from byte tokens and encode never meets an unknown symbol.
 *   3. The merge table maps (left id, right id) to (rank, merged id); the
 *      merged id's bytes are the concatenation of the two (checked at load).
 *      So merging only ever regroups bytes and decode(encode(x)) == x.
 *   4. The piece cache holds only results of the pure function
 *      piece -> ids; clearing it at any time changes nothing but speed.
 *
 * Tokens are stored and looked up by their raw bytes, not by the
 * byte-level Unicode spelling of the files ("Ġthe" is stored as " the"):
 * GPT-2's byte_to_unicode table is applied when reading the files only.
 *
 * The merge loop is the package's (tokenizers/src/models/bpe/word.rs,
 * merge_all): a priority queue of (rank, position), lowest rank first and
 * leftmost first among equal ranks, stale entries skipped. Ties and
 * overlapping pairs ("a a a") therefore resolve exactly as there.
 */
#include "data/tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "base/util.h"

/* ---- character classes for the pre-tokenizer ------------------------------ */

enum { C_OTHER = 0, C_LETTER = 1, C_NUMBER = 2, C_SPACE = 3 };

/* Classes of the Basic Multilingual Plane, filled once: utf8proc's
 * category lookup costs more than one byte load on the hot path. */
static unsigned char g_aBmpClass[65536];
static pthread_once_t g_classOnce = PTHREAD_ONCE_INIT;

/* \s is Unicode White_Space (Oniguruma's definition, which the package's
 * regex uses); \p{L} is Lu Ll Lt Lm Lo; \p{N} is Nd Nl No. */
static int cp_class_slow(int32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 ||
      cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
      cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000)
    return C_SPACE;
  switch (utf8proc_category(cp)) {
  case UTF8PROC_CATEGORY_LU:
  case UTF8PROC_CATEGORY_LL:
  case UTF8PROC_CATEGORY_LT:
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO: return C_LETTER;
  case UTF8PROC_CATEGORY_ND:
  case UTF8PROC_CATEGORY_NL:
  case UTF8PROC_CATEGORY_NO: return C_NUMBER;
  default: return C_OTHER;
  }
}

static void class_init(void) {
  for (int32_t cp = 0; cp < 65536; cp++)
    g_aBmpClass[cp] = (unsigned char)cp_class_slow(cp);
}

/* Class of the character at z[p] (p < e) and its length in bytes. A byte
 * that does not start a valid UTF-8 sequence within [p, e) is one
 * character of class C_OTHER. */
static inline int char_class(const unsigned char *z, size_t p, size_t e,
                             size_t *pLen) {
  unsigned c = z[p];
  if (c < 0x80) {
    *pLen = 1;
    return g_aBmpClass[c];
  }
  utf8proc_int32_t cp;
  utf8proc_ssize_t k =
      utf8proc_iterate(z + p, (utf8proc_ssize_t)(e - p), &cp);
  if (k <= 0) {
    *pLen = 1;
    return C_OTHER;
  }
  *pLen = (size_t)k;
  return cp < 65536 ? g_aBmpClass[cp] : cp_class_slow(cp);
}

/* End of the pre-token that starts at p (p < e): GPT-2's regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * tried alternative by alternative, as a backtracking engine would. */
static size_t pretok_next(const unsigned char *z, size_t p, size_t e) {
  if (z[p] == '\'' && p + 1 < e) {
    unsigned c = z[p + 1];
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return p + 2;
    if (p + 2 < e && (((c == 'r' || c == 'v') && z[p + 2] == 'e') ||
                      (c == 'l' && z[p + 2] == 'l')))
      return p + 3;
  }
  size_t len;
  int k = char_class(z, p, e, &len);
  size_t q = p + len;
  if (z[p] == ' ' && q < e) {
    /* " ?X+": the space joins a following letter, number or other run. */
    size_t len2;
    int k2 = char_class(z, q, e, &len2);
    if (k2 != C_SPACE) {
      k = k2;
      q += len2;
    }
  }
  if (k != C_SPACE) {
    while (q < e && char_class(z, q, e, &len) == k) q += len;
    return q;
  }
  /* \s+(?!\S) leaves the last space of a run for the word after it; a
   * single space before a non-space is \s+ alone. */
  size_t last = p;
  while (q < e && char_class(z, q, e, &len) == C_SPACE) {
    last = q;
    q += len;
  }
  if (q == e || last == p) return q;
  return last;
}

/* ---- GPT-2's byte <-> Unicode table -------------------------------------- */

/* Printable Latin-1 bytes stand for themselves; the other 68 bytes map
 * to U+0100.. in byte order (GPT-2's bytes_to_unicode). */
static int32_t g_aByteCp[256];
static int16_t g_aCpByte[512]; /* -1: not a byte-level character */

static void bytes_init(void) {
  int n = 0;
  for (int i = 0; i < 512; i++) g_aCpByte[i] = -1;
  for (int b = 0; b < 256; b++) {
    int keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) ||
               (b >= 0xae && b <= 0xff);
    g_aByteCp[b] = keep ? b : 256 + n++;
    g_aCpByte[g_aByteCp[b]] = (int16_t)b;
  }
}

static void once_init(void) {
  class_init();
  bytes_init();
}

/* Byte-level spelling -> raw bytes in zOut (room for n bytes). Returns the
 * length, or -1 when a character is not in the table (the token is then
 * kept as its literal UTF-8, as added tokens are). */
static long bytelevel_decode(const char *z, size_t n, char *zOut) {
  size_t i = 0;
  long o = 0;
  while (i < n) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)z + i,
                                          (utf8proc_ssize_t)(n - i), &cp);
    if (k <= 0 || cp >= 512 || g_aCpByte[cp] < 0) return -1;
    zOut[o++] = (char)g_aCpByte[cp];
    i += (size_t)k;
  }
  return o;
}

/* ---- the tokenizer --------------------------------------------------------- */

typedef struct merge_slot {
  uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
  uint32_t rank, newId;
} merge_slot;

typedef struct added_tok {
  uint32_t id;
  int len;
  int64_t off;   /* into zBlob */
  const char *z; /* zBlob + off, once loading is done */
} added_tok;

typedef struct cache_slot {
  uint64_t hash; /* 0 = empty */
  uint32_t keyOff, idOff;
  uint16_t keyLen, nId;
} cache_slot;

typedef struct heap_ent {
  uint32_t rank, pos, newId;
} heap_ent;

typedef struct sym {
  uint32_t id;
  int32_t prev, next;
  int32_t len; /* 0: merged into its left neighbour */
} sym;

#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_KEY 64
#define CACHE_ARENA (4u << 20)

struct bt_tok {
  char zName[512];
  int nVocab;             /* 1 + largest id */
  int64_t *aOff;          /* [nVocab] offset into zBlob */
  int32_t *aLen;          /* [nVocab] byte length, -1 = gap */
  char *zBlob;
  size_t nBlob, nBlobAlloc;
  uint32_t *aVocabSlot;   /* bytes -> id + 1 (0 = empty) */
  uint32_t nVocabSlot;    /* power of two */
  uint32_t aByteId[256];
  merge_slot *aMerge;
  uint32_t nMergeSlot;    /* power of two */
  int nMerge;
  int ignoreMerges;       /* a piece that is a token is that token */
  added_tok *aAdded;      /* longest first */
  int nAdded, maxAdded;
  unsigned char aAddedFirst[256]; /* 1 if some added token starts so */
  /* piece cache (invariant 4) */
  cache_slot *aCache;
  unsigned char *zCacheKey;
  uint32_t *aCacheId;
  uint32_t nCacheKey, nCacheId, nCacheUsed;
  /* scratch for one piece */
  sym *aSym;
  heap_ent *aHeap;
  size_t nSymAlloc, nHeapAlloc;
};

void bt_tok_ids_free(bt_tok_ids *p) {
  free(p->a);
  memset(p, 0, sizeof *p);
}

static int ids_reserve(bt_tok_ids *p, size_t nMore) {
  if (p->n + nMore <= p->nAlloc) return BT_OK;
  size_t n = p->nAlloc ? p->nAlloc : 1024;
  while (n < p->n + nMore) n *= 2;
  uint32_t *a = realloc(p->a, n * sizeof *a);
  if (!a) return bt_err_set("out of memory for %zu token ids", n);
  p->a = a;
  p->nAlloc = n;
  return BT_OK;
}

static uint64_t hash_bytes(const void *z, size_t n) {
  uint64_t h = bt_hash64(z, n, 0x746f6b);
  return h ? h : 1;
}

static uint32_t vocab_find(const bt_tok *p, const char *z, size_t n) {
  uint32_t mask = p->nVocabSlot - 1;
  for (uint32_t i = (uint32_t)hash_bytes(z, n) & mask;; i = (i + 1) & mask) {
    uint32_t v = p->aVocabSlot[i];
    if (!v) return UINT32_MAX;
    if ((size_t)p->aLen[v - 1] == n && !memcmp(p->zBlob + p->aOff[v - 1], z, n))
      return v - 1;
  }
}

static inline uint64_t mix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}

static const merge_slot *merge_find(const bt_tok *p, uint32_t a, uint32_t b) {
  uint64_t key = (uint64_t)a << 32 | b;
  uint32_t mask = p->nMergeSlot - 1;
  for (uint32_t i = (uint32_t)mix64(key) & mask;; i = (i + 1) & mask) {
    const merge_slot *s = &p->aMerge[i];
    if (s->key == key) return s;
    if (s->key == UINT64_MAX) return NULL;
  }
}

/* ---- loading --------------------------------------------------------------- */

static int blob_add(bt_tok *p, const char *z, size_t n, int64_t *pOff) {
  if (p->nBlob + n + 1 > p->nBlobAlloc) {
    size_t m = p->nBlobAlloc ? p->nBlobAlloc * 2 : 1 << 16;
    while (m < p->nBlob + n + 1) m *= 2;
    char *zNew = realloc(p->zBlob, m);
    if (!zNew) return bt_err_set("out of memory loading %s", p->zName);
    p->zBlob = zNew;
    p->nBlobAlloc = m;
  }
  memcpy(p->zBlob + p->nBlob, z, n);
  *pOff = (int64_t)p->nBlob;
  p->nBlob += n;
  return BT_OK;
}

/* Ids above this are surely a broken file (GPT-2 has 50257 tokens). */
#define MAX_ID (1 << 24)

/* Reads the vocabulary object {"token": id, ...} of zFile (whose path in
 * the JSON is zWhere) into aOff/aLen/zBlob and the lookup table. */
static int load_vocab(bt_tok *p, const cJSON *pVocab, const char *zFile,
                      const char *zWhere, const cJSON *pAdded) {
  if (!cJSON_IsObject(pVocab))
    return bt_err_set("%s: %s is not a JSON object of token -> id", zFile,
                      zWhere);
  int maxId = -1, nTok = 0;
  for (const cJSON *e = pVocab->child; e; e = e->next) {
    if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= MAX_ID ||
        e->valuedouble != (double)(int)e->valuedouble)
      return bt_err_set("%s: %s: token '%.64s' has id %s, not an integer in "
                        "[0, %d)",
                        zFile, zWhere, e->string,
                        cJSON_IsNumber(e) ? "out of range" : "of wrong type",
                        MAX_ID);
    if (e->valueint > maxId) maxId = e->valueint;
    nTok++;
  }
  for (const cJSON *e = pAdded ? pAdded->child : NULL; e; e = e->next) {
    const cJSON *pId = cJSON_GetObjectItemCaseSensitive(e, "id");
    if (cJSON_IsNumber(pId) && pId->valueint > maxId && pId->valueint < MAX_ID)
      maxId = pId->valueint;
  }
  if (nTok == 0) return bt_err_set("%s: %s is empty", zFile, zWhere);
  p->nVocab = maxId + 1;
  p->aOff = bt_calloc((size_t)p->nVocab, sizeof *p->aOff, "token offsets");
  p->aLen = bt_malloc((size_t)p->nVocab * sizeof *p->aLen, "token lengths");
  p->nVocabSlot = 1;
  while (p->nVocabSlot < 2u * (uint32_t)p->nVocab) p->nVocabSlot *= 2;
  p->aVocabSlot = bt_calloc(p->nVocabSlot, sizeof *p->aVocabSlot, "vocab");
  if (!p->aOff || !p->aLen || !p->aVocabSlot) return BT_ERR;
  for (int i = 0; i < p->nVocab; i++) p->aLen[i] = -1;
  char zTmp[1024];
  for (const cJSON *e = pVocab->child; e; e = e->next) {
    int id = e->valueint;
    size_t n = strlen(e->string);
    if (p->aLen[id] >= 0)
      return bt_err_set("%s: %s: id %d is given to two tokens ('%.64s' and "
                        "another)",
                        zFile, zWhere, id, e->string);
    char *zRaw = n <= sizeof zTmp ? zTmp : bt_malloc(n, "token");
    if (!zRaw) return BT_ERR;
    long nRaw = bytelevel_decode(e->string, n, zRaw);
    int rc = nRaw >= 0 ? blob_add(p, zRaw, (size_t)nRaw, &p->aOff[id])
                       : blob_add(p, e->string, n, &p->aOff[id]);
    if (zRaw != zTmp) free(zRaw);
    if (rc != BT_OK) return BT_ERR;
    p->aLen[id] = nRaw >= 0 ? (int32_t)nRaw : (int32_t)n;
  }
  /* The table is filled once every token's bytes are in place; the first
   * id of a byte string wins (two tokens with one spelling are legal). */
  for (int id = 0; id < p->nVocab; id++) {
    if (p->aLen[id] < 0) continue;
    const char *z = p->zBlob + p->aOff[id];
    if (vocab_find(p, z, (size_t)p->aLen[id]) != UINT32_MAX) continue;
    uint32_t mask = p->nVocabSlot - 1;
    uint32_t i = (uint32_t)hash_bytes(z, (size_t)p->aLen[id]) & mask;
    while (p->aVocabSlot[i]) i = (i + 1) & mask;
    p->aVocabSlot[i] = (uint32_t)id + 1;
  }
  for (int b = 0; b < 256; b++) {
    char c = (char)b;
    uint32_t id = vocab_find(p, &c, 1);
    if (id == UINT32_MAX) {
      char zUtf[8];
      utf8proc_ssize_t k =
          utf8proc_encode_char(g_aByteCp[b], (utf8proc_uint8_t *)zUtf);
      zUtf[k] = 0;
      return bt_err_set("%s: %s has no token for byte 0x%02x ('%s'): not a "
                        "byte-level BPE vocabulary",
                        zFile, zWhere, b, zUtf);
    }
    p->aByteId[b] = id;
  }
  return BT_OK;
}

/* Looks up one side of a merge (byte-level spelling z, n bytes). */
static int merge_side(bt_tok *p, const char *z, size_t n, uint32_t *pId) {
  char zTmp[1024];
  long nRaw = n <= sizeof zTmp ? bytelevel_decode(z, n, zTmp) : -1;
  *pId = nRaw >= 0 ? vocab_find(p, zTmp, (size_t)nRaw) : vocab_find(p, z, n);
  return *pId == UINT32_MAX ? BT_ERR : BT_OK;
}

/* Adds merge number rank "zA zB"; zWhere says where it was read ("merges.txt
 * line 12", "model.merges[10]"). */
static int merge_add(bt_tok *p, const char *zA, size_t nA, const char *zB,
                     size_t nB, const char *zWhere) {
  uint32_t a, b;
  if (merge_side(p, zA, nA, &a) != BT_OK)
    return bt_err_set("%s: merge '%.*s %.*s' names '%.*s', which is not in "
                      "the vocabulary",
                      zWhere, (int)nA, zA, (int)nB, zB, (int)nA, zA);
  if (merge_side(p, zB, nB, &b) != BT_OK)
    return bt_err_set("%s: merge '%.*s %.*s' names '%.*s', which is not in "
                      "the vocabulary",
                      zWhere, (int)nA, zA, (int)nB, zB, (int)nB, zB);
  size_t n = (size_t)p->aLen[a] + (size_t)p->aLen[b];
  char *z = bt_malloc(n, "merge");
  if (!z) return BT_ERR;
  memcpy(z, p->zBlob + p->aOff[a], (size_t)p->aLen[a]);
  memcpy(z + p->aLen[a], p->zBlob + p->aOff[b], (size_t)p->aLen[b]);
  uint32_t m = vocab_find(p, z, n);
  free(z);
  if (m == UINT32_MAX)
    return bt_err_set("%s: merge '%.*s %.*s' makes '%.*s%.*s', which is not "
                      "in the vocabulary",
                      zWhere, (int)nA, zA, (int)nB, zB, (int)nA, zA, (int)nB,
                      zB);
  uint64_t key = (uint64_t)a << 32 | b;
  uint32_t mask = p->nMergeSlot - 1;
  uint32_t i = (uint32_t)mix64(key) & mask;
  while (p->aMerge[i].key != UINT64_MAX && p->aMerge[i].key != key)
    i = (i + 1) & mask;
  /* A repeated pair keeps its last rank, as the package's HashMap does. */
  p->aMerge[i].key = key;
  p->aMerge[i].rank = (uint32_t)p->nMerge++;
  p->aMerge[i].newId = m;
  return BT_OK;
}

static int merges_alloc(bt_tok *p, size_t nMax) {
  p->nMergeSlot = 16;
  while (p->nMergeSlot < 2 * nMax + 16) p->nMergeSlot *= 2;
  p->aMerge = bt_malloc(p->nMergeSlot * sizeof *p->aMerge, "merge table");
  if (!p->aMerge) return BT_ERR;
  for (uint32_t i = 0; i < p->nMergeSlot; i++) p->aMerge[i].key = UINT64_MAX;
  return BT_OK;
}

static int added_cmp(const void *x, const void *y) {
  const added_tok *a = x, *b = y;
  return b->len - a->len;
}

static int added_add(bt_tok *p, const char *z, size_t n, uint32_t id) {
  if (n == 0) return BT_OK;
  added_tok *a = realloc(p->aAdded, (size_t)(p->nAdded + 1) * sizeof *a);
  if (!a) return bt_err_set("out of memory");
  p->aAdded = a;
  int64_t off = 0;
  if (blob_add(p, z, n, &off) != BT_OK) return BT_ERR;
  a[p->nAdded].id = id;
  a[p->nAdded].len = (int)n;
  a[p->nAdded].off = off; /* zBlob may still move: z is set by added_done */
  p->nAdded++;
  return BT_OK;
}

static void added_done(bt_tok *p) {
  for (int i = 0; i < p->nAdded; i++) {
    p->aAdded[i].z = p->zBlob + p->aAdded[i].off;
    p->aAddedFirst[(unsigned char)p->aAdded[i].z[0]] = 1;
    if (p->aAdded[i].len > p->maxAdded) p->maxAdded = p->aAdded[i].len;
  }
  if (p->nAdded > 1) qsort(p->aAdded, (size_t)p->nAdded, sizeof *p->aAdded,
                           added_cmp);
}

/* The parts of tokenizer.json other than model.vocab/merges: only the
 * pipeline GPT-2 and ByteLevelBPETokenizer save is accepted; anything
 * else would tokenize differently, so it is refused by name. */
static int check_pipeline(const cJSON *pRoot, const char *zFile) {
  const cJSON *pN = cJSON_GetObjectItemCaseSensitive(pRoot, "normalizer");
  if (pN && !cJSON_IsNull(pN))
    return bt_err_set("%s: normalizer is set; only byte-level BPE without a "
                      "normalizer is supported",
                      zFile);
  const cJSON *pPre = cJSON_GetObjectItemCaseSensitive(pRoot, "pre_tokenizer");
  const cJSON *pT = cJSON_GetObjectItemCaseSensitive(pPre, "type");
  if (!cJSON_IsString(pT) || strcmp(pT->valuestring, "ByteLevel"))
    return bt_err_set("%s: pre_tokenizer type is %s, not \"ByteLevel\"", zFile,
                      cJSON_IsString(pT) ? pT->valuestring : "missing");
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pPre, "add_prefix_space")))
    return bt_err_set("%s: pre_tokenizer.add_prefix_space is true; only "
                      "false (GPT-2's setting) is supported",
                      zFile);
  if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pPre, "use_regex")))
    return bt_err_set("%s: pre_tokenizer.use_regex is false; only GPT-2's "
                      "split rule is supported",
                      zFile);
  /* A post-processor other than ByteLevel (which only trims offsets),
   * e.g. TemplateProcessing, adds tokens the ids here would lack. */
  const cJSON *pPost = cJSON_GetObjectItemCaseSensitive(pRoot, "post_processor");
  const cJSON *pPT = cJSON_GetObjectItemCaseSensitive(pPost, "type");
  if (pPost && !cJSON_IsNull(pPost) &&
      (!cJSON_IsString(pPT) || strcmp(pPT->valuestring, "ByteLevel")))
    return bt_err_set("%s: post_processor type is %s; only none or "
                      "\"ByteLevel\" is supported",
                      zFile, cJSON_IsString(pPT) ? pPT->valuestring : "missing");
  const cJSON *pDec = cJSON_GetObjectItemCaseSensitive(pRoot, "decoder");
  const cJSON *pDT = cJSON_GetObjectItemCaseSensitive(pDec, "type");
  if (pDec && !cJSON_IsNull(pDec) &&
      (!cJSON_IsString(pDT) || strcmp(pDT->valuestring, "ByteLevel")))
    return bt_err_set("%s: decoder type is %s, not \"ByteLevel\"", zFile,
                      cJSON_IsString(pDT) ? pDT->valuestring : "missing");
  return BT_OK;
}

static int load_tokenizer_json(bt_tok *p, const cJSON *pRoot,
                               const char *zFile) {
  const cJSON *pModel = cJSON_GetObjectItemCaseSensitive(pRoot, "model");
  const cJSON *pType = cJSON_GetObjectItemCaseSensitive(pModel, "type");
  if (!cJSON_IsObject(pModel))
    return bt_err_set("%s: no \"model\" object: not a tokenizer.json", zFile);
  if (!cJSON_IsString(pType) || strcmp(pType->valuestring, "BPE"))
    return bt_err_set("%s: model type is %s, not \"BPE\"", zFile,
                      cJSON_IsString(pType) ? pType->valuestring : "missing");
  if (check_pipeline(pRoot, zFile) != BT_OK) return BT_ERR;
  static const char *const azEmpty[] = {"continuing_subword_prefix",
                                        "end_of_word_suffix"};
  for (int i = 0; i < 2; i++) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(pModel, azEmpty[i]);
    if (cJSON_IsString(e) && e->valuestring[0])
      return bt_err_set("%s: model.%s is \"%s\"; byte-level BPE has none",
                        zFile, azEmpty[i], e->valuestring);
  }
  const cJSON *pDrop = cJSON_GetObjectItemCaseSensitive(pModel, "dropout");
  if (cJSON_IsNumber(pDrop) && pDrop->valuedouble > 0)
    return bt_err_set("%s: model.dropout is %g; BPE dropout is for training, "
                      "not supported here",
                      zFile, pDrop->valuedouble);
  p->ignoreMerges =
      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pModel, "ignore_merges"));
  const cJSON *pAdded = cJSON_GetObjectItemCaseSensitive(pRoot, "added_tokens");
  if (pAdded && !cJSON_IsNull(pAdded) && !cJSON_IsArray(pAdded))
    return bt_err_set("%s: added_tokens is not an array", zFile);
  if (load_vocab(p, cJSON_GetObjectItemCaseSensitive(pModel, "vocab"), zFile,
                 "model.vocab", pAdded) != BT_OK)
    return BT_ERR;
  const cJSON *pMerges = cJSON_GetObjectItemCaseSensitive(pModel, "merges");
  if (!cJSON_IsArray(pMerges))
    return bt_err_set("%s: model.merges is %s, not an array", zFile,
                      pMerges ? "of wrong type" : "missing");
  if (merges_alloc(p, (size_t)cJSON_GetArraySize(pMerges)) != BT_OK)
    return BT_ERR;
  int i = 0;
  char zWhere[700];
  for (const cJSON *e = pMerges->child; e; e = e->next, i++) {
    snprintf(zWhere, sizeof zWhere, "%s: model.merges[%d]", zFile, i);
    const char *zA = NULL, *zB = NULL;
    size_t nA = 0, nB = 0;
    if (cJSON_IsString(e)) { /* "a b" (tokenizers < 0.20) */
      const char *zSp = strchr(e->valuestring, ' ');
      if (zSp && !strchr(zSp + 1, ' ')) {
        zA = e->valuestring;
        nA = (size_t)(zSp - zA);
        zB = zSp + 1;
        nB = strlen(zB);
      }
    } else if (cJSON_GetArraySize(e) == 2 && /* ["a", "b"] (>= 0.20) */
               cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
      zA = e->child->valuestring;
      nA = strlen(zA);
      zB = e->child->next->valuestring;
      nB = strlen(zB);
    }
    if (!zA || !nA || !nB)
      return bt_err_set("%s: expected \"left right\" or [\"left\", "
                        "\"right\"]",
                        zWhere);
    if (merge_add(p, zA, nA, zB, nB, zWhere) != BT_OK) return BT_ERR;
  }
  i = 0;
  for (const cJSON *e = pAdded ? pAdded->child : NULL; e; e = e->next, i++) {
    const cJSON *pId = cJSON_GetObjectItemCaseSensitive(e, "id");
    const cJSON *pC = cJSON_GetObjectItemCaseSensitive(e, "content");
    if (!cJSON_IsNumber(pId) || pId->valuedouble < 0 ||
        pId->valuedouble >= MAX_ID || !cJSON_IsString(pC) || !pC->valuestring[0])
      return bt_err_set("%s: added_tokens[%d] needs an integer \"id\" in [0, "
                        "%d) and a non-empty \"content\"",
                        zFile, i, MAX_ID);
    static const char *const azFlag[] = {"lstrip", "rstrip", "single_word"};
    for (int f = 0; f < 3; f++)
      if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, azFlag[f])))
        return bt_err_set("%s: added_tokens[%d] ('%s') sets %s, which is not "
                          "supported",
                          zFile, i, pC->valuestring, azFlag[f]);
    int id = pId->valueint;
    size_t n = strlen(pC->valuestring);
    if (p->aLen[id] < 0) { /* an added token outside the vocabulary */
      if (blob_add(p, pC->valuestring, n, &p->aOff[id]) != BT_OK)
        return BT_ERR;
      p->aLen[id] = (int32_t)n;
    }
    if (added_add(p, pC->valuestring, n, (uint32_t)id) != BT_OK) return BT_ERR;
  }
  return BT_OK;
}

/* GPT-2's two files: vocab.json {"token": id} and merges.txt, one "a b"
 * per line after an optional "#version" line. `<|endoftext|>` is an added
 * token when the vocabulary holds it (GPT-2's own convention). */
static int load_vocab_merges(bt_tok *p, const cJSON *pRoot, const char *zVocab,
                             const char *zM, size_t nM, const char *zMFile) {
  if (load_vocab(p, pRoot, zVocab, "the vocabulary", NULL) != BT_OK)
    return BT_ERR;
  size_t nLine = 1;
  for (size_t i = 0; i < nM; i++) nLine += zM[i] == '\n';
  if (merges_alloc(p, nLine) != BT_OK) return BT_ERR;
  size_t i = 0;
  char zWhere[700];
  for (size_t line = 1; i < nM; line++) {
    const char *z = zM + i;
    const char *zEnd = memchr(z, '\n', nM - i);
    size_t n = zEnd ? (size_t)(zEnd - z) : nM - i;
    i += n + 1;
    if (n && z[n - 1] == '\r') n--;
    if (n == 0 || (line == 1 && n >= 8 && !memcmp(z, "#version", 8))) continue;
    snprintf(zWhere, sizeof zWhere, "%s:%zu", zMFile, line);
    const char *zSp = memchr(z, ' ', n);
    if (!zSp || zSp == z || zSp + 1 == z + n ||
        memchr(zSp + 1, ' ', (size_t)(z + n - zSp - 1)))
      return bt_err_set("%s: expected two tokens separated by one space, got "
                        "'%.*s'",
                        zWhere, (int)(n > 80 ? 80 : n), z);
    if (merge_add(p, z, (size_t)(zSp - z), zSp + 1, (size_t)(z + n - zSp - 1),
                  zWhere) != BT_OK)
      return BT_ERR;
  }
  static const char zEot[] = "<|endoftext|>";
  uint32_t id = vocab_find(p, zEot, sizeof zEot - 1);
  if (id != UINT32_MAX && added_add(p, zEot, sizeof zEot - 1, id) != BT_OK)
    return BT_ERR;
  return BT_OK;
}

void bt_tok_free(bt_tok *p) {
  if (!p) return;
  free(p->aOff);
  free(p->aLen);
  free(p->zBlob);
  free(p->aVocabSlot);
  free(p->aMerge);
  free(p->aAdded);
  free(p->aCache);
  free(p->zCacheKey);
  free(p->aCacheId);
  free(p->aSym);
  free(p->aHeap);
  free(p);
}

int bt_tok_load(bt_tok **pp, const char *zJson, size_t nJson,
                const char *zJsonName, const char *zMerges, size_t nMerges,
                const char *zMergesName) {
  *pp = NULL;
  pthread_once(&g_classOnce, once_init);
  cJSON *pRoot = cJSON_ParseWithLength(zJson, nJson);
  if (!pRoot) {
    const char *zAt = cJSON_GetErrorPtr();
    size_t off = zAt && zAt >= zJson && zAt <= zJson + nJson
                     ? (size_t)(zAt - zJson)
                     : 0;
    return bt_err_set("%s: malformed JSON near byte %zu", zJsonName, off);
  }
  bt_tok *p = bt_calloc(1, sizeof *p, "tokenizer");
  int rc = p ? BT_OK : BT_ERR;
  if (rc == BT_OK) {
    snprintf(p->zName, sizeof p->zName, "%s", zJsonName);
    if (!cJSON_IsObject(pRoot))
      rc = bt_err_set("%s: not a JSON object", zJsonName);
    else if (zMerges)
      rc = load_vocab_merges(p, pRoot, zJsonName, zMerges, nMerges,
                             zMergesName);
    else rc = load_tokenizer_json(p, pRoot, zJsonName);
  }
  cJSON_Delete(pRoot);
  if (rc == BT_OK) {
    added_done(p);
    p->aCache = bt_calloc(CACHE_SLOTS, sizeof *p->aCache, "piece cache");
    p->zCacheKey = bt_malloc(CACHE_ARENA, "piece cache");
    p->aCacheId = bt_malloc(CACHE_ARENA, "piece cache");
    if (!p->aCache || !p->zCacheKey || !p->aCacheId) rc = BT_ERR;
  }
  if (rc != BT_OK) {
    bt_tok_free(p);
    return BT_ERR;
  }
  *pp = p;
  return BT_OK;
}

int bt_tok_resolve(const char *zPath, char *zJson, size_t nJson,
                   char *zMerges, size_t nMerges) {
  struct stat st;
  if (stat(zPath, &st) != 0)
    return bt_err_set("tokenizer '%s': %s", zPath, strerror(errno));
  zMerges[0] = 0;
  if (S_ISDIR(st.st_mode)) {
    snprintf(zJson, nJson, "%s/tokenizer.json", zPath);
    if (bt_path_exists(zJson)) return BT_OK;
    snprintf(zJson, nJson, "%s/vocab.json", zPath);
    snprintf(zMerges, nMerges, "%s/merges.txt", zPath);
    if (!bt_path_exists(zJson) || !bt_path_exists(zMerges))
      return bt_err_set("tokenizer directory '%s' holds neither "
                        "tokenizer.json nor vocab.json + merges.txt",
                        zPath);
    return BT_OK;
  }
  snprintf(zJson, nJson, "%s", zPath);
  size_t n = 0;
  char *z = bt_file_read_all(zJson, &n);
  if (!z) return bt_err_prefix("tokenizer: ");
  /* A file: a tokenizer.json has a "model" key; a vocab.json is a flat
   * object of token -> id, whose merges.txt must sit beside it. */
  cJSON *pRoot = cJSON_ParseWithLength(z, n);
  int bVocab = pRoot && cJSON_IsObject(pRoot) &&
               !cJSON_GetObjectItemCaseSensitive(pRoot, "model") &&
               cJSON_IsNumber(pRoot->child);
  cJSON_Delete(pRoot);
  free(z);
  if (bVocab) {
    char zDir[4096];
    snprintf(zDir, sizeof zDir, "%s", zJson);
    snprintf(zMerges, nMerges, "%s/merges.txt", dirname(zDir));
    if (!bt_path_exists(zMerges))
      return bt_err_set("%s is a vocab.json (token -> id) but '%s' is "
                        "missing",
                        zJson, zMerges);
  }
  return BT_OK;
}

int bt_tok_open(bt_tok **pp, const char *zPath) {
  *pp = NULL;
  char zJson[4096], zMerges[4096];
  if (bt_tok_resolve(zPath, zJson, sizeof zJson, zMerges, sizeof zMerges) !=
      BT_OK)
    return BT_ERR;
  size_t nJson = 0, nMerges = 0;
  char *zJ = bt_file_read_all(zJson, &nJson);
  if (!zJ) return bt_err_prefix("tokenizer: ");
  char *zM = NULL;
  if (zMerges[0] && !(zM = bt_file_read_all(zMerges, &nMerges))) {
    free(zJ);
    return bt_err_prefix("tokenizer: ");
  }
  int rc = bt_tok_load(pp, zJ, nJson, zJson, zM, nMerges, zMerges);
  free(zJ);
  free(zM);
  return rc;
}

int bt_tok_vocab_size(const bt_tok *p) { return p->nVocab; }
const char *bt_tok_name(const bt_tok *p) { return p->zName; }

/* ---- encoding -------------------------------------------------------------- */

static int scratch_reserve(bt_tok *p, size_t n) {
  if (n > p->nSymAlloc) {
    size_t m = n < 64 ? 64 : 2 * n;
    sym *a = realloc(p->aSym, m * sizeof *a);
    if (!a) return bt_err_set("out of memory for a %zu-byte piece", n);
    p->aSym = a;
    p->nSymAlloc = m;
  }
  if (3 * n > p->nHeapAlloc) {
    size_t m = 3 * (n < 64 ? 64 : 2 * n);
    heap_ent *a = realloc(p->aHeap, m * sizeof *a);
    if (!a) return bt_err_set("out of memory for a %zu-byte piece", n);
    p->aHeap = a;
    p->nHeapAlloc = m;
  }
  return BT_OK;
}

static inline int heap_less(const heap_ent *a, const heap_ent *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(heap_ent *h, size_t *pn, heap_ent e) {
  size_t i = (*pn)++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (!heap_less(&e, &h[up])) break;
    h[i] = h[up];
    i = up;
  }
  h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *pn) {
  heap_ent top = h[0], e = h[--*pn];
  size_t n = *pn, i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_less(&h[c + 1], &h[c])) c++;
    if (!heap_less(&h[c], &e)) break;
    h[i] = h[c];
    i = c;
  }
  if (n) h[i] = e;
  return top;
}

/* BPE over the bytes of one piece (n >= 2); appends its ids to pOut. */
static int bpe_piece(bt_tok *p, const unsigned char *z, size_t n,
                     bt_tok_ids *pOut) {
  if (scratch_reserve(p, n) != BT_OK) return BT_ERR;
  sym *s = p->aSym;
  heap_ent *h = p->aHeap;
  size_t nh = 0;
  for (size_t i = 0; i < n; i++) {
    s[i].id = p->aByteId[z[i]];
    s[i].prev = (int32_t)i - 1;
    s[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    s[i].len = 1;
  }
  for (size_t i = 0; i + 1 < n; i++) {
    const merge_slot *m = merge_find(p, s[i].id, s[i + 1].id);
    if (m) heap_push(h, &nh, (heap_ent){m->rank, (uint32_t)i, m->newId});
  }
  while (nh) {
    heap_ent top = heap_pop(h, &nh);
    sym *cur = &s[top.pos];
    if (cur->len == 0 || cur->next < 0) continue;
    sym *right = &s[cur->next];
    const merge_slot *m = merge_find(p, cur->id, right->id);
    if (!m || m->newId != top.newId) continue; /* stale entry */
    cur->id = top.newId;
    cur->len += right->len;
    right->len = 0;
    cur->next = right->next;
    if (cur->next >= 0) s[cur->next].prev = (int32_t)top.pos;
    if (cur->prev >= 0) {
      m = merge_find(p, s[cur->prev].id, cur->id);
      if (m)
        heap_push(h, &nh, (heap_ent){m->rank, (uint32_t)cur->prev, m->newId});
    }
    if (cur->next >= 0) {
      m = merge_find(p, cur->id, s[cur->next].id);
      if (m) heap_push(h, &nh, (heap_ent){m->rank, top.pos, m->newId});
    }
  }
  size_t nId = 0;
  for (int32_t i = 0; i >= 0; i = s[i].next) nId++;
  if (ids_reserve(pOut, nId) != BT_OK) return BT_ERR;
  for (int32_t i = 0; i >= 0; i = s[i].next) pOut->a[pOut->n++] = s[i].id;
  return BT_OK;
}

static void cache_clear(bt_tok *p) {
  memset(p->aCache, 0, CACHE_SLOTS * sizeof *p->aCache);
  p->nCacheKey = p->nCacheId = p->nCacheUsed = 0;
}

/* One pre-token: cached, else BPE (then cached when short). */
static int encode_piece(bt_tok *p, const unsigned char *z, size_t n,
                        bt_tok_ids *pOut) {
  if (n == 1) {
    if (ids_reserve(pOut, 1) != BT_OK) return BT_ERR;
    pOut->a[pOut->n++] = p->aByteId[z[0]];
    return BT_OK;
  }
  if (p->ignoreMerges) {
    uint32_t id = vocab_find(p, (const char *)z, n);
    if (id != UINT32_MAX) {
      if (ids_reserve(pOut, 1) != BT_OK) return BT_ERR;
      pOut->a[pOut->n++] = id;
      return BT_OK;
    }
  }
  if (n > CACHE_MAX_KEY) return bpe_piece(p, z, n, pOut);
  uint64_t hash = hash_bytes(z, n);
  uint32_t mask = CACHE_SLOTS - 1, i = (uint32_t)hash & mask;
  for (;; i = (i + 1) & mask) {
    cache_slot *c = &p->aCache[i];
    if (!c->hash) break;
    if (c->hash == hash && c->keyLen == n &&
        !memcmp(p->zCacheKey + c->keyOff, z, n)) {
      if (ids_reserve(pOut, c->nId) != BT_OK) return BT_ERR;
      memcpy(pOut->a + pOut->n, p->aCacheId + c->idOff,
             c->nId * sizeof(uint32_t));
      pOut->n += c->nId;
      return BT_OK;
    }
  }
  size_t n0 = pOut->n;
  if (bpe_piece(p, z, n, pOut) != BT_OK) return BT_ERR;
  size_t nId = pOut->n - n0;
  if (p->nCacheUsed + 1 > CACHE_SLOTS / 2 ||
      p->nCacheKey + n > CACHE_ARENA ||
      (p->nCacheId + nId) * sizeof(uint32_t) > CACHE_ARENA) {
    cache_clear(p);
    i = (uint32_t)hash & mask;
    while (p->aCache[i].hash) i = (i + 1) & mask;
  }
  cache_slot *c = &p->aCache[i];
  c->hash = hash;
  c->keyOff = p->nCacheKey;
  c->keyLen = (uint16_t)n;
  c->idOff = p->nCacheId;
  c->nId = (uint16_t)nId;
  memcpy(p->zCacheKey + p->nCacheKey, z, n);
  memcpy(p->aCacheId + p->nCacheId, pOut->a + n0, nId * sizeof(uint32_t));
  p->nCacheKey += (uint32_t)n;
  p->nCacheId += (uint32_t)nId;
  p->nCacheUsed++;
  return BT_OK;
}

/* Pre-tokenizes and encodes z[s, e). bPending: [s, e) ends where the
 * visible text ends, so its last piece may still grow; it is left out and
 * *pnUsed set to its start. */
static int encode_segment(bt_tok *p, const unsigned char *z, size_t s,
                          size_t e, int bPending, bt_tok_ids *pOut,
                          size_t *pnUsed) {
  size_t q;
  for (size_t i = s; i < e; i = q) {
    q = pretok_next(z, i, e);
    /* A piece is final unless it reaches e, or is a quote whose
     * contraction ('ll, 're, 've) could be completed by text after e. */
    if (bPending && (q == e || (z[i] == '\'' && e - i < 3))) {
      *pnUsed = i;
      return BT_OK;
    }
    if (encode_piece(p, z + i, q - i, pOut) != BT_OK) return BT_ERR;
  }
  *pnUsed = e;
  return BT_OK;
}

/* The leftmost, then longest, added token in z[s, e) whose bytes lie in
 * z[0, n): its position, or e if none. */
static size_t added_find(const bt_tok *p, const unsigned char *z, size_t s,
                         size_t e, size_t n, const added_tok **ppA) {
  if (!p->nAdded) return e;
  for (size_t i = s; i < e; i++) {
    if (!p->aAddedFirst[z[i]]) continue;
    for (int k = 0; k < p->nAdded; k++) { /* longest first */
      const added_tok *a = &p->aAdded[k];
      if ((size_t)a->len <= n - i && !memcmp(z + i, a->z, (size_t)a->len)) {
        *ppA = a;
        return i;
      }
    }
  }
  return e;
}

int bt_tok_encode(bt_tok *p, const char *zText, size_t n, int bFinal,
                  bt_tok_ids *pOut, size_t *pnUsed) {
  const unsigned char *z = (const unsigned char *)zText;
  size_t end = n;
  if (!bFinal) {
    /* Visible text: an added token starting before `end` lies wholly in
     * z[0, n), and `end` does not cut a UTF-8 character. */
    if (p->maxAdded > 1) end = n > (size_t)p->maxAdded - 1
                                   ? n - ((size_t)p->maxAdded - 1)
                                   : 0;
    size_t i = end;
    while (i > 0 && end - i < 4 && (z[i - 1] & 0xc0) == 0x80) i--;
    if (i > 0 && z[i - 1] >= 0xc0) {
      unsigned c = z[i - 1];
      size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      if (i - 1 + need > end) end = i - 1;
    }
  }
  size_t s = 0, used = 0;
  while (s < end) {
    const added_tok *a = NULL;
    size_t at = added_find(p, z, s, end, n, &a);
    if (!a) {
      if (encode_segment(p, z, s, end, !bFinal, pOut, &used) != BT_OK)
        return BT_ERR;
      break;
    }
    if (encode_segment(p, z, s, at, 0, pOut, &used) != BT_OK) return BT_ERR;
    if (ids_reserve(pOut, 1) != BT_OK) return BT_ERR;
    pOut->a[pOut->n++] = a->id;
    s = used = at + (size_t)a->len;
  }
  if (pnUsed) *pnUsed = bFinal ? n : used;
  return BT_OK;
}

/* ---- decoding -------------------------------------------------------------- */

const char *bt_tok_bytes(const bt_tok *p, uint32_t id, size_t *pn) {
  if (id >= (uint32_t)p->nVocab || p->aLen[id] < 0) return NULL;
  *pn = (size_t)p->aLen[id];
  return p->zBlob + p->aOff[id];
}

char *bt_tok_decode(const bt_tok *p, const uint32_t *aId, size_t nId,
                    size_t *pn) {
  size_t n = 0, k;
  for (size_t i = 0; i < nId; i++) {
    if (!bt_tok_bytes(p, aId[i], &k)) {
      bt_err_set("%s: id %u at position %zu is not a token (vocabulary "
                 "size %d)",
                 p->zName, aId[i], i, p->nVocab);
      return NULL;
    }
    n += k;
  }
  char *z = bt_malloc(n + 1, "decoded text");
  if (!z) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < nId; i++) {
    const char *zT = bt_tok_bytes(p, aId[i], &k);
    memcpy(z + o, zT, k);
    o += k;
  }
  z[o] = 0;
  *pn = o;
  return z;
}
