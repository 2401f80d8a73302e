/*
 * prepare_audio.c: `baton prepare audio`, which turns a manifest of audio
 * files and transcripts into the ragged HDF5 layout of docs/data.md
 * ("Audio data") that the audio loader (audio_loader.h) reads.
 *
 *   baton prepare audio -o OUT.h5 [--vocab VOCAB.h5] [--gzip L] MANIFEST
 *
 * Manifest: one utterance per non-empty line, either TSV `PATH<TAB>TEXT`
 * (the text is everything after the first TAB) or a JSON object
 * {"audio": PATH, "text": TEXT} (a line whose first character is '{').
 * A relative PATH is relative to the manifest's directory. A UTF-8 byte
 * order mark at the start and a trailing CR on a line are dropped; the
 * text is otherwise used exactly as written (no case folding, no
 * trimming): one label per Unicode code point.
 *
 * Vocabulary: index 0 is the CTC blank; 1..V-1 are the code points of the
 * transcripts sorted by value. --vocab takes the vocabulary of an existing
 * file of this layout instead (so validation data shares the training
 * data's ids); a character outside it is an error.
 *
 * Two passes: (1) parse every manifest line and map its text to labels,
 * so a bad line fails before any audio is decoded; (2) decode each audio
 * file (libsndfile), compute its features (audio_features.h) and append
 * them to /audio/features. Every error names the manifest, its line and
 * the audio path, and stops the command with exit code 1 (BT_EXIT_ERROR,
 * as `prepare text` does for bad data); nothing is skipped silently.
 *
 * Crash safety (docs/design.md, decision 7), as prepare.c and with the
 * same code (prepare_common.h): the file is
 * written as OUT.h5.tmp.<pid>, fsync'ed, renamed, and the directory
 * fsync'ed; an error or SIGINT/SIGTERM removes the temporary file; SIGKILL
 * leaves only the .tmp.<pid> file. Fault point: prepare_audio.kill
 * (SIGKILL itself before the Nth utterance's features are written).
 *
 * Threads: single-threaded; HDF5 calls hold bt_h5_lock().
 */
#include <hdf5.h>
#include <libgen.h>
#include <signal.h>
#include <sndfile.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#include <cjson/cJSON.h>

#include "base/cli.h"
#include "base/util.h"
#include "data/audio_features.h"
#include "data/audio_loader.h"
#include "data/loader.h"
#include "data/loader_impl.h"
#include "data/prepare_common.h"

/* ---- the manifest ---------------------------------------------------------- */

typedef struct utt {
  int64_t line;     /* 1-based manifest line */
  char *zAudio;     /* path as written in the manifest */
  char *zResolved;  /* path opened (relative to the manifest's directory) */
  int64_t cpLo, cpHi; /* its code points in manifest.aCp / labels */
} utt;

typedef struct manifest {
  const char *zPath;
  char zDir[4096];
  utt *aUtt;
  int64_t nUtt, nUttAlloc;
  int32_t *aCp; /* code points of every transcript, concatenated */
  int64_t nCp, nCpAlloc;
} manifest;

static void manifest_free(manifest *m) {
  for (int64_t i = 0; i < m->nUtt; i++) {
    free(m->aUtt[i].zAudio);
    free(m->aUtt[i].zResolved);
  }
  free(m->aUtt);
  free(m->aCp);
}

static int push_cp(manifest *m, int32_t cp) {
  if (m->nCp == m->nCpAlloc) {
    int64_t n = m->nCpAlloc ? 2 * m->nCpAlloc : 4096;
    int32_t *a = realloc(m->aCp, (size_t)n * sizeof *a);
    if (!a) return bt_err_set("prepare audio: out of memory (transcripts)");
    m->aCp = a;
    m->nCpAlloc = n;
  }
  m->aCp[m->nCp++] = cp;
  return BT_OK;
}

