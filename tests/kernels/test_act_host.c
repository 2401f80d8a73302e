/*
 * test_act_host.c: bt_act_to_host, the read-back of activation-typed
 * buffers (logits in eval and infer). Where the storage is 2 bytes (the
 * CUDA backend in bf16 mode) it copies the bf16 values into the upper half
 * of the host buffer and widens them in place; this test checks that the
 * in-place order never overwrites a value before it is read, for every n
 * from 1 to 300 and for special values (zeros, denormals, inf, NaN),
 * against bt_bf16_to_f32 one by one.
 *
 * No GPU here, so the 2-byte storage is simulated on the CPU backend by
 * setting its element size (kernels/backend_impl.h): bt_act_to_host only
 * sees bytes through the backend's mem_to_host, which is the code path the
 * CUDA backend takes. The 4-byte path is a plain copy, checked too.
 */
#include "base/bf16.h"
#include "base/util.h"
#include "kernels/backend_impl.h"
#include "kernels/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nFail = 0;

static uint16_t pattern(size_t i) {
  static const uint16_t aSpecial[] = {0x0000, 0x8000, 0x0001, 0x807f,
                                      0x7f80, 0xff80, 0x7fc1, 0x3f80};
  if (i < sizeof aSpecial / sizeof aSpecial[0]) return aSpecial[i];
  return (uint16_t)(0x3c00u + (uint16_t)(i * 2654435761u >> 20) % 0x0800u);
}

static void check_n(bt_backend *be, size_t n) {
  uint16_t *pDev = bt_mem_alloc_bytes(be, n * 2, "test bf16 buffer");
  float *pHost = malloc(n * sizeof(float));
  BT_ASSERT(pDev && pHost);
  for (size_t i = 0; i < n; i++) pDev[i] = pattern(i); /* CPU: host memory */
  for (size_t i = 0; i < n; i++) pHost[i] = -12345.0f;
  be->nActByte = 2;
  bt_act_to_host(be, pHost, (const float *)(void *)pDev, n);
  be->nActByte = 4;
  for (size_t i = 0; i < n; i++) {
    float want = bt_bf16_to_f32(pattern(i));
    if (memcmp(&want, &pHost[i], 4) != 0) {
      printf("FAIL n=%zu element %zu: got %a want %a\n", n, i, pHost[i], want);
      nFail++;
      break;
    }
  }
  free(pHost);
  bt_mem_free(be, (float *)(void *)pDev);
}

int main(void) {
  bt_backend *be = bt_backend_create(BT_BACKEND_CPU, 1, 0);
  if (!be) {
    fprintf(stderr, "test_act_host: %s\n", bt_err_msg());
    return 1;
  }
  BT_ASSERT(bt_backend_act_bytes(be) == 4);
  for (size_t n = 1; n <= 300; n++) check_n(be, n);
  /* fp32 storage: a plain copy, bit for bit (NaN payloads included). */
  size_t n = 37;
  float *pDev = bt_mem_alloc_act(be, n, "test fp32 buffer");
  float aHost[37], aWant[37];
  for (size_t i = 0; i < n; i++) {
    uint32_t u = 0x7fc00000u + (uint32_t)i * 977u;
    memcpy(&aWant[i], &u, 4);
  }
  memcpy(pDev, aWant, sizeof aWant);
  bt_act_to_host(be, aHost, pDev, n);
  if (memcmp(aHost, aWant, sizeof aWant) != 0) {
    printf("FAIL fp32 read-back is not a plain copy\n");
    nFail++;
  }
  bt_mem_free(be, pDev);
  bt_backend_free(be);
  printf("bt_act_to_host: n = 1..300 bf16 and fp32: %s\n",
         nFail ? "FAILED" : "ok");
  return nFail ? 1 : 0;
}
