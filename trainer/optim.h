/*
 * optim.h: learning-rate schedule and AdamW over a range of the flat buffer.
 *
 * The optimizer owns two moment buffers (m, v) covering [lo, hi) of the
 * flat parameter buffer: the whole buffer in plain data parallelism, the
 * rank's ZeRO-1 shard otherwise. Weight decay follows each tensor's decay
 * flag (matrices and embeddings decay; biases and layernorm do not), so
 * the update walks the tensors that intersect [lo, hi).
 */
#ifndef BATON_OPTIM_H
#define BATON_OPTIM_H

#include "trainer/config.h"
#include "trainer/model.h"

typedef struct bt_optim {
  size_t lo, hi;  /* flat range of the moments */
  float *m, *v;   /* backend memory, hi - lo elements */
} bt_optim;

int bt_optim_init(bt_optim *o, bt_backend *be, size_t lo, size_t hi);
void bt_optim_free(bt_optim *o, bt_backend *be);

/* Learning rate at 1-based step `step` of `total`: linear warm-up over
 * optim.warmup_steps, then the decay of optim.schedule to lr *
 * min_lr_ratio at optim.decay_steps (0: at total), constant after it. */
double bt_optim_lr(const bt_config *c, long step, long total);

/* A resume at completed step `step` under pNew of a run saved under pOld:
 * when train.steps or the decay's end changed, logs whether the decay is
 * stretched or keeps its course and the rate of the next step under both
 * (optim.c). */
void bt_optim_log_resume(const bt_config *pOld, const bt_config *pNew,
                         long step);

/* One AdamW step over [lo, hi) ∩ [0, nParam). grad(x) gives the reduced
 * gradient pointer for flat position x (contiguous over the range).
 * Always fp32: it updates the master weights pModel->params with fp32
 * gradients and moments, whatever train.precision. In bf16 mode the caller
 * then refreshes the working copy (bt_model_refresh_work, after the ZeRO-1
 * all-gather, so every rank rounds the complete master; docs/design.md
 * "Precision"). */
void bt_optim_step(bt_optim *o, bt_model *pModel, float *pGradLo, double lr,
                   const bt_config *c, float gradScale, long step);

#endif
