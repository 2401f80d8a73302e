/*
 * comm_values.h: typed buffers and the expected results of reductions,
 * shared by the MPI (test_comm.c) and NCCL (test_comm_nccl.c) collective
 * tests, so both check the same contract. The includer defines g_world.
 */
#ifndef BATON_TEST_COMM_VALUES_H
#define BATON_TEST_COMM_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"

static size_t esize(bt_dtype t) {
  return t == BT_F64 || t == BT_I64 ? 8 : t == BT_U8 ? 1 : 4;
}

static void put(void *p, bt_dtype t, size_t i, double v) {
  switch (t) {
    case BT_F32: ((float *)p)[i] = (float)v; break;
    case BT_F64: ((double *)p)[i] = v; break;
    case BT_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case BT_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case BT_U8: ((uint8_t *)p)[i] = (uint8_t)((long)v & 255); break;
  }
}

static double get(const void *p, bt_dtype t, size_t i) {
  switch (t) {
    case BT_F32: return ((const float *)p)[i];
    case BT_F64: return ((const double *)p)[i];
    case BT_I32: return ((const int32_t *)p)[i];
    case BT_I64: return (double)((const int64_t *)p)[i];
    case BT_U8: return ((const uint8_t *)p)[i];
  }
  return -1;
}

/* Rank q's contribution at index i for reduction eOp. Sums use small
 * positive values; max/min a scrambled pattern so the extreme moves
 * between ranks. */
static double val(int q, size_t i, bt_redop eOp) {
  /* +100 makes u8 sums wrap from 3 ranks on (MPI must wrap like NCCL). */
  if (eOp == BT_SUM) return (double)(100 + q + (long)(i % 7));
  return (double)(((long)q * 37 + (long)i * 11) % 101);
}

static double expect(size_t i, bt_redop eOp, bt_dtype t) {
  double acc = val(0, i, eOp);
  for (int q = 1; q < g_world; q++) {
    double v = val(q, i, eOp);
    if (eOp == BT_SUM) acc += v;
    if (eOp == BT_MAX && v > acc) acc = v;
    if (eOp == BT_MIN && v < acc) acc = v;
  }
  if (t == BT_U8) acc = (double)((long)acc & 255);
  return acc;
}

#endif
