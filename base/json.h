/*
 * json.h: the one JSON string escaper (metrics.jsonl, Chrome traces).
 *
 * The escaping is the minimal one RFC 8259 section 7 requires: '"' and '\'
 * get a backslash, bytes below 0x20 become \u00XX, every other byte
 * (UTF-8 included) is copied as it is. Writers that emit JSON by hand
 * (rather than through cJSON) use this so that every file baton writes
 * escapes the same way, byte for byte.
 */
#ifndef BATON_JSON_H
#define BATON_JSON_H

#include <stddef.h>

/* Bytes an escaped copy of nIn input bytes can need, with its NUL: each
 * byte becomes at most 6 ("\u001f"). */
#define BT_JSON_ESCAPE_MAX(nIn) (6 * (size_t)(nIn) + 1)

/* Writes the escaped body (no quotes) of z, stopping at its NUL or after
 * nMax input bytes, into zOut (nOut bytes, always NUL-terminated when
 * nOut > 0). Returns the length of the whole escaped text, as snprintf
 * does: a value >= nOut means zOut was too small and holds a prefix that
 * never ends inside an escape. A buffer of BT_JSON_ESCAPE_MAX(nMax) bytes
 * always suffices. */
size_t bt_json_escape(char *zOut, size_t nOut, const char *z, size_t nMax);

#endif /* BATON_JSON_H */
