/*
 * cpu_step.c: the step-statistics ops of the CPU reference (kernels/ops.def:
 * sumsq_acc, loss_sum_acc, clip_grads). The CPU backend's memory is host
 * memory, so "leaving the result on the device" is writing it there; what
 * these ops guarantee is the NUMBERS: each is the host computation the
 * trainer did before the ops existed, in the same order, so moving the
 * step's statistics to backend memory changed no bit of an fp32 run
 * (train_resume_exact*, ref_dump).
 */
#include "base/util.h"
#include "kernels/cpu/cpu_internal.h"

#include <math.h>

void bt_cpu_sumsq_acc(bt_backend *be, double *acc, const float *x,
                      size_t n) {
  acc[0] += bt_cpu_sumsq(be, x, n);
}

/* Sequential: n is one micro-batch's rows (thousands), and the order is
 * the one the host used (trainer/model.c before issue 12). */
void bt_cpu_loss_sum_acc(bt_backend *be, double *acc, const float *losses,
                         const int32_t *targets, size_t n) {
  (void)be;
  double s = 0;
  for (size_t i = 0; i < n; i++)
    if (targets[i] >= 0) s += losses[i];
  acc[0] += s;
}

void bt_cpu_clip_grads(bt_backend *be, float *x, size_t n,
                       const double *sumsq, double clip) {
  double norm = sqrt(sumsq[0]);
  if (!(clip > 0 && norm > clip)) return;
  bt_cpu_scale(be, x, (float)(clip / norm), n);
}