/* Appends the code points of zText (nText bytes) for line `line`. */
static int text_decode(manifest *m, int64_t line, const char *zAudio,
                       const char *zText, size_t nText) {
  if (nText == 0)
    return bt_err_set("%s:%lld: audio '%s': empty transcript", m->zPath,
                      (long long)line, zAudio);
  for (size_t i = 0; i < nText;) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)zText + i,
                                          (utf8proc_ssize_t)(nText - i), &cp);
    if (k <= 0)
      return bt_err_set("%s:%lld: audio '%s': transcript is not valid UTF-8 "
                        "at byte %zu",
                        m->zPath, (long long)line, zAudio, i + 1);
    if (cp < 0x20 || cp == 0x7f)
      return bt_err_set("%s:%lld: audio '%s': transcript holds control "
                        "character U+%04X at byte %zu",
                        m->zPath, (long long)line, zAudio, (unsigned)cp,
                        i + 1);
    if (push_cp(m, cp) != BT_OK) return BT_ERR;
    i += (size_t)k;
  }
  return BT_OK;
}

/* Splits one line into its audio path and text (pointers into zLine, or
 * into *ppJson's strings, which the caller frees). */
static int line_split(const manifest *m, int64_t line, char *zLine,
                      cJSON **ppJson, const char **pzAudio,
                      const char **pzText) {
  *ppJson = NULL;
  if (zLine[0] == '{') {
    cJSON *p = cJSON_ParseWithOpts(zLine, NULL, 1); /* nothing after it */
    cJSON *pA = p ? cJSON_GetObjectItemCaseSensitive(p, "audio") : NULL;
    cJSON *pT = p ? cJSON_GetObjectItemCaseSensitive(p, "text") : NULL;
    *ppJson = p;
    if (!p)
      return bt_err_set("%s:%lld: not a JSON object (expected {\"audio\": "
                        "PATH, \"text\": TEXT})",
                        m->zPath, (long long)line);
    if (!cJSON_IsString(pA) || !pA->valuestring[0] || !cJSON_IsString(pT))
      return bt_err_set("%s:%lld: JSON line needs string fields \"audio\" "
                        "and \"text\"",
                        m->zPath, (long long)line);
    *pzAudio = pA->valuestring;
    *pzText = pT->valuestring;
    return BT_OK;
  }
  char *pTab = strchr(zLine, '\t');
  if (!pTab || pTab == zLine)
    return bt_err_set("%s:%lld: expected PATH<TAB>TRANSCRIPT or a JSON "
                      "object, got '%.60s'",
                      m->zPath, (long long)line, zLine);
  *pTab = 0;
  *pzAudio = zLine;
  *pzText = pTab + 1;
  return BT_OK;
}

static int utt_add(manifest *m, int64_t line, const char *zAudio,
                   const char *zText) {
  if (m->nUtt == m->nUttAlloc) {
    int64_t n = m->nUttAlloc ? 2 * m->nUttAlloc : 256;
    utt *a = realloc(m->aUtt, (size_t)n * sizeof *a);
    if (!a) return bt_err_set("prepare audio: out of memory (manifest)");
    m->aUtt = a;
    m->nUttAlloc = n;
  }
  utt *u = &m->aUtt[m->nUtt];
  memset(u, 0, sizeof *u);
  u->line = line;
  u->cpLo = m->nCp;
  u->zAudio = strdup(zAudio);
  size_t nRes = strlen(m->zDir) + strlen(zAudio) + 2;
  u->zResolved = malloc(nRes);
  m->nUtt++; /* owned from here on, freed by manifest_free */
  if (!u->zAudio || !u->zResolved)
    return bt_err_set("prepare audio: out of memory (manifest)");
  if (zAudio[0] == '/') snprintf(u->zResolved, nRes, "%s", zAudio);
  else snprintf(u->zResolved, nRes, "%s/%s", m->zDir, zAudio);
  int rc = text_decode(m, line, zAudio, zText, strlen(zText));
  u->cpHi = m->nCp;
  return rc;
}

