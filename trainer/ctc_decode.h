/*
 * ctc_decode.h: greedy CTC decoding and error rates (issue 15): what
 * validation, `baton eval` and the metrics report for a speech model.
 * Pure host functions on plain arrays and strings: no model, no backend,
 * so export/ and eval can call them on logits they copied to the host.
 *
 * Definitions:
 *   greedy decoding: per frame the argmax over the V columns (the lowest
 *     index on ties), then repeats merged and blanks (0) dropped - the
 *     inverse of the CTC collapse;
 *   CER: character edits (Levenshtein: substitutions, insertions,
 *     deletions, each cost 1) between hypothesis and reference, over the
 *     reference's length in Unicode code points (UTF-8 decoded);
 *   WER: the same over words (maximal runs of non-space characters).
 * Rates over a set of utterances are sum(edits) / sum(reference length),
 * not a mean of per-utterance rates: a long utterance weighs more.
 */
#ifndef BATON_CTC_DECODE_H
#define BATON_CTC_DECODE_H

#include <stdint.h>

/* Greedy decoding of logits[T, V] (row stride V; log-probabilities or
 * raw logits alike: the argmax is the same). Writes at most T ids
 * (1..V-1) to aOut and returns how many. */
int bt_ctc_greedy(const float *logits, int T, int V, int32_t *aOut);

/* Levenshtein distance between a[0..na) and b[0..nb). -1 with the error
 * set if its O(nb) row cannot be allocated. */
int64_t bt_edit_distance(const int32_t *a, int na, const int32_t *b, int nb);

/* Accumulated edits and reference length of one kind. */
typedef struct bt_error_count {
  int64_t nEdit;
  int64_t nRef;
} bt_error_count;

/* Adds one (reference, hypothesis) pair to the character and word
 * counts (either pointer may be NULL). BT_ERR with the error set on
 * invalid UTF-8 (naming the byte offset) or out of memory. */
int bt_error_add(const char *zRef, const char *zHyp, bt_error_count *pChar,
                 bt_error_count *pWord);

/* edits / reference length; 0 for an empty reference set. */
double bt_error_rate(const bt_error_count *p);

#endif /* BATON_CTC_DECODE_H */
