/*
 * json.c: see json.h. Kept apart from util.c because only the writers
 * that format JSON by hand need it.
 */
#include "base/json.h"

#include <stdio.h>

size_t bt_json_escape(char *zOut, size_t nOut, const char *z, size_t nMax) {
  size_t n = 0; /* length of the full escaped text so far */
  int bFull = 0; /* an escape did not fit: write nothing more */
  for (size_t i = 0; i < nMax && z[i]; i++) {
    unsigned char c = (unsigned char)z[i];
    char zEsc[8];
    size_t nEsc;
    if (c == '"' || c == '\\') {
      zEsc[0] = '\\';
      zEsc[1] = (char)c;
      nEsc = 2;
    } else if (c < 0x20) {
      nEsc = (size_t)snprintf(zEsc, sizeof zEsc, "\\u%04x", c);
    } else {
      zEsc[0] = (char)c;
      nEsc = 1;
    }
    /* Whole escapes only: a cut "\u00" would make the output invalid. */
    if (!bFull && n + nEsc < nOut) {
      for (size_t k = 0; k < nEsc; k++) zOut[n + k] = zEsc[k];
    } else if (!bFull) {
      bFull = 1;
      if (nOut > 0) zOut[n] = 0;
    }
    n += nEsc;
  }
  if (!bFull && nOut > 0) zOut[n] = 0;
  return n;
}