static int manifest_read(manifest *m, const char *zPath) {
  memset(m, 0, sizeof *m);
  m->zPath = zPath;
  char zTmp[4096];
  snprintf(zTmp, sizeof zTmp, "%s", zPath);
  snprintf(m->zDir, sizeof m->zDir, "%s", dirname(zTmp));
  size_t nByte = 0;
  char *zAll = bt_file_read_all(zPath, &nByte);
  if (!zAll) return bt_err_prefix("prepare audio: manifest: ");
  int rc = BT_OK;
  int64_t line = 0;
  char *zStart = zAll;
  if (nByte >= 3 && !memcmp(zAll, "\xEF\xBB\xBF", 3))
    zStart += 3; /* a UTF-8 byte order mark (editors on Windows write one) */
  for (char *z = zStart; rc == BT_OK && z < zAll + nByte;) {
    char *zEnd = memchr(z, '\n', (size_t)(zAll + nByte - z));
    char *zNext = zEnd ? zEnd + 1 : zAll + nByte;
    if (!zEnd) zEnd = zAll + nByte;
    line++;
    if (zEnd > z && zEnd[-1] == '\r') zEnd--;
    *zEnd = 0; /* the buffer has one spare byte past nByte */
    if (strlen(z) != (size_t)(zEnd - z))
      rc = bt_err_set("%s:%lld: line holds a NUL byte", zPath, (long long)line);
    else if (zEnd > z) {
      cJSON *pJson;
      const char *zAudio = NULL, *zText = NULL;
      rc = line_split(m, line, z, &pJson, &zAudio, &zText);
      if (rc == BT_OK) rc = utt_add(m, line, zAudio, zText);
      cJSON_Delete(pJson);
    }
    z = zNext;
  }
  free(zAll);
  if (rc == BT_OK && m->nUtt == 0)
    rc = bt_err_set("%s: no utterances (an empty manifest)", zPath);
  return rc;
}

/* ---- the vocabulary ------------------------------------------------------ */

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* The sorted distinct code points of every transcript. */
static int vocab_build(const manifest *m, int32_t **paCp, int *pn) {
  int32_t *a = bt_malloc((size_t)m->nCp * sizeof *a, "vocabulary");
  if (!a) return BT_ERR;
  memcpy(a, m->aCp, (size_t)m->nCp * sizeof *a);
  qsort(a, (size_t)m->nCp, sizeof *a, cmp_i32);
  int n = 0;
  for (int64_t i = 0; i < m->nCp; i++)
    if (n == 0 || a[n - 1] != a[i]) a[n++] = a[i];
  *paCp = a;
  *pn = n;
  return BT_OK;
}

/* Maps every code point to its label (1 + position in aVocab); one outside
 * the vocabulary is an error naming the line, audio and character. */
static int labels_map(const manifest *m, const int32_t *aVocab, int nVocab,
                      const char *zVocabFrom, int32_t *aLabel) {
  for (int64_t u = 0; u < m->nUtt; u++) {
    const utt *p = &m->aUtt[u];
    for (int64_t i = p->cpLo; i < p->cpHi; i++) {
      const int32_t *pHit = bsearch(&m->aCp[i], aVocab, (size_t)nVocab,
                                    sizeof *aVocab, cmp_i32);
      if (!pHit) {
        utf8proc_uint8_t z[8] = {0};
        utf8proc_encode_char(m->aCp[i], z);
        return bt_err_set("%s:%lld: audio '%s': character '%s' (U+%04X) is "
                          "not in the vocabulary of %s",
                          m->zPath, (long long)p->line, p->zAudio,
                          (const char *)z, (unsigned)m->aCp[i], zVocabFrom);
      }
      aLabel[i] = (int32_t)(pHit - aVocab) + 1;
    }
  }
  return BT_OK;
}

/* ---- audio --------------------------------------------------------------- */

/* libsndfile adjusts a WAV's length to what the file holds and logs the
 * mismatch ("data : 32000 (should be 15979)"); a data chunk shorter than
 * its header says is a truncated file, which we refuse rather than train
 * on a clipped utterance whose transcript no longer matches. */
static int sf_truncated(SNDFILE *pSf) {
  char zLog[8192];
  zLog[0] = 0;
  sf_command(pSf, SFC_GET_LOG_INFO, zLog, sizeof zLog);
  for (char *z = zLog; (z = strstr(z, "\ndata")) != NULL; z++) {
    char *zEol = strchr(z + 1, '\n');
    char *zShould = strstr(z, "(should be");
    if (zShould && (!zEol || zShould < zEol)) return 1;
  }
  return 0;
}

/* audio_loader.h: also what `baton infer` reads WAV files with, so a
 * file it accepts is one `prepare audio` would accept. */
