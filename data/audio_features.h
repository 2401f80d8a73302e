/*
 * audio_features.h: log-mel filterbank features of 16 kHz mono audio, the
 * input of the speech model (issue 15). Pure: samples in, features out; no
 * file, no HDF5. `baton prepare audio` (prepare_audio.c) is its caller.
 *
 * The exact definition (docs/data.md "Audio data" repeats it, and
 * tests/data/test_data_audio.py reimplements it in numpy):
 *
 *   x[n]     samples as libsndfile's float read gives them (16-bit PCM:
 *            int16 / 32768), n = 0..S-1. No dither, no DC removal, no
 *            pre-emphasis (Kaldi does all three; Whisper none).
 *   frames   F = 1 + floor((S - 400) / 160) for S >= 400, else no frame
 *            (an error for the caller): frame t covers x[160 t .. 160 t +
 *            399]; edges are not padded (Kaldi's snip_edges = true).
 *   window   periodic Hann, w[k] = 0.5 - 0.5 cos(2 pi k / 400), k < 400
 *            (torch.hann_window(400), Whisper's window).
 *   spectrum the windowed frame zero-padded to 512 samples, real FFT (FFTW,
 *            single precision), P[k] = |X[k]|^2 for k = 0..256 (no 1/N).
 *   mel      Slaney's scale (librosa's default, htk=False, as Whisper):
 *            mel(f) = 3 f / 200 below 1000 Hz, else 15 + 27 ln(f / 1000) /
 *            ln(6.4). 82 points equally spaced in mel from mel(0) to
 *            mel(8000) give edges f_0..f_81 (Hz). Filter j = 0..79 weights
 *            bin k (frequency f = 16000 k / 512) by
 *              max(0, min((f - f_j) / (f_{j+1} - f_j),
 *                         (f_{j+2} - f) / (f_{j+2} - f_{j+1})))
 *              * 2 / (f_{j+2} - f_j)        (Slaney area normalisation)
 *   output   out[t, j] = ln(max(sum_k weight[j, k] P_t[k], 1e-10)),
 *            float32, row-major [F, 80]. The weighted sum is taken in
 *            double, in bin order.
 *
 * Threads: bt_audio_features_open() plans the FFT once (FFTW's planner is
 * not thread-safe: the plan is made under a process-wide lock); one
 * bt_audio_features object is then used by one thread at a time.
 */
#ifndef BATON_AUDIO_FEATURES_H
#define BATON_AUDIO_FEATURES_H

#include <stdint.h>

#define BT_AUDIO_SAMPLE_RATE 16000
#define BT_AUDIO_N_MEL 80
#define BT_AUDIO_WINDOW 400 /* 25 ms */
#define BT_AUDIO_HOP 160    /* 10 ms */
#define BT_AUDIO_N_FFT 512
#define BT_AUDIO_LOG_FLOOR 1e-10
#define BT_AUDIO_MEL_SCALE "slaney"

typedef struct bt_audio_features bt_audio_features;

/* Builds the window, the filterbank and the FFT plan. BT_ERR (with the
 * message) only when memory or FFTW's planner fails. */
int bt_audio_features_open(bt_audio_features **ppFe);
void bt_audio_features_free(bt_audio_features *pFe);

/* Frames of S samples: 1 + (S - 400) / 160, or 0 when S < 400. */
int64_t bt_audio_features_frames(int64_t nSample);

/* Computes the [frames(nSample), 80] features of aSample into aOut (which
 * holds that many floats). nSample must be >= BT_AUDIO_WINDOW (asserted:
 * the caller reports short audio with its file and line). */
void bt_audio_features_compute(bt_audio_features *pFe, const float *aSample,
                               int64_t nSample, float *aOut);

#endif /* BATON_AUDIO_FEATURES_H */
