/*
 * audio_features.c: the log-mel front end defined in audio_features.h.
 *
 * Invariants of a bt_audio_features object:
 *   1. aWeight[j][k] is the Slaney filterbank of the header, computed once
 *      in double; aLo[j] <= k < aHi[j] spans its nonzero weights, so the
 *      per-frame sum skips the zeros but still adds in bin order.
 *   2. plan was made for (pIn, pOut) and is only ever executed on them, so
 *      one object serves one thread at a time and needs no lock after open.
 */
#include "data/audio_features.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define N_BIN (BT_AUDIO_N_FFT / 2 + 1)

struct bt_audio_features {
  float aWin[BT_AUDIO_WINDOW];
  double aWeight[BT_AUDIO_N_MEL][N_BIN];
  int aLo[BT_AUDIO_N_MEL], aHi[BT_AUDIO_N_MEL];
  float *pIn;          /* [N_FFT] fftwf_malloc'ed */
  fftwf_complex *pOut; /* [N_BIN] */
  fftwf_plan plan;
};

/* FFTW's planner keeps global state: every plan in the process is made and
 * destroyed under this lock (fftwf_execute itself is thread-safe). */
static pthread_mutex_t g_muPlan = PTHREAD_MUTEX_INITIALIZER;

static double hz_to_mel(double f) {
  if (f < 1000.0) return 3.0 * f / 200.0;
  return 15.0 + 27.0 * log(f / 1000.0) / log(6.4);
}

static double mel_to_hz(double m) {
  if (m < 15.0) return 200.0 * m / 3.0;
  return 1000.0 * exp(log(6.4) * (m - 15.0) / 27.0);
}

static void build_filterbank(bt_audio_features *p) {
  double aEdge[BT_AUDIO_N_MEL + 2];
  double m0 = hz_to_mel(0.0), m1 = hz_to_mel(BT_AUDIO_SAMPLE_RATE / 2.0);
  for (int i = 0; i < BT_AUDIO_N_MEL + 2; i++)
    aEdge[i] = mel_to_hz(m0 + (m1 - m0) * i / (BT_AUDIO_N_MEL + 1));
  for (int j = 0; j < BT_AUDIO_N_MEL; j++) {
    double lo = aEdge[j], mid = aEdge[j + 1], hi = aEdge[j + 2];
    double norm = 2.0 / (hi - lo);
    p->aLo[j] = N_BIN;
    p->aHi[j] = 0;
    for (int k = 0; k < N_BIN; k++) {
      double f = (double)BT_AUDIO_SAMPLE_RATE * k / BT_AUDIO_N_FFT;
      double up = (f - lo) / (mid - lo), down = (hi - f) / (hi - mid);
      double w = up < down ? up : down;
      p->aWeight[j][k] = w > 0 ? w * norm : 0.0;
      if (w > 0) {
        if (k < p->aLo[j]) p->aLo[j] = k;
        p->aHi[j] = k + 1;
      }
    }
  }
}

int bt_audio_features_open(bt_audio_features **ppFe) {
  *ppFe = NULL;
  bt_audio_features *p = bt_calloc(1, sizeof *p, "audio front end");
  if (!p) return BT_ERR;
  for (int k = 0; k < BT_AUDIO_WINDOW; k++)
    p->aWin[k] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * k / BT_AUDIO_WINDOW));
  build_filterbank(p);
  pthread_mutex_lock(&g_muPlan);
  p->pIn = fftwf_malloc(sizeof(float) * BT_AUDIO_N_FFT);
  p->pOut = fftwf_malloc(sizeof(fftwf_complex) * N_BIN);
  if (p->pIn && p->pOut)
    p->plan = fftwf_plan_dft_r2c_1d(BT_AUDIO_N_FFT, p->pIn, p->pOut,
                                    FFTW_ESTIMATE);
  pthread_mutex_unlock(&g_muPlan);
  if (!p->plan) {
    bt_audio_features_free(p);
    return bt_err_set("audio front end: FFTW could not plan a %d-point "
                      "real FFT (out of memory?)",
                      BT_AUDIO_N_FFT);
  }
  *ppFe = p;
  return BT_OK;
}

void bt_audio_features_free(bt_audio_features *p) {
  if (!p) return;
  pthread_mutex_lock(&g_muPlan);
  if (p->plan) fftwf_destroy_plan(p->plan);
  if (p->pIn) fftwf_free(p->pIn);
  if (p->pOut) fftwf_free(p->pOut);
  pthread_mutex_unlock(&g_muPlan);
  free(p);
}

int64_t bt_audio_features_frames(int64_t nSample) {
  if (nSample < BT_AUDIO_WINDOW) return 0;
  return 1 + (nSample - BT_AUDIO_WINDOW) / BT_AUDIO_HOP;
}

void bt_audio_features_compute(bt_audio_features *p, const float *aSample,
                               int64_t nSample, float *aOut) {
  BT_ASSERT(nSample >= BT_AUDIO_WINDOW);
  int64_t nFrame = bt_audio_features_frames(nSample);
  double aPow[N_BIN];
  for (int64_t t = 0; t < nFrame; t++) {
    const float *x = aSample + t * BT_AUDIO_HOP;
    for (int k = 0; k < BT_AUDIO_WINDOW; k++) p->pIn[k] = x[k] * p->aWin[k];
    memset(p->pIn + BT_AUDIO_WINDOW, 0,
           sizeof(float) * (BT_AUDIO_N_FFT - BT_AUDIO_WINDOW));
    fftwf_execute(p->plan);
    for (int k = 0; k < N_BIN; k++) {
      double re = p->pOut[k][0], im = p->pOut[k][1];
      aPow[k] = re * re + im * im;
    }
    float *y = aOut + t * BT_AUDIO_N_MEL;
    for (int j = 0; j < BT_AUDIO_N_MEL; j++) {
      double s = 0.0;
      for (int k = p->aLo[j]; k < p->aHi[j]; k++) s += p->aWeight[j][k] * aPow[k];
      y[j] = (float)log(s > BT_AUDIO_LOG_FLOOR ? s : BT_AUDIO_LOG_FLOOR);
    }
  }
}