int bt_audio_read(const char *zPath, const char *zWhere, float **paSample,
                  int64_t *pnSample) {
  *paSample = NULL;
  SF_INFO info;
  memset(&info, 0, sizeof info);
  SNDFILE *pSf = sf_open(zPath, SFM_READ, &info);
  if (!pSf)
    return bt_err_set("%s: cannot read: %s", zWhere, sf_strerror(NULL));
  int rc = BT_OK;
  if (info.samplerate != BT_AUDIO_SAMPLE_RATE)
    rc = bt_err_set("%s: sample rate %d Hz, expected %d (resample first, "
                    "e.g. sox IN -r %d OUT.wav)",
                    zWhere, info.samplerate, BT_AUDIO_SAMPLE_RATE,
                    BT_AUDIO_SAMPLE_RATE);
  else if (info.channels != 1)
    rc = bt_err_set("%s: %d channels, expected mono (e.g. sox IN -c 1 "
                    "OUT.wav)",
                    zWhere, info.channels);
  else if (sf_truncated(pSf))
    rc = bt_err_set("%s: truncated: the file holds fewer samples than its "
                    "header declares",
                    zWhere);
  else if (info.frames < BT_AUDIO_WINDOW)
    rc = bt_err_set("%s: %lld samples, shorter than one %d-sample (25 ms) "
                    "window%s",
                    zWhere, (long long)info.frames, BT_AUDIO_WINDOW,
                    info.frames == 0 ? " (empty)" : "");
  float *a = NULL;
  if (rc == BT_OK) {
    a = bt_malloc((size_t)info.frames * sizeof *a, "audio samples");
    if (!a) rc = BT_ERR;
  }
  if (rc == BT_OK) {
    sf_count_t nGot = sf_readf_float(pSf, a, info.frames);
    if (nGot != info.frames)
      rc = bt_err_set("%s: truncated or unreadable: read %lld of %lld "
                      "samples (%s)",
                      zWhere, (long long)nGot, (long long)info.frames,
                      sf_strerror(pSf));
  }
  sf_close(pSf);
  if (rc != BT_OK) {
    free(a);
    return rc;
  }
  *paSample = a;
  *pnSample = info.frames;
  return BT_OK;
}

/* Reads an utterance's audio; errors name the manifest line and the file. */
static int audio_read(const manifest *m, const utt *u, float **paSample,
                      int64_t *pnSample) {
  char zWhere[4400];
  snprintf(zWhere, sizeof zWhere, "%s:%lld: audio '%s'", m->zPath,
           (long long)u->line, u->zResolved);
  return bt_audio_read(u->zResolved, zWhere, paSample, pnSample);
}

/* ---- the output file -------------------------------------------------------
 * As prepare.c: every HDF5 call that can lose data is checked (AO_TRY);
 * closing ids on cleanup paths is not (an earlier error is being reported). */

typedef struct aout {
  char zOut[4096];
  hid_t hFile, hGroup, hFeat;
  int gzip;
  int64_t nFrame; /* rows of /audio/features written */
} aout;

#define AO_TRY(call, zDsetName)                                                \
  do {                                                                         \
    if ((call) < 0) {                                                          \
      rc = bt_h5_fail(bt_prep_tmp_path(), (zDsetName), #call, __LINE__);       \
      goto out;                                                                \
    }                                                                          \
  } while (0)

/* The dataset creation properties: chunked with shuffle + deflate under
 * --gzip, else contiguous (features are always chunked: they grow). */
static hid_t ao_dcpl(int gzip, int rank, const hsize_t *aChunk, int bChunk) {
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (dcpl < 0) return dcpl;
  /* No modification times in object headers: the same manifest and audio
   * give the same bytes (a corpus can be checked by its hash). */
  if (H5Pset_obj_track_times(dcpl, 0) < 0) goto bad;
  if ((bChunk || gzip > 0) && H5Pset_chunk(dcpl, rank, aChunk) < 0) goto bad;
  if (gzip > 0 &&
      (H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, (unsigned)gzip) < 0))
    goto bad;
  return dcpl;
bad:
  H5Pclose(dcpl);
  return -1;
}

