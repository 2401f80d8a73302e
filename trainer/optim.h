/*
 * optim.h: learning-rate schedule and AdamW over ranges of the flat buffer.
 *
 * The optimizer owns two moment buffers (m, v) of nMom elements covering
 * the rank's optimizer shard: the whole flat buffer in plain data
 * parallelism, the union of the rank's ZeRO-1 slices of every gradient
 * bucket otherwise (grad_sync.h), stored one after the other in flat
 * order. The caller says which flat range goes with which moment offset
 * (bt_optim_step_range: one call per bucket slice). Weight decay follows
 * each tensor's decay flag (matrices and embeddings decay; biases and
 * layernorm do not), so the update walks the tensors that intersect the
 * range; padding beyond nParam lies in no tensor and is never updated.
 */
#ifndef BATON_OPTIM_H
#define BATON_OPTIM_H

#include "trainer/config.h"
#include "trainer/model.h"

typedef struct bt_optim {
  size_t nMom;    /* elements of each moment buffer */
  float *m, *v;   /* backend memory, nMom elements */
} bt_optim;

int bt_optim_init(bt_optim *o, bt_backend *be, size_t nMom);
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

/* One AdamW step over the flat range [lo, hi) ∩ [0, nParam), whose moments
 * start at momOff (momOff + hi - lo <= nMom). The reduced gradients are
 * pModel->grads[lo, hi); gradScale multiplies them (the clip). Always
 * fp32: it updates the master weights pModel->params with fp32 gradients
 * and moments, whatever train.precision. In bf16 mode the caller then
 * refreshes the working copy (bt_model_refresh_work, after the ZeRO-1
 * all-gather, so every rank rounds the complete master; docs/design.md
 * "Precision"). */
void bt_optim_step_range(bt_optim *o, bt_model *pModel, size_t lo, size_t hi,
                         size_t momOff, double lr, const bt_config *c,
                         float gradScale, long step);

#endif
