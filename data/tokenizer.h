/*
 * tokenizer.h: byte-level BPE tokenizer (GPT-2's scheme), read from a
 * Hugging Face tokenizer.json or from GPT-2's vocab.json + merges.txt.
 *
 * Used by `baton prepare text --tokenizer` (data/prepare.c) and by
 * `baton infer --prompt` (export/infer.c). The token ids are those of the
 * `tokenizers` package for the same file (tests/data/test_data_bpe.py
 * checks it id for id); docs/data.md describes the accepted files.
 *
 * Encoding, in the package's order:
 *   1. added tokens (tokenizer.json "added_tokens"; `<|endoftext|>` for a
 *      vocab.json that holds it) are cut out of the text first, leftmost
 *      longest match; they become their own id;
 *   2. the text between them is split by GPT-2's rule
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      evaluated by hand over UTF-8 (utf8proc gives the categories);
 *   3. each piece's bytes start as the 256 byte tokens and are merged by
 *      rank, lowest rank first and leftmost first among equal ranks (the
 *      package's priority queue), with a cache of piece -> ids.
 * Bytes that are not valid UTF-8 are classed as neither letter, number
 * nor space (the package never sees them: Python strings are valid).
 *
 * Decoding maps each id back to its bytes; added tokens decode to their
 * text. decode(encode(x)) == x for every byte string x.
 *
 * A bt_tok is read-only after loading except for its piece cache, so one
 * tokenizer must not encode on two threads at once.
 */
#ifndef BATON_DATA_TOKENIZER_H
#define BATON_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct bt_tok bt_tok;

/* A growable array of token ids. Zero-initialise; bt_tok_ids_free(). */
typedef struct bt_tok_ids {
  uint32_t *a;
  size_t n, nAlloc;
} bt_tok_ids;

void bt_tok_ids_free(bt_tok_ids *p);

/* Loads zPath: a tokenizer.json, a vocab.json (merges.txt beside it), or
 * a directory holding either (tokenizer.json preferred). Errors name the
 * file and what is wrong with it. */
int bt_tok_open(bt_tok **pp, const char *zPath);
/* The files zPath names (as bt_tok_open reads it): zJson gets the
 * tokenizer.json or vocab.json path, zMerges the merges.txt path or "". */
int bt_tok_resolve(const char *zPath, char *zJson, size_t nJson,
                   char *zMerges, size_t nMerges);
/* From memory: a tokenizer.json text, or (zMerges != NULL) a vocab.json
 * text and a merges.txt text. zJsonName and zMergesName name them in
 * errors. */
int bt_tok_load(bt_tok **pp, const char *zJson, size_t nJson,
                const char *zJsonName, const char *zMerges, size_t nMerges,
                const char *zMergesName);
void bt_tok_free(bt_tok *p);

/* 1 + the largest id (vocabulary and added tokens). */
int bt_tok_vocab_size(const bt_tok *p);
/* "bpe" plus where it came from, for messages. */
const char *bt_tok_name(const bt_tok *p);

/* Appends the ids of z[0, n) to pOut. bFinal = 1: z is the whole text.
 * bFinal = 0: z is a prefix of a longer text; only the part whose ids
 * cannot change when more text follows is encoded, and *pnUsed gets its
 * length (call again with the rest prepended to the next input). */
int bt_tok_encode(bt_tok *p, const char *z, size_t n, int bFinal,
                  bt_tok_ids *pOut, size_t *pnUsed);

/* The bytes of token id (NULL if id is not a token); *pn gets the length. */
const char *bt_tok_bytes(const bt_tok *p, uint32_t id, size_t *pn);
/* Decodes ids into a malloc'ed, NUL-terminated buffer (*pn bytes without
 * the NUL). NULL, with the error set, for an id that is not a token. */
char *bt_tok_decode(const bt_tok *p, const uint32_t *aId, size_t nId,
                    size_t *pn);

/* ---- tokenizer files inside a prepared HDF5 file ------------------------
 * `baton prepare text --tokenizer` copies the tokenizer's files byte for
 * byte into the output as 1-D uint8 datasets /tokenizer/tokenizer.json,
 * or /tokenizer/vocab.json and /tokenizer/merges.txt (docs/data.md), so a
 * dataset carries the tokenizer that made it; `baton export` copies them
 * on into the export directory and `baton infer --checkpoint` reads them
 * from the run's data file. */

typedef struct bt_tok_file {
  char zName[32]; /* "tokenizer.json", "vocab.json" or "merges.txt" */
  char *z;        /* malloc'ed contents */
  size_t n;
} bt_tok_file;

/* Reads the tokenizer files of zH5 into aFile; *pnFile = 0 (and BT_OK)
 * when it has none, as byte-level data has not. Free with
 * bt_tok_files_free(). */
int bt_tok_h5_read(const char *zH5, bt_tok_file aFile[2], int *pnFile);
void bt_tok_files_free(bt_tok_file *aFile, int nFile);
/* A tokenizer from files read by bt_tok_h5_read; zSource (the HDF5 file)
 * names them in errors. */
int bt_tok_from_files(bt_tok **pp, const bt_tok_file *aFile, int nFile,
                      const char *zSource);

#endif