static int ao_open(aout *o, const char *zOut, int gzip) {
  memset(o, 0, sizeof *o);
  o->hFile = o->hGroup = o->hFeat = -1;
  o->gzip = gzip;
  snprintf(o->zOut, sizeof o->zOut, "%s", zOut);
  if (bt_prep_tmp_begin(zOut) != BT_OK) return BT_ERR;
  int rc = BT_OK;
  hid_t sp = -1, dcpl = -1, gcpl = -1;
  hsize_t aDim[2] = {0, BT_AUDIO_N_MEL}, aMax[2] = {H5S_UNLIMITED,
                                                     BT_AUDIO_N_MEL};
  hsize_t aChunk[2] = {256, BT_AUDIO_N_MEL}; /* 80 KiB */
  bt_h5_lock();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  o->hFile =
      H5Fcreate(bt_prep_tmp_path(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  AO_TRY(o->hFile, "/");
  gcpl = H5Pcreate(H5P_GROUP_CREATE);
  AO_TRY(gcpl, "/audio");
  AO_TRY(H5Pset_obj_track_times(gcpl, 0), "/audio");
  o->hGroup = H5Gcreate2(o->hFile, "/audio", H5P_DEFAULT, gcpl, H5P_DEFAULT);
  AO_TRY(o->hGroup, "/audio");
  sp = H5Screate_simple(2, aDim, aMax);
  AO_TRY(sp, BT_AUDIO_DS_FEATURES);
  dcpl = ao_dcpl(o->gzip, 2, aChunk, 1);
  AO_TRY(dcpl, BT_AUDIO_DS_FEATURES);
  o->hFeat = H5Dcreate2(o->hFile, BT_AUDIO_DS_FEATURES, H5T_IEEE_F32LE, sp,
                        H5P_DEFAULT, dcpl, H5P_DEFAULT);
  AO_TRY(o->hFeat, BT_AUDIO_DS_FEATURES);
out:
  if (gcpl >= 0) H5Pclose(gcpl);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (sp >= 0) H5Sclose(sp);
  bt_h5_unlock();
  return rc;
}

static int ao_append_features(aout *o, const float *aF, int64_t nFrame) {
  int rc = BT_OK;
  hid_t fs = -1, ms = -1;
  hsize_t aStart[2] = {(hsize_t)o->nFrame, 0};
  hsize_t aCount[2] = {(hsize_t)nFrame, BT_AUDIO_N_MEL};
  hsize_t aDim[2] = {(hsize_t)(o->nFrame + nFrame), BT_AUDIO_N_MEL};
  bt_h5_lock();
  AO_TRY(H5Dset_extent(o->hFeat, aDim), BT_AUDIO_DS_FEATURES);
  fs = H5Dget_space(o->hFeat);
  AO_TRY(fs, BT_AUDIO_DS_FEATURES);
  AO_TRY(H5Sselect_hyperslab(fs, H5S_SELECT_SET, aStart, NULL, aCount, NULL),
         BT_AUDIO_DS_FEATURES);
  ms = H5Screate_simple(2, aCount, NULL);
  AO_TRY(ms, BT_AUDIO_DS_FEATURES);
  AO_TRY(H5Dwrite(o->hFeat, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, aF),
         BT_AUDIO_DS_FEATURES);
  o->nFrame += nFrame;
out:
  if (ms >= 0) H5Sclose(ms);
  if (fs >= 0) H5Sclose(fs);
  bt_h5_unlock();
  return rc;
}

/* Writes a whole 1-D dataset of n elements (file type tFile). */
static int ao_write_1d(aout *o, const char *zName, hid_t tFile, hid_t tMem,
                       const void *pData, int64_t n) {
  int rc = BT_OK;
  hid_t sp = -1, dcpl = -1, d = -1;
  hsize_t dim = (hsize_t)n, chunk = n > 65536 ? 65536 : (n > 0 ? n : 1);
  bt_h5_lock();
  sp = H5Screate_simple(1, &dim, NULL);
  AO_TRY(sp, zName);
  /* filters need chunks, and chunks need a non-empty dataset */
  dcpl = ao_dcpl(n > 0 ? o->gzip : 0, 1, &chunk, 0);
  AO_TRY(dcpl, zName);
  d = H5Dcreate2(o->hFile, zName, tFile, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  AO_TRY(d, zName);
  if (n > 0) AO_TRY(H5Dwrite(d, tMem, H5S_ALL, H5S_ALL, H5P_DEFAULT, pData), zName);
  AO_TRY(H5Dclose(d), zName);
  d = -1;
out:
  if (d >= 0) H5Dclose(d);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (sp >= 0) H5Sclose(sp);
  bt_h5_unlock();
  return rc;
}

/* /audio/vocab: V variable-length UTF-8 strings, entry 0 "" (the blank). */
static int ao_write_vocab(aout *o, const int32_t *aCp, int nCp) {
  char (*aBuf)[8] = bt_calloc((size_t)nCp + 1, 8, "vocabulary strings");
  const char **az = bt_calloc((size_t)nCp + 1, sizeof(char *), "vocabulary");
  int rc = aBuf && az ? BT_OK : BT_ERR;
  hid_t t = -1;
  if (rc != BT_OK) goto out_free;
  az[0] = aBuf[0];
  for (int i = 0; i < nCp; i++) {
    utf8proc_encode_char(aCp[i], (utf8proc_uint8_t *)aBuf[i + 1]);
    az[i + 1] = aBuf[i + 1];
  }
  bt_h5_lock();
  t = H5Tcopy(H5T_C_S1);
  AO_TRY(t, BT_AUDIO_DS_VOCAB);
  AO_TRY(H5Tset_size(t, H5T_VARIABLE), BT_AUDIO_DS_VOCAB);
  AO_TRY(H5Tset_cset(t, H5T_CSET_UTF8), BT_AUDIO_DS_VOCAB);
  rc = ao_write_1d(o, BT_AUDIO_DS_VOCAB, t, t, az, nCp + 1);
out:
  if (t >= 0) H5Tclose(t);
  bt_h5_unlock();
out_free:
  free(aBuf);
  free(az);
  return rc;
}

static int ao_attr(aout *o, const char *zName, hid_t tFile, hid_t tMem,
                   const void *pVal) {
  int rc = BT_OK;
  hid_t sp = -1, a = -1;
  bt_h5_lock();
  sp = H5Screate(H5S_SCALAR);
  AO_TRY(sp, "/audio");
  a = H5Acreate2(o->hGroup, zName, tFile, sp, H5P_DEFAULT, H5P_DEFAULT);
  AO_TRY(a, "/audio");
  AO_TRY(H5Awrite(a, tMem, pVal), "/audio");
out:
  if (a >= 0) H5Aclose(a);
  if (sp >= 0) H5Sclose(sp);
  bt_h5_unlock();
  return rc;
}

static int ao_attr_str(aout *o, const char *zName, const char *zVal) {
  int rc = BT_OK;
  hid_t t = -1;
  bt_h5_lock();
  t = H5Tcopy(H5T_C_S1);
  AO_TRY(t, "/audio");
  AO_TRY(H5Tset_size(t, strlen(zVal) + 1), "/audio");
  rc = ao_attr(o, zName, t, t, zVal);
out:
  if (t >= 0) H5Tclose(t);
  bt_h5_unlock();
  return rc;
}

/* The attributes of /audio (docs/data.md, "Audio data"). */
static int ao_write_attrs(aout *o) {
  static const struct { const char *zName; int v; } aInt[] = {
      {"format_version", BT_AUDIO_FORMAT_VERSION},
      {"sample_rate", BT_AUDIO_SAMPLE_RATE},
      {"n_mel", BT_AUDIO_N_MEL},
      {"window", BT_AUDIO_WINDOW},
      {"hop", BT_AUDIO_HOP},
      {"n_fft", BT_AUDIO_N_FFT},
  };
  int rc = BT_OK;
  for (size_t i = 0; rc == BT_OK && i < sizeof aInt / sizeof aInt[0]; i++)
    rc = ao_attr(o, aInt[i].zName, H5T_STD_I32LE, H5T_NATIVE_INT, &aInt[i].v);
  double floor = BT_AUDIO_LOG_FLOOR;
  if (rc == BT_OK)
    rc = ao_attr(o, "log_floor", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &floor);
  if (rc == BT_OK) rc = ao_attr_str(o, "mel_scale", BT_AUDIO_MEL_SCALE);
  if (rc == BT_OK) rc = ao_attr_str(o, "window_fn", "hann_periodic");
  if (rc == BT_OK) rc = ao_attr_str(o, "log", "natural");
  return rc;
}

/* Closes the file; on success fsyncs and renames it into place, otherwise
 * removes the temporary file. */
static int ao_finish(aout *o, int ok) {
  int rc = ok ? BT_OK : BT_ERR;
  bt_h5_lock();
  if (o->hFeat >= 0 && H5Dclose(o->hFeat) < 0 && rc == BT_OK)
    rc = bt_h5_fail(bt_prep_tmp_path(), BT_AUDIO_DS_FEATURES, "H5Dclose",
                    __LINE__);
  if (o->hGroup >= 0) H5Gclose(o->hGroup);
  if (o->hFile >= 0 && H5Fclose(o->hFile) < 0 && rc == BT_OK)
    rc = bt_h5_fail(bt_prep_tmp_path(), "/", "H5Fclose", __LINE__);
  bt_h5_unlock();
  o->hFeat = o->hGroup = o->hFile = -1;
  return bt_prep_tmp_end(o->zOut, rc == BT_OK);
}

/* ---- the command ----------------------------------------------------------- */

typedef struct audio_opts {
  const char *zOut, *zVocab, *zManifest;
  int gzip;
} audio_opts;

static void usage(FILE *f) {
  fprintf(f,
          "usage: baton prepare audio -o OUT.h5 [--vocab VOCAB.h5] [--gzip L] "
          "MANIFEST\n"
          "\n"
          "Writes 80-bin log-mel features (25 ms Hann window, 10 ms hop, "
          "Slaney mel)\n"
          "of 16 kHz mono audio and character labels in the ragged layout "
          "of\n"
          "docs/data.md (\"Audio data\").\n"
          "  MANIFEST          one utterance a line: PATH<TAB>TRANSCRIPT, or\n"
          "                    {\"audio\": PATH, \"text\": TRANSCRIPT}; a "
          "relative PATH is\n"
          "                    relative to the manifest's directory\n"
          "  -o OUT.h5         output (written to OUT.h5.tmp.<pid>, fsync'ed "
          "and renamed)\n"
          "  --vocab VOCAB.h5  reuse the character vocabulary of an earlier "
          "output\n"
          "                    (validation data); other characters are an "
          "error\n"
          "  --gzip L          gzip level 1-9 with shuffle (default: none)\n");
}

/* -1 to go on, else the exit code to return now. */
static int parse_audio_opts(int argc, char **argv, audio_opts *o) {
  memset(o, 0, sizeof *o);
  static const struct option aOpt[] = {
      {"output", required_argument, 0, 'o'},
      {"vocab", required_argument, 0, 'v'},
      {"gzip", required_argument, 0, 'g'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  bt_cli c;
  bt_cli_init(&c, "prepare audio", argc, argv, "ho:", aOpt, usage);
  for (int ch; (ch = bt_cli_next(&c)) != -1;) {
    const char *v = c.zArg;
    char *end = NULL;
    switch (ch) {
    case 'h': usage(stdout); return BT_EXIT_OK;
    case 'o': o->zOut = v; break;
    case 'v': o->zVocab = v; break;
    case 'g':
      o->gzip = (int)strtol(v, &end, 10);
      if (end == v || *end || o->gzip < 0 || o->gzip > 9)
        return bt_cli_fail(&c, "--gzip '%s' is not in [0, 9]", v);
      break;
    case BT_CLI_ARG:
      if (o->zManifest)
        return bt_cli_fail(&c, "unexpected argument '%s' (one manifest)", v);
      o->zManifest = v;
      break;
    default: return BT_EXIT_USAGE;
    }
  }
  if (!o->zOut) return bt_cli_fail(&c, "-o OUT.h5 is required");
  if (!o->zManifest) return bt_cli_fail(&c, "give the MANIFEST");
  return -1;
}

/* Pass 2: decodes every utterance and appends its features; fills
 * aFrameOff[0..nUtt]. */
static int write_features(const manifest *m, aout *o, int64_t *aFrameOff) {
  bt_audio_features *pFe = NULL;
  int rc = bt_audio_features_open(&pFe);
  float *aF = NULL;
  int64_t nFAlloc = 0;
  aFrameOff[0] = 0;
  for (int64_t u = 0; rc == BT_OK && u < m->nUtt; u++) {
    float *aS = NULL;
    int64_t nS = 0;
    rc = audio_read(m, &m->aUtt[u], &aS, &nS);
    int64_t nF = rc == BT_OK ? bt_audio_features_frames(nS) : 0;
    if (rc == BT_OK && nF > nFAlloc) {
      free(aF);
      nFAlloc = nF;
      aF = bt_malloc((size_t)nF * BT_AUDIO_N_MEL * sizeof(float), "features");
      if (!aF) rc = BT_ERR;
    }
    if (rc == BT_OK) {
      bt_audio_features_compute(pFe, aS, nS, aF);
      if (bt_fault_hit("prepare_audio.kill")) raise(SIGKILL);
      rc = ao_append_features(o, aF, nF);
    }
    free(aS);
    aFrameOff[u + 1] = aFrameOff[u] + nF;
  }
  free(aF);
  bt_audio_features_free(pFe);
  return rc;
}

/* Pass 1's results (labels, vocabulary) and pass 2, into OUT.h5. */
static int write_all(const audio_opts *opt, const manifest *m,
                     const int32_t *aVocab, int nVocab, const int32_t *aLabel) {
  int64_t *aFrameOff = bt_malloc((size_t)(m->nUtt + 1) * sizeof(int64_t),
                                 "frame offsets");
  int64_t *aLabOff = bt_malloc((size_t)(m->nUtt + 1) * sizeof(int64_t),
                               "label offsets");
  if (!aFrameOff || !aLabOff) {
    free(aFrameOff);
    free(aLabOff);
    return BT_ERR;
  }
  for (int64_t u = 0; u <= m->nUtt; u++)
    aLabOff[u] = u < m->nUtt ? m->aUtt[u].cpLo : m->nCp;
  aout o;
  int rc = ao_open(&o, opt->zOut, opt->gzip);
  int bOpen = bt_prep_tmp_path()[0] != 0; /* the temporary file exists */
  if (rc == BT_OK) rc = write_features(m, &o, aFrameOff);
  if (rc == BT_OK)
    rc = ao_write_1d(&o, BT_AUDIO_DS_FRAME_OFFSETS, H5T_STD_I64LE,
                     H5T_NATIVE_INT64, aFrameOff, m->nUtt + 1);
  if (rc == BT_OK)
    rc = ao_write_1d(&o, BT_AUDIO_DS_LABELS, H5T_STD_I32LE, H5T_NATIVE_INT32,
                     aLabel, m->nCp);
  if (rc == BT_OK)
    rc = ao_write_1d(&o, BT_AUDIO_DS_LABEL_OFFSETS, H5T_STD_I64LE,
                     H5T_NATIVE_INT64, aLabOff, m->nUtt + 1);
  if (rc == BT_OK) rc = ao_write_vocab(&o, aVocab, nVocab);
  if (rc == BT_OK) rc = ao_write_attrs(&o);
  char zErr[2048];
  snprintf(zErr, sizeof zErr, "%s", bt_err_msg());
  int rc2 = bOpen ? ao_finish(&o, rc == BT_OK) : BT_OK;
  if (rc == BT_OK && rc2 == BT_OK)
    printf("prepare audio: wrote %s: %lld utterances, %lld frames (%.1f s), "
           "%lld labels, vocabulary %d (blank + %d characters)\n",
           opt->zOut, (long long)m->nUtt, (long long)aFrameOff[m->nUtt],
           aFrameOff[m->nUtt] * (double)BT_AUDIO_HOP / BT_AUDIO_SAMPLE_RATE,
           (long long)m->nCp, nVocab + 1, nVocab);
  free(aFrameOff);
  free(aLabOff);
  if (rc != BT_OK) return bt_err_set("%s", zErr);
  return rc2;
}

static int prepare_audio(const audio_opts *opt) {
  manifest m;
  int32_t *aVocab = NULL, *aLabel = NULL;
  int nVocab = 0;
  int rc = manifest_read(&m, opt->zManifest);
  if (rc == BT_OK) {
    rc = opt->zVocab ? bt_audio_vocab_read(opt->zVocab, &aVocab, &nVocab)
                     : vocab_build(&m, &aVocab, &nVocab);
  }
  if (rc == BT_OK) {
    aLabel = bt_malloc((size_t)(m.nCp ? m.nCp : 1) * sizeof *aLabel, "labels");
    if (!aLabel) rc = BT_ERR;
  }
  if (rc == BT_OK)
    rc = labels_map(&m, aVocab, nVocab, opt->zVocab ? opt->zVocab : "the "
                    "manifest", aLabel);
  if (rc == BT_OK) rc = write_all(opt, &m, aVocab, nVocab, aLabel);
  free(aLabel);
  free(aVocab);
  manifest_free(&m);
  return rc;
}

int bt_prepare_audio_main(int argc, char **argv) {
  audio_opts o;
  int code = parse_audio_opts(argc, argv, &o);
  if (code >= 0) return code;
  if (prepare_audio(&o) != BT_OK) {
    bt_log_error("%s", bt_err_msg());
    return BT_EXIT_ERROR;
  }
  return BT_EXIT_OK;
}
